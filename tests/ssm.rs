//! Source-specific multicast between hosts in network namespaces: four peers on a bridge, and
//! a fifth host sending valid-looking DATA (built with the wire encoder, another run id) to
//! the same group. Without `--ssm` the peers hear it (counted as `foreign`); with `--ssm` their
//! (S,G) joins keep it out: they count none of it. The hosts' kernels hold the source filters
//! (/proc/net/mcfilter, INCLUDE mode) and speak IGMPv3 (/proc/net/igmp) or MLDv2.
//!
//! The intruder is this test binary run again inside the fifth host (the ignored test
//! `intruder`, told what to send through the environment).

mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use mpcomm::netns::{find_tool, Testbed};
use mpcomm::wire::packet::{Body, Repr};
use support::{Proc, TempDir};

const PEERS: usize = 4;
const MSGS: u32 = 30;
const RUN_ID: u64 = 0x5353_4d00_0000_0001;
/// DATA datagrams the intruder sends.
const INTRUSIONS: u32 = 40;
const INTRUDER_ENV: &str = "MPCOMM_TEST_INTRUDER";

/// Not a test of its own: the fifth host's sender, run by `run_with_intruder` in a namespace.
/// `MPCOMM_TEST_INTRUDER=GROUP,IFACE_ADDR` (IFACE_ADDR: the address to send from).
#[test]
#[ignore = "a helper: ssm_keeps_other_sources_out runs it inside a namespace"]
fn intruder() {
    let spec = std::env::var(INTRUDER_ENV).expect("run by run_with_intruder");
    let (group, from) = spec.split_once(',').unwrap();
    let group: SocketAddr = group.parse().unwrap();
    let from: IpAddr = from.parse().unwrap();
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
    let s2 = socket2::SockRef::from(&sock);
    let to = match (group, from) {
        (SocketAddr::V4(_), IpAddr::V4(ip)) => {
            s2.set_multicast_if_v4(&ip).unwrap();
            group
        }
        (SocketAddr::V6(g), IpAddr::V6(_)) => {
            let index = nix::net::if_::if_nametoindex("eth0").unwrap();
            s2.set_multicast_if_v6(index).unwrap();
            std::net::SocketAddrV6::new(*g.ip(), g.port(), 0, index).into()
        }
        _ => panic!("one family: {spec}"),
    };
    let mut buf = [0u8; 256];
    for seq in 0..INTRUSIONS {
        // Sender 1 of the run's four, a plausible seq: only the run id gives it away.
        let repr = Repr {
            run_id: RUN_ID ^ 1,
            sender: 1,
            body: Body::plain_data(seq % MSGS, 1),
        };
        let n = repr.emit(&mut buf);
        sock.send_to(&buf[..n], to).unwrap();
    }
}

/// `cat FILE` inside host `i`.
fn read_in(bed: &Testbed, i: usize, file: &str) -> String {
    let out = bed
        .command(i, find_tool("cat").expect("cat"))
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "cat {file} in host {i}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `a.b.c.d` as /proc/net/igmp prints a group: the address's bytes in memory order, as hex.
fn igmp_hex_v4(ip: std::net::Ipv4Addr) -> String {
    format!("{:08X}", u32::from_ne_bytes(ip.octets()))
}

/// Whether /proc/net/mcfilter lists source `src` for group `g` (its columns: index, device,
/// group and source as 0x-hex of the address in host order, include and exclude counts).
fn mcfilter_has(mcfilter: &str, g: std::net::Ipv4Addr, src: std::net::Ipv4Addr) -> bool {
    let (g, src) = (
        format!("0x{:08x}", u32::from(g)),
        format!("0x{:08x}", u32::from(src)),
    );
    mcfilter.lines().any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.len() == 6 && cols[2] == g && cols[3] == src && cols[4] == "1"
    })
}

/// Four peers (hosts 0..4) on `peers`/`group`, gated until the intruder (host 4) has sent;
/// returns the `foreign` count of every peer's summary.
fn run_with_intruder(
    bed: &Testbed,
    peers: &[SocketAddr],
    group: SocketAddr,
    intruder_from: IpAddr,
    ssm: bool,
) -> Vec<u64> {
    let dir = TempDir::new("ssm");
    let list = support::join(peers);
    let mut procs: Vec<Proc> = (0..PEERS)
        .map(|i| {
            let mut c = bed.command(i, env!("CARGO_BIN_EXE_mpcomm"));
            c.env_remove("NOTIFY_SOCKET");
            let iface = match peers[i] {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(_) => bed.iface(i),
            };
            c.args(["peer", "--peers", &list, "--id", &i.to_string()])
                .args(["--msgs", &MSGS.to_string(), "--interval", "2..6"])
                .args(["--transport", "multicast", "--group", &group.to_string()])
                .args(["--iface", &iface, "--run-id", &format!("{RUN_ID:016x}")])
                .args(["--drain", "500ms", "--handshake-timeout", "15s"])
                .args(["--start-gate", "--json", "--log-dir"])
                .arg(dir.path());
            if ssm {
                c.arg("--ssm");
            }
            c.stdin(Stdio::piped());
            Proc::spawn_keeping_stdin(c)
        })
        .collect();
    for p in &mut procs {
        p.wait_for_line("waiting for stdin to close", Duration::from_secs(20));
    }
    // Every peer's socket is open and joined: what the kernels now hold.
    let (filters, groups) = match group {
        SocketAddr::V4(_) => ("/proc/net/mcfilter", "/proc/net/igmp"),
        SocketAddr::V6(_) => ("/proc/net/mcfilter6", "/proc/net/igmp6"),
    };
    let mcfilter = read_in(bed, 0, filters);
    let igmp = read_in(bed, 0, groups);
    if let (SocketAddr::V4(g), IpAddr::V4(_)) = (group, intruder_from) {
        assert!(igmp.contains("V3"), "IGMPv3 is the hosts' version:\n{igmp}");
        assert!(igmp.contains(&igmp_hex_v4(*g.ip())), "{g} joined:\n{igmp}");
        for p in peers {
            let IpAddr::V4(src) = p.ip() else {
                unreachable!()
            };
            assert_eq!(
                mcfilter_has(&mcfilter, *g.ip(), src),
                ssm,
                "(S,G) = ({src}, {g}) in the source filter with ssm={ssm}:\n{mcfilter}"
            );
        }
    } else {
        let g = group.ip().to_string();
        let hex: String = match group.ip() {
            IpAddr::V6(ip) => ip.octets().iter().map(|b| format!("{b:02x}")).collect(),
            IpAddr::V4(_) => unreachable!(),
        };
        assert!(igmp.contains(&hex), "{g} joined:\n{igmp}");
        for p in peers {
            let IpAddr::V6(src) = p.ip() else {
                unreachable!()
            };
            let src_hex: String = src.octets().iter().map(|b| format!("{b:02x}")).collect();
            let line = format!("{hex} {src_hex}");
            assert_eq!(
                mcfilter.contains(&line),
                ssm,
                "(S,G) = ({src}, {g}) in the source filter with ssm={ssm}:\n{mcfilter}"
            );
        }
    }
    // The intruder runs to completion while the peers are gated: its datagrams are queued
    // on every peer socket that admits them before any peer reads.
    let me = std::env::current_exe().unwrap();
    let out = bed
        .command(PEERS, &me)
        .args(["intruder", "--exact", "--ignored", "--nocapture"])
        .env(INTRUDER_ENV, format!("{group},{intruder_from}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the intruder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in &mut procs {
        drop(p.child.stdin.take()); // open the gate
    }
    procs
        .into_iter()
        .map(|p| {
            let (status, stdout) = p.finish(Duration::from_secs(40));
            assert!(status.success(), "a peer failed (ssm={ssm})");
            let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(
                v["deliveries"].as_u64(),
                Some(PEERS as u64 * u64::from(MSGS)),
                "every message of the run delivered: {v}"
            );
            v["foreign"].as_u64().unwrap()
        })
        .collect()
}

fn check(bed: &Testbed, peers: &[SocketAddr], groups: [SocketAddr; 2], from: IpAddr) {
    let heard = run_with_intruder(bed, peers, groups[0], from, false);
    assert!(
        heard.iter().all(|&f| f == u64::from(INTRUSIONS)),
        "without --ssm every peer hears all {INTRUSIONS} of the intruder's DATA: {heard:?}"
    );
    let heard = run_with_intruder(bed, peers, groups[1], from, true);
    assert_eq!(
        heard,
        vec![0; PEERS],
        "with --ssm no peer hears the intruder"
    );
}

#[test]
fn ssm_keeps_other_sources_out() {
    for mode in support::netns_modes() {
        let bed = Testbed::create_with(PEERS + 1, mode).unwrap();
        let tag = rand::random::<u8>();
        let groups = [239u8, 232]
            .map(|first| -> SocketAddr { format!("{first}.255.77.{tag}:4580").parse().unwrap() });
        for g in groups {
            bed.pin_multicast(match g.ip() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => unreachable!(),
            })
            .unwrap();
        }
        let peers: Vec<SocketAddr> = (0..PEERS)
            .map(|i| SocketAddr::new(bed.host_addr(i).into(), 4570))
            .collect();
        check(&bed, &peers, groups, bed.host_addr(PEERS).into());
        bed.teardown().unwrap();
    }
}

#[test]
fn ssm_over_ipv6_keeps_other_sources_out() {
    for mode in support::netns_modes() {
        let bed = Testbed::create_with(PEERS + 1, mode).unwrap();
        let tag = rand::random::<u16>();
        let groups: [SocketAddr; 2] = [
            format!("[ff12::77:{tag:x}]:4580").parse().unwrap(),
            format!("[ff32::4000:{tag:x}]:4580").parse().unwrap(),
        ];
        let v6 = |g: SocketAddr| match g.ip() {
            IpAddr::V6(ip) => ip,
            IpAddr::V4(_) => unreachable!(),
        };
        if let Err(e) = bed.enable_ipv6(&groups.map(v6)) {
            eprintln!("SKIP: no IPv6 in the namespaces: {e}");
            return;
        }
        let peers: Vec<SocketAddr> = (0..PEERS)
            .map(|i| SocketAddr::new(bed.host_addr_v6(i).into(), 4570))
            .collect();
        check(&bed, &peers, groups, bed.host_addr_v6(PEERS).into());
        bed.teardown().unwrap();
    }
}

/// On one host: each peer sends from its own 127.a.b.x, so the (S,G) joins tell the peers
/// from another local sender (here this test, sending from 127.0.0.1).
#[test]
fn ssm_on_the_loopback_keeps_other_sources_out() {
    for ssm in [false, true] {
        let dir = TempDir::new("ssm-lo");
        let (peers, _) = support::loopback_peers(PEERS);
        let list = support::join(&peers);
        let first = if ssm { 232 } else { 239 };
        let group: SocketAddr = format!(
            "{first}.255.{}.{}:{}",
            rand::random::<u8>(),
            rand::random::<u8>(),
            peers[0].port()
        )
        .parse()
        .unwrap();
        let mut procs: Vec<Proc> = (0..PEERS)
            .map(|i| {
                let mut c = support::mpcomm();
                c.args(["peer", "--peers", &list, "--id", &i.to_string()])
                    .args(["--msgs", &MSGS.to_string(), "--interval", "2..6"])
                    .args(["--transport", "multicast", "--group", &group.to_string()])
                    .args(["--run-id", &format!("{RUN_ID:016x}")])
                    .args(["--drain", "500ms", "--handshake-timeout", "15s"])
                    .args(["--start-gate", "--json", "--log-dir"])
                    .arg(dir.path())
                    .args(ssm.then_some("--ssm"));
                c.stdin(Stdio::piped());
                Proc::spawn_keeping_stdin(c)
            })
            .collect();
        for p in &mut procs {
            p.wait_for_line("waiting for stdin to close", Duration::from_secs(20));
        }
        // Multicast loopback queues each copy on the members' sockets within send_to.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&sock)
            .set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
            .unwrap();
        let mut buf = [0u8; 256];
        for seq in 0..INTRUSIONS {
            let repr = Repr {
                run_id: RUN_ID ^ 1,
                sender: 1,
                body: Body::plain_data(seq % MSGS, 1),
            };
            let n = repr.emit(&mut buf);
            sock.send_to(&buf[..n], group).unwrap();
        }
        for p in &mut procs {
            drop(p.child.stdin.take());
        }
        let foreign: Vec<u64> = procs
            .into_iter()
            .map(|p| {
                let (status, stdout) = p.finish(Duration::from_secs(40));
                assert!(status.success(), "a peer failed (ssm={ssm})");
                let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
                assert_eq!(
                    v["deliveries"].as_u64(),
                    Some(PEERS as u64 * u64::from(MSGS))
                );
                v["foreign"].as_u64().unwrap()
            })
            .collect();
        let want = if ssm { 0 } else { u64::from(INTRUSIONS) };
        assert_eq!(foreign, vec![want; PEERS], "ssm={ssm}");
    }
}
