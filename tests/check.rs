//! `mpcomm check` through the real binary: on loopback (127.x.y.z, as the lab uses) every
//! pair passes; a listed peer that never runs fails, named; IPv6 fan-out on ::1; and in
//! network namespaces, a host whose nftables drops incoming multicast fails exactly its
//! multicast pairs (unicast passes), and every host passes again once the rule is gone.
//!
//! Every child is killed and reaped by its `Proc` guard, the hosts removed by the `Testbed`'s
//! `Drop`, also when an assertion fails.

mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use mpcomm::check::{preflight, CheckCommand};
use mpcomm::netns::{find_tool, Testbed};
use serde_json::Value;
use support::{join, loopback_peers, mpcomm, Proc};

/// Bound on one check process: --wait + warm-up + --duration + the last replies, with room.
const WITHIN: Duration = Duration::from_secs(40);

/// Start one check per command, then collect (exit code, the JSON report) of each.
fn run_all(cmds: Vec<Command>) -> Vec<(i32, Value)> {
    let procs: Vec<Proc> = cmds.into_iter().map(Proc::spawn).collect();
    procs
        .into_iter()
        .map(|p| {
            let (status, stdout) = p.finish(WITHIN);
            let report: Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout:?}"));
            (status.code().expect("exited"), report)
        })
        .collect()
}

fn check_cmd(mut c: Command, peers: &str, id: usize, extra: &[&str]) -> Command {
    c.args(["check", "--json", "--peers", peers, "--id", &id.to_string()])
        .args(["--duration", "1500ms"])
        .args(extra);
    c
}

fn pairs(report: &Value) -> &Vec<Value> {
    report["pairs"].as_array().expect("pairs")
}

#[test]
fn every_pair_passes_on_loopback() {
    let (peers, group) = loopback_peers(3);
    let list = join(&peers);
    let g = group.to_string();
    let cmds = (0..3)
        .map(|i| check_cmd(mpcomm(), &list, i, &["--group", &g, "--iface", "127.0.0.1"]))
        .collect();
    for (i, (code, r)) in run_all(cmds).into_iter().enumerate() {
        assert_eq!(code, 0, "host {i}: {r}");
        assert_eq!(r["pass"], true);
        assert_eq!(r["id"], i);
        assert_eq!(pairs(&r).len(), 4, "2 peers × 2 transports");
        for p in pairs(&r) {
            assert_eq!(p["pass"], true, "{p}");
            assert!(p["answered"].as_u64().unwrap() >= 10, "{p}");
            assert_eq!(p["hops_in"], 0, "loopback is no hop away: {p}");
            assert_eq!(p["hops_out"], 0, "{p}");
            assert!(p["rtt_ms"]["max"].as_f64().unwrap() < 1000.0);
        }
    }
}

#[test]
fn an_absent_peer_fails_and_is_named() {
    let (peers, group) = loopback_peers(3);
    let list = join(&peers);
    let g = group.to_string();
    let extra = ["--group", &g, "--iface", "127.0.0.1", "--wait", "2s"];
    // Peer 2 is listed but never started.
    let cmds = (0..2)
        .map(|i| check_cmd(mpcomm(), &list, i, &extra))
        .collect();
    for (i, (code, r)) in run_all(cmds).into_iter().enumerate() {
        assert_eq!(code, 1, "host {i}: {r}");
        assert_eq!(r["pass"], false);
        let failures: Vec<&str> = r["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(failures.len(), 2, "{failures:?}");
        for (line, t) in failures.iter().zip(["fanout", "multicast"]) {
            let head = format!("FAIL peer 2 ({}) {t}: never heard from", peers[2]);
            assert!(line.starts_with(&head), "{line}");
        }
        // The two that run pass with each other.
        let other = 1 - i;
        assert!(pairs(&r)
            .iter()
            .filter(|p| p["peer"] == other)
            .all(|p| p["pass"] == true));
    }
}

#[test]
fn the_human_table_names_the_failed_pair() {
    let (peers, _) = loopback_peers(2);
    let list = join(&peers);
    let mut c = mpcomm();
    c.args([
        "check",
        "--peers",
        &list,
        "--id",
        "0",
        "--transport",
        "fanout",
    ])
    .args(["--wait", "1s", "--duration", "500ms"]);
    let (status, stdout) = Proc::spawn(c).finish(WITHIN);
    assert_eq!(status.code(), Some(1), "{stdout}");
    let line = format!("FAIL peer 1 ({}) fanout: never heard from", peers[1]);
    assert!(stdout.contains(&line), "{stdout}");
    assert!(stdout.contains("1 of 1 pair(s) failed"), "{stdout}");
}

#[test]
fn ipv6_fanout_on_the_loopback() {
    let Ok(a) = std::net::UdpSocket::bind("[::1]:0") else {
        eprintln!("SKIP: this host has no IPv6 loopback");
        return;
    };
    let b = std::net::UdpSocket::bind("[::1]:0").unwrap();
    let peers: Vec<SocketAddr> = [&a, &b].map(|s| s.local_addr().unwrap()).to_vec();
    drop((a, b));
    let list = join(&peers);
    let cmds = (0..2)
        .map(|i| check_cmd(mpcomm(), &list, i, &["--transport", "fanout"]))
        .collect();
    for (code, r) in run_all(cmds) {
        assert_eq!(code, 0, "{r}");
        assert_eq!(pairs(&r).len(), 1);
        assert_eq!(
            pairs(&r)[0]["hops_in"],
            0,
            "the hop limit is read on IPv6 too"
        );
    }
}

const HOSTS: usize = 3;
const PORT: u16 = 4570;
/// The host whose nftables drops every incoming multicast datagram.
const VICTIM: usize = 1;

fn nft(bed: &Testbed, args: &[&str]) {
    let out = bed
        .command(VICTIM, find_tool("nft").expect("nft"))
        .args(args)
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn netns_round(bed: &Testbed, group: SocketAddrV4) -> Vec<(i32, Value)> {
    let list = (0..HOSTS)
        .map(|h| SocketAddrV4::new(bed.host_addr(h), PORT).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let g = group.to_string();
    let cmds = (0..HOSTS)
        .map(|i| {
            let iface = bed.host_addr(i).to_string();
            let c = bed.command(i, env!("CARGO_BIN_EXE_mpcomm"));
            let extra = [
                "--transport",
                "both",
                "--group",
                &g,
                "--iface",
                &iface,
                "--wait",
                "10s",
            ];
            let mut c = check_cmd(c, &list, i, &extra);
            c.env_remove("NOTIFY_SOCKET");
            c
        })
        .collect();
    run_all(cmds)
}

#[test]
fn a_host_dropping_multicast_fails_its_multicast_pairs_and_passes_without_the_rule() {
    if find_tool("nft").is_none() {
        eprintln!("SKIPPED: nft is not installed (apt-get install nftables)");
        return;
    }
    for mode in support::netns_modes() {
        let bed = Testbed::create_with(HOSTS, mode).unwrap();
        let group = SocketAddrV4::new(
            Ipv4Addr::new(239, 255, 92, rand::random::<u8>().max(1)),
            PORT + 7,
        );
        bed.pin_multicast(*group.ip()).unwrap();
        nft(&bed, &["add", "table", "inet", "mpcchk"]);
        nft(
            &bed,
            &[
                "add",
                "chain",
                "inet",
                "mpcchk",
                "in",
                "{ type filter hook input priority 0 ; }",
            ],
        );
        nft(
            &bed,
            &[
                "add",
                "rule",
                "inet",
                "mpcchk",
                "in",
                "meta",
                "pkttype",
                "multicast",
                "counter",
                "drop",
            ],
        );
        let results = netns_round(&bed, group);
        let (code, victim) = &results[VICTIM];
        assert_ne!(*code, 0, "{victim}");
        let failures: Vec<String> = victim["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
        let expect: Vec<String> = (0..HOSTS)
            .filter(|&h| h != VICTIM)
            .map(|h| {
                format!(
                    "FAIL peer {h} ({}:{PORT}) multicast: its probes never arrived here",
                    bed.host_addr(h)
                )
            })
            .collect();
        assert_eq!(failures.len(), expect.len(), "{failures:?}");
        for (got, want) in failures.iter().zip(&expect) {
            assert!(got.starts_with(want), "{got} (wanted {want})");
        }
        let hints = victim["hints"].as_array().unwrap();
        assert!(
            hints.iter().any(|h| h
                .as_str()
                .unwrap()
                .contains("incoming multicast is dropped here")),
            "{hints:?}"
        );
        for (h, (code, r)) in results.iter().enumerate() {
            for p in pairs(r) {
                if p["transport"] == "fanout" {
                    assert_eq!(p["pass"], true, "host {h}: unicast passes: {p}");
                } else {
                    // Multicast fails exactly on the pairs with the victim, both ends.
                    let with_victim = h == VICTIM || p["peer"] == VICTIM;
                    assert_eq!(p["pass"], !with_victim, "host {h}: {p}");
                }
            }
            if h != VICTIM {
                assert_eq!(*code, 1, "host {h} cannot reach the victim by multicast");
            }
        }
        nft(&bed, &["delete", "table", "inet", "mpcchk"]);
        for (h, (code, r)) in netns_round(&bed, group).into_iter().enumerate() {
            assert_eq!(code, 0, "host {h} without the rule: {r}");
            assert!(pairs(&r)
                .iter()
                .all(|p| p["pass"] == true && p["hops_in"] == 0));
        }
        drop(bed);
    }
}

/// `lab --check` (in namespaces where they work, else on loopback): every host's preflight
/// passes, then the runs go ahead.
#[test]
fn lab_check_passes_and_then_runs() {
    let mut c = mpcomm();
    c.args(["lab", "--check", "--peers", "3", "--msgs", "5", "--json"])
        .args(["--interval", "1..3", "--drain", "300ms"]);
    if mpcomm::netns::support().is_ok() {
        c.arg("--netns");
    }
    let mut p = Proc::spawn(c);
    // One verdict line per host, in the order they finish.
    let mut passed: Vec<String> = (0..3)
        .map(|_| p.wait_for_line("preflight host", WITHIN))
        .collect();
    passed.sort();
    for (h, line) in passed.iter().enumerate() {
        assert!(
            line.ends_with(&format!("preflight host {h}: pass")),
            "{line}"
        );
    }
    let (status, stdout) = p.finish(Duration::from_secs(120));
    assert!(status.success(), "lab failed: {status}");
    assert_eq!(stdout.lines().count(), 2, "both transports ran: {stdout}");
}

/// What `lab --check` runs, with one host missing: the verdict is a failure.
#[test]
fn the_preflight_fails_when_a_host_does_not_answer() {
    let (peers, group) = loopback_peers(3);
    let transports = [mpcomm::wire::Transport::Fanout];
    let checks: Vec<CheckCommand> = (0..2)
        .map(|i| CheckCommand {
            wait: Duration::from_secs(1),
            duration: Duration::from_millis(500),
            ..CheckCommand::new(
                &peers,
                i,
                group,
                Some(Ipv4Addr::LOCALHOST.to_string()),
                &transports,
            )
        })
        .collect();
    let cmds = checks
        .iter()
        .map(|c| {
            let mut cmd = mpcomm();
            cmd.args(c.args());
            cmd
        })
        .collect();
    assert!(!preflight(cmds, &checks).unwrap());
    // And with all three it passes.
    let checks: Vec<CheckCommand> = (0..3)
        .map(|i| CheckCommand {
            duration: Duration::from_millis(500),
            ..CheckCommand::new(
                &peers,
                i,
                group,
                Some(Ipv4Addr::LOCALHOST.to_string()),
                &transports,
            )
        })
        .collect();
    let cmds = checks
        .iter()
        .map(|c| {
            let mut cmd = mpcomm();
            cmd.args(c.args());
            cmd
        })
        .collect();
    assert!(preflight(cmds, &checks).unwrap());
}

/// IPv6 in namespaces: three hosts with fd77:<net>::(i+1)/64 (no duplicate-address detection,
/// usable at once), fan-out and an ff12:: group; every pair passes, no hop away (the hop limit
/// is read from IPV6_RECVHOPLIMIT).
#[test]
fn ipv6_fanout_and_multicast_between_namespace_hosts() {
    for mode in support::netns_modes() {
        let bed = Testbed::create_with(HOSTS, mode).unwrap();
        let ip = find_tool("ip").expect("iproute2");
        let net: u16 = rand::random();
        let mut peers = Vec::new();
        for i in 0..HOSTS {
            let addr = std::net::Ipv6Addr::new(0xfd77, net, 0, 0, 0, 0, 0, i as u16 + 1);
            let out = bed
                .command(i, &ip)
                .args(["-6", "addr", "add", &format!("{addr}/64"), "dev"])
                .args([&bed.iface(i), "nodad"])
                .output()
                .unwrap();
            if !out.status.success() {
                eprintln!(
                    "SKIP: cannot add an IPv6 address in a namespace: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return;
            }
            peers.push(SocketAddr::from((addr, PORT)));
        }
        let list = join(&peers);
        let group = format!("[ff12::77:{:x}]:{}", rand::random::<u16>(), PORT + 1);
        let cmds = (0..HOSTS)
            .map(|i| {
                let iface = bed.iface(i);
                let mut c = bed.command(i, env!("CARGO_BIN_EXE_mpcomm"));
                c.env_remove("NOTIFY_SOCKET");
                let extra = ["--group", &group, "--iface", &iface, "--wait", "10s"];
                check_cmd(c, &list, i, &extra)
            })
            .collect();
        for (h, (code, r)) in run_all(cmds).into_iter().enumerate() {
            assert_eq!(code, 0, "host {h}: {r}");
            assert_eq!(pairs(&r).len(), 2 * (HOSTS - 1));
            for p in pairs(&r) {
                assert_eq!(p["pass"], true, "host {h}: {p}");
                assert_eq!(
                    (&p["hops_in"], &p["hops_out"]),
                    (&0.into(), &0.into()),
                    "{p}"
                );
            }
        }
        drop(bed);
    }
}
