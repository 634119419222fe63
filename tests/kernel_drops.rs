//! Loss attribution on real sockets: a receiver with a tiny receive buffer is flooded, and what
//! the kernel dropped on it (SO_RXQ_OVFL, SO_MEMINFO, then the log's `kernel_drops`) must be
//! what was sent minus what was received. Bounded: a fixed number of datagrams, deadlines on
//! every process.

mod support;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use mpcomm::peer::batch::RecvBatch;
use mpcomm::peer::socket::{drops_now, open_fanout_sized, BUFFER_ENV};
use mpcomm::wire::log::LogView;
use support::{join, loopback_peers, mpcomm, Proc, TempDir};

/// Flood a 4 KiB receiver without reading it, then drain it: every datagram sent was either
/// received or counted as a kernel drop, exactly (loopback loses nothing else here: one sender,
/// whose softirq delivers each datagram before `send_to` returns).
#[test]
fn a_flooded_socket_counts_exactly_what_it_dropped() {
    const SENT: u32 = 2_000;
    let rx = open_fanout_sized("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
    assert!(rx.drop_counts, "SO_RXQ_OVFL could not be enabled");
    let addr = rx.socket.local_addr().unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = [0x5au8; 1000];
    for _ in 0..SENT {
        tx.send_to(&payload, addr).unwrap();
    }
    let fd = rx.socket.as_raw_fd();
    let mut batch = RecvBatch::new(true);
    let (mut received, mut cmsg_drops) = (0u32, 0u32);
    // Bounded: the queue holds a few datagrams; each pass reads at least one or stops.
    for _ in 0..SENT {
        match batch.recv(fd, batch.slots()) {
            Ok(n) => {
                received += n as u32;
                if let Some(d) = batch.drops(n) {
                    cmsg_drops = cmsg_drops.max(d);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    assert!(received > 0 && received < SENT, "received {received}");
    let lost = SENT - received;
    // Each datagram carries the count as of when it was queued (none before the first drop):
    // those read were queued before the drops, so they say little. Drops after the last
    // datagram read are invisible to the cmsg; SO_MEMINFO sees them.
    assert!(cmsg_drops <= lost, "cmsg {cmsg_drops}, lost {lost}");
    match drops_now(fd) {
        Some(d) => assert_eq!(d, lost, "SO_MEMINFO drops = sent − received"),
        None => eprintln!("SKIP SO_MEMINFO check: kernel before 4.12"),
    }
    // A datagram queued now carries the whole count.
    tx.send_to(b"probe", addr).unwrap();
    let n = batch.recv(fd, batch.slots()).unwrap();
    assert_eq!((n, batch.datagram(0).0), (1, &b"probe"[..]));
    assert_eq!(batch.drops(n), Some(lost), "SO_RXQ_OVFL = sent − received");
}

fn logs_in(dir: &TempDir) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mplog"))
        .collect();
    v.sort();
    v
}

/// Two real peers with 4 KiB buffers burst 1 KB DATA at each other, repair off: each log's
/// `kernel_drops` covers its lost DATA exactly, plus at most the control datagrams (HELLO,
/// ACK, STOP, HEARTBEAT) addressed to it, which the kernel drops alike.
fn flood_peers(transport: &str) {
    const N: usize = 2;
    const MSGS: u64 = 1_500;
    let dir = TempDir::new(&format!("kdrops-{transport}"));
    let (peers, group) = loopback_peers(N);
    let procs: Vec<Proc> = (0..N)
        .map(|i| {
            let mut c = mpcomm();
            c.env(BUFFER_ENV, "4096");
            c.args(["peer", "--peers", &join(&peers), "--id", &i.to_string()]);
            c.args(["--msgs", &MSGS.to_string(), "--transport", transport]);
            c.args(["--group", &group.to_string(), "--interval", "0"]);
            c.args(["--size", "1000", "--repair", "off", "--drain", "500ms"]);
            c.args(["--handshake-timeout", "20s", "--json", "--log-dir"]);
            c.arg(dir.path());
            Proc::spawn(c)
        })
        .collect();
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(60));
        assert!(status.success(), "peer failed: {status}");
    }
    let logs: Vec<Vec<u8>> = logs_in(&dir)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(logs.len(), N);
    let views: Vec<LogView> = logs.iter().map(|b| LogView::parse(b).unwrap()).collect();
    let control: u64 = views.iter().map(|v| v.header.cost.control_datagrams).sum();
    let mut lost_total = 0;
    for v in &views {
        let h = &v.header;
        let distinct: HashSet<(u16, u32)> = v.records().map(|r| (r.sender, r.seq)).collect();
        let lost = N as u64 * MSGS - distinct.len() as u64;
        lost_total += lost;
        eprintln!(
            "{transport} peer {}: lost {lost}, kernel_drops {}, control datagrams {control}",
            h.peer_id, h.kernel_drops
        );
        assert!(
            h.kernel_drops >= lost && h.kernel_drops <= lost + control,
            "{transport} peer {}: lost {lost}, kernel_drops {}, control datagrams {control}",
            h.peer_id,
            h.kernel_drops
        );
        // The cost counters are there too.
        let copies = if transport == "fanout" { N as u64 } else { 1 };
        assert_eq!(h.data_datagrams_sent, MSGS * copies, "no retransmission");
        assert!(h.data_bytes_sent >= h.data_datagrams_sent * 1000);
        assert!(h.send_syscalls > 0 && h.recv_syscalls > 0 && h.cpu_ns > 0);
    }
    assert!(lost_total > 0, "{transport}: 4 KiB buffers lost nothing?");
}

#[test]
fn fanout_logs_attribute_their_loss_to_kernel_drops() {
    flood_peers("fanout");
}

#[test]
fn multicast_logs_attribute_their_loss_to_kernel_drops() {
    flood_peers("multicast");
}
