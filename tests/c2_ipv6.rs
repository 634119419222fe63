//! C2 over IPv6: the controller listening on an IPv6 address, agents advertising IPv6
//! addresses, peers and the comparator on IPv6.
//!
//! * On `::1`: a controller on [::1], four agents all advertising ::1 (the controller gives
//!   them consecutive peer ports), a `--repeat 2 --transport both` series; mixed IPv4/IPv6
//!   agents are refused before a run starts. All of it in one private network namespace (a
//!   one-host testbed) whose lo carries IPv6 multicast, which the host's own lo cannot.
//! * In network namespaces: the whole issue-5 scenario of `c2_netns.rs` (a `--repeat 2
//!   --transport both` series, a WAN run, refusals, a controller restart) with every host on a
//!   unique-local IPv6 address and an ff12:: group; the agents take their address from their
//!   connection to the controller.

mod c2_common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use c2_common::{run_to_end, scenario, start_controller, write_key, Hosts, Proc, TempDir, EXE};
use mpcomm::compare::Report;
use mpcomm::netns::{support_of, Mode, Testbed};

/// Every process on the ::1 of one namespace: host 0 of a one-host testbed, its lo given a
/// local ff00::/8 route (`Testbed::carry_ipv6_multicast_on_loopback`).
struct Loopback6 {
    bed: Testbed,
}

/// The first of the four peer ports the controller hands out on ::1: the namespace is fresh,
/// nothing else binds there.
const PEER_PORT: u16 = 4570;

impl Hosts for Loopback6 {
    fn command(&self, _host: usize) -> Command {
        self.bed.command(0, EXE)
    }
    fn controller_listen(&self) -> SocketAddr {
        "[::1]:0".parse().unwrap()
    }
    fn controller_extra(&self) -> Vec<String> {
        vec!["--peer-port".into(), PEER_PORT.to_string()]
    }
    fn agent_extra(&self, _host: usize) -> Vec<String> {
        vec!["--advertise".into(), "::1".into()]
    }
    fn raw_probe(&self) -> bool {
        false
    }
}

fn agent(
    h: &Loopback6,
    ctl: SocketAddr,
    key: &std::path::Path,
    logs: &std::path::Path,
    advertise: &str,
) -> Proc {
    let mut cmd = h.command(0);
    cmd.args(["c2", "agent", "--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(key)
        .arg("--log-dir")
        .arg(logs)
        .args(["--advertise", advertise]);
    Proc::spawn(cmd, &format!("agent {advertise}"))
}

#[test]
fn a_series_over_ipv6_loopback_and_mixed_families_refused() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIP: this host has no IPv6 loopback");
        return;
    }
    let mut ran = 0;
    for mode in [Mode::Root, Mode::UserNamespace] {
        if let Err(why) = support_of(mode) {
            eprintln!("c2 ::1 test: {} mode not available: {why}", mode.as_str());
            continue;
        }
        let bed = Testbed::create_with(1, mode).expect("testbed");
        bed.carry_ipv6_multicast_on_loopback(0)
            .expect("a local ff00::/8 route on the host's lo");
        let h = Loopback6 { bed };
        let started = std::time::Instant::now();
        series_on_loopback6(&h);
        eprintln!(
            "MEASURED {} mode: the ::1 series (4 runs) and the refusal took {:?}",
            mode.as_str(),
            started.elapsed()
        );
        h.bed.teardown().expect("teardown");
        ran += 1;
    }
    if ran == 0 {
        eprintln!("SKIPPED: no way to make network namespaces here (see reasons above)");
    }
}

/// `--repeat 2 --transport both` over four agents on ::1: four runs, each 4 × 4 × 30
/// deliveries, none lost; then a fifth agent on IPv4 makes a run over all five refused.
fn series_on_loopback6(h: &Loopback6) {
    let dir = TempDir::new("c2v6");
    let key = write_key(&dir, "key");
    let results = dir.path("results.jsonl");
    let (mut serve, ctl) = start_controller(h, &key, h.controller_listen(), &results);
    assert!(ctl.is_ipv6(), "the controller listens on {ctl}");
    let mut agents: Vec<Proc> = (1..=4)
        .map(|i| agent(h, ctl, &key, &dir.path(&format!("logs-{i}")), "::1"))
        .collect();
    for a in &mut agents {
        a.wait_for("registered with controller", Duration::from_secs(10));
    }
    let mut run = h.command(0);
    run.args(["c2", "run", "--controller", &ctl.to_string()])
        .args(["--peers", "4", "--msgs", "30", "--interval", "1..5"])
        .args(["--transport", "both", "--repeat", "2", "--json"])
        .arg("--key-file")
        .arg(&key);
    let (status, out, err) = run_to_end(run, Duration::from_secs(120));
    assert!(status.success(), "c2 run over ::1 failed: {err}");
    let reports: Vec<Report> = out
        .lines()
        .map(|l| Report::from_json_line(l).expect("a report per line"))
        .collect();
    assert_eq!(reports.len(), 4, "2 repeats × 2 transports: {out}");
    let transports: Vec<_> = reports.iter().map(|r| r.transport.as_deref()).collect();
    for t in ["fanout", "multicast"] {
        let n = transports.iter().filter(|&&x| x == Some(t)).count();
        assert_eq!(n, 2, "{t} runs in {transports:?}");
    }
    for r in &reports {
        assert!(r.missing_peers.is_empty(), "{:?}", r.missing_peers);
        let what = format!("run {:016x} ({:?})", r.run_id, r.transport);
        assert_eq!((r.deliveries, r.lost), (480, 0), "{what}");
        assert_eq!(r.hops.len(), 16, "every pair's hop distance");
    }

    // A fifth agent on IPv4: a run over all five is refused before it starts.
    let mut v4 = agent(h, ctl, &key, &dir.path("logs-5"), "127.0.0.1");
    v4.wait_for("registered with controller", Duration::from_secs(10));
    let mut run = h.command(0);
    run.args(["c2", "run", "--controller", &ctl.to_string()])
        .args(["--peers", "5", "--msgs", "5", "--wait", "0"])
        .arg("--key-file")
        .arg(&key);
    let (status, _, err) = run_to_end(run, Duration::from_secs(30));
    assert!(!status.success(), "a mixed run was started");
    assert!(err.contains("mix IPv4 and IPv6"), "{err}");
    serve.wait_for("request refused", Duration::from_secs(5));
}

struct Netns6 {
    bed: Testbed,
    group: String,
}

impl Hosts for Netns6 {
    fn command(&self, host: usize) -> Command {
        self.bed.command(host, EXE)
    }
    fn controller_listen(&self) -> SocketAddr {
        SocketAddr::new(self.bed.host_addr_v6(0).into(), 0)
    }
    fn controller_extra(&self) -> Vec<String> {
        vec!["--group".into(), self.group.clone()]
    }
    fn agent_extra(&self, _host: usize) -> Vec<String> {
        Vec::new()
    }
    fn raw_probe(&self) -> bool {
        false
    }
}

#[test]
fn controller_and_four_agents_over_ipv6_in_network_namespaces() {
    let mut ran = 0;
    for mode in [Mode::Root, Mode::UserNamespace] {
        if let Err(why) = support_of(mode) {
            eprintln!(
                "c2 IPv6 netns test: {} mode not available: {why}",
                mode.as_str()
            );
            continue;
        }
        let bed = Testbed::create_with(5, mode).expect("testbed");
        let tag = rand::random::<u16>();
        let group: std::net::Ipv6Addr = format!("ff12::77:{tag:x}").parse().unwrap();
        bed.enable_ipv6(&[group]).expect("IPv6 in the namespaces");
        let hosts = Netns6 {
            bed,
            group: format!("[{group}]:4577"),
        };
        let back = scenario(&hosts);
        eprintln!(
            "MEASURED {} mode, IPv6: all agents registered again {back:?} after the controller restart",
            mode.as_str()
        );
        hosts.bed.teardown().expect("teardown");
        ran += 1;
    }
    if ran == 0 {
        eprintln!("SKIPPED: no way to make network namespaces here (see reasons above)");
    }
}
