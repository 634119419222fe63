//! Four real `mpcomm peer` processes as four separate hosts: each in its own network namespace
//! (own IP stack, own address), joined by a Linux bridge, for both transports. For multicast the
//! kernel's group membership is read inside the hosts while the peers run, and the hosts' IP
//! counters show the datagrams arriving as multicast from the other hosts.
//!
//! Every test runs once per mode that works here (as root: root and user namespace; otherwise
//! user namespace) and prints a reason and passes when none does. Peers are killed by their
//! `Proc` guards and the namespaces removed by the `Testbed`'s `Drop`, also when a check fails.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use mpcomm::netns::{Mode, Testbed};
use mpcomm::wire::log::LogView;
use support::{Proc, TempDir};

const HOSTS: usize = 4;
const MSGS: u32 = 40;
const PORT: u16 = 4570;

fn modes() -> Vec<Mode> {
    support::netns_modes()
}

/// `mpcomm peer` inside host `i`.
fn peer_in(
    bed: &Testbed,
    i: usize,
    transport: &str,
    group: SocketAddrV4,
    dir: &TempDir,
) -> Command {
    let peers = (0..bed.hosts())
        .map(|h| SocketAddrV4::new(bed.host_addr(h), PORT).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut c = bed.command(i, env!("CARGO_BIN_EXE_mpcomm"));
    c.env_remove("NOTIFY_SOCKET");
    c.args(["peer", "--peers", &peers, "--id", &i.to_string()])
        .args(["--msgs", &MSGS.to_string(), "--transport", transport])
        .args(["--group", &group.to_string()])
        .args(["--iface", &bed.host_addr(i).to_string()])
        .args(["--interval", "1..5", "--drain", "500ms"])
        .args(["--handshake-timeout", "20s", "--json", "--log-dir"])
        .arg(dir.path());
    c
}

/// Run `program args…` inside host i and return its stdout (it must succeed).
fn output_in(bed: &Testbed, i: usize, program: &str, args: &[&str]) -> String {
    let out = bed
        .command(i, program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} in host {i}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in host {i}: {}; {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The groups `/proc/net/igmp` lists for interface `iface` (as addresses).
fn igmp_groups(igmp: &str, iface: &str) -> Vec<Ipv4Addr> {
    let mut lines = igmp.lines().skip(1);
    let mut groups = Vec::new();
    let mut inside = false;
    for l in lines.by_ref() {
        if !l.starts_with('\t') {
            // `2\teth0      :     2      V3`
            inside = l.split_whitespace().nth(1) == Some(iface);
            continue;
        }
        if inside {
            // `\t\t\t\tFB4D00E0     1 0:00000000\t\t0`: the group as a little-endian hex u32.
            let hex = l.split_whitespace().next().unwrap();
            let v = u32::from_str_radix(hex, 16).unwrap();
            groups.push(Ipv4Addr::from(v.to_le_bytes()));
        }
    }
    groups
}

/// `IpExt` counters of host i (`/proc/net/netstat` is per network namespace).
fn ip_ext(bed: &Testbed, i: usize) -> BTreeMap<String, u64> {
    let text = output_in(bed, i, "cat", &["/proc/net/netstat"]);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("IpExt:")).collect();
    assert_eq!(rows.len(), 2, "IpExt names and values:\n{text}");
    rows[0]
        .split_whitespace()
        .skip(1)
        .zip(rows[1].split_whitespace().skip(1))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn run_4_hosts(mode: Mode, transport: &str) {
    let started = Instant::now();
    // Declared first, dropped last: the peers below are killed before the hosts go.
    let bed = Testbed::create_with(HOSTS, mode).unwrap();
    let setup = started.elapsed();
    let dir = TempDir::new(&format!("netns-{transport}"));
    let group = SocketAddrV4::new(
        Ipv4Addr::new(239, 255, rand::random(), rand::random()),
        PORT + 7,
    );
    // As the lab does: a static neighbour entry for the group (the machine's one ARP table
    // may be full of other testbeds' dynamic entries).
    bed.pin_multicast(*group.ip()).unwrap();
    let before: Vec<_> = (0..HOSTS).map(|i| ip_ext(&bed, i)).collect();

    // Hosts 0..N-1 first: their handshake cannot finish without the last peer, so they are
    // certainly running (member of the group, if multicast) while we look inside their hosts.
    let mut procs: Vec<Proc> = Vec::new();
    for i in 0..HOSTS - 1 {
        procs.push(Proc::spawn(peer_in(&bed, i, transport, group, &dir)));
        let ready = procs[i].wait_for_line("mpcomm peer: ready", Duration::from_secs(20));
        assert!(
            ready.contains(&format!("id={i} "))
                && ready.contains(&format!("transport={transport}")),
            "{ready}"
        );
    }
    for (i, p) in procs.iter_mut().enumerate() {
        let igmp = output_in(&bed, i, "cat", &["/proc/net/igmp"]);
        let on_eth0 = igmp_groups(&igmp, &bed.iface(i));
        if transport == "multicast" {
            assert!(
                on_eth0.contains(group.ip()),
                "host {i}: peer running, but {} is not joined on {}:\n{igmp}",
                group.ip(),
                bed.iface(i)
            );
        } else {
            assert!(
                !on_eth0.contains(group.ip()),
                "fan-out joined a group:\n{igmp}"
            );
        }
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "peer {i} ended early"
        );
    }
    // Each host has its own stack: the last host, with no peer yet, is no member.
    let last = output_in(&bed, HOSTS - 1, "cat", &["/proc/net/igmp"]);
    assert!(
        !igmp_groups(&last, &bed.iface(HOSTS - 1)).contains(group.ip()),
        "host {} has no peer yet, but is a member:\n{last}",
        HOSTS - 1
    );
    procs.push(Proc::spawn(peer_in(
        &bed,
        HOSTS - 1,
        transport,
        group,
        &dir,
    )));

    let n = HOSTS;
    let m = MSGS as usize;
    for (i, p) in procs.into_iter().enumerate() {
        let (status, stdout) = p.finish(Duration::from_secs(60));
        assert!(status.success(), "peer {i} in host {i}: {status}");
        let summary: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("peer {i} summary {stdout:?}: {e}"));
        assert_eq!(summary["ok"], true, "peer {i}: {summary}");
        assert_eq!(summary["deliveries"], (n * m) as u64, "peer {i}: {summary}");
        assert_eq!(summary["send_errors"], 0, "peer {i}: {summary}");
    }
    let took = started.elapsed();

    let mut run_ids = HashSet::new();
    let mut logs = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "mplog") {
            continue;
        }
        logs += 1;
        let bytes = std::fs::read(&path).unwrap();
        let log = LogView::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let me = usize::from(log.header.peer_id);
        run_ids.insert(log.header.run_id);
        assert_eq!(usize::from(log.header.peers), n);
        assert_eq!(log.header.msgs, MSGS);
        assert_eq!(log.header.transport.unwrap().as_str(), transport);
        let distinct: HashSet<(u16, u32)> = log.records().map(|r| (r.sender, r.seq)).collect();
        assert_eq!(distinct.len(), n * m, "{}", path.display());
        assert_eq!(log.len(), n * m, "duplicates in {}", path.display());
        // From every other host, all M: these crossed the bridge (the hosts share no stack).
        for s in 0..n {
            let from_s = distinct.iter().filter(|r| usize::from(r.0) == s).count();
            assert_eq!(from_s, m, "peer {me} got {from_s} of {m} from peer {s}");
        }
    }
    assert_eq!(logs, n, "one log per peer");
    assert_eq!(
        run_ids.len(),
        1,
        "all peers agreed on one run id: {run_ids:?}"
    );

    // The hosts' own IP counters: multicast datagrams in from the other hosts, and out.
    for (i, was) in before.iter().enumerate() {
        let now = ip_ext(&bed, i);
        let delta = |k: &str| now[k] - was[k];
        let (inm, outm) = (delta("InMcastPkts"), delta("OutMcastPkts"));
        eprintln!(
            "{}: {transport}: host {i}: InMcastPkts +{inm}, OutMcastPkts +{outm}",
            mode.as_str()
        );
        if transport == "multicast" {
            // Our own datagrams went out as multicast, and beyond their looped-back copies
            // (at most OutMcastPkts) at least the DATA of the N-1 other hosts came in.
            assert!(outm >= m as u64, "host {i}: OutMcastPkts +{outm}");
            assert!(
                inm.saturating_sub(outm) >= ((n - 1) * m) as u64,
                "host {i}: InMcastPkts +{inm}, OutMcastPkts +{outm}"
            );
        } else {
            assert!(
                inm < m as u64,
                "fan-out, yet host {i} saw {inm} multicast datagrams"
            );
        }
    }

    let prefix = bed.prefix().to_string();
    bed.teardown().unwrap();
    eprintln!(
        "{}: {transport}: {n} hosts ({prefix}) × {m} messages, all delivered; testbed {:.0} ms, \
         whole run {:.0} ms",
        mode.as_str(),
        setup.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn fanout_between_four_hosts_on_a_bridge() {
    for mode in modes() {
        run_4_hosts(mode, "fanout");
    }
}

#[test]
fn multicast_between_four_hosts_on_a_bridge() {
    for mode in modes() {
        run_4_hosts(mode, "multicast");
    }
}

#[test]
fn igmp_parser_reads_the_kernel_format() {
    let igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
                1\tlo        :     1      V3\n\
                \t\t\t\t010000E0     1 0:00000000\t\t0\n\
                2\teth0      :     2      V3\n\
                \t\t\t\tFB4D00E0     1 0:00000000\t\t0\n\
                \t\t\t\t010000E0     1 0:00000000\t\t0\n";
    assert_eq!(
        igmp_groups(igmp, "eth0"),
        [Ipv4Addr::new(224, 0, 77, 251), Ipv4Addr::new(224, 0, 0, 1)]
    );
    assert_eq!(igmp_groups(igmp, "lo"), [Ipv4Addr::new(224, 0, 0, 1)]);
    assert!(igmp_groups(igmp, "eth1").is_empty());
}
