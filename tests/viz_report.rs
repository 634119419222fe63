//! `mpcomm report --html`: the aggregated results as one self-contained page (table and
//! charts, no script, nothing fetched), from a results file of several settings.

mod support;

use std::time::Duration;

use mpcomm::compare::Report;
use support::{links, mpcomm, Proc, TempDir};

fn report(transport: &str, order: &str, peers: u16, ooo: u64, p50: f64) -> Report {
    let mut r = Report {
        transport: Some(transport.into()),
        peers,
        msgs_per_peer: 10,
        rounds: u64::from(peers) * 10,
        order: order.into(),
        repair: "off".into(),
        out_of_order_rounds: ooo,
        lost: u64::from(peers),
        causal_violations: Some(ooo / 2),
        ..Report::default()
    };
    r.latency_us.p50 = Some(p50);
    r.pairwise_disagreement.mean = ooo as f64 / 1000.0;
    r
}

#[test]
fn report_page_has_the_table_and_a_chart_per_metric_and_links_nowhere() {
    let dir = TempDir::new("viz-report");
    let results = dir.path().join("results.jsonl");
    let mut lines = String::new();
    for (t, o) in [
        ("fanout", "none"),
        ("multicast", "none"),
        ("fanout", "lamport"),
    ] {
        for n in [2u16, 4, 8] {
            for k in 0..2u64 {
                let ooo = if o == "none" { u64::from(n) * 3 + k } else { 0 };
                lines.push_str(&report(t, o, n, ooo, 1000.0 + f64::from(n)).to_json_line());
                lines.push('\n');
            }
        }
    }
    std::fs::write(&results, lines).unwrap();
    let page = dir.path().join("report.html");
    let mut c = mpcomm();
    c.arg("report").arg(&results).arg("--html").arg(&page);
    let (status, _) = Proc::spawn(c).finish(Duration::from_secs(60));
    assert!(status.success(), "report failed: {status}");
    let html = std::fs::read_to_string(&page).expect("the page was written");

    for l in links(&html) {
        assert!(
            !l.contains("http:") && !l.contains("https:"),
            "links out: {l}"
        );
    }
    assert!(!html.contains("http:") && !html.contains("https:"));
    assert!(!html.contains("<script"), "the report page needs no script");
    assert!(html.contains("Content-Security-Policy"));
    // 3 settings × 3 N = 9 rows, plus the header row.
    assert_eq!(html.matches("<tr>").count(), 10, "table rows");
    // A chart per metric, each with its caption and a legend of the 3 settings outside it.
    assert_eq!(html.matches("<figure").count(), 5, "charts");
    assert_eq!(html.matches("class=\"legend\"").count(), 5);
    assert_eq!(
        html.matches("<polyline").count(),
        5 * 3,
        "a line per setting"
    );
    assert!(html.contains("fanout, lamport/off, 10 msgs"));
    assert!(html.contains("Out-of-order rounds") && html.contains("Latency p50"));
    // Fitted y: latencies near 1000 µs do not start the axis at 0.
    let lat = &html[html.find("Latency p50").unwrap()..];
    let lat = &lat[..lat.find("</svg>").unwrap()];
    assert!(!lat.contains(">0</text>"), "latency axis starts at 0");
}

#[test]
fn report_page_of_an_unreadable_file_is_an_error_not_a_panic() {
    let dir = TempDir::new("viz-report-bad");
    let results = dir.path().join("results.jsonl");
    std::fs::write(&results, "garbage\n").unwrap();
    let mut c = mpcomm();
    c.arg("report")
        .arg(&results)
        .arg("--html")
        .arg(dir.path().join("r.html"));
    let (status, out) = Proc::spawn(c).finish(Duration::from_secs(60));
    assert!(!status.success());
    assert!(!out.contains("panicked"), "{out}");
}
