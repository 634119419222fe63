//! Issue 11, point 5: a flood of idle connections does not lock users out of the comparator.
//! A real `mpcomm compare` process, 2000 silent TCP connections from 10 loopback addresses
//! (twice its 1024-connection cap), then a real `mpcomm upload`: it gets through well within
//! its documented retry bound, and the flood costs the comparator's stderr a few lines (the
//! rest counted in one line when the limiter's window ends).

mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use mpcomm::wire::frame::Kind;
use socket2::{Domain, Socket, Type};
use support::{mpcomm, Proc, TempDir};

const FLOOD: usize = 2000;
const SOURCES: u8 = 10;
/// The upload's documented bound: its waits add up to 15.75 s (8 attempts), plus slack for
/// the attempts themselves on a loaded machine.
const UPLOAD_BOUND: Duration = Duration::from_secs(20);
/// "A few dozen" lines of stderr for the whole flood.
const MAX_FLOOD_LINES: usize = 30;

/// Room for the flood in this process and the comparator (which inherits the limit).
fn raise_descriptor_limit(want: u64) -> bool {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur >= want {
        return true;
    }
    if lim.rlim_max < want {
        return false;
    }
    lim.rlim_cur = want;
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

/// One silent connection to `to` from `127.0.0.<source>`.
fn silent_from(source: u8, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, source), 0);
    s.bind(&from.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .expect("connect during the flood");
    s.into()
}

/// [`FLOOD`] silent connections, one thread per source (a lost SYN costs its thread a 1 s
/// retransmission, not the whole flood); the oldest one first.
fn flood(to: SocketAddr) -> Vec<TcpStream> {
    let per_source = FLOOD / usize::from(SOURCES);
    let first = silent_from(2, to);
    let mut held = vec![first];
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..SOURCES)
            .map(|k| {
                let n = per_source - usize::from(k == 0);
                s.spawn(move || (0..n).map(|_| silent_from(2 + k, to)).collect::<Vec<_>>())
            })
            .collect();
        for t in threads {
            held.extend(t.join().expect("flood thread"));
        }
    });
    held
}

/// `mpcomm compare` with a short read timeout, so the flood's leftovers expire within the test.
fn comparator() -> (Proc, SocketAddr) {
    let mut c = mpcomm();
    c.args(["compare", "--listen", "127.0.0.1:0", "--read-timeout", "1s"]);
    let mut p = Proc::spawn(c);
    let line = p.wait_for_line("listening on", Duration::from_secs(20));
    let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
    (p, addr)
}

#[test]
fn two_thousand_idle_connections_do_not_lock_out_an_upload() {
    // This process holds the flood; the comparator (same limit) holds at most its cap of 1024.
    if !raise_descriptor_limit(FLOOD as u64 + 256) {
        eprintln!("SKIPPED: the descriptor limit is too low for {FLOOD} connections");
        return;
    }
    let dir = TempDir::new("flood");
    let log = dir.path().join("peer0.log");
    std::fs::write(&log, support::synthetic_log(0x11, 0, 2, 1, &[(0, 0, 1000)])).unwrap();
    let (mut srv, addr) = comparator();

    let t = Instant::now();
    let held = flood(addr);
    eprintln!("MEASURED {FLOOD} connections opened in {:?}", t.elapsed());

    let t = Instant::now();
    let mut up = mpcomm();
    up.arg("upload")
        .arg(&log)
        .args(["--comparator", &addr.to_string()]);
    let (status, _) = Proc::spawn(up).finish(UPLOAD_BOUND + Duration::from_secs(5));
    let took = t.elapsed();
    eprintln!("MEASURED upload during a flood of {FLOOD}: {took:?}");
    assert!(status.success(), "the upload was locked out: {status}");
    assert!(took < UPLOAD_BOUND, "{took:?}");

    // The oldest silent connection made room and was told so with a retryable reply.
    // The others stay open (a client that closes without a byte is not a refusal).
    let mut held = held.into_iter();
    let mut first = held.next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (kind, why) = support::comparator_reply(&mut first);
    assert_eq!(kind, Kind::Busy, "{why}");
    assert!(why.contains("evicted"), "{why}");

    let lines: Vec<String> = srv.lines.try_iter().collect();
    eprintln!(
        "MEASURED comparator stderr during the flood: {} lines",
        lines.len()
    );
    assert!(
        lines.len() <= MAX_FLOOD_LINES,
        "{} lines: {lines:#?}",
        lines.len()
    );
    assert!(lines.iter().any(|l| l.contains("accepted")), "{lines:#?}");

    // The 1024 silent connections left time out a second later; their lines are not written
    // but counted, and the count is told when the 10 s window ends, with no further refusal.
    let count = srv.wait_for_line("more refusals not logged", Duration::from_secs(20));
    let n: usize = count
        .split(['(', ' '])
        .find_map(|w| w.parse().ok())
        .expect("a count");
    eprintln!("MEASURED suppressed refusal lines: {n}");
    assert!(n >= FLOOD / 2, "{count}");
}
