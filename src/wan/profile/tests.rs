use super::*;

fn parse_err(text: &str) -> (usize, String) {
    match Profile::parse("t", text) {
        Err(WanError::Parse { line, msg, .. }) => (line, msg),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

const GOOD: &str = "# two zones\nzones A B\nsame_zone_rtt_ms 1\nrtt A - 10\nrtt B 10 -\n";

#[test]
fn parses_a_small_profile() {
    let p = Profile::parse("t", GOOD).unwrap();
    assert_eq!(p.zones, ["A", "B"]);
    assert_eq!(p.rtt_ms(0, 1), 10.0);
    assert_eq!(p.rtt_ms(1, 1), 1.0);
    assert_eq!(p.one_way(0, 1), Duration::from_millis(5));
    assert_eq!(p.one_way(0, 0), Duration::from_micros(500));
    assert_eq!(p.loss, 0.0);
    assert_eq!(p.jitter_ms, 0.0);
}

#[test]
fn asymmetric_matrix_names_the_line() {
    let (line, msg) = parse_err("zones A B\nrtt A - 10\nrtt B 11 -\n");
    assert_eq!(line, 3);
    assert!(msg.contains("asymmetric"), "{msg}");
}

#[test]
fn wrong_value_count_names_the_line() {
    let (line, msg) = parse_err("zones A B C\nrtt A - 10\n");
    assert_eq!(line, 2);
    assert!(msg.contains("expected 3"), "{msg}");
}

#[test]
fn missing_row_names_the_zones_line() {
    let (line, msg) = parse_err("# x\nzones A B\nrtt A - 10\n");
    assert_eq!(line, 2);
    assert!(
        msg.contains("wrong row count") && msg.contains("missing: B"),
        "{msg}"
    );
}

#[test]
fn duplicate_row_is_an_error() {
    let (line, msg) = parse_err("zones A B\nrtt A - 10\nrtt A - 10\nrtt B 10 -\n");
    assert_eq!(line, 3);
    assert!(msg.contains("twice"), "{msg}");
}

#[test]
fn unknown_zone_names_the_line() {
    let (line, msg) = parse_err("zones A B\nrtt A - 10\n\nrtt X 10 -\n");
    assert_eq!(line, 4);
    assert!(msg.contains("unknown zone \"X\""), "{msg}");
}

#[test]
fn negative_delays_are_refused() {
    let (line, msg) = parse_err("zones A B\nrtt A - -10\nrtt B -10 -\n");
    assert_eq!(line, 2);
    assert!(msg.contains("negative"), "{msg}");
    let (line, msg) = parse_err("zones A\nsame_zone_rtt_ms -1\nrtt A -\n");
    assert_eq!(line, 2);
    assert!(msg.contains("negative"), "{msg}");
    let (line, _) = parse_err("zones A\njitter_ms -0.5\nrtt A -\n");
    assert_eq!(line, 2);
}

#[test]
fn absurd_delays_are_refused_with_the_line() {
    // Found in issue 11: an RTT of 1e9 ms was accepted and the lab then hung.
    let (line, msg) = parse_err("zones A B\n\nrtt A - 1e9\nrtt B 1e9 -\n");
    assert_eq!(line, 3);
    assert!(msg.contains("over the limit of 10000 ms"), "{msg}");
    assert!(msg.contains("rtt A to B"), "{msg}");
    for stmt in ["same_zone_rtt_ms", "jitter_ms", "jitter_max_ms"] {
        let (line, msg) = parse_err(&format!("zones A\n{stmt} 10000.5\nrtt A -\n"));
        assert_eq!(line, 2, "{stmt}");
        assert!(
            msg.contains(stmt) && msg.contains("over the limit"),
            "{msg}"
        );
    }
    for bad in ["inf", "NaN", "-inf"] {
        assert_eq!(
            parse_err(&format!("zones A\njitter_ms {bad}\nrtt A -\n")).0,
            2
        );
        assert_eq!(
            parse_err(&format!("zones A B\nrtt A - {bad}\nrtt B 1 -\n")).0,
            2
        );
        assert_eq!(parse_err(&format!("zones A\nloss {bad}\nrtt A -\n")).0, 2);
    }
    assert_eq!(parse_err("zones A\nloss -0.1\nrtt A -\n").0, 2);
    // The limits themselves are allowed, and the default jitter cap stays within them.
    let p = Profile::parse(
        "t",
        "zones A B\njitter_ms 10000\nloss 1\nrtt A - 10000\nrtt B 10000 -\n",
    )
    .unwrap();
    assert_eq!(p.jitter_max_ms, MAX_DELAY_MS);
    assert_eq!(p.max_one_way(), Duration::from_secs(15));
}

#[test]
fn other_mistakes_name_the_line() {
    assert_eq!(parse_err("zones A\nrtt A x\n").0, 2);
    assert_eq!(parse_err("rtt A -\nzones A\n").0, 1);
    assert_eq!(parse_err("zones A\nfoo 1\n").0, 2);
    assert_eq!(parse_err("zones A A\n").0, 1);
    assert_eq!(parse_err("zones A B\nrtt A 1 10\nrtt B 10 -\n").0, 2);
    assert_eq!(parse_err("zones A\nloss 1.5\nrtt A -\n").0, 2);
    assert_eq!(parse_err("zones A\njitter_dist normal\nrtt A -\n").0, 2);
    assert!(matches!(
        Profile::parse("t", "# empty\n"),
        Err(WanError::Invalid { .. })
    ));
}

#[test]
fn gcp8_matches_the_issue_table() {
    let p = Profile::load("gcp8").unwrap();
    assert_eq!(p.name, "gcp8");
    assert_eq!(
        p.zones,
        ["NA", "SA", "USW", "EN", "EW9", "ME", "AS2", "AE1"]
    );
    // Upper triangle of issue 4's table, row by row.
    let upper: [&[f64]; 7] = [
        &[128.5, 61.0, 115.6, 85.0, 140.0, 236.0, 179.3],
        &[169.3, 216.8, 192.0, 250.0, 345.1, 286.6],
        &[158.3, 132.0, 190.0, 218.8, 119.4],
        &[35.0, 80.0, 185.1, 276.3],
        &[57.0, 157.0, 250.0],
        &[210.0, 300.0],
        &[107.2],
    ];
    for (r, row) in upper.iter().enumerate() {
        for (k, want) in row.iter().enumerate() {
            let c = r + 1 + k;
            assert_eq!(p.rtt_ms(r, c), *want, "{} to {}", p.zones[r], p.zones[c]);
            assert_eq!(p.rtt_ms(c, r), *want);
        }
    }
    for z in 0..8 {
        assert_eq!(p.rtt_ms(z, z), 0.5);
    }
    let (ew9, me, na, sa) = (4, 5, 0, 1);
    assert_eq!(p.source(na, ew9), Source::Proxied);
    assert_eq!(p.source(ew9, me), Source::Estimated);
    assert_eq!(p.source(na, sa), Source::Measured);
    assert_eq!(p.source(me, na), Source::Estimated);
    assert_eq!(p.one_way(1, 6), Duration::from_secs_f64(0.34510 / 2.0));
    assert_eq!(p.zone_index("AS2"), Some(6));
    assert_eq!(p.zone_index("XX"), None);
    assert_eq!(p.round_robin(10), [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]);
}

#[test]
fn lan_is_one_zone_without_delay() {
    let p = Profile::load("lan").unwrap();
    assert_eq!(p.zones.len(), 1);
    assert_eq!(p.one_way(0, 0), Duration::ZERO);
    assert_eq!(p.round_robin(3), [0, 0, 0]);
}

#[test]
fn load_reads_a_path_and_refuses_unknown_names() {
    let dir = std::env::temp_dir().join(format!("mpcomm-wan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mine.wan");
    std::fs::write(&file, GOOD).unwrap();
    let p = Profile::load(file.to_str().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(p.unwrap().name, "mine");
    assert!(matches!(
        Profile::load("no-such-profile"),
        Err(WanError::Unknown(_))
    ));
    assert!(matches!(
        Profile::load("/no/such/file.wan"),
        Err(WanError::Io { .. })
    ));
}
