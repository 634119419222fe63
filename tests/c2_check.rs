//! `mpcomm c2 check`: the preflight across the live agents, end to end with real processes.
//! On loopback a controller and 3 agents (127.0.0.11..13) pass a fan-out check (JSON and the
//! human matrix). In network namespaces (where they can be made) one agent's host drops every
//! incoming multicast datagram with nftables: `--transport both` exits 1 and its FAIL lines
//! are exactly the multicast pairs with that host; without the rule the same check passes.
//! Agents are started one at a time so that host i of the check is agent i.

mod c2_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use c2_common::{listening_addr, run_to_end, write_key, Proc, TempDir, EXE};
use mpcomm::netns::{find_tool, support_of, Mode, Testbed};
use serde_json::Value;

const AGENTS: usize = 3;

/// A controller on `listen` (host 0) and agents 1..=3, each registered before the next starts.
struct Fleet {
    _agents: Vec<Proc>,
    _serve: Proc,
    ctl: SocketAddr,
}

fn start_fleet(
    cmd: &dyn Fn(usize) -> Command,
    dir: &TempDir,
    key: &Path,
    listen: SocketAddr,
    ctl_extra: &[String],
    agent_extra: &dyn Fn(usize) -> Vec<String>,
) -> Fleet {
    let mut c = cmd(0);
    c.args([
        "c2",
        "serve",
        "--no-prompt",
        "--listen",
        &listen.to_string(),
    ])
    .arg("--key-file")
    .arg(key)
    .arg("--results")
    .arg(dir.path("results.jsonl"))
    .args([
        "--compare-listen",
        &SocketAddr::new(listen.ip(), 0).to_string(),
    ])
    .args(ctl_extra);
    let mut serve = Proc::spawn(c, "serve");
    let ctl = listening_addr(&mut serve);
    let mut agents = Vec::new();
    for i in 1..=AGENTS {
        let mut c = cmd(i);
        c.args(["c2", "agent", "--controller", &ctl.to_string()])
            .arg("--key-file")
            .arg(key)
            .arg("--log-dir")
            .arg(dir.path(&format!("logs-{i}")))
            .args(agent_extra(i));
        let mut a = Proc::spawn(c, &format!("agent{i}"));
        a.wait_for("registered with controller", Duration::from_secs(10));
        serve.wait_for("registered as", Duration::from_secs(5));
        agents.push(a);
    }
    Fleet {
        _agents: agents,
        _serve: serve,
        ctl,
    }
}

/// `c2 check` from host 0: (exit code, stdout, stderr).
fn c2_check(mut c: Command, ctl: SocketAddr, key: &Path, args: &[&str]) -> (i32, String, String) {
    c.args(["c2", "check", "--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(key)
        .args(["--duration", "1s"])
        .args(args);
    let (status, out, err) = run_to_end(c, Duration::from_secs(90));
    (status.code().unwrap_or(-1), out, err)
}

fn hosts(merged: &Value) -> &Vec<Value> {
    merged["hosts"].as_array().expect("hosts")
}

#[test]
fn fanout_check_across_three_loopback_agents_passes() {
    let dir = TempDir::new("c2check");
    let key = write_key(&dir, "key");
    let (port, group) = c2_common::private_port_and_group();
    let extra = [
        "--peer-port".into(),
        port.to_string(),
        "--group".into(),
        group,
    ];
    let fleet = start_fleet(
        &|_| Command::new(EXE),
        &dir,
        &key,
        "127.0.0.1:0".parse().unwrap(),
        &extra,
        &|i| vec!["--advertise".into(), format!("127.0.0.{}", 10 + i)],
    );
    let (code, out, err) = c2_check(
        Command::new(EXE),
        fleet.ctl,
        &key,
        &["--transport", "fanout", "--json"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let merged: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(merged["pass"], true);
    let hosts = hosts(&merged);
    assert_eq!(hosts.len(), AGENTS);
    for (i, h) in hosts.iter().enumerate() {
        assert_eq!(h["host"], i);
        assert_eq!(h["advertise"], format!("127.0.0.{}", 11 + i));
        let pairs = h["report"]["pairs"].as_array().expect("pairs");
        assert_eq!(pairs.len(), AGENTS - 1, "every other host, fan-out only");
        for p in pairs {
            assert_eq!(p["transport"], "fanout");
            assert_eq!(p["pass"], true, "{p}");
            assert_eq!(
                p["addr"].as_str().unwrap().rsplit(':').next(),
                Some(&*port.to_string())
            );
            assert!(p["rtt_ms"]["avg"].as_f64().is_some(), "{p}");
        }
    }
    // The human matrix: a row per host, peer and transport, and the verdict.
    let (code, out, err) = c2_check(
        Command::new(EXE),
        fleet.ctl,
        &key,
        &["--transport", "fanout", "--peers", "2"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    eprintln!("{out}");
    let rows = out
        .lines()
        .filter(|l| l.trim_end().ends_with(" ok"))
        .count();
    assert_eq!(rows, 2, "two hosts, one peer each: {out}");
    assert!(out.contains("PASS: all 2 hosts reach each other"), "{out}");
    // More hosts than idle agents: refused, non-zero.
    let (code, _, err) = c2_check(
        Command::new(EXE),
        fleet.ctl,
        &key,
        &["--peers", "4", "--wait", "0s"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("needs 4 idle agents: 3 of 3"), "{err}");
}

/// The host whose nftables drops every incoming multicast datagram (agent 2, host 1 of the check).
const VICTIM: usize = 2;
const PORT: u16 = 4570;

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

#[test]
fn a_host_dropping_multicast_fails_exactly_its_multicast_pairs() {
    if find_tool("nft").is_none() {
        eprintln!("SKIPPED: nft is not installed (apt-get install nftables)");
        return;
    }
    // One mode is enough here: `check` itself is tested in both (tests/check.rs).
    let Some(mode) = [Mode::Root, Mode::UserNamespace]
        .into_iter()
        .find(|m| support_of(*m).is_ok())
    else {
        eprintln!("SKIPPED: no way to make network namespaces here");
        return;
    };
    let bed = Testbed::create_with(1 + AGENTS, mode).expect("testbed");
    let dir = TempDir::new("c2check-ns");
    let key = write_key(&dir, "key");
    let group = SocketAddrV4::new(
        Ipv4Addr::new(239, 255, 93, rand::random::<u8>().max(1)),
        PORT + 7,
    );
    bed.pin_multicast(*group.ip()).unwrap();
    let extra = [
        "--peer-port".into(),
        PORT.to_string(),
        "--group".into(),
        group.to_string(),
    ];
    let fleet = start_fleet(
        &|i| bed.command(i, EXE),
        &dir,
        &key,
        SocketAddr::new(bed.host_addr(0).into(), 0),
        &extra,
        &|_| Vec::new(),
    );
    nft(&bed, &["add", "table", "inet", "mpcc2"]);
    nft(
        &bed,
        &[
            "add",
            "chain",
            "inet",
            "mpcc2",
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
            "mpcc2",
            "in",
            "meta",
            "pkttype",
            "multicast",
            "counter",
            "drop",
        ],
    );
    let victim_ip = IpAddr::from(bed.host_addr(VICTIM));
    let victim_host = VICTIM - 1;
    let (code, out, err) = c2_check(
        bed.command(0, EXE),
        fleet.ctl,
        &key,
        &["--transport", "both", "--json"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let merged: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(merged["pass"], false);
    for (i, h) in hosts(&merged).iter().enumerate() {
        assert_eq!(h["advertise"], bed.host_addr(i + 1).to_string());
        let with_victim = |p: &Value| i == victim_host || p["peer"] == victim_host;
        for p in h["report"]["pairs"].as_array().expect("pairs") {
            let want = p["transport"] == "fanout" || !with_victim(p);
            assert_eq!(p["pass"], want, "host {i}: {p}");
        }
    }
    // One FAIL line per failed pair and transport, each naming the victim's multicast pairs.
    let fails: Vec<&str> = err.lines().filter(|l| l.contains(": FAIL peer ")).collect();
    assert_eq!(fails.len(), 2 * (AGENTS - 1), "{fails:#?}");
    for f in &fails {
        assert!(f.contains(" multicast: "), "{f}");
        assert!(f.contains(&victim_ip.to_string()), "{f}");
    }
    let victim_own = fails
        .iter()
        .filter(|f| f.contains(&format!("host {victim_host} ({victim_ip}): FAIL peer")))
        .count();
    assert_eq!(victim_own, AGENTS - 1, "{fails:#?}");
    // Without the rule the same check passes, and the human matrix says so.
    nft(&bed, &["delete", "table", "inet", "mpcc2"]);
    let t = std::time::Instant::now();
    let (code, out, err) = c2_check(
        bed.command(0, EXE),
        fleet.ctl,
        &key,
        &["--transport", "both"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("PASS: all 3 hosts reach each other"), "{out}");
    eprintln!(
        "{out}MEASURED c2 check --transport both --duration 1s, 3 hosts in namespaces: {:?}",
        t.elapsed()
    );
    drop(fleet);
    bed.teardown().expect("teardown");
}
