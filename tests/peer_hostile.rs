//! The two hostile cases that used to end a run early or keep it alive, against real peer
//! processes on loopback and without a run key: forged STOPs with a small count, and a trickle
//! of forged duplicates after a peer died.

mod support;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use mpcomm::wire::log::LogView;
use mpcomm::wire::packet::{Announce, Body, Repr};
use support::{join, loopback_peers, mpcomm, Proc, TempDir};

fn peer(peers: &str, id: usize, msgs: u32, run_id: u64, dir: &TempDir) -> Proc {
    let mut c = mpcomm();
    c.args(["peer", "--peers", peers, "--id", &id.to_string()])
        .args(["--msgs", &msgs.to_string(), "--run-id", &run_id.to_string()])
        .args(["--interval", "5..10", "--drain", "500ms", "--log-dir"])
        .arg(dir.path());
    Proc::spawn(c)
}

fn emit(repr: Repr) -> Vec<u8> {
    let mut buf = [0u8; 128];
    let n = repr.emit(&mut buf);
    buf[..n].to_vec()
}

#[test]
fn forged_stops_with_a_small_count_do_not_end_a_run_early() {
    let dir = TempDir::new("forged-stop");
    let (addrs, _) = loopback_peers(3);
    let peers = join(&addrs);
    let run_id = 0x5701;
    let mut procs: Vec<Proc> = (0..3).map(|i| peer(&peers, i, 80, run_id, &dir)).collect();
    for p in &mut procs {
        p.wait_for_line("ready", Duration::from_secs(10));
    }
    // Mid-run (the run lasts ~0.6 s): by now peer 1 has sent more than 2.
    std::thread::sleep(Duration::from_millis(300));
    let stop = emit(Repr {
        run_id,
        sender: 1,
        body: Body::Stop(Announce {
            sent: 2,
            ..Announce::default()
        }),
    });
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        attacker.send_to(&stop, addrs[0]).unwrap();
    }
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(30));
        assert!(status.success());
    }
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        let log = LogView::parse(&bytes).unwrap();
        let distinct: HashSet<(u16, u32)> = log.records().map(|r| (r.sender, r.seq)).collect();
        assert_eq!(
            distinct.len(),
            240,
            "peer {} has every message",
            log.header.peer_id
        );
        if log.header.peer_id == 0 {
            assert_eq!(log.header.malformed, 3, "the forged STOPs were counted");
            assert_eq!(log.header.streams[1].unwrap().stop, Some(80));
        }
    }
}

#[test]
fn a_trickle_of_forged_duplicates_does_not_keep_a_peer_running() {
    let dir = TempDir::new("dup-trickle");
    let (addrs, _) = loopback_peers(3);
    let peers = join(&addrs);
    let run_id = 0x5702;
    let mut procs: Vec<Proc> = (0..3).map(|i| peer(&peers, i, 100, run_id, &dir)).collect();
    for p in &mut procs {
        p.wait_for_line("ready", Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    // Peer 2 dies mid-run: its STOP never comes, so the others end by the quiet period.
    let mut dead = procs.pop().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let killed = Instant::now();
    let dup = emit(Repr {
        run_id,
        sender: 1,
        body: Body::plain_data(0, 1),
    });
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p0 = procs.remove(0);
    let done = std::thread::spawn(move || p0.finish(Duration::from_secs(40)));
    // A duplicate every 200 ms for up to 20 s (it used to keep the peer alive as long).
    while !done.is_finished() && killed.elapsed() < Duration::from_secs(20) {
        let _ = attacker.send_to(&dup, addrs[0]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = killed.elapsed();
    let (status, _) = done.join().unwrap();
    assert!(status.success());
    // Sending takes ~0.75 s after the kill, then the quiet period (1.25 s here).
    assert!(
        took < Duration::from_secs(6),
        "peer 0 ended {took:?} after the kill"
    );
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(30));
        assert!(status.success());
    }
}

/// Out-of-range send times from a forger (1970, and a year ahead) reach a running peer of the
/// original experiment (`--order none`, duplicates kept): the comparator says so — a latency
/// over an hour is left out with a warning, one below zero is counted as negative — instead of
/// folding them into the histogram as a silent one-hour clamp.
#[test]
fn out_of_range_send_times_are_reported_not_clamped() {
    use mpcomm::compare::{analyse, AnalyseOptions, PeerLog};
    let dir = TempDir::new("stamps");
    let (addrs, _) = loopback_peers(2);
    let peers = join(&addrs);
    let run_id = 0x5703;
    let mut procs: Vec<Proc> = (0..2).map(|i| peer(&peers, i, 60, run_id, &dir)).collect();
    for p in &mut procs {
        p.wait_for_line("ready", Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let year = 365 * 24 * 3600 * 1_000_000_000u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for send_ns in [1, now + year] {
        let d = emit(Repr {
            run_id,
            sender: 1,
            body: Body::Data {
                seq: 0,
                send_ns,
                retransmit: false,
                lamport: 0,
                vector: 0,
                pad: 0,
            },
        });
        attacker.send_to(&d, addrs[0]).unwrap();
    }
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(30));
        assert!(status.success());
    }
    let logs: Vec<PeerLog> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| PeerLog::from_file(&e.unwrap().path()).unwrap())
        .collect();
    let r = analyse(&logs, &AnalyseOptions::default());
    assert_eq!(
        (r.lost, r.duplicates),
        (0, 2),
        "both forgeries kept as duplicates"
    );
    assert_eq!(r.latency_us.negative, 1, "the one from the future");
    assert!(
        r.warnings.iter().any(|w| w.contains("over 3600 s")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.latency_us.max.unwrap() < 60e6,
        "no hour-long value in the histogram: max {:?} us",
        r.latency_us.max
    );
}
