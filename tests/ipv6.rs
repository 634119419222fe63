//! IPv6: fan-out between peers on `::1`, and fan-out and IPv6 multicast (an ff12:: group) between
//! three hosts in network namespaces, each with a unique-local address on its bridge port.

mod support;

use std::collections::HashSet;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::time::Duration;

use mpcomm::netns::{find_tool, Testbed};
use mpcomm::wire::log::LogView;
use support::{mpcomm, Proc, TempDir};

const MSGS: u32 = 30;

fn check_logs(dir: &TempDir, n: usize) {
    let logs: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mplog"))
        .collect();
    assert_eq!(logs.len(), n);
    let mut runs = HashSet::new();
    for path in logs {
        let bytes = std::fs::read(&path).unwrap();
        let log = LogView::parse(&bytes).unwrap();
        runs.insert(log.header.run_id);
        let distinct: HashSet<(u16, u32)> = log.records().map(|r| (r.sender, r.seq)).collect();
        assert_eq!(distinct.len(), n * MSGS as usize, "{}", path.display());
    }
    assert_eq!(runs.len(), 1);
}

fn peer_args(peers: &[SocketAddr], i: usize, extra: &[&str], dir: &TempDir) -> Vec<String> {
    let list = peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut a: Vec<String> = [
        "peer",
        "--peers",
        &list,
        "--id",
        &i.to_string(),
        "--msgs",
        &MSGS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(
        [
            "--interval",
            "1..4",
            "--drain",
            "500ms",
            "--handshake-timeout",
            "15s",
            "--log-dir",
        ]
        .map(String::from),
    );
    a.push(dir.path().display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn fanout_over_ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIP: this host has no IPv6 loopback");
        return;
    }
    let dir = TempDir::new("v6lo");
    let base = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Three ports near a free one; a clash fails the bind loudly, not silently.
    let peers: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(Ipv6Addr::LOCALHOST.into(), base.wrapping_add(i)))
        .collect();
    let procs: Vec<Proc> = (0..3)
        .map(|i| {
            let mut c = mpcomm();
            c.args(peer_args(&peers, i, &[], &dir));
            Proc::spawn(c)
        })
        .collect();
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(30));
        assert!(status.success());
    }
    check_logs(&dir, 3);
}

/// Three hosts with fd77:<net>::(i+1)/64 on eth0 (no duplicate-address detection, so the
/// addresses are usable at once), or `None` with the reason printed.
fn ipv6_hosts(mode: mpcomm::netns::Mode) -> Option<(Testbed, Vec<Ipv6Addr>)> {
    let bed = Testbed::create_with(3, mode).unwrap();
    let ip = find_tool("ip").expect("iproute2");
    let net: u16 = rand::random();
    let mut addrs = Vec::new();
    for i in 0..3 {
        let addr = Ipv6Addr::new(0xfd77, net, 0, 0, 0, 0, 0, i as u16 + 1);
        let out = bed
            .command(i, &ip)
            .args([
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                &bed.iface(i),
                "nodad",
            ])
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "SKIP: cannot add an IPv6 address in a namespace: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        addrs.push(addr);
    }
    Some((bed, addrs))
}

fn run_three_hosts(transport: &str) {
    for mode in support::netns_modes() {
        let Some((bed, addrs)) = ipv6_hosts(mode) else {
            return;
        };
        let dir = TempDir::new("v6ns");
        let peers: Vec<SocketAddr> = addrs
            .iter()
            .map(|&a| SocketAddrV6::new(a, 4570, 0, 0).into())
            .collect();
        let group = format!("[ff12::77:{:x}]:4571", rand::random::<u16>());
        let procs: Vec<Proc> = (0..3)
            .map(|i| {
                let mut c = bed.command(i, env!("CARGO_BIN_EXE_mpcomm"));
                c.env_remove("NOTIFY_SOCKET");
                let iface = bed.iface(i);
                c.args(peer_args(
                    &peers,
                    i,
                    &[
                        "--transport",
                        transport,
                        "--group",
                        &group,
                        "--iface",
                        &iface,
                    ],
                    &dir,
                ));
                Proc::spawn(c)
            })
            .collect();
        for p in procs {
            let (status, _) = p.finish(Duration::from_secs(40));
            assert!(status.success(), "{transport} in {mode:?}");
        }
        check_logs(&dir, 3);
        bed.teardown().unwrap();
    }
}

#[test]
fn fanout_over_ipv6_between_hosts() {
    run_three_hosts("fanout");
}

#[test]
fn ipv6_multicast_between_hosts() {
    run_three_hosts("multicast");
}
