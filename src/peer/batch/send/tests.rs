use super::*;
use crate::peer::batch::RecvBatch;
use crate::peer::socket::open_fanout;
use std::os::fd::AsRawFd;

fn pair() -> (std::net::UdpSocket, SocketAddr) {
    let a = open_fanout("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = a.socket.local_addr().unwrap();
    (a.socket, addr)
}

/// Everything waiting on `sock` (loopback queues a datagram before the send returns).
fn drain(sock: &std::net::UdpSocket) -> Vec<Vec<u8>> {
    let mut rx = RecvBatch::new(true);
    let mut got = Vec::new();
    // Bounded: each pass reads at least one datagram or ends.
    for _ in 0..64 {
        match rx.recv(sock.as_raw_fd(), rx.slots()) {
            Ok(n) => got.extend((0..n).map(|i| rx.datagram(i).0.to_vec())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    got
}

fn queue(tx: &mut SendBatch, bytes: &[u8], to: Range<usize>, unicast: bool) {
    tx.next_buf()[..bytes.len()].copy_from_slice(bytes);
    tx.push(bytes.len(), to, unicast);
}

#[test]
fn one_flush_sends_every_datagram_to_every_target_in_order() {
    for batched in [true, false] {
        let socks: Vec<_> = (0..3).map(|_| pair()).collect();
        let targets: Vec<SocketAddr> = socks.iter().map(|s| s.1).collect();
        let from = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = SendBatch::new(&targets, batched);
        queue(&mut tx, b"one", 0..3, false);
        queue(&mut tx, b"two", 1..2, false); // peer 1 only
        queue(&mut tx, b"three", 0..3, false);
        let mut sent = Sent::default();
        assert!(tx.flush(|_| from.as_raw_fd(), &mut sent).unwrap());
        assert!(tx.is_empty() && tx.waiting_on().is_none());
        assert_eq!((sent.datagrams, sent.errors), (7, 0), "batched={batched}");
        // Batched: the seven (datagram, destination) sends in one call.
        assert_eq!(sent.calls, if batched { 1 } else { 7 }, "batched={batched}");
        let got: Vec<_> = socks.iter().map(|(s, _)| drain(s)).collect();
        assert_eq!(got[0], [&b"one"[..], b"three"]);
        assert_eq!(got[1], [&b"one"[..], b"two", b"three"]);
        assert_eq!(got[2], [&b"one"[..], b"three"]);
    }
}

#[test]
fn a_failing_target_is_skipped_and_counted_alone() {
    let (sock, addr) = pair();
    let bad: SocketAddr = "127.0.0.1:0".parse().unwrap(); // port 0: EINVAL
    let from = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut tx = SendBatch::new(&[addr, bad, addr], true);
    queue(&mut tx, b"a", 0..3, false);
    queue(&mut tx, b"b", 0..3, false);
    let mut sent = Sent::default();
    assert!(tx.flush(|_| from.as_raw_fd(), &mut sent).unwrap());
    // sendmmsg stops at the failing message and reports what went before it.
    assert_eq!((sent.datagrams, sent.errors), (4, 2));
    assert_eq!(drain(&sock), [&b"a"[..], b"a", b"b", b"b"]);
}

#[test]
fn the_two_sockets_keep_the_queue_order() {
    let (group_rx, group) = pair();
    let (peer_rx, peer) = pair();
    let main = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let unicast = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (main_fd, unicast_fd) = (main.as_raw_fd(), unicast.as_raw_fd());
    let fd = |u: bool| if u { unicast_fd } else { main_fd };
    let mut tx = SendBatch::new(&[group, peer], true);
    queue(&mut tx, b"d1", 0..1, false);
    queue(&mut tx, b"ack", 1..2, true);
    queue(&mut tx, b"d2", 0..1, false);
    queue(&mut tx, b"d3", 0..1, false);
    let mut sent = Sent::default();
    assert!(tx.flush(fd, &mut sent).unwrap());
    // main [d1], unicast [ack], main [d2, d3]: one call per run of the same socket.
    assert_eq!((sent.calls, sent.datagrams), (3, 4));
    assert_eq!(drain(&group_rx), [&b"d1"[..], b"d2", b"d3"]);
    assert_eq!(drain(&peer_rx), [&b"ack"[..]]);
}

#[test]
fn many_destinations_take_several_calls_and_the_ring_wraps() {
    // 40 fan-out destinations: 32 × 40 headers exceed one call's 1024.
    let (sock, addr) = pair();
    let targets = vec![addr; 40];
    let from = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut tx = SendBatch::new(&targets, true);
    let mut sent = Sent::default();
    let mut want = Vec::new();
    // Three fills of the whole ring, the last two starting where the previous ended.
    for round in 0..3u8 {
        let mut k = 0u8;
        while tx.has_room() {
            queue(&mut tx, &[round, k], 0..40, false);
            want.extend(std::iter::repeat_n(vec![round, k], 40));
            k += 1;
        }
        assert_eq!(usize::from(k), MAX_SLOTS);
        assert!(tx.flush(|_| from.as_raw_fd(), &mut sent).unwrap());
        let got = drain(&sock);
        assert_eq!(got.len(), MAX_SLOTS * 40, "round {round}");
        assert_eq!(got, want[want.len() - got.len()..], "round {round}");
        // Partial runs: the first queue is one datagram short, so later rounds wrap.
        if round == 0 {
            queue(&mut tx, &[9, 9], 0..1, false);
            assert!(tx.flush(|_| from.as_raw_fd(), &mut sent).unwrap());
            assert_eq!(drain(&sock), [vec![9u8, 9]]);
        }
    }
    assert_eq!(sent.errors, 0);
    assert!(
        sent.calls >= 3 * 2,
        "1,280 headers a round: at least two calls"
    );
}

#[test]
fn nothing_to_send_is_not_queued() {
    let (_, addr) = pair();
    let mut tx = SendBatch::new(&[addr], true);
    queue(&mut tx, b"x", 0..0, false);
    assert!(tx.is_empty());
}
