//! The comparator's metrics on hand-built logs with known answers, and against naive
//! definitions on random ones.

use mpcomm::compare::{analyse, AnalyseOptions, PeerLog, Report};
use mpcomm::wire::log::{encode, LogHeader, Record};
use mpcomm::wire::Transport;
use proptest::prelude::*;

const RUN: u64 = 0xabcd;
const T0: u64 = 1_700_000_000_000_000_000;

fn header(peer: u16, n: u16, m: u32) -> LogHeader {
    LogHeader {
        run_id: RUN,
        peer_id: peer,
        peers: n,
        msgs: m,
        transport: Some(Transport::Fanout),
        time_scale_ppm: 1_000_000,
        clock_error_ns: Some(1_000_000),
        ..LogHeader::default()
    }
}

/// A log delivering `(sender, seq)` in this order, each 5 µs after it was sent.
fn log_of(peer: u16, n: u16, m: u32, order: &[(u16, u32)]) -> PeerLog {
    let recs: Vec<Record> = order
        .iter()
        .enumerate()
        .map(|(i, &(sender, seq))| {
            let send_ns = T0 + i as u64 * 1_000_000;
            Record {
                sender,
                seq,
                send_ns,
                recv_ns: send_ns + 4_000,
                deliver_ns: send_ns + 5_000,
                kernel_stamp: false,
                ..Record::default()
            }
        })
        .collect();
    PeerLog::from_bytes(&encode(&header(peer, n, m), &recs)).expect("valid log")
}

/// Every message of N peers × M, round-robin by sender.
fn all_msgs(n: u16, m: u32) -> Vec<(u16, u32)> {
    (0..m).flat_map(|q| (0..n).map(move |s| (s, q))).collect()
}

/// Histogram values are exact to 3 significant digits (reported as the bucket's highest value).
fn assert_close(got: Option<f64>, want: f64) {
    let got = got.expect("a value");
    assert!(
        (got - want).abs() <= want * 1e-3,
        "{got} is not {want} to 3 digits"
    );
}

fn run(logs: &[PeerLog]) -> Report {
    analyse(
        logs,
        &AnalyseOptions {
            matrix: true,
            ..AnalyseOptions::default()
        },
    )
}

#[test]
fn identical_orders() {
    let o = all_msgs(3, 2);
    let logs: Vec<PeerLog> = (0..3).map(|p| log_of(p, 3, 2, &o)).collect();
    let r = run(&logs);
    assert_eq!(
        (r.rounds, r.out_of_order_rounds, r.first_divergence),
        (6, 0, None)
    );
    assert_eq!(
        (r.deliveries, r.lost, r.duplicates, r.fifo_violations),
        (18, 0, 0, 0)
    );
    assert_eq!(r.pairwise_disagreement.pairs, 3);
    assert_eq!(
        (r.pairwise_disagreement.max, r.pairwise_disagreement.mean),
        (0.0, 0.0)
    );
    assert_eq!(r.consensus.odd_one_out, None);
    assert!(r.missing_peers.is_empty());
    assert_eq!(r.latency_us.count, 18);
    assert_close(r.latency_us.p50, 5.0);
    assert_eq!(r.latency_us.negative, 0);
    assert_eq!(r.clock_error_ms, Some(1.0));
    let mut text = Vec::new();
    r.write_human(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "Found 0 unordered message rounds"),
        "{text}"
    );
}

#[test]
fn reversed_orders() {
    let o = all_msgs(2, 3);
    let rev: Vec<_> = o.iter().rev().copied().collect();
    let logs = [log_of(0, 2, 3, &o), log_of(1, 2, 3, &rev)];
    let r = run(&logs);
    assert_eq!((r.out_of_order_rounds, r.first_divergence), (6, Some(0)));
    assert_eq!(r.pairwise_disagreement.max, 1.0);
    assert_eq!(r.pairwise_disagreement.max_pair, Some([0, 1]));
    assert_eq!(r.lost, 0);
    // Peer 1 got each sender's seqs 2, 1, 0: two violations per sender.
    assert_eq!(r.fifo_violations, 4);
    let r = analyse(
        &logs,
        &AnalyseOptions {
            reference: Some(0),
            ..AnalyseOptions::default()
        },
    );
    assert_eq!(r.consensus.method, "reference");
    assert_eq!(r.consensus.odd_one_out, Some(1));
    assert_eq!(r.consensus.max_distance, 1.0);
    assert_eq!(r.per_peer[0].distance_to_consensus, Some(0.0));
    assert_eq!(r.per_peer[1].distance_to_consensus, Some(1.0));
}

#[test]
fn one_loss_shifts_positions_but_not_the_pairwise_order() {
    let o = all_msgs(2, 3); // (0,0) (1,0) (0,1) (1,1) (0,2) (1,2)
    let mut lossy = o.clone();
    lossy.remove(2); // peer 1 never got (0,1)
    let r = run(&[log_of(0, 2, 3, &o), log_of(1, 2, 3, &lossy)]);
    assert_eq!(r.lost, 1);
    assert_eq!(r.per_peer[1].lost, 1);
    assert_eq!(
        r.matrix.as_ref().unwrap().lost,
        vec![vec![0, 0], vec![1, 0]]
    );
    // Positions 2..5 differ (the last because peer 1's log is shorter).
    assert_eq!((r.out_of_order_rounds, r.first_divergence), (4, Some(2)));
    assert_eq!(r.pairwise_disagreement.max, 0.0);
    assert_eq!(r.deliveries, 11);
}

#[test]
fn loss_at_the_end_counts_once() {
    let o = all_msgs(2, 3);
    let r = run(&[log_of(0, 2, 3, &o), log_of(1, 2, 3, &o[..5])]);
    assert_eq!(
        (r.lost, r.out_of_order_rounds, r.first_divergence),
        (1, 1, Some(5))
    );
}

#[test]
fn duplicates() {
    let o = all_msgs(2, 2);
    let mut dup = o.clone();
    dup.insert(2, (0, 0)); // (0,0) again, after (1,0)
    let r = run(&[log_of(0, 2, 2, &o), log_of(1, 2, 2, &dup)]);
    assert_eq!((r.duplicates, r.lost, r.deliveries), (1, 0, 9));
    assert_eq!(
        r.matrix.as_ref().unwrap().duplicates,
        vec![vec![0, 0], vec![1, 0]]
    );
    // The duplicate is not a FIFO violation (seq 0 after seq 0), and it shifts positions 2..4.
    assert_eq!(r.fifo_violations, 0);
    assert_eq!(r.out_of_order_rounds, 2);
    assert_eq!(r.pairwise_disagreement.max, 0.0);
}

#[test]
fn empty_log() {
    let o = all_msgs(2, 3);
    let r = run(&[log_of(0, 2, 3, &o), log_of(1, 2, 3, &[])]);
    assert_eq!((r.lost, r.deliveries), (6, 6));
    assert_eq!((r.out_of_order_rounds, r.first_divergence), (6, Some(0)));
    assert_eq!(r.per_peer[1].latency_us.count, 0);
    assert_eq!(r.per_peer[1].latency_us.p50, None);
    assert_eq!(r.pairwise_disagreement.max, 0.0);
}

#[test]
fn single_peer_with_fifo_violation() {
    let r = run(&[log_of(0, 1, 5, &[(0, 0), (0, 2), (0, 1), (0, 3), (0, 4)])]);
    assert_eq!(
        (r.rounds, r.out_of_order_rounds, r.first_divergence),
        (5, 0, None)
    );
    assert_eq!(r.fifo_violations, 1);
    assert_eq!(r.pairwise_disagreement.pairs, 0);
    assert_eq!(r.consensus.odd_one_out, None);
}

#[test]
fn missing_peer() {
    let o = all_msgs(3, 2);
    let r = run(&[log_of(0, 3, 2, &o), log_of(2, 3, 2, &o)]);
    assert_eq!(r.missing_peers, vec![1]);
    // A missing log counts as empty: every position differs.
    assert_eq!((r.out_of_order_rounds, r.first_divergence), (6, Some(0)));
    // Loss is counted over the receivers whose log arrived.
    assert_eq!(r.lost, 0);
    assert!(!r.per_peer[1].present);
    assert_eq!(r.pairwise_disagreement.pairs, 1);
    assert_eq!(r.zones.len(), 3);
}

#[test]
fn no_logs_at_all() {
    let r = analyse(&[], &AnalyseOptions::default());
    assert_eq!(r.rounds, 0);
    assert!(!r.warnings.is_empty());
}

#[test]
fn header_fields_are_carried() {
    let mk = |peer: u16, zone: &str, malformed: u64, setup_ms: u64, clock: Option<u64>| {
        let mut h = header(peer, 2, 1);
        h.wan = "gcp8".into();
        h.zone = zone.into();
        h.time_scale_ppm = 100_000;
        h.msg_size = 64;
        h.malformed = malformed;
        h.foreign = 1;
        h.setup_ns = setup_ms * 1_000_000;
        h.duration_ns = setup_ms * 10_000_000;
        h.kernel_stamps = true;
        h.clock_error_ns = clock;
        h.transport = Some(Transport::Multicast);
        let recs = [
            Record {
                sender: 0,
                seq: 0,
                send_ns: 10_000,
                recv_ns: 0,
                deliver_ns: 4_000,
                kernel_stamp: true,
                ..Record::default()
            },
            Record {
                sender: 1,
                seq: 0,
                send_ns: 10_000,
                recv_ns: 0,
                deliver_ns: 30_000,
                kernel_stamp: true,
                ..Record::default()
            },
        ];
        PeerLog::from_bytes(&encode(&h, &recs)).unwrap()
    };
    let r = run(&[mk(0, "SA", 2, 7, Some(500_000)), mk(1, "EU", 3, 9, None)]);
    assert_eq!(r.transport.as_deref(), Some("multicast"));
    assert_eq!(r.wan.as_deref(), Some("gcp8"));
    assert_eq!(r.zones, vec![Some("SA".to_owned()), Some("EU".to_owned())]);
    assert_eq!(
        (r.time_scale, r.size, r.malformed, r.foreign),
        (0.1, 64, 5, 2)
    );
    assert_eq!((r.setup_ms, r.duration_ms), (9.0, 90.0));
    assert!(r.kernel_stamps);
    // One peer's clock error is unknown, so the run's bound is unknown.
    assert_eq!(r.clock_error_ms, None);
    assert_eq!(r.per_peer[0].clock_error_ms, Some(0.5));
    // deliver < send: counted as negative, never recorded.
    assert_eq!((r.latency_us.count, r.latency_us.negative), (2, 2));
    assert_close(r.latency_us.p50, 20.0);
}

#[test]
fn logs_of_other_runs_and_second_copies_are_ignored_with_a_warning() {
    let o = all_msgs(2, 1);
    let mut other = header(1, 2, 1);
    other.run_id = 7;
    let other = PeerLog::from_bytes(&encode(&other, &[])).unwrap();
    let r = run(&[
        log_of(0, 2, 1, &o),
        log_of(0, 2, 1, &[]),
        other,
        log_of(1, 2, 1, &o),
    ]);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert_eq!((r.deliveries, r.out_of_order_rounds, r.lost), (4, 0, 0));
}

#[test]
fn seq_beyond_m_is_unexpected_and_never_agrees() {
    let o = [(0u16, 0u32), (0, 9)];
    let r = run(&[log_of(0, 1, 2, &o)]);
    assert_eq!(
        (
            r.unexpected,
            r.lost,
            r.out_of_order_rounds,
            r.first_divergence
        ),
        (1, 1, 1, Some(1))
    );
}

#[test]
fn json_line_round_trips_with_the_documented_names() {
    let o = all_msgs(2, 2);
    let r = run(&[log_of(0, 2, 2, &o), log_of(1, 2, 2, &o)]);
    let line = r.to_json_line();
    assert!(!line.contains('\n'));
    assert_eq!(Report::from_json_line(&line).unwrap(), r);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "run_id",
        "peers",
        "msgs_per_peer",
        "transport",
        "rounds",
        "out_of_order_rounds",
        "deliveries",
        "lost",
        "duplicates",
        "malformed",
        "missing_peers",
        "setup_ms",
        "duration_ms",
        "pairwise_disagreement",
        "first_divergence",
        "fifo_violations",
        "latency_us",
        "clock_error_ms",
        "wan",
        "zones",
        "time_scale",
        "size",
        "foreign",
        "kernel_stamps",
        "consensus",
        "per_peer",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {line}");
    }
    for key in ["p50", "p90", "p99", "p999", "max", "count", "negative"] {
        assert!(
            v["latency_us"].get(key).is_some(),
            "missing latency_us.{key}"
        );
    }
    assert!(
        v["pairwise_disagreement"].get("max").is_some()
            && v["pairwise_disagreement"].get("mean").is_some()
    );
}

#[test]
fn garbage_is_refused_not_panicked_on() {
    let good = encode(&header(0, 2, 2), &[Record::default()]);
    for cut in 0..good.len() {
        assert!(PeerLog::from_bytes(&good[..cut]).is_err());
    }
    // N × M that cannot be indexed by u32.
    let huge = encode(&header(0, 65535, u32::MAX), &[]);
    assert!(PeerLog::from_bytes(&huge).is_err());
}

/// The definitions, written as plainly as possible.
fn naive(orders: &[Vec<(u16, u32)>], n: u16, m: u32) -> (u64, u64, u64, f64) {
    let rounds = u64::from(n) * u64::from(m);
    let ooo = (0..rounds as usize)
        .filter(|&k| {
            let first = orders[0].get(k);
            first.is_none() || orders.iter().any(|o| o.get(k) != first)
        })
        .count() as u64;
    let (mut lost, mut dups) = (0, 0);
    for o in orders {
        for s in 0..n {
            for q in 0..m {
                let c = o.iter().filter(|&&x| x == (s, q)).count() as u64;
                if c == 0 {
                    lost += 1;
                } else {
                    dups += c - 1;
                }
            }
        }
    }
    let mut max = 0.0f64;
    for a in 0..orders.len() {
        for b in a + 1..orders.len() {
            let first = |o: &Vec<(u16, u32)>, x| o.iter().position(|&y| y == x);
            let mut common: Vec<(u16, u32)> = Vec::new();
            for &x in &orders[a] {
                if first(&orders[b], x).is_some() && !common.contains(&x) {
                    common.push(x);
                }
            }
            let mut disc = 0;
            for i in 0..common.len() {
                for j in i + 1..common.len() {
                    if first(&orders[b], common[i]) > first(&orders[b], common[j]) {
                        disc += 1;
                    }
                }
            }
            let c = common.len() as f64;
            if c >= 2.0 {
                max = max.max(disc as f64 / (c * (c - 1.0) / 2.0));
            }
        }
    }
    (ooo, lost, dups, max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn metrics_match_the_definitions(
        n in 1u16..5,
        m in 1u32..6,
        seeds in proptest::collection::vec(proptest::collection::vec((0u16..8, 0u32..8), 0..40), 4),
    ) {
        let orders: Vec<Vec<(u16, u32)>> = seeds[..usize::from(n)]
            .iter()
            .map(|o| o.iter().map(|&(s, q)| (s % n, q % m)).collect())
            .collect();
        let logs: Vec<PeerLog> = orders.iter().enumerate().map(|(p, o)| log_of(p as u16, n, m, o)).collect();
        let r = analyse(&logs, &AnalyseOptions { threads: 2, ..AnalyseOptions::default() });
        let (ooo, lost, dups, max) = naive(&orders, n, m);
        prop_assert_eq!(r.out_of_order_rounds, ooo);
        prop_assert_eq!(r.lost, lost);
        prop_assert_eq!(r.duplicates, dups);
        prop_assert!((r.pairwise_disagreement.max - max).abs() < 1e-12, "{} vs {}", r.pairwise_disagreement.max, max);
    }
}

/// The worked example of the README ("The comparator"), number by number.
#[test]
fn documented_worked_example() {
    let (a0, a1, b0, b1, c0, c1) = ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1));
    let full = [a0, b0, c0, a1, b1, c1];
    let logs = [
        log_of(0, 3, 2, &full),
        log_of(1, 3, 2, &full),
        log_of(2, 3, 2, &[b0, a0, c0, b1, c1]),
    ];
    let r = analyse(&logs, &AnalyseOptions::default());
    assert_eq!(
        (r.rounds, r.out_of_order_rounds, r.first_divergence),
        (6, 5, Some(0))
    );
    assert_eq!(
        (r.deliveries, r.lost, r.duplicates, r.fifo_violations),
        (17, 1, 0, 0)
    );
    assert!((r.pairwise_disagreement.max - 0.1).abs() < 1e-12);
    assert!((r.pairwise_disagreement.mean - 0.2 / 3.0).abs() < 1e-12);
    assert_eq!(r.consensus.method, "mean-position");
    assert_eq!(r.consensus.odd_one_out, Some(2));
    assert!((r.consensus.max_distance - 0.1).abs() < 1e-12);
    assert_eq!(r.per_peer[0].distance_to_consensus, Some(0.0));
}

/// A header may claim 65535 peers: the analysis must cost what the logs hold, not N².
#[test]
fn huge_claimed_n_costs_what_the_logs_hold() {
    let t = std::time::Instant::now();
    let logs = [
        log_of(0, 65535, 1000, &[(0, 0), (7, 3)]),
        log_of(9, 65535, 1000, &[(7, 3)]),
    ];
    let r = analyse(
        &logs,
        &AnalyseOptions {
            matrix: true,
            ..AnalyseOptions::default()
        },
    );
    assert_eq!(r.rounds, 65_535_000);
    assert_eq!(r.missing_peers.len(), 65533);
    assert_eq!(r.out_of_order_rounds, r.rounds);
    assert_eq!(r.lost, 2 * 65_535_000 - 3);
    assert!(r.matrix.is_none());
    assert!(
        r.warnings.iter().any(|w| w.contains("no matrices")),
        "{:?}",
        r.warnings
    );
    // A guard against work in the claimed N (minutes, or memory), not a benchmark: on a
    // loaded 2-core machine the linear work alone has taken more than 10 s.
    assert!(t.elapsed() < std::time::Duration::from_secs(60));
}

/// A log of the same run id and N but another M is ignored by the analysis, and so by the
/// histogram files: their total count is the report's.
#[test]
fn histogram_files_ignore_the_logs_the_analysis_ignored() {
    let dir = std::env::temp_dir().join(format!(
        "mpcomm-test-hist-m-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let other_m = log_of(1, 2, 3, &all_msgs(2, 3)); // 6 deliveries, M = 3
    let logs = vec![
        log_of(0, 2, 2, &all_msgs(2, 2)),
        other_m,
        log_of(1, 2, 2, &all_msgs(2, 2)),
    ];
    let r = run(&logs);
    assert_eq!(r.latency_us.count, 8);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    mpcomm::compare::hist::write_run(&dir, &logs, &r).unwrap();
    let text = std::fs::read_to_string(dir.join(format!("run-{RUN:016x}.hgrm"))).unwrap();
    let total = text
        .lines()
        .find_map(|l| l.split("Total count    =").nth(1))
        .map(|c| c.trim_end_matches(']').trim().to_owned());
    assert_eq!(total.as_deref(), Some("8"), "{text}");
    let pair = std::fs::read_to_string(dir.join(format!("run-{RUN:016x}-s0-r1.hgrm"))).unwrap();
    assert!(pair.contains("Total count    =            2]"), "{pair}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pairwise distances are skipped, with a warning, when (pairs + 1) × (longest log + 1) is
/// over the cap, and computed under it.
#[test]
fn pairwise_work_is_capped() {
    use mpcomm::compare::analyse::MAX_PAIRWISE_WORK;
    // 1024 logs (523,776 pairs), one of them long enough to go over the cap.
    let n: u16 = 1024;
    let pairs = u64::from(n) * u64::from(n - 1) / 2;
    let long = (MAX_PAIRWISE_WORK / (pairs + 1)) as usize + 1;
    let big: Vec<(u16, u32)> = (0..long).map(|i| ((i % 1024) as u16, 0)).collect();
    let mut logs = vec![log_of(0, n, 1, &big)];
    logs.extend((1..n).map(|p| log_of(p, n, 1, &[(p, 0)])));
    let r = run(&logs);
    assert_eq!(r.pairwise_disagreement.pairs, 0);
    assert_eq!(r.consensus.method, "none");
    assert!(
        r.warnings.iter().any(|w| w.contains("over the cap")),
        "{:?}",
        r.warnings
    );
    // Just under it, the same logs are compared.
    logs[0] = log_of(0, n, 1, &big[..long - 10]);
    let r = run(&logs);
    assert_eq!(r.pairwise_disagreement.pairs, pairs, "{:?}", r.warnings);
}
