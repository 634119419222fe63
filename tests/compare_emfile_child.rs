//! The comparator process keeps serving through descriptor exhaustion: a real `mpcomm compare`
//! whose descriptor limit is lowered (prlimit on the child) to just above what it holds.
//! While it is stopped (SIGSTOP), silent connections beyond that room queue in the kernel and
//! behind them a real upload; continued, one accept round takes the room and fails with
//! EMFILE. The silent sockets then close, no new connection arrives to raise an edge, and the
//! upload must still be answered. (`compare_emfile.rs` is the in-process version.)

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mpcomm::wire::frame::{write_frame, Kind};
use support::{mpcomm, synthetic_log, Proc};

const ROOM: usize = 4;
const HELD: usize = ROOM + 4;
/// An answer once descriptors are back (a retry comes within milliseconds; without one, never).
const ANSWER_BOUND: Duration = Duration::from_secs(8);

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn set_soft_limit(pid: u32, soft: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let pid = pid as libc::pid_t;
    // SAFETY: prlimit on our own child with valid pointers.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) };
    assert_eq!(r, 0, "prlimit read");
    lim.rlim_cur = soft as libc::rlim_t;
    // SAFETY: as above.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit write");
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") || state == Some("t") {
            return;
        }
        assert!(Instant::now() < deadline, "comparator did not stop");
        std::thread::yield_now();
    }
}

#[test]
fn an_upload_queued_when_accept_failed_is_answered_once_descriptors_are_back() {
    let mut c = mpcomm();
    c.args(["compare", "--listen", "127.0.0.1:0"]);
    let mut srv = Proc::spawn(c);
    let line = srv.wait_for_line("listening on", Duration::from_secs(20));
    let addr: SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
    let pid = srv.child.id();
    set_soft_limit(pid, open_fds(pid) + ROOM);

    signal(pid, libc::SIGSTOP);
    wait_stopped(pid);
    let held: Vec<TcpStream> = (0..HELD)
        .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
        .collect();
    let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    client.set_read_timeout(Some(ANSWER_BOUND)).unwrap();
    // Two peers: the run stays incomplete, so the answer is the plain "stored".
    let log = synthetic_log(0xe, 0, 2, 1, &[(0, 0, 1000)]);
    write_frame(&mut client, Kind::Upload, &log).unwrap();
    client.flush().unwrap();
    signal(pid, libc::SIGCONT);
    srv.wait_for_line("Too many open files", Duration::from_secs(10));

    let t = Instant::now();
    drop(held);
    let (kind, msg) = support::comparator_reply(&mut client);
    eprintln!(
        "MEASURED an upload queued behind EMFILE answered {:?} after descriptors came back",
        t.elapsed()
    );
    assert_eq!(kind, Kind::Accepted, "{msg}");
    assert!(msg.contains("1 of 2"), "{msg}");
    let failures = srv
        .lines
        .try_iter()
        .chain(srv.seen.iter().cloned())
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!((1..=3).contains(&failures), "{failures} accept lines");
}
