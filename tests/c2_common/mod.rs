//! Shared harness of the C2 integration tests: child processes whose stderr lines arrive on a
//! channel (killed and reaped on drop), temp dirs removed on drop, and the whole issue-5
//! scenario written once against "a command on host i", so it runs on loopback and in network
//! namespaces alike.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use mpcomm::c2::auth::{fresh32, Handshake, Session};
use mpcomm::c2::proto::{Msg, Role, HELLO_LEN, MAX_FRAME};
use mpcomm::compare::Report;
use mpcomm::wire::frame::{read_frame, write_frame, Kind};

pub const EXE: &str = env!("CARGO_BIN_EXE_mpcomm");

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "mpcomm-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child whose stderr lines are echoed (prefixed) and kept on a channel.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    pub what: String,
    eof: bool,
}

impl Proc {
    pub fn spawn(mut cmd: Command, what: &str) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let tag = what.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            what: what.into(),
            eof: false,
        }
    }

    /// Wait for a stderr line containing `needle`; panic at the deadline or at EOF.
    pub fn wait_for(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line with {needle:?} within {within:?}", self.what)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before a line with {needle:?}", self.what)
                }
            }
        }
    }

    /// Take every line that has arrived so far (non-blocking).
    pub fn drain(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// Wait until the process closes stderr (exits), then reap it.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} still running after {within:?}", self.what)
                }
            }
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a command to completion within `within` (killed otherwise); (status, stdout, stderr).
pub fn run_to_end(mut cmd: Command, within: Duration) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let err = match rx.recv_timeout(within) {
        Ok(s) => s,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {within:?}");
        }
    };
    let status = child.wait().unwrap();
    let out = t_out.join().unwrap();
    eprint!("{err}");
    (status, out, err)
}

pub fn write_key(dir: &TempDir, name: &str) -> PathBuf {
    let out = Command::new(EXE).args(["c2", "keygen"]).output().unwrap();
    assert!(out.status.success());
    let p = dir.path(name);
    std::fs::write(&p, &out.stdout).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Where the scenario runs: host 0 holds the controller and the control CLI, hosts 1..=4 agents.
pub trait Hosts {
    fn command(&self, host: usize) -> Command;
    /// The controller's listen address (port 0 = any).
    fn controller_listen(&self) -> SocketAddr;
    /// Extra controller flags (e.g. a private peer port and group on a shared loopback).
    fn controller_extra(&self) -> Vec<String>;
    /// Extra agent flags for host i (e.g. --advertise on loopback).
    fn agent_extra(&self, host: usize) -> Vec<String>;
    /// Run `f` with a TCP connection to the controller made from host 0 (for raw-frame tests).
    fn raw_probe(&self) -> bool;
}

fn c2(h: &dyn Hosts, host: usize, args: &[&str]) -> Command {
    let mut c = h.command(host);
    c.arg("c2").args(args);
    c
}

pub fn start_controller(
    h: &dyn Hosts,
    key: &Path,
    listen: SocketAddr,
    results: &Path,
) -> (Proc, SocketAddr) {
    start_controller_env(h, key, listen, results, &[])
}

pub fn start_controller_env(
    h: &dyn Hosts,
    key: &Path,
    listen: SocketAddr,
    results: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> (Proc, SocketAddr) {
    let mut cmd = c2(
        h,
        0,
        &["serve", "--no-prompt", "--listen", &listen.to_string()],
    );
    cmd.arg("--key-file").arg(key).arg("--results").arg(results);
    cmd.args([
        "--compare-listen",
        &SocketAddr::new(listen.ip(), 0).to_string(),
    ]);
    cmd.args(h.controller_extra());
    cmd.envs(env.iter().copied());
    let mut p = Proc::spawn(cmd, "serve");
    let addr = listening_addr(&mut p);
    (p, addr)
}

/// A raw control connection that authenticates with the library's handshake and then lets the
/// test send arbitrary frame payloads.
pub struct RawControl {
    pub stream: TcpStream,
    pub session: mpcomm::c2::auth::Session,
}

/// Connect to a controller and authenticate as `role` with the library's client handshake.
pub fn client_session(addr: SocketAddr, key: &Path, role: Role) -> (TcpStream, Session) {
    let key = mpcomm::c2::key::load(key).unwrap();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hs = Handshake::client(key, role, fresh32());
    let mut buf = Vec::new();
    for _ in 0..4 {
        while let Some(k) = hs.poll_transmit(&mut buf) {
            write_frame(&mut stream, k, &buf).unwrap();
        }
        if let Some(session) = hs.take_session() {
            return (stream, session);
        }
        let (k, p) = read_frame(&mut stream, HELLO_LEN as u32).unwrap();
        hs.handle_frame(k, &p).unwrap();
    }
    panic!("handshake did not finish");
}

/// The controller's address from its "listening on ADDR, …" line.
pub fn listening_addr(p: &mut Proc) -> SocketAddr {
    let line = p.wait_for("listening on ", Duration::from_secs(10));
    line.split("listening on ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

impl RawControl {
    pub fn connect(addr: SocketAddr, key: &Path) -> RawControl {
        let (stream, session) = client_session(addr, key, Role::Control);
        RawControl { stream, session }
    }

    /// The sealed frame payload of `m` (what an eavesdropper would record).
    pub fn seal(&mut self, m: &Msg) -> Vec<u8> {
        let mut body = Vec::new();
        m.emit(&mut body);
        let mut out = Vec::new();
        self.session.seal(&body, &mut out);
        out
    }

    pub fn send_payload(&mut self, payload: &[u8]) {
        write_frame(&mut self.stream, Kind::C2Message, payload).unwrap();
    }

    /// Next non-heartbeat message, or None when the controller closed the connection.
    pub fn recv(&mut self) -> Option<Msg> {
        loop {
            let (k, p) = read_frame(&mut self.stream, MAX_FRAME).ok()?;
            assert_eq!(k, Kind::C2Message);
            let m = Msg::parse(self.session.open(&p).unwrap()).unwrap();
            if m != Msg::Heartbeat {
                return Some(m);
            }
        }
    }
}

/// The issue-5 bars, end to end. Returns the measured re-registration time.
pub fn scenario(h: &dyn Hosts) -> Duration {
    let dir = TempDir::new("c2");
    let key = write_key(&dir, "key");
    let bad_key = write_key(&dir, "bad-key");
    let results = dir.path("results.jsonl");
    let (mut serve, ctl) = start_controller(h, &key, h.controller_listen(), &results);
    let ctl_s = ctl.to_string();

    let mut agents: Vec<Proc> = (1..=4)
        .map(|i| {
            let logs = dir.path(&format!("logs-{i}"));
            let mut cmd = c2(h, i, &["agent", "--controller", &ctl_s]);
            cmd.arg("--key-file")
                .arg(&key)
                .arg("--log-dir")
                .arg(&logs)
                .args(h.agent_extra(i));
            Proc::spawn(cmd, &format!("agent{i}"))
        })
        .collect();
    for a in &mut agents {
        a.wait_for("registered with controller", Duration::from_secs(10));
    }

    // The series: 2 × (fanout, multicast), 4 complete reports.
    let mut run = c2(
        h,
        0,
        &[
            "run",
            "--controller",
            &ctl_s,
            "--peers",
            "4",
            "--msgs",
            "50",
            "--transport",
            "both",
            "--repeat",
            "2",
            "--json",
        ],
    );
    run.arg("--key-file").arg(&key);
    let t = Instant::now();
    let (status, out, _) = run_to_end(run, Duration::from_secs(240));
    eprintln!("c2 run --repeat 2 --transport both took {:?}", t.elapsed());
    assert!(status.success(), "c2 run failed");
    let reports: Vec<Report> = out
        .lines()
        .map(|l| Report::from_json_line(l).expect("a report per line"))
        .collect();
    assert_eq!(reports.len(), 4, "{out}");
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.peers, 4);
        assert_eq!(r.msgs_per_peer, 50);
        assert_eq!(r.transport.as_deref(), Some(["fanout", "multicast"][i % 2]));
        assert!(
            r.missing_peers.is_empty(),
            "run {} missing {:?}",
            r.run_id,
            r.missing_peers
        );
        assert_eq!(r.rounds, 200);
        assert_eq!(r.deliveries + r.lost, 800, "run {}", r.run_id);
    }
    let stored = std::fs::read_to_string(&results).unwrap();
    assert_eq!(
        stored.lines().count(),
        4,
        "controller --results holds every report"
    );

    // An emulated WAN through C2: agents without zones get the profile's zones round-robin.
    let mut wan = c2(
        h,
        0,
        &[
            "run",
            "--controller",
            &ctl_s,
            "--peers",
            "4",
            "--msgs",
            "20",
            "--interval",
            "0..10",
            "--wan",
            "gcp8",
            "--time-scale",
            "0.5",
            "--wan-loss",
            "0.001",
            "--seed",
            "7",
            "--order",
            "causal",
            "--json",
        ],
    );
    wan.arg("--key-file").arg(&key);
    let (status, out, _) = run_to_end(wan, Duration::from_secs(120));
    assert!(status.success(), "c2 run --wan gcp8 failed");
    let r = Report::from_json_line(out.trim()).expect("one report");
    assert_eq!(r.wan.as_deref(), Some("gcp8"));
    assert_eq!(r.time_scale, 0.5, "--time-scale reached every peer");
    assert!(r.authenticated, "the controller gave the run a key");
    assert_eq!(r.forged, 0);
    assert!(r.missing_peers.is_empty());
    // The order reached every agent's peer, with the mode's default repair: the logs the
    // comparator read say so (the report takes them from the log headers, and refuses logs
    // that disagree). The agents removed their copies once uploaded.
    assert_eq!((r.order.as_str(), r.repair.as_str()), ("causal", "nack"));
    let tag = format!("{:016x}", r.run_id);
    let kept: Vec<_> = (1..=4)
        .flat_map(|i| std::fs::read_dir(dir.path(&format!("logs-{i}"))).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(&tag))
        .filter(|p| p.extension().is_some_and(|x| x == "mplog"))
        .collect();
    assert_eq!(kept, Vec::<PathBuf>::new(), "uploaded logs are not kept");
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        5
    );

    // Out of bounds: refused with a clear error, nothing started.
    let starts_before = serve
        .drain()
        .iter()
        .filter(|l| l.contains(" peers x "))
        .count();
    let refused: [(&[&str], &str); 3] = [
        (&["--peers", "5", "--msgs", "50"], "only 4 agents are live"),
        (
            &["--peers", "4", "--msgs", "100001"],
            "msgs must be 1..=100000",
        ),
        (
            &["--peers", "4", "--msgs", "5", "--wan", "nosuch"],
            "--wan nosuch",
        ),
    ];
    for (args, want) in refused {
        let mut cmd = c2(h, 0, &[&["run", "--controller", &ctl_s][..], args].concat());
        cmd.arg("--key-file").arg(&key);
        let (status, _, err) = run_to_end(cmd, Duration::from_secs(30));
        assert!(!status.success() && err.contains(want), "{args:?}: {err}");
    }
    serve.wait_for("request refused", Duration::from_secs(5));
    let starts_after = serve
        .drain()
        .iter()
        .filter(|l| l.contains(" peers x "))
        .count();
    assert_eq!(
        starts_before, starts_after,
        "a refused request started a run"
    );

    // Wrong keys: a control client and an agent are refused, and the refusals are logged.
    let mut st = c2(h, 0, &["status", "--controller", &ctl_s]);
    st.arg("--key-file").arg(&bad_key);
    let (status, _, err) = run_to_end(st, Duration::from_secs(30));
    assert!(!status.success() && err.contains("wrong key"), "{err}");
    serve.wait_for("refused connection from", Duration::from_secs(5));
    let mut bad_agent = {
        let mut cmd = c2(h, 1, &["agent", "--controller", &ctl_s]);
        cmd.arg("--key-file")
            .arg(&bad_key)
            .arg("--log-dir")
            .arg(dir.path("bad"));
        Proc::spawn(cmd, "bad-agent")
    };
    bad_agent.wait_for("during authentication", Duration::from_secs(10));
    serve.wait_for("wrong key", Duration::from_secs(5));
    drop(bad_agent);

    // Replay and bit flip on real connections (frames made by the library, sent raw).
    if h.raw_probe() {
        let mut a = RawControl::connect(ctl, &key);
        let recorded = a.seal(&Msg::StatusRequest);
        a.send_payload(&recorded);
        assert!(matches!(a.recv(), Some(Msg::Status { agents }) if agents.len() == 4));
        let mut b = RawControl::connect(ctl, &key);
        b.send_payload(&recorded);
        assert_eq!(
            b.recv(),
            None,
            "a frame recorded on another connection was accepted"
        );
        serve.wait_for("frame MAC does not verify", Duration::from_secs(5));
        let mut c = RawControl::connect(ctl, &key);
        let mut flipped = c.seal(&Msg::StatusRequest);
        flipped[9] ^= 0x04;
        c.send_payload(&flipped);
        assert_eq!(c.recv(), None, "a frame with a flipped bit was accepted");
        serve.wait_for("frame MAC does not verify", Duration::from_secs(5));
        // Same connection, same frame twice: the counter refuses the second.
        let mut d = RawControl::connect(ctl, &key);
        let once = d.seal(&Msg::StatusRequest);
        d.send_payload(&once);
        assert!(matches!(d.recv(), Some(Msg::Status { .. })));
        d.send_payload(&once);
        assert_eq!(d.recv(), None);
        serve.wait_for("replayed frame", Duration::from_secs(5));
    }

    // Controller killed while idle and restarted on the same address: all 4 back within 5 s.
    serve.child.kill().unwrap();
    serve.wait_exit(Duration::from_secs(5));
    let (mut serve, _) = start_controller(h, &key, ctl, &results);
    let restarted = Instant::now();
    for _ in 0..4 {
        serve.wait_for("registered as", Duration::from_secs(5));
    }
    let back = restarted.elapsed();
    eprintln!("all 4 agents registered again {back:?} after the controller restart");
    assert!(back < Duration::from_secs(5));

    // `c2 exit` stops every agent (exit code 0) and the controller.
    let mut ex = c2(h, 0, &["exit", "--controller", &ctl_s]);
    ex.arg("--key-file").arg(&key);
    let (status, out, _) = run_to_end(ex, Duration::from_secs(30));
    assert!(status.success());
    assert!(out.contains("4 agents stopped"), "{out}");
    for a in &mut agents {
        let st = a.wait_exit(Duration::from_secs(10));
        assert!(st.success(), "{}: {st}", a.what);
    }
    assert!(serve.wait_exit(Duration::from_secs(10)).success());
    let _ = writeln!(std::io::stderr(), "scenario done");
    back
}

/// An authenticated C2 link played by a test (a scripted controller or agent): the library's
/// session over a plain blocking socket.
pub struct Sealed {
    pub stream: TcpStream,
    pub session: Session,
}

impl Sealed {
    /// Play the controller for the agent connecting to `listener`: accept, run the server side
    /// of the handshake, return the sealed link.
    pub fn accept_agent(listener: &std::net::TcpListener, key: [u8; 32]) -> Sealed {
        let (mut stream, _) = listener.accept().unwrap();
        // `write_frame` writes header and payload separately: without this, Nagle holds the
        // payload for the agent's delayed ACK (~40 ms).
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut hs = Handshake::server(key, fresh32());
        let mut buf = Vec::new();
        for _ in 0..4 {
            let (k, p) = read_frame(&mut stream, HELLO_LEN as u32).unwrap();
            hs.handle_frame(k, &p).unwrap();
            while let Some(k) = hs.poll_transmit(&mut buf) {
                write_frame(&mut stream, k, &buf).unwrap();
            }
            if let Some(session) = hs.take_session() {
                return Sealed { stream, session };
            }
        }
        panic!("agent handshake did not finish");
    }

    pub fn send(&mut self, m: &Msg) {
        let mut body = Vec::new();
        m.emit(&mut body);
        let mut out = Vec::new();
        self.session.seal(&body, &mut out);
        write_frame(&mut self.stream, Kind::C2Message, &out).unwrap();
    }

    /// Next message other than a heartbeat (answered, so the other side keeps the link).
    pub fn recv(&mut self) -> Msg {
        loop {
            let (k, p) = read_frame(&mut self.stream, MAX_FRAME).expect("a C2 message");
            assert_eq!(k, Kind::C2Message);
            let m = Msg::parse(self.session.open(&p).unwrap()).unwrap();
            if m == Msg::Heartbeat {
                self.send(&Msg::Heartbeat);
                continue;
            }
            return m;
        }
    }
}

/// A UDP port free on loopback now, and an administratively scoped group on it, for one test's
/// peers (random, so parallel tests do not share a group).
pub fn private_port_and_group() -> (u16, String) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let group = format!(
        "239.255.{}.{}:{port}",
        rand::random::<u8>(),
        1 + rand::random::<u8>() % 250
    );
    (port, group)
}
