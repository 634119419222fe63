//! The lab holds its peers at the gate until every one said Ready on the lab's socket
//! (`wire::child`), then releases them together: no run waits for the fallback deadline.

mod support;

use support::mpcomm;

#[test]
fn every_peer_says_it_is_ready_and_the_run_is_reported() {
    let out = mpcomm()
        .args(["lab", "--peers", "3", "--msgs", "5", "--transport", "both"])
        .args([
            "--interval",
            "0..2",
            "--drain",
            "300ms",
            "--json",
            "--verbose",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Said (with --verbose) when the gate opened without every Ready.
    assert!(!err.contains("not every peer said it was ready"), "{err}");
    assert!(!err.contains("no readiness socket"), "{err}");
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "one report per transport");
    for r in &reports {
        assert_eq!(
            (r["peers"].as_u64(), r["lost"].as_u64()),
            (Some(3), Some(0)),
            "{r}"
        );
    }
}
