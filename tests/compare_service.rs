//! The comparator service against hostile and broken clients, on a real `Server` on loopback:
//! random bytes, a truncated upload, a 4 GiB length prefix, a silent connection, a wrong frame
//! kind, a bad log, a duplicate upload, a run nobody else joins — then a valid run is still
//! reported correctly and in time, and the results file and histograms are written.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpcomm::compare::{Report, Server, ServerConfig};
use mpcomm::wire::frame::{write_frame, Kind, HEADER_LEN};
use rand::{Rng, SeedableRng};
use support::TempDir;

const READ_TIMEOUT: Duration = Duration::from_millis(2500);
const RUN_TIMEOUT: Duration = Duration::from_millis(1000);
const CAP: u32 = 1 << 20;
/// Upper bound for anything the service should do promptly on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(10);

fn log_bytes(run: u64, peer: u16, n: u16, m: u32, order: &[(u16, u32)]) -> Vec<u8> {
    let recs: Vec<(u16, u32, u64)> = order.iter().map(|&(s, q)| (s, q, 2_000)).collect();
    support::synthetic_log(run, peer, n, m, &recs)
}

fn connect(addr: SocketAddr) -> TcpStream {
    support::comparator_connect(addr, PROMPT)
}

use support::comparator_reply as reply;

fn send_raw(addr: SocketAddr, bytes: &[u8]) -> (Kind, String) {
    let mut s = connect(addr);
    s.write_all(bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    reply(&mut s)
}

fn upload(addr: SocketAddr, log: &[u8]) -> (Kind, String) {
    let mut s = connect(addr);
    write_frame(&mut s, Kind::Upload, log).unwrap();
    reply(&mut s)
}

fn frame_header(kind: Kind, len: u32) -> Vec<u8> {
    let mut b = Vec::new();
    write_frame(&mut b, kind, &[]).unwrap();
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b
}

fn expect(got: (Kind, String), kind: Kind, words: &str) {
    assert_eq!(got.0, kind, "reply {got:?}");
    assert!(
        got.1.contains(words),
        "reply {:?} does not say {words:?}",
        got.1
    );
}

fn next_report(rx: &mpsc::Receiver<Report>, within: Duration) -> Report {
    rx.recv_timeout(within).expect("a report in time")
}

#[test]
fn service_survives_bad_clients_and_still_reports() {
    let dir = TempDir::new("compare-service");
    let results = dir.path().join("results.jsonl");
    let hists = dir.path().join("hist");
    let mut cfg = ServerConfig::local("127.0.0.1:0".parse().unwrap());
    cfg.read_timeout = READ_TIMEOUT;
    cfg.run_timeout = RUN_TIMEOUT;
    cfg.max_upload_bytes = CAP;
    cfg.results = Some(results.clone());
    cfg.hist_dir = Some(hists.clone());
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stopper = server.stopper();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || server.run(move |r| drop(tx.send(r.clone()))));
    let t0 = Instant::now();

    // A silent connection, open while everything else happens.
    let mut silent = connect(addr);

    // Random bytes.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let junk: Vec<u8> = (0..4096).map(|_| rng.gen()).collect();
    expect(send_raw(addr, &junk), Kind::Rejected, "bad frame");
    // Too short even for a frame header.
    expect(send_raw(addr, b"MPC"), Kind::Rejected, "truncated frame");
    // A length prefix of 4 GiB (−1): refused from the 12-byte header, before any payload.
    let mut big = connect(addr);
    big.write_all(&frame_header(Kind::Upload, u32::MAX))
        .unwrap();
    expect(reply(&mut big), Kind::Rejected, "over the cap");
    // A truncated upload: the header promises 1000 bytes, 100 come, then EOF.
    let mut t = frame_header(Kind::Upload, 1000);
    t.extend_from_slice(&[0u8; 100]);
    expect(
        send_raw(addr, &t),
        Kind::Rejected,
        "truncated upload: 100 of 1000",
    );
    // A frame of the wrong kind.
    let mut wrong = Vec::new();
    write_frame(&mut wrong, Kind::Accepted, b"hi").unwrap();
    expect(send_raw(addr, &wrong), Kind::Rejected, "expected an upload");
    // A frame whose payload is not a log.
    expect(upload(addr, &junk[..512]), Kind::Rejected, "bad log");
    // A connection that closes without a byte.
    drop(connect(addr));

    // Run A: peer 0 of 2 arrives (twice); peer 1 never does.
    let a0 = log_bytes(0xa, 0, 2, 1, &[(0, 0), (1, 0)]);
    expect(upload(addr, &a0), Kind::Accepted, "1 of 2");
    expect(
        upload(addr, &a0),
        Kind::Rejected,
        "duplicate upload for run 000000000000000a peer 0",
    );
    let a_started = Instant::now();

    // Run B, three peers at once while the silent connection still hangs: peer 2 swaps the
    // first two messages (2 positions differ; 1 of 15 message pairs disagree).
    let order: Vec<(u16, u32)> = (0..2).flat_map(|q| (0..3).map(move |s| (s, q))).collect();
    let mut swapped = order.clone();
    swapped.swap(0, 1);
    let logs = [
        log_bytes(0xb, 0, 3, 2, &order),
        log_bytes(0xb, 1, 3, 2, &order),
        log_bytes(0xb, 2, 3, 2, &swapped),
    ];
    let replies: Vec<(Kind, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = logs
            .iter()
            .map(|l| s.spawn(move || upload(addr, l)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(replies.iter().all(|r| r.0 == Kind::Accepted), "{replies:?}");
    let done: Vec<_> = replies
        .iter()
        .filter(|r| r.1.contains("complete: 2 unordered message rounds"))
        .collect();
    assert_eq!(
        done.len(),
        1,
        "exactly one upload completes the run: {replies:?}"
    );
    // Acknowledged means on disk: the results line is there now.
    let on_disk = std::fs::read_to_string(&results).unwrap();
    assert!(
        on_disk.lines().any(|l| l.contains("\"run_id\":\"000000000000000b\",")),
        "{on_disk}"
    );
    let b = next_report(&rx, PROMPT);
    assert_eq!(
        (
            b.run_id,
            b.rounds,
            b.out_of_order_rounds,
            b.first_divergence
        ),
        (0xb, 6, 2, Some(0))
    );
    assert_eq!((b.lost, b.duplicates, b.deliveries), (0, 0, 18));
    assert!((b.pairwise_disagreement.max - 1.0 / 15.0).abs() < 1e-12);
    assert!(b.missing_peers.is_empty());
    assert!(
        t0.elapsed() < READ_TIMEOUT,
        "the silent connection held up run B"
    );
    assert!(hists.join("run-000000000000000b.hgrm").exists());
    assert!(hists.join("run-000000000000000b.hlog").exists());
    assert!(hists.join("run-000000000000000b-s2-r0.hgrm").exists());

    // Run A is reported after its run timeout, naming the missing peer.
    let a = next_report(&rx, PROMPT);
    assert_eq!((a.run_id, a.missing_peers.clone()), (0xa, vec![1]));
    assert!(a_started.elapsed() >= RUN_TIMEOUT - Duration::from_millis(50));
    assert_eq!(a.out_of_order_rounds, 2);

    // The silent connection is told why it is dropped, after the read timeout.
    expect(
        reply(&mut silent),
        Kind::Rejected,
        "read timeout: nothing received",
    );
    assert!(t0.elapsed() >= READ_TIMEOUT);

    // Late uploads for reported runs are refused.
    expect(
        upload(addr, &log_bytes(0xa, 1, 2, 1, &[])),
        Kind::Rejected,
        "already reported",
    );
    expect(upload(addr, &logs[0]), Kind::Rejected, "already reported");

    // After all that, a new run is reported correctly and promptly.
    let c_start = Instant::now();
    let c = [(0u16, 0u32), (1, 0)];
    expect(
        upload(addr, &log_bytes(0xc, 0, 2, 1, &c)),
        Kind::Accepted,
        "1 of 2",
    );
    expect(
        upload(addr, &log_bytes(0xc, 1, 2, 1, &c[..1])),
        Kind::Accepted,
        "complete: 1 unordered",
    );
    let c = next_report(&rx, PROMPT);
    assert!(c_start.elapsed() < PROMPT);
    assert_eq!(
        (c.run_id, c.out_of_order_rounds, c.lost, c.first_divergence),
        (0xc, 1, 1, Some(1))
    );

    stopper.stop();
    thread
        .join()
        .expect("server thread")
        .expect("server returns Ok on stop");
    let lines: Vec<Report> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| Report::from_json_line(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|r| r.run_id).collect::<Vec<_>>(),
        vec![0xb, 0xa, 0xc]
    );
    assert!(rx.try_recv().is_err(), "no other reports");
}

#[test]
fn oversized_payload_is_refused_and_slow_upload_is_dropped() {
    let mut cfg = ServerConfig::local("127.0.0.1:0".parse().unwrap());
    cfg.read_timeout = Duration::from_millis(300);
    cfg.max_upload_bytes = 1000;
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || server.run(|_| {}));

    // Just over the cap.
    let mut s = connect(addr);
    s.write_all(&frame_header(Kind::Upload, 1001)).unwrap();
    expect(reply(&mut s), Kind::Rejected, "over the cap of 1000");
    // Header then silence: dropped with the bytes it got.
    let mut s = connect(addr);
    let mut h = frame_header(Kind::Upload, 500);
    h.extend_from_slice(&[1, 2, 3]);
    s.write_all(&h).unwrap();
    expect(
        reply(&mut s),
        Kind::Rejected,
        "read timeout: 3 of 500 bytes",
    );
    // Half a header, then silence.
    let mut s = connect(addr);
    s.write_all(&h[..5]).unwrap();
    expect(
        reply(&mut s),
        Kind::Rejected,
        &format!("read timeout: 5 of {HEADER_LEN} header bytes"),
    );
    // The reply is the last thing: the server closes.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);

    stopper.stop();
    thread.join().unwrap().unwrap();
}
