//! `mpcomm lab --netns` through the real binary: 8 peers, each alone in a network namespace on a
//! bridge, both transports, as root and in a user namespace; and a lab killed with SIGINT in the
//! middle of a run leaves no namespace, link or process behind.
//!
//! Every test runs once per mode that works here and prints a reason and passes when none does.
//! The lab is a `Proc` (killed on drop); if a check fails before the lab ended, its namespace
//! guard removes the testbed.

mod support;

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::process::Command;
use std::time::{Duration, Instant};

use mpcomm::netns::{find_tool, Mode};
use support::{mpcomm, Proc};

const PEERS: usize = 8;

fn modes() -> Vec<Mode> {
    support::netns_modes()
}

/// `mpcomm lab --netns --verbose …` forced into `mode`.
fn lab(mode: Mode, extra: &[&str]) -> Proc {
    lab_of(mode, PEERS, true, extra)
}

/// `mpcomm lab --netns --peers N [--verbose] …` forced into `mode`.
fn lab_of(mode: Mode, peers: usize, verbose: bool, extra: &[&str]) -> Proc {
    let mut c = mpcomm();
    c.env(
        "MPCOMM_NETNS",
        match mode {
            Mode::Root => "root",
            Mode::UserNamespace => "userns",
        },
    )
    .args(["lab", "--netns", "--peers", &peers.to_string()])
    .args(verbose.then_some("--verbose"))
    .args(extra);
    Proc::spawn(c)
}

/// Wait for the line naming the testbed; returns its prefix (`mpc-<pid>-<hex>`).
fn testbed_prefix(p: &mut Proc, mode: Mode) -> String {
    let l = p.wait_for_line("hosts in network namespaces ", Duration::from_secs(30));
    let rest = l.split("hosts in network namespaces ").nth(1).unwrap();
    let (prefix, how) = rest.split_once("-* ").unwrap_or_else(|| panic!("{l}"));
    assert_eq!(how, format!("({})", mode.as_str()), "{l}");
    assert!(prefix.starts_with(mpcomm::netns::PREFIX), "{l}");
    prefix.to_string()
}

/// Wait for the `ready` lines of one run's N peers (the lab echoes them with --verbose) and
/// return their network, as `[a, b, c]` of `a.b.c.d`: peer i is at 10.X.Y.(i+1):4570 (its
/// host's own address); its socket is bound there for fan-out, to the 239.x.y.z group for
/// multicast.
fn peers_ready(p: &mut Proc, transport: &str) -> [u8; 3] {
    let mut ids = HashSet::new();
    let mut net = None;
    for _ in 0..PEERS {
        let l = p.wait_for_line("mpcomm peer: ready ", Duration::from_secs(30));
        let field = |k: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {l}"))
                .to_string()
        };
        let id: u8 = field("id=").parse().unwrap();
        let addr: SocketAddrV4 = field("addr=").parse().unwrap();
        assert_eq!(field("transport="), transport, "{l}");
        let bound: SocketAddrV4 = field("bound=").parse().unwrap();
        let [a, x, y, last] = addr.ip().octets();
        assert_eq!((a, last, addr.port()), (10, id + 1, 4570), "{l}");
        if transport == "fanout" {
            assert_eq!(bound, addr, "{l}");
        } else {
            assert!(bound.ip().is_multicast(), "{l}");
        }
        assert_eq!(*net.get_or_insert([a, x, y]), [a, x, y], "one network: {l}");
        assert!(ids.insert(id), "peer {id} ready twice: {l}");
    }
    net.unwrap()
}

fn ip_lines(args: &[&str]) -> Vec<String> {
    let ip = find_tool("ip").expect("ip");
    let out = Command::new(ip).args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Root view: namespaces, links and mounts whose name contains `prefix`.
fn root_leftovers(prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = ip_lines(&["netns", "list"])
        .into_iter()
        .chain(ip_lines(&["-o", "link"]))
        .filter(|l| l.contains(prefix))
        .collect();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(prefix))
            .map(String::from),
    );
    found
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Running `mpcomm peer` processes whose arguments mention the network `10.X.Y.`.
fn peers_on(net: [u8; 3]) -> Vec<(u32, String)> {
    let needle = format!("{}.{}.{}.", net[0], net[1], net[2]);
    pids()
        .into_iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args.first()?.ends_with("mpcomm")
                && args.get(1).map(String::as_str) == Some("peer")
                && args.iter().any(|a| a.contains(&needle));
            ours.then(|| (pid, args.join(" ")))
        })
        .collect()
}

/// `Udp: OutDatagrams` of the network namespace process `pid` is in.
fn udp_out_datagrams(pid: u32) -> u64 {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).unwrap();
    let rows: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let names = rows[0].split_whitespace();
    let values = rows[1].split_whitespace();
    names
        .zip(values)
        .find(|(k, _)| *k == "OutDatagrams")
        .map(|(_, v)| v.parse().unwrap())
        .expect("Udp: OutDatagrams")
}

/// `net:[4026532…]` and such for a namespace of a process.
fn ns_of(pid: u32, kind: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Processes that are in, or hold a descriptor of, one of the namespaces `ids`.
fn holders_of(ids: &HashSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for pid in pids() {
        for kind in ["net", "user"] {
            if let Some(ns) = ns_of(pid, kind) {
                if ids.contains(&ns) {
                    found.push(format!("pid {pid} is in {ns}"));
                }
            }
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let target = target.to_string_lossy();
                if ids.contains(target.as_ref()) {
                    found.push(format!("pid {pid} holds {target}"));
                }
            }
        }
    }
    found
}

#[test]
fn lab_runs_8_peers_in_namespaces_for_both_transports() {
    for mode in modes() {
        let started = Instant::now();
        let mut p = lab(mode, &["--msgs", "30", "--interval", "1..5", "--json"]);
        let prefix = testbed_prefix(&mut p, mode);
        peers_ready(&mut p, "fanout");
        peers_ready(&mut p, "multicast");
        let (status, stdout) = p.finish(Duration::from_secs(120));
        let took = started.elapsed();
        assert!(status.success(), "lab failed: {status}");
        let reports: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        let transports: Vec<&str> = reports
            .iter()
            .map(|r| r["transport"].as_str().unwrap())
            .collect();
        assert_eq!(transports, ["fanout", "multicast"]);
        for r in &reports {
            assert_eq!(r["peers"], PEERS as u64, "{r}");
            assert_eq!(r["rounds"], 240, "{r}");
            assert_eq!(r["deliveries"], 1920, "{r}");
            assert_eq!(r["lost"], 0, "{r}");
            assert_eq!(r["duplicates"], 0, "{r}");
            assert_eq!(r["malformed"], 0, "{r}");
            assert_eq!(r["missing_peers"].as_array().unwrap().len(), 0, "{r}");
            eprintln!(
                "MEASURED {}: lab --netns N=8 M=30 {}: setup_ms {:.1}, duration_ms {:.1}, lost {}, \
                 {} of 240 rounds out of order",
                mode.as_str(),
                r["transport"].as_str().unwrap(),
                r["setup_ms"].as_f64().unwrap(),
                r["duration_ms"].as_f64().unwrap(),
                r["lost"],
                r["out_of_order_rounds"]
            );
        }
        eprintln!(
            "MEASURED {}: whole lab (testbed, both runs, teardown) {:.0} ms",
            mode.as_str(),
            took.as_secs_f64() * 1e3
        );
        if mode == Mode::Root {
            assert_eq!(root_leftovers(&prefix), Vec::<String>::new());
        }
    }
}

/// 64 hosts: with dynamic ARP entries this failed from about 31 hosts on (fan-out needs
/// N·(N−1) neighbour entries, and the kernel's one ARP table for all namespaces allows 1024
/// dynamic ones: "neighbor table overflow", datagrams dropped, multicast ones too). The
/// testbed's entries are static now: host 0's table is all PERMANENT while the lab runs.
#[test]
fn lab_runs_64_peers_in_namespaces_for_both_transports() {
    const N: usize = 64;
    for mode in modes() {
        let started = Instant::now();
        let mut p = lab_of(
            mode,
            N,
            false,
            &["--msgs", "10", "--interval", "1..5", "--json"],
        );
        let prefix = testbed_prefix(&mut p, mode);
        if mode == Mode::Root {
            // 63 other hosts, the bridge's 10.X.Y.254, 224.0.0.22 (IGMPv3) and the lab's group.
            let neigh = ip_lines(&["-n", &format!("{prefix}-h0"), "neigh", "show"]);
            assert_eq!(neigh.len(), N + 2, "{neigh:#?}");
            let dynamic: Vec<&String> = neigh
                .iter()
                .filter(|l| !l.trim_end().ends_with("PERMANENT"))
                .collect();
            assert!(dynamic.is_empty(), "not static: {dynamic:#?}");
        }
        let (status, stdout) = p.finish(Duration::from_secs(240));
        let took = started.elapsed();
        assert!(status.success(), "lab failed: {status}");
        let reports: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(reports.len(), 2, "{stdout}");
        for r in &reports {
            assert_eq!(r["peers"], N as u64, "{r}");
            assert_eq!(r["deliveries"], (N * N * 10) as u64, "{r}");
            assert_eq!(r["lost"], 0, "{r}");
            assert_eq!(r["missing_peers"].as_array().unwrap().len(), 0, "{r}");
            eprintln!(
                "MEASURED {}: lab --netns N={N} M=10 {}: setup_ms {:.1}, duration_ms {:.1}",
                mode.as_str(),
                r["transport"].as_str().unwrap(),
                r["setup_ms"].as_f64().unwrap(),
                r["duration_ms"].as_f64().unwrap(),
            );
        }
        eprintln!(
            "MEASURED {}: whole lab N={N} (testbed, both runs, teardown) {:.0} ms",
            mode.as_str(),
            took.as_secs_f64() * 1e3
        );
        if mode == Mode::Root {
            assert_eq!(root_leftovers(&prefix), Vec::<String>::new());
        }
    }
}

#[test]
fn lab_interrupted_by_sigint_mid_run_leaves_nothing_behind() {
    for mode in modes() {
        // 400 messages at 5..10 ms: each run sends for at least 2 s.
        let mut p = lab(mode, &["--msgs", "400", "--interval", "5..10"]);
        let prefix = testbed_prefix(&mut p, mode);
        let net = peers_ready(&mut p, "fanout");

        // While it runs: the namespaces, and the 8 peers inside them.
        if mode == Mode::Root {
            let listed: Vec<String> = ip_lines(&["netns", "list"])
                .into_iter()
                .filter(|l| l.starts_with(&format!("{prefix}-")))
                .collect();
            assert_eq!(listed.len(), PEERS + 1, "8 hosts + switch: {listed:?}");
        }
        let running = peers_on(net);
        assert_eq!(running.len(), PEERS, "{running:#?}");
        let own_user = ns_of(std::process::id(), "user").unwrap();
        let mut ids = HashSet::new();
        for (pid, _) in &running {
            ids.extend(ns_of(*pid, "net"));
            // In user-namespace mode the helper's user namespace; as root, ours (not tracked).
            ids.extend(ns_of(*pid, "user").filter(|u| *u != own_user));
        }
        let expect = PEERS + usize::from(mode == Mode::UserNamespace);
        assert_eq!(ids.len(), expect, "one network namespace per peer: {ids:?}");

        // Wait (bounded polling of kernel counters) until the peers are past the handshake and
        // sending: ≥ 200 UDP datagrams out of host 0 is HELLOs plus ≥ 15 fan-out DATA rounds.
        let host0 = running
            .iter()
            .find(|(_, cmd)| cmd.contains(" --id 0 "))
            .expect("peer 0")
            .0;
        let mut out = 0;
        for _ in 0..500 {
            out = udp_out_datagrams(host0);
            if out >= 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(out >= 200, "peer 0 sent only {out} datagrams in 10 s");
        assert_eq!(peers_on(net).len(), PEERS, "all peers still running");

        // SAFETY: kill(2) of our own child, the lab only (not its process group).
        assert_eq!(unsafe { libc::kill(p.child.id() as i32, libc::SIGINT) }, 0);
        p.wait_for_line("interrupted", Duration::from_secs(30));
        let (status, _) = p.finish(Duration::from_secs(30));
        assert_eq!(status.code(), Some(130), "lab after SIGINT: {status}");

        // The lab tore the testbed down before exiting: nothing may be left now.
        assert_eq!(
            peers_on(net),
            Vec::<(u32, String)>::new(),
            "peer processes left"
        );
        assert_eq!(
            holders_of(&ids),
            Vec::<String>::new(),
            "namespaces still alive"
        );
        if mode == Mode::Root {
            assert_eq!(root_leftovers(&prefix), Vec::<String>::new());
        }
        eprintln!(
            "MEASURED {}: lab --netns SIGINT while sending ({out} datagrams out of host 0): \
             exit 130; no peer and none of the {} namespaces ({prefix}-*, 10.{}.{}.0/24) left",
            mode.as_str(),
            ids.len(),
            net[1],
            net[2]
        );
    }
}

#[test]
fn the_leftover_checks_can_fail() {
    // They must see a live peer and a live namespace: a real peer on loopback, and ourselves.
    let (peers, _) = support::loopback_peers(2);
    let [a, x, y, _] = match peers[0].ip() {
        std::net::IpAddr::V4(ip) => ip.octets(),
        other => panic!("{other}"),
    };
    let mut c = mpcomm();
    c.args(["peer", "--id", "0", "--handshake-timeout", "30s", "--peers"])
        .arg(support::join(&peers));
    let mut peer = Proc::spawn(c);
    peer.wait_for_line("mpcomm peer: ready", Duration::from_secs(10));
    let found = peers_on([a, x, y]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, peer.child.id());
    let net = ns_of(peer.child.id(), "net").unwrap();
    assert!(net.starts_with("net:["), "{net}");
    let held = holders_of(&HashSet::from([net.clone()]));
    assert!(
        held.contains(&format!("pid {} is in {net}", peer.child.id())),
        "{held:?}"
    );
    drop(peer); // killed and reaped
    assert_eq!(peers_on([a, x, y]), Vec::<(u32, String)>::new());
}
