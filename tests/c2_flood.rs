//! Connections that never authenticate cannot lock anyone out: silent sockets held by the
//! hundred, or queued faster than one accept round takes, still let a real client through.

mod c2_common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use c2_common::{listening_addr, run_to_end, write_key, Proc, TempDir, EXE};
use mpcomm::c2::auth::{fresh32, Handshake};
use mpcomm::c2::proto::{Msg, Role, HELLO_LEN, MAX_FRAME};
use mpcomm::wire::frame::{read_frame, write_frame, Kind};

fn serve(key: &std::path::Path, dir: &TempDir) -> (Proc, SocketAddr) {
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
    .arg(key)
    .arg("--results")
    .arg(dir.path("results.jsonl"));
    let mut p = Proc::spawn(cmd, "serve");
    let addr = listening_addr(&mut p);
    (p, addr)
}

fn status(ctl: SocketAddr, key: &std::path::Path) -> (bool, String) {
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "status", "--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(key);
    let (st, out, err) = run_to_end(cmd, Duration::from_secs(30));
    (st.success(), format!("{out}{err}"))
}

fn silent(ctl: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect_timeout(&ctl, Duration::from_secs(5)).unwrap())
        .collect()
}

#[test]
fn silent_sockets_from_one_address_do_not_lock_out_a_real_client() {
    let dir = TempDir::new("c2-flood");
    let key = write_key(&dir, "key");
    let (mut serve, ctl) = serve(&key, &dir);

    // More silent connections than may authenticate at once, all held open.
    let held = silent(ctl, 100);
    let t = Instant::now();
    let (ok, text) = status(ctl, &key);
    eprintln!(
        "MEASURED c2 status with {} silent sockets held: {:?}",
        held.len(),
        t.elapsed()
    );
    assert!(ok, "a real client was locked out by silent sockets: {text}");
    assert!(text.contains("0 live agents"), "{text}");
    serve.wait_for("evicted for a newer connection", Duration::from_secs(5));
    // Held sockets were evicted oldest first: the first ones read EOF (or a reset).
    let mut first = held.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match first.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the oldest silent socket is still open: {other:?}"),
    }

    // A socket that never says hello is closed after about 1 s (not 5 s).
    let mut s = TcpStream::connect_timeout(&ctl, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let r = s.read(&mut [0u8; 1]);
    let closed_after = t.elapsed();
    eprintln!("MEASURED a silent socket closed after {closed_after:?}: {r:?}");
    assert!(
        matches!(r, Ok(0))
            || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    );
    assert!(
        closed_after < Duration::from_millis(3000),
        "{closed_after:?}"
    );
    drop(serve);
}

/// More connections queued at once than one accept round takes (256): the listener reports
/// them with a single edge, so the controller must come back for the rest on its own. The
/// controller is stopped (SIGSTOP) while they queue in the kernel, then continued.
#[test]
fn connections_beyond_one_accept_round_are_still_accepted() {
    let dir = TempDir::new("c2-accept");
    let key_path = write_key(&dir, "key");
    let key = mpcomm::c2::key::load(&key_path).unwrap();
    let (mut serve, ctl) = serve(&key_path, &dir);
    let pid = serve.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // Wait (bounded) until the kernel reports it stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") || state == Some("t") {
            break;
        }
        assert!(Instant::now() < deadline, "controller did not stop");
        std::thread::yield_now();
    }
    let held = silent(ctl, 400);
    // The real client last: connected (queued) and its Hello sent while the controller sleeps.
    let mut stream = TcpStream::connect_timeout(&ctl, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut hs = Handshake::client(key, Role::Control, fresh32());
    let mut buf = Vec::new();
    while let Some(k) = hs.poll_transmit(&mut buf) {
        write_frame(&mut stream, k, &buf).unwrap();
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let t = Instant::now();
    let mut session = None;
    for _ in 0..4 {
        let (k, p) = read_frame(&mut stream, HELLO_LEN as u32).unwrap_or_else(|e| {
            panic!(
                "the controller never served the connection queued behind {} others: {e}",
                held.len()
            )
        });
        hs.handle_frame(k, &p).unwrap();
        while let Some(k) = hs.poll_transmit(&mut buf) {
            write_frame(&mut stream, k, &buf).unwrap();
        }
        if let Some(s) = hs.take_session() {
            session = Some(s);
            break;
        }
    }
    let mut session = session.expect("handshake finished");
    let mut body = Vec::new();
    Msg::StatusRequest.emit(&mut body);
    let mut out = Vec::new();
    session.seal(&body, &mut out);
    write_frame(&mut stream, Kind::C2Message, &out).unwrap();
    loop {
        let (k, p) = read_frame(&mut stream, MAX_FRAME).unwrap();
        assert_eq!(k, Kind::C2Message);
        match Msg::parse(session.open(&p).unwrap()).unwrap() {
            Msg::Heartbeat => continue,
            Msg::Status { agents } => {
                assert!(agents.is_empty());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!(
        "MEASURED client queued behind {} connections served {:?} after SIGCONT",
        held.len(),
        t.elapsed()
    );
    drop(held);
    serve.drain();
}

/// A controller that closes the connection before its hello (a full table of connections
/// still authenticating) gets an error that says so, not "wrong key".
#[test]
fn a_connection_closed_before_the_hello_is_explained() {
    let dir = TempDir::new("c2-closed");
    let key = write_key(&dir, "key");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ctl = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let (ok, text) = status(ctl, &key);
    assert!(!ok);
    assert!(
        text.contains("closed the connection before answering our hello")
            && text.contains("too many connections are authenticating"),
        "{text}"
    );
    assert!(!text.contains("wrong key"), "{text}");
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "agent", "--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(&key)
        .arg("--log-dir")
        .arg(dir.path("logs"));
    let mut agent = Proc::spawn(cmd, "agent");
    agent.wait_for(
        "controller closed the connection before its hello",
        Duration::from_secs(10),
    );
}
