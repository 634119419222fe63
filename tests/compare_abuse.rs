//! The comparator service against clients that try to make it hold memory, connections or
//! disk, on a real `Server` on loopback with real TCP clients: memory stays proportional to
//! what was received, slow clients are dropped by the bytes they actually sent, a header's N is
//! capped, a failed results write is refused and stays retryable, the analysis does not stop
//! the loop.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mpcomm::compare::{Report, Server, ServerConfig, ServerStats};
use mpcomm::wire::frame::{read_frame, write_frame, Kind, HEADER_LEN};
use support::TempDir;

/// Upper bound for anything the service should do promptly on a loaded 2-core machine.
const PROMPT: Duration = Duration::from_secs(20);

fn log_with(run: u64, peer: u16, n: u16, m: u32, recs: &[(u16, u32, u64)]) -> Vec<u8> {
    support::synthetic_log(run, peer, n, m, recs)
}

/// Peer `peer`'s log of a run where every peer delivered everything in the same order.
fn full_log(run: u64, peer: u16, n: u16, m: u32) -> Vec<u8> {
    let recs: Vec<(u16, u32, u64)> = (0..m)
        .flat_map(|q| (0..n).map(move |s| (s, q, 1_000)))
        .collect();
    log_with(run, peer, n, m, &recs)
}

fn connect(addr: SocketAddr) -> TcpStream {
    support::comparator_connect(addr, PROMPT)
}

use support::comparator_reply as reply;

fn upload(addr: SocketAddr, log: &[u8]) -> (Kind, String) {
    let mut s = connect(addr);
    write_frame(&mut s, Kind::Upload, log).unwrap();
    reply(&mut s)
}

fn expect(got: (Kind, String), kind: Kind, words: &str) {
    assert_eq!(got.0, kind, "reply {got:?}");
    assert!(
        got.1.contains(words),
        "reply {:?} does not say {words:?}",
        got.1
    );
}

fn frame_header(len: u32) -> Vec<u8> {
    let mut b = Vec::new();
    write_frame(&mut b, Kind::Upload, &[]).unwrap();
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b
}

/// Wait (bounded, no sleeps) until the service's accounting says `done`.
fn until(stats: &ServerStats, what: &str, done: impl Fn(&ServerStats) -> bool) {
    let t0 = Instant::now();
    while !done(stats) {
        assert!(
            t0.elapsed() < PROMPT,
            "timed out waiting for {what}: {stats:?}"
        );
        std::thread::yield_now();
    }
}

struct Running {
    addr: SocketAddr,
    stats: std::sync::Arc<ServerStats>,
    stopper: mpcomm::compare::Stopper,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    reports: mpsc::Receiver<Report>,
}

impl Running {
    fn start(cfg: ServerConfig) -> Running {
        let server = Server::bind(cfg).unwrap();
        let (tx, reports) = mpsc::channel();
        Running {
            addr: server.local_addr(),
            stats: server.stats(),
            stopper: server.stopper(),
            thread: Some(std::thread::spawn(move || {
                server.run(move |r| drop(tx.send(r.clone())))
            })),
            reports,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread")
                    .expect("server returns Ok on stop");
            }
        }
    }
}

fn local() -> ServerConfig {
    ServerConfig::local("127.0.0.1:0".parse().unwrap())
}

/// Finding 1: a 4 KB log with 64 senders and latencies of 1 ns and an hour used to cost ~17 MB
/// of histograms; memory is now counted and proportional to the deliveries.
#[test]
fn stored_logs_cost_what_they_hold_and_the_budget_refuses_more() {
    let mut cfg = local();
    cfg.max_pending_bytes = 512 << 10;
    let srv = Running::start(cfg);
    let recs: Vec<(u16, u32, u64)> = (0..128u32)
        .map(|i| {
            let latency = if i % 2 == 0 { 1 } else { 3_600_000_000_000 };
            ((i % 64) as u16, i / 64, latency)
        })
        .collect();
    let tiny = log_with(0x100, 0, 64, 2, &recs);
    assert!(tiny.len() < 8 << 10);
    expect(upload(srv.addr, &tiny), Kind::Accepted, "1 of 64");
    until(&srv.stats, "the stored log", |s| s.incomplete_runs() == 1);
    let held = srv.stats.pending_bytes();
    assert!(
        held > 0 && held < 4 << 10,
        "a {}-byte log holds {held} bytes",
        tiny.len()
    );

    // Logs of 4,000 deliveries (~32 KB stored each, but a 192 KB upload while it arrives: the
    // budget counts both) until the 512 KiB budget refuses one.
    let mut accepted = 0;
    let refusal = loop {
        let run = 0x200 + accepted;
        let r = upload(srv.addr, &full_log(run, 0, 4, 1000));
        if r.0 != Kind::Accepted {
            break r;
        }
        accepted += 1;
        assert!(accepted < 64, "the budget never refused an upload");
    };
    expect(refusal, Kind::Busy, "--max-pending");
    assert!(accepted >= 5, "only {accepted} logs fitted");
    until(&srv.stats, "the accounting", |s| {
        s.incomplete_runs() == accepted + 1
    });
    assert!(srv.stats.pending_bytes() <= 512 << 10);
}

/// Finding 1: one source address cannot start unlimited incomplete runs.
#[test]
fn incomplete_runs_per_source_are_capped() {
    let mut cfg = local();
    cfg.max_runs_per_source = 3;
    let srv = Running::start(cfg);
    for run in 1..=3 {
        expect(
            upload(srv.addr, &full_log(run, 0, 2, 1)),
            Kind::Accepted,
            "1 of 2",
        );
    }
    expect(
        upload(srv.addr, &full_log(4, 0, 2, 1)),
        Kind::Rejected,
        "already started 3 incomplete runs",
    );
    // A run it already started still takes logs, and completing it frees a place.
    expect(
        upload(srv.addr, &full_log(1, 1, 2, 1)),
        Kind::Accepted,
        "complete",
    );
    expect(
        upload(srv.addr, &full_log(4, 0, 2, 1)),
        Kind::Accepted,
        "1 of 2",
    );
}

/// Finding 2: a client trickling one byte at a time is dropped once it falls below the rate,
/// not after read_timeout + claimed length / rate (16 s for the 1 MiB it claims here).
#[test]
fn a_trickling_client_is_dropped_by_the_bytes_it_sent() {
    let mut cfg = local();
    cfg.read_timeout = Duration::from_millis(300);
    let srv = Running::start(cfg);
    let mut s = connect(srv.addr);
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.write_all(&frame_header(1 << 20)).unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    // One byte per 50 ms (the read timeout paces it) until the service answers; bounded.
    for _ in 0..200 {
        if s.write_all(&[0]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() >= HEADER_LEN {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let elapsed = t0.elapsed();
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    let (kind, msg) = read_frame(&mut got.as_slice(), 1 << 16).expect("a reply frame");
    expect(
        (kind, String::from_utf8(msg).unwrap()),
        Kind::Rejected,
        "too slow",
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "dropped after {elapsed:?}"
    );
}

/// Finding 2: one source address cannot hold every connection slot.
#[test]
fn connections_per_source_are_capped() {
    let mut cfg = local();
    cfg.max_conns_per_source = 4;
    let srv = Running::start(cfg);
    let silent: Vec<TcpStream> = (0..4).map(|_| connect(srv.addr)).collect();
    until(&srv.stats, "4 connections", |s| s.connections() == 4);
    let mut fifth = connect(srv.addr);
    expect(
        reply(&mut fifth),
        Kind::Busy,
        "too many connections from 127.0.0.1",
    );
    drop(silent);
}

/// Issue 11: at the global cap a newcomer takes the place of the connection that has sent
/// nothing for the longest (told `Busy`, so a real peer would retry), and gets served.
#[test]
fn at_the_connection_cap_the_oldest_silent_connection_makes_room() {
    let mut cfg = local();
    cfg.max_connections = 4;
    let srv = Running::start(cfg);
    let mut silent: Vec<TcpStream> = Vec::new();
    for k in 0..4 {
        silent.push(connect(srv.addr));
        until(&srv.stats, "the silent connections", |s| {
            s.connections() == k + 1
        });
    }
    expect(
        upload(srv.addr, &full_log(0x600, 0, 2, 2)),
        Kind::Accepted,
        "1 of 2",
    );
    expect(
        reply(&mut silent[0]),
        Kind::Busy,
        "evicted: sent nothing for",
    );
    for mut s in &silent[1..] {
        s.set_nonblocking(true).unwrap();
        let r = s.read(&mut [0u8; 1]);
        let open = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(open, "a newer connection was evicted: {r:?}");
    }
}

/// Issue 11: at the global cap with every connection uploading, the newcomer is told `Busy`.
#[test]
fn at_the_connection_cap_with_every_slot_uploading_a_newcomer_is_told_busy() {
    let mut cfg = local();
    cfg.max_connections = 3;
    let srv = Running::start(cfg);
    let uploading: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect(srv.addr);
            s.write_all(&frame_header(1 << 20)).unwrap();
            s.write_all(&[0u8; 1000]).unwrap();
            s
        })
        .collect();
    until(&srv.stats, "3 uploads under way", |s| {
        s.connections() == 3 && s.pending_bytes() > 0
    });
    let mut newcomer = connect(srv.addr);
    expect(
        reply(&mut newcomer),
        Kind::Busy,
        "3 connections are uploading",
    );
    drop(uploading);
}

/// Finding 3: a header's N is capped, and a run that claims many peers but has one log makes
/// a short results line.
#[test]
fn a_huge_claimed_n_is_refused_and_absent_peers_are_short() {
    let dir = TempDir::new("compare-abuse-n");
    let results = dir.path().join("results.jsonl");
    let mut cfg = local();
    cfg.run_timeout = Duration::from_millis(200);
    cfg.results = Some(results.clone());
    let srv = Running::start(cfg);
    expect(
        upload(srv.addr, &log_with(0x300, 0, 65535, 1, &[(0, 0, 5)])),
        Kind::Rejected,
        "at most 1024 (--max-peers)",
    );
    expect(
        upload(srv.addr, &log_with(0x301, 0, 1024, 1, &[(0, 0, 5)])),
        Kind::Accepted,
        "1 of 1024",
    );
    let r = srv.reports.recv_timeout(PROMPT).expect("the run times out");
    assert_eq!((r.run_id, r.missing_peers.len()), (0x301, 1023));
    let text = std::fs::read_to_string(&results).unwrap();
    assert!(
        text.len() < 64 << 10,
        "{} bytes for one 1-record log",
        text.len()
    );
    let back = Report::from_json_line(text.trim_end()).unwrap();
    assert_eq!(back.per_peer.len(), 1024);
    assert!(back.per_peer[0].present && !back.per_peer[1].present);
    assert_eq!(back.per_peer[5].peer, 5);
}

/// Finding 4: when the results line cannot be written the upload is refused, not accepted,
/// and can be sent again (it is not "already reported" or a duplicate).
#[test]
fn a_failed_results_write_is_refused_and_retryable() {
    let mut cfg = local();
    cfg.results = Some("/dev/full".into());
    let srv = Running::start(cfg);
    let a = full_log(0x400, 0, 2, 2);
    let b = full_log(0x400, 1, 2, 2);
    expect(upload(srv.addr, &a), Kind::Accepted, "1 of 2");
    for _ in 0..2 {
        let r = upload(srv.addr, &b);
        expect(r.clone(), Kind::Busy, "could not be written");
        expect(r, Kind::Busy, "upload it again");
    }
    // The first log is still held; a duplicate of it is refused as such.
    let r = upload(srv.addr, &a);
    expect(
        r.clone(),
        Kind::Rejected,
        "duplicate upload for run 0000000000000400 peer 0",
    );
    expect(r, Kind::Rejected, "the first one is kept");
    assert!(srv.reports.try_recv().is_err(), "nothing was reported");
}

/// Finding 5: analysing a big run does not stop the loop: an upload in progress meanwhile is
/// read and answered while the analysis runs, not dropped by a read timeout after it.
#[test]
fn the_loop_serves_while_a_run_is_analysed() {
    const N: u16 = 700;
    const M: u32 = 1000 / N as u32 + 1;
    let mut cfg = local();
    cfg.read_timeout = Duration::from_millis(500);
    let srv = Running::start(cfg);
    // Each peer delivers ~1,000 messages in its own rotation of the same order, so the
    // pairwise distances have work to do.
    let logs: Vec<Vec<u8>> = (0..N)
        .map(|p| {
            let mut recs: Vec<(u16, u32, u64)> = (0..M)
                .flat_map(|q| (0..N).map(move |s| (s, q, 1_000)))
                .collect();
            let k = recs.len();
            recs.rotate_left((usize::from(p) * 7) % k);
            log_with(0x500, p, N, M, &recs)
        })
        .collect();
    for l in &logs[..usize::from(N) - 1] {
        expect(upload(srv.addr, l), Kind::Accepted, "of 700");
    }
    // Another run's upload, started: header and half its payload.
    let other = full_log(0x501, 0, 2, 2);
    let mut framed = Vec::new();
    write_frame(&mut framed, Kind::Upload, &other).unwrap();
    let half = framed.len() / 2;
    let mut y = connect(srv.addr);
    y.write_all(&framed[..half]).unwrap();
    // The last log completes the big run; its reply is awaited on another thread.
    let t0 = Instant::now();
    let last = logs.last().unwrap().clone();
    let addr = srv.addr;
    let x = std::thread::spawn(move || {
        let r = upload(addr, &last);
        (r, t0.elapsed())
    });
    // Wait until the service has the big run (bounded; the accounting says so), then finish
    // the other upload while it is being analysed.
    until(&srv.stats, "the big run handed over", |s| {
        s.incomplete_runs() == 0
    });
    y.write_all(&framed[half..]).unwrap();
    let y_reply = reply(&mut y);
    let y_at = t0.elapsed();
    expect(y_reply, Kind::Accepted, "1 of 2");
    let (x_reply, x_at) = x.join().unwrap();
    expect(x_reply, Kind::Accepted, "run 0000000000000500 complete");
    assert!(
        y_at < x_at,
        "the small upload ({y_at:?}) waited for the big analysis ({x_at:?})"
    );
    let r = srv.reports.recv_timeout(PROMPT).unwrap();
    assert_eq!(r.run_id, 0x500);
    assert_eq!(
        r.pairwise_disagreement.pairs,
        700 * 699 / 2,
        "{:?}",
        r.warnings
    );
    eprintln!("small upload answered after {y_at:?}, the big run after {x_at:?}");
}
