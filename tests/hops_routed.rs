//! Hop distance through a router. In a three-host testbed, host 2 forwards between hosts 0
//! and 1: a one-armed router on the bridge (each host's route to the other goes via host 2,
//! forwarding on there, ICMP redirects off), so every datagram between them is forwarded once
//! and arrives with its TTL one lower. Two real fan-out peers on hosts 0 and 1, and
//! `mpcomm compare --logs` on their logs: hop distance 1 for both cross pairs, 0 for each peer
//! to itself. Without the routes the same pairs are 0 hops apart (the control: the figure comes
//! from the path, not from a constant).
//!
//! The hosts are removed by the `Testbed`'s `Drop`, the peers reaped by their `Proc` guards,
//! also when an assertion fails.

mod support;

use std::time::Duration;

use mpcomm::netns::Testbed;
use serde_json::Value;
use support::{Proc, TempDir};

const EXE: &str = env!("CARGO_BIN_EXE_mpcomm");

/// Run `program args…` inside host `i`; panic with its stderr if it fails.
fn on(bed: &Testbed, i: usize, program: &str, args: &[&str]) {
    let out = bed
        .command(i, program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("host {i}: cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "host {i}: {program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make host 2 the router between hosts 0 and 1.
fn route_through_host_2(bed: &Testbed) {
    let iface = bed.iface(2);
    // Forward, and never tell the senders the shorter way (they would take it).
    let sysctl = format!(
        "echo 1 > /proc/sys/net/ipv4/ip_forward && \
         echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects && \
         echo 0 > /proc/sys/net/ipv4/conf/{iface}/send_redirects"
    );
    on(bed, 2, "sh", &["-c", &sysctl]);
    let via = bed.host_addr(2).to_string();
    for (from, to) in [(0, 1), (1, 0)] {
        let dst = format!("{}/32", bed.host_addr(to));
        on(bed, from, "ip", &["route", "add", &dst, "via", &via]);
    }
}

/// Two fan-out peers on hosts 0 and 1, then the offline comparison of their logs: the
/// report's `hops` as (sender, receiver, min, max).
fn hops_of_a_run(bed: &Testbed) -> Vec<(u64, u64, u64, u64)> {
    let dir = TempDir::new("hops-routed");
    let peers = format!("{}:4570,{}:4570", bed.host_addr(0), bed.host_addr(1));
    let procs: Vec<Proc> = (0..2)
        .map(|i| {
            let mut c = bed.command(i, EXE);
            c.args(["peer", "--peers", &peers, "--id", &i.to_string()])
                .args(["--msgs", "10", "--interval", "1..3", "--drain", "300ms"])
                .args(["--transport", "fanout", "--log-dir"])
                .arg(dir.path());
            Proc::spawn(c)
        })
        .collect();
    for p in procs {
        let (status, out) = p.finish(Duration::from_secs(30));
        assert!(status.success(), "a peer failed: {out}");
    }
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let out = support::mpcomm()
        .args(["compare", "--json", "--logs"])
        .args(&logs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report["lost"], 0, "{report}");
    let mut hops: Vec<_> = report["hops"]
        .as_array()
        .expect("hops in the report")
        .iter()
        .map(|h| {
            let f = |k: &str| h[k].as_u64().expect("a number");
            (f("sender"), f("receiver"), f("min"), f("max"))
        })
        .collect();
    hops.sort_unstable();
    hops
}

#[test]
fn a_forwarded_pair_is_one_hop_apart() {
    for mode in support::netns_modes() {
        let bed = match Testbed::create_with(3, mode) {
            Ok(bed) => bed,
            Err(e) => panic!("{} mode was probed usable but: {e}", mode.as_str()),
        };
        let direct = hops_of_a_run(&bed);
        assert_eq!(
            direct,
            [(0, 0, 0, 0), (0, 1, 0, 0), (1, 0, 0, 0), (1, 1, 0, 0)],
            "{}: on one bridge",
            mode.as_str()
        );
        route_through_host_2(&bed);
        let routed = hops_of_a_run(&bed);
        assert_eq!(
            routed,
            [(0, 0, 0, 0), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 0)],
            "{}: via host 2",
            mode.as_str()
        );
        bed.teardown().expect("hosts removed");
    }
}
