//! `mpcomm bench` end to end through the real binary: small saturation and paced runs of real
//! peer processes, one JSON line per transport × N.

mod support;

use std::time::Duration;

use support::{mpcomm, Proc, TempDir};

fn bench(extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut c = mpcomm();
    c.args(["bench"]).args(extra);
    Proc::spawn(c).finish(Duration::from_secs(180))
}

#[test]
fn bench_json_has_a_line_per_transport_and_n_with_the_costs_of_each_transport() {
    let dir = TempDir::new("bench");
    let svg = dir.path().join("bench.svg");
    let (status, stdout) = bench(&[
        "--peers",
        "2,4",
        "--json",
        "--deliveries",
        "8000",
        "--paced-msgs",
        "30",
        "--drain",
        "300ms",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(status.success(), "bench failed: {status}\n{stdout}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let keys: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["transport"].as_str().unwrap().to_owned(),
                r["peers"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [2, 4]
        .iter()
        .flat_map(|&n| [("fanout".to_owned(), n), ("multicast".to_owned(), n)])
        .collect();
    assert_eq!(keys, want);
    for r in &rows {
        let n = r["peers"].as_f64().unwrap();
        for field in [
            "delivered_per_s",
            "lost",
            "kernel_drops",
            "sender_datagrams_per_msg",
            "sender_bytes_per_msg",
            "cpu_ns_per_delivery",
        ] {
            assert!(
                r[field].is_number(),
                "{field} is not a number in {r} (the peers' log headers carry the counters)"
            );
        }
        assert!(r["latency_us"]["p50"].is_number(), "{r}");
        assert!(r["latency_us"]["p99"].is_number(), "{r}");
        assert!(r["delivered_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["cpu_ns_per_delivery"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        let dgrams = r["sender_datagrams_per_msg"].as_f64().unwrap();
        let bytes = r["sender_bytes_per_msg"].as_f64().unwrap();
        match r["transport"].as_str().unwrap() {
            // One sendmsg to the group per message, whatever N.
            "multicast" => assert_eq!(dgrams, 1.0, "{r}"),
            // One unicast copy per peer, the sender's own included.
            _ => assert_eq!(dgrams, n, "{r}"),
        }
        // Every datagram of a message is the same DATA datagram.
        assert!(bytes >= dgrams * 38.0, "{r}");
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart is written");
    assert!(chart.starts_with("<svg") && chart.contains("multicast (loopback)"));
}

#[test]
fn bench_refuses_bad_peer_lists_before_starting_anything() {
    for bad in ["", "1", "2,100000", "x"] {
        let (status, _) = bench(&["--peers", bad, "--json"]);
        assert_eq!(status.code(), Some(2), "--peers {bad:?} was accepted");
    }
    let (status, _) = bench(&["--peers", "2", "--rate", "0"]);
    assert!(!status.success());
}

#[test]
fn bench_in_network_namespaces_builds_a_testbed_per_n() {
    let Some(mode) = support::netns_modes().into_iter().next() else {
        return; // netns_modes said why
    };
    let mut c = mpcomm();
    c.env(
        "MPCOMM_NETNS",
        match mode {
            mpcomm::netns::Mode::Root => "root",
            mpcomm::netns::Mode::UserNamespace => "userns",
        },
    )
    .args([
        "bench",
        "--netns",
        "--peers",
        "2,3",
        "--transport",
        "multicast",
        "--json",
        "--deliveries",
        "2000",
        "--paced-msgs",
        "20",
        "--drain",
        "300ms",
    ]);
    let mut p = Proc::spawn(c);
    // One testbed of exactly N hosts per N.
    for n in [2, 3] {
        p.wait_for_line(
            &format!("{n} hosts in network namespaces"),
            Duration::from_secs(60),
        );
    }
    let (status, stdout) = p.finish(Duration::from_secs(120));
    assert!(status.success(), "bench failed: {status}\n{stdout}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["hosts"], "netns", "{r}");
        assert_eq!(r["sender_datagrams_per_msg"], 1.0, "{r}");
        assert!(r["delivered_per_s"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["latency_us"]["p99"].is_number(), "{r}");
    }
}
