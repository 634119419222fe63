//! `mpcomm compare` and `mpcomm report` through the real binary: offline on log files, as a
//! service that exits after one run, and the aggregated table, CSV and SVG.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use mpcomm::compare::Report;
use mpcomm::wire::frame::{read_frame, write_frame, Kind};
use mpcomm::wire::log::{write_file, LogHeader, Record};
use mpcomm::wire::Transport;
use support::{mpcomm, Proc, TempDir};

const WITHIN: Duration = Duration::from_secs(30);

/// Three peers × 2 msgs; peer 2 swaps the first two deliveries: 2 unordered rounds.
fn write_run(dir: &std::path::Path, run: u64) -> Vec<std::path::PathBuf> {
    let order: Vec<(u16, u32)> = (0..2).flat_map(|q| (0..3).map(move |s| (s, q))).collect();
    let mut swapped = order.clone();
    swapped.swap(0, 1);
    (0..3u16)
        .map(|p| {
            let o = if p == 2 { &swapped } else { &order };
            let recs: Vec<Record> = o
                .iter()
                .map(|&(sender, seq)| Record {
                    sender,
                    seq,
                    send_ns: 1_000_000,
                    recv_ns: 0,
                    deliver_ns: 1_250_000,
                    kernel_stamp: false,
                    ..Record::default()
                })
                .collect();
            let h = LogHeader {
                run_id: run,
                peer_id: p,
                peers: 3,
                msgs: 2,
                transport: Some(Transport::Multicast),
                time_scale_ppm: 1_000_000,
                ..LogHeader::default()
            };
            let path = dir.join(format!("run{run}-peer{p}.mplog"));
            write_file(&path, &h, &recs).unwrap();
            path
        })
        .collect()
}

fn output(args: &[&str]) -> (bool, String, String) {
    let out = mpcomm().args(args).output().expect("run mpcomm");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn offline_logs_json_results_histograms_and_report() {
    let dir = TempDir::new("compare-cli");
    let mut files = write_run(dir.path(), 1);
    files.extend(write_run(dir.path(), 2));
    let results = dir.path().join("results.jsonl");
    let hist = dir.path().join("hist");
    let mut args: Vec<String> = vec!["compare".into(), "--json".into(), "--logs".into()];
    args.extend(files.iter().map(|p| p.display().to_string()));
    args.extend([
        "--results".into(),
        results.display().to_string(),
        "--hist-dir".into(),
        hist.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = output(&args);
    assert!(ok, "{stderr}");
    let reports: Vec<Report> = stdout
        .lines()
        .map(|l| Report::from_json_line(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "one line per run: {stdout}");
    for (r, id) in reports.iter().zip([1, 2]) {
        assert_eq!(
            (
                r.run_id,
                r.rounds,
                r.out_of_order_rounds,
                r.deliveries,
                r.lost
            ),
            (id, 6, 2, 18, 0)
        );
        assert_eq!(r.transport.as_deref(), Some("multicast"));
        assert!((r.latency_us.p50.unwrap() - 250.0).abs() < 0.5);
    }
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        2
    );
    let hgrm = std::fs::read_to_string(hist.join("run-0000000000000001.hgrm")).unwrap();
    assert!(
        hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
        "{hgrm}"
    );
    assert!(hgrm.contains("#[Buckets ="));
    assert!(hist.join("run-0000000000000002-s1-r2.hgrm").exists());
    let hlog = std::fs::read_to_string(hist.join("run-0000000000000001.hlog")).unwrap();
    assert!(hlog.starts_with("#[Histogram log format version 1.3]"));
    assert!(hlog.contains("Tag=s0-r1,"));

    // The readable form keeps the original's line.
    let (ok, stdout, stderr) = output(&[args[0], "--matrix", args[2], args[3], args[4], args[5]]);
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "Found 2 unordered message rounds"),
        "{stdout}"
    );
    assert!(stdout.contains("pairwise disagreement"), "{stdout}");
    assert!(
        stdout.contains("lost (row: receiver, column: sender)"),
        "{stdout}"
    );

    // The aggregated report: both runs in one group.
    let res = results.display().to_string();
    let (ok, stdout, stderr) = output(&["report", &res]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("multicast"), "{stdout}");
    let (ok, csv, stderr) = output(&["report", &res, "--csv"]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("transport,wan,time_scale,peers,msgs_per_peer,samples,"),
        "{csv}"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with("multicast,,1,3,2,2,0,2,0,33.33"),
        "{csv}"
    );
    let svg = dir.path().join("chart.svg");
    let (ok, _, stderr) = output(&["report", &res, "--svg", &svg.display().to_string()]);
    assert!(ok, "{stderr}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("Out-of-order rounds"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn bad_input_fails_with_a_message() {
    let dir = TempDir::new("compare-cli-bad");
    let junk = dir.path().join("junk.mplog");
    std::fs::write(&junk, b"not a log at all").unwrap();
    let (ok, _, stderr) = output(&["compare", "--logs", &junk.display().to_string()]);
    assert!(!ok);
    assert!(
        stderr.contains("is not a valid mpcomm delivery log"),
        "{stderr}"
    );
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let (ok, _, stderr) = output(&["report", &empty.display().to_string()]);
    assert!(!ok);
    assert!(stderr.contains("holds no reports"), "{stderr}");
}

#[test]
fn service_once_reports_the_first_run_and_exits() {
    let dir = TempDir::new("compare-cli-svc");
    let files = write_run(dir.path(), 7);
    let mut p = Proc::spawn({
        let mut c = mpcomm();
        c.args(["compare", "--listen", "127.0.0.1:0", "--once", "--json"]);
        c
    });
    let line = p.wait_for_line("listening on", WITHIN);
    let addr: SocketAddr = line
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("address in the readiness line");
    for f in &files {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WITHIN)).unwrap();
        write_frame(&mut s, Kind::Upload, &std::fs::read(f).unwrap()).unwrap();
        let (kind, msg) = read_frame(&mut s, 1 << 16).unwrap();
        assert_eq!(kind, Kind::Accepted, "{}", String::from_utf8_lossy(&msg));
    }
    let (status, stdout) = p.finish(WITHIN);
    assert!(status.success());
    let r = Report::from_json_line(stdout.trim()).unwrap();
    assert_eq!(
        (r.run_id, r.out_of_order_rounds, r.missing_peers.len()),
        (7, 2, 0)
    );
}
