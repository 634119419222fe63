//! The controller keeps serving through descriptor exhaustion. Its descriptor limit is lowered
//! (prlimit on the child) to just above what it holds, silent connections fill it, and
//! `accept` fails with EMFILE. The connections then queued raise no new readiness event
//! (edge-triggered), so once descriptors are free again the controller must come back to its
//! listener by itself: a real control client queued behind the failure gets its answer.

mod c2_common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use c2_common::{listening_addr, run_to_end, write_key, Proc, TempDir, EXE};
use mpcomm::c2::auth::{fresh32, Handshake};
use mpcomm::c2::proto::{Msg, Role, HELLO_LEN, MAX_FRAME};
use mpcomm::wire::frame::{read_frame, write_frame, Kind};

/// Connections the lowered limit leaves room for (fewer than the controller's 16 pending
/// connections per source, so none is evicted to make room: accept itself must fail).
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
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on our own child with valid pointers.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(r, 0, "prlimit read");
    let new = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit write");
}

fn status(ctl: SocketAddr, key: &std::path::Path) -> (bool, String, Duration) {
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "status", "--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(key);
    let t = Instant::now();
    let (st, out, err) = run_to_end(cmd, Duration::from_secs(30));
    (st.success(), format!("{out}{err}"), t.elapsed())
}

fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") || state == Some("t") {
            return;
        }
        assert!(Instant::now() < deadline, "controller did not stop");
        std::thread::yield_now();
    }
}

/// Finish a control client's handshake (its Hello already sent) and ask for the status.
fn handshake_and_status(stream: &mut TcpStream, mut hs: Handshake) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut session = None;
    for _ in 0..4 {
        let (k, p) = read_frame(stream, HELLO_LEN as u32).map_err(|e| e.to_string())?;
        hs.handle_frame(k, &p).map_err(|e| e.to_string())?;
        while let Some(k) = hs.poll_transmit(&mut buf) {
            write_frame(stream, k, &buf).map_err(|e| e.to_string())?;
        }
        if let Some(s) = hs.take_session() {
            session = Some(s);
            break;
        }
    }
    let mut session = session.ok_or("the handshake did not finish")?;
    let mut body = Vec::new();
    Msg::StatusRequest.emit(&mut body);
    let mut out = Vec::new();
    session.seal(&body, &mut out);
    write_frame(stream, Kind::C2Message, &out).map_err(|e| e.to_string())?;
    for _ in 0..16 {
        let (_, p) = read_frame(stream, MAX_FRAME).map_err(|e| e.to_string())?;
        let body = session.open(&p).map_err(|e| e.to_string())?;
        match Msg::parse(body).map_err(|e| e.to_string())? {
            Msg::Heartbeat => continue,
            Msg::Status { .. } => return Ok(()),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    Err("no status among 16 messages".into())
}

#[test]
fn a_client_queued_when_accept_failed_is_served_once_descriptors_are_back() {
    let dir = TempDir::new("c2-emfile");
    let key_path = write_key(&dir, "key");
    let key = mpcomm::c2::key::load(&key_path).unwrap();
    let mut cmd = Command::new(EXE);
    cmd.args([
        "c2",
        "serve",
        "--no-prompt",
        "--listen",
        "127.0.0.1:0",
        "--compare-listen",
        "127.0.0.1:0",
    ])
    .arg("--key-file")
    .arg(&key_path)
    .arg("--results")
    .arg(dir.path("results.jsonl"));
    let mut serve = Proc::spawn(cmd, "serve");
    let ctl = listening_addr(&mut serve);
    let pid = serve.child.id();
    set_soft_limit(pid, open_fds(pid) + ROOM);

    // While the controller sleeps, silent connections beyond its room queue in the kernel,
    // and behind them a real client with its Hello sent: all of them raise one edge.
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) }, 0);
    wait_stopped(pid);
    let held: Vec<TcpStream> = (0..HELD)
        .map(|_| TcpStream::connect_timeout(&ctl, Duration::from_secs(5)).unwrap())
        .collect();
    let mut client = TcpStream::connect_timeout(&ctl, Duration::from_secs(5)).unwrap();
    client.set_read_timeout(Some(ANSWER_BOUND)).unwrap();
    let mut hs = Handshake::client(key, Role::Control, fresh32());
    let mut buf = Vec::new();
    while let Some(k) = hs.poll_transmit(&mut buf) {
        write_frame(&mut client, k, &buf).unwrap();
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) }, 0);
    // One accept round: the room, then EMFILE with the client still queued.
    serve.wait_for("Too many open files", Duration::from_secs(10));

    // Descriptors come back as the silent sockets close; no new connection arrives to wake
    // the listener.
    let t = Instant::now();
    drop(held);
    let served = handshake_and_status(&mut client, hs);
    eprintln!(
        "MEASURED a client queued behind EMFILE served {:?} after descriptors came back",
        t.elapsed()
    );
    assert!(
        served.is_ok(),
        "the controller stopped accepting after EMFILE: {served:?}"
    );
    // One line for the whole exhaustion, not one per retry.
    let failures = serve
        .drain()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(failures >= 1, "{:?}", serve.seen);
    assert!(failures <= 3, "{failures} accept lines: {:?}", serve.seen);

    // Still serving, at the same low limit, a real `c2 status`.
    let (ok, text, took) = status(ctl, &key_path);
    assert!(ok, "{text}");
    assert!(text.contains("live agents"), "{text}");
    eprintln!("MEASURED c2 status afterwards: {took:?}");
}
