//! The comparator service: one mio loop receiving log uploads for any number of runs.
//!
//! Per connection: one `Upload` frame in (header checked against the cap from its 12 bytes
//! alone, payload buffered only as it arrives), one `Accepted`/`Rejected` frame out, close.
//! Every way a client can misbehave ends its own connection with a logged reason; nothing a
//! client sends makes [`Server::run`] return or panic.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::analyse::{analyse, AnalyseOptions};
use super::peerlog::PeerLog;
use super::report::Report;
use super::{append_result, hist, open_results, DEFAULT_MAX_UPLOAD};
use crate::wire::frame::{FrameHeader, Kind, HEADER_LEN};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Connections beyond this are closed at once (each costs a buffer and a descriptor).
pub const MAX_CONNECTIONS: usize = 1024;
/// An upload must average at least this rate once its length is known, on top of `read_timeout`.
pub const MIN_UPLOAD_RATE: u64 = 64 << 10;
/// After the reply, unread input is drained this long before closing, so the close does not
/// turn into a reset that destroys the reply.
const LINGER: Duration = Duration::from_secs(2);
/// Reported run ids remembered (to refuse late uploads); the oldest are forgotten first.
const REPORTED_MEMORY: usize = 1 << 16;
const READ_CHUNK: usize = 64 << 10;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A run is reported this long after its first upload even with logs missing.
    pub run_timeout: Duration,
    /// A connection that makes no progress for this long is dropped.
    pub read_timeout: Duration,
    /// Largest upload payload accepted.
    pub max_upload_bytes: u32,
    /// Append every report as a JSON line here (fsynced before the acknowledgement).
    pub results: Option<PathBuf>,
    /// Write every run's histograms here.
    pub hist_dir: Option<PathBuf>,
    pub analyse: AnalyseOptions,
    /// Do not log accepted uploads (refusals and failures are always logged).
    pub quiet: bool,
}

impl ServerConfig {
    /// Defaults of `mpcomm compare`, listening on `listen`, no files.
    pub fn local(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            run_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(10),
            max_upload_bytes: DEFAULT_MAX_UPLOAD,
            results: None,
            hist_dir: None,
            analyse: AnalyseOptions::default(),
            quiet: false,
        }
    }
}

/// Ends [`Server::run`] from any thread.
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A failed wake only delays the stop to the next event or deadline.
        let _ = self.waker.wake();
    }
}

enum State {
    Header { buf: [u8; HEADER_LEN], got: usize },
    Payload { len: usize, buf: Vec<u8> },
    Reply { bytes: Vec<u8>, sent: usize },
    Linger,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// Deadline of the current step (idle timeout, capped by `hard`).
    deadline: Instant,
    /// The whole upload must be in by then.
    hard: Instant,
}

struct Run {
    logs: Vec<PeerLog>,
    have: Vec<bool>,
    peers: u16,
    msgs: u32,
    deadline: Instant,
}

pub struct Server {
    cfg: ServerConfig,
    poll: Poll,
    listener: TcpListener,
    addr: SocketAddr,
    stop: Stopper,
    results: Option<File>,
}

impl Server {
    /// Bind the listening socket and open the results file; nothing is served until `run`.
    pub fn bind(cfg: ServerConfig) -> anyhow::Result<Server> {
        let listener = std::net::TcpListener::bind(cfg.listen).with_context(|| {
            format!(
                "cannot listen on {} (port in use? choose another with --listen)",
                cfg.listen
            )
        })?;
        Server::with_listener(cfg, listener)
    }

    /// Serve on a listener made elsewhere (e.g. inside a network namespace by `netns`);
    /// `cfg.listen` is ignored.
    pub fn with_listener(
        cfg: ServerConfig,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Server> {
        let poll = Poll::new().context("cannot create the event loop")?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let results = cfg.results.as_deref().map(open_results).transpose()?;
        if let Some(dir) = &cfg.hist_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create histogram directory {}", dir.display()))?;
        }
        let stop = Stopper {
            flag: Arc::new(AtomicBool::new(false)),
            waker,
        };
        Ok(Server {
            cfg,
            poll,
            listener,
            addr,
            stop,
            results,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Serve until stopped; every completed run goes to `on_report` (and the results file and
    /// histogram directory when configured). Runs still incomplete at the stop are dropped
    /// with a note on stderr.
    pub fn run(self, mut on_report: impl FnMut(&Report)) -> anyhow::Result<()> {
        let Server {
            cfg,
            mut poll,
            listener,
            stop,
            results,
            ..
        } = self;
        let mut svc = Service {
            cfg,
            listener,
            results,
            conns: HashMap::new(),
            runs: HashMap::new(),
            reported: HashSet::new(),
            reported_order: VecDeque::new(),
            next_token: FIRST_CONN,
            scratch: vec![0u8; READ_CHUNK],
        };
        let mut events = Events::with_capacity(256);
        while !stop.flag.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = svc
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("event loop failed");
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => svc.accept(poll.registry()),
                    WAKER => {}
                    t => svc.drive(poll.registry(), t, &mut on_report),
                }
            }
            svc.expire(poll.registry(), Instant::now(), &mut on_report);
        }
        for (id, run) in &svc.runs {
            let have = run.have.iter().filter(|&&h| h).count();
            eprintln!(
                "compare: stopping with run {id:#x} incomplete ({have} of {} logs); not reported",
                run.peers
            );
        }
        Ok(())
    }
}

struct Service {
    cfg: ServerConfig,
    listener: TcpListener,
    results: Option<File>,
    conns: HashMap<Token, Conn>,
    runs: HashMap<u64, Run>,
    reported: HashSet<u64>,
    reported_order: VecDeque<u64>,
    next_token: usize,
    scratch: Vec<u8>,
}

/// What a connection step decided.
enum Step {
    /// Keep waiting for readiness.
    Wait,
    /// Send this reply frame, then close.
    Reply(Kind, String),
    /// Close now (nothing useful can be sent).
    Close(String),
}

impl Service {
    fn next_deadline(&self) -> Option<Instant> {
        let c = self.conns.values().map(|c| c.deadline);
        let r = self.runs.values().map(|r| r.deadline);
        c.chain(r).min()
    }

    fn accept(&mut self, registry: &mio::Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        eprintln!(
                            "compare: {peer}: refused: already {MAX_CONNECTIONS} connections"
                        );
                        continue;
                    }
                    let token = self.fresh_token();
                    if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                        eprintln!("compare: {peer}: cannot register connection: {e}");
                        continue;
                    }
                    let now = Instant::now();
                    let deadline = now + self.cfg.read_timeout;
                    let state = State::Header {
                        buf: [0; HEADER_LEN],
                        got: 0,
                    };
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            peer,
                            state,
                            deadline,
                            hard: deadline,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of descriptors: the pending connection waits for the next event.
                    eprintln!("compare: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn fresh_token(&mut self) -> Token {
        loop {
            let t = Token(self.next_token);
            self.next_token = self.next_token.checked_add(1).unwrap_or(FIRST_CONN);
            if !self.conns.contains_key(&t) && t != LISTENER && t != WAKER {
                return t;
            }
        }
    }

    fn drive(
        &mut self,
        registry: &mio::Registry,
        token: Token,
        on_report: &mut dyn FnMut(&Report),
    ) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let step = match conn.state {
            State::Header { .. } | State::Payload { .. } => self.read(&mut conn, on_report),
            State::Reply { .. } => Step::Wait,
            State::Linger => {
                if drain(&mut conn.stream, &mut self.scratch) {
                    return; // peer closed: done
                }
                Step::Wait
            }
        };
        match step {
            Step::Wait => {}
            Step::Close(why) => {
                eprintln!("compare: {}: closed: {why}", conn.peer);
                return;
            }
            Step::Reply(kind, msg) => {
                let verb = if kind == Kind::Accepted {
                    "accepted"
                } else {
                    "rejected"
                };
                if kind != Kind::Accepted || !self.cfg.quiet {
                    eprintln!("compare: {}: {verb}: {msg}", conn.peer);
                }
                conn.state = State::Reply {
                    bytes: frame(kind, &msg),
                    sent: 0,
                };
                conn.deadline = Instant::now() + self.cfg.read_timeout;
                if registry
                    .reregister(
                        &mut conn.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .is_err()
                {
                    return;
                }
            }
        }
        if let State::Reply { bytes, sent } = &mut conn.state {
            match write_some(&mut conn.stream, bytes, sent) {
                Ok(true) => {
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    conn.state = State::Linger;
                    conn.deadline = Instant::now() + LINGER.min(self.cfg.read_timeout);
                    if drain(&mut conn.stream, &mut self.scratch) {
                        return;
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    eprintln!("compare: {}: reply not delivered: {e}", conn.peer);
                    return;
                }
            }
        }
        self.conns.insert(token, conn);
    }

    /// Read what is there; decide when the frame is complete or broken.
    fn read(&mut self, conn: &mut Conn, on_report: &mut dyn FnMut(&Report)) -> Step {
        let cap = self.cfg.max_upload_bytes;
        loop {
            let n = match &mut conn.state {
                State::Header { buf, got } => conn.stream.read(&mut buf[*got..]),
                State::Payload { len, buf } => {
                    let want = (*len - buf.len()).min(self.scratch.len());
                    conn.stream.read(&mut self.scratch[..want])
                }
                _ => return Step::Wait,
            };
            let n = match n {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Step::Close(format!("read failed: {e}")),
            };
            let now = Instant::now();
            conn.deadline = (now + self.cfg.read_timeout).min(conn.hard);
            match &mut conn.state {
                State::Header { buf, got } => {
                    if n == 0 {
                        return if *got == 0 {
                            Step::Close("connection closed without sending anything".into())
                        } else {
                            Step::Reply(
                                Kind::Rejected,
                                format!("truncated frame: {got} of {HEADER_LEN} header bytes"),
                            )
                        };
                    }
                    *got += n;
                    if *got < HEADER_LEN {
                        continue;
                    }
                    let h = match FrameHeader::parse(buf, u32::MAX) {
                        Ok(h) => h,
                        Err(e) => return Step::Reply(Kind::Rejected, format!("bad frame: {e}")),
                    };
                    if h.kind != Kind::Upload {
                        return Step::Reply(
                            Kind::Rejected,
                            format!("bad frame: expected an upload, got {:?}", h.kind),
                        );
                    }
                    if h.len > cap {
                        return Step::Reply(
                            Kind::Rejected,
                            format!(
                                "upload of {} bytes is over the cap of {cap} bytes (--max-upload)",
                                h.len
                            ),
                        );
                    }
                    let len = h.len as usize;
                    conn.hard = now
                        + self.cfg.read_timeout
                        + Duration::from_secs(h.len as u64 / MIN_UPLOAD_RATE);
                    conn.state = State::Payload {
                        len,
                        buf: Vec::new(),
                    };
                }
                State::Payload { len, buf } => {
                    if n == 0 {
                        return Step::Reply(
                            Kind::Rejected,
                            format!("truncated upload: {} of {len} bytes", buf.len()),
                        );
                    }
                    buf.extend_from_slice(&self.scratch[..n]);
                }
                _ => unreachable!("read only in Header and Payload"),
            }
            if let State::Payload { len, buf } = &mut conn.state {
                if buf.len() == *len {
                    let bytes = std::mem::take(buf);
                    return match self.upload(&bytes, on_report) {
                        Ok(msg) => Step::Reply(Kind::Accepted, msg),
                        Err(reason) => Step::Reply(Kind::Rejected, reason),
                    };
                }
            }
        }
    }

    /// Store one log; complete its run when it was the last one.
    fn upload(
        &mut self,
        bytes: &[u8],
        on_report: &mut dyn FnMut(&Report),
    ) -> Result<String, String> {
        let log = PeerLog::from_bytes(bytes).map_err(|e| format!("bad log: {e}"))?;
        let (id, peer, n, m) = (
            log.header.run_id,
            log.header.peer_id,
            log.header.peers,
            log.header.msgs,
        );
        if self.reported.contains(&id) {
            return Err(format!(
                "run {id:#x} was already reported; a new run needs a new run id"
            ));
        }
        let timeout = self.cfg.run_timeout;
        let run = self.runs.entry(id).or_insert_with(|| Run {
            logs: Vec::new(),
            have: vec![false; usize::from(n)],
            peers: n,
            msgs: m,
            deadline: Instant::now() + timeout,
        });
        if (run.peers, run.msgs) != (n, m) {
            return Err(format!(
                "log of peer {peer} says {n} peers x {m} msgs, but run {id:#x} has {} x {}",
                run.peers, run.msgs
            ));
        }
        if std::mem::replace(&mut run.have[usize::from(peer)], true) {
            return Err(format!(
                "duplicate upload for run {id:#x} peer {peer}: the first one is kept"
            ));
        }
        run.logs.push(log);
        let have = run.logs.len();
        if have < usize::from(n) {
            return Ok(format!(
                "stored log of peer {peer} for run {id:#x} ({have} of {n})"
            ));
        }
        let run = self.runs.remove(&id).expect("present");
        Ok(match self.complete(id, run, on_report) {
            Ok(k) => format!(
                "stored log of peer {peer}; run {id:#x} complete: {k} unordered message rounds"
            ),
            Err(e) => format!("stored log of peer {peer}; run {id:#x} reported, but {e}"),
        })
    }

    /// Analyse, report, append to the results file (fsynced), write histograms.
    fn complete(
        &mut self,
        id: u64,
        run: Run,
        on_report: &mut dyn FnMut(&Report),
    ) -> Result<u64, String> {
        self.reported.insert(id);
        self.reported_order.push_back(id);
        if self.reported_order.len() > REPORTED_MEMORY {
            if let Some(old) = self.reported_order.pop_front() {
                self.reported.remove(&old);
            }
        }
        let opts = &self.cfg.analyse;
        let report = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            analyse(&run.logs, opts)
        })) {
            Ok(r) => r,
            Err(_) => {
                eprintln!("compare: run {id:#x}: the analysis failed (a bug: please report it with the logs)");
                return Err("the analysis failed".into());
            }
        };
        on_report(&report);
        let mut problem = None;
        if let Some(f) = &mut self.results {
            if let Err(e) = append_result(f, &report) {
                eprintln!("compare: run {id:#x}: cannot append to the results file: {e}");
                problem = Some(format!("the results file could not be written: {e}"));
            }
        }
        if let Some(dir) = &self.cfg.hist_dir {
            if let Err(e) = hist::write_run(dir, &run.logs, &report) {
                eprintln!(
                    "compare: run {id:#x}: cannot write histograms into {}: {e}",
                    dir.display()
                );
            }
        }
        match problem {
            Some(p) => Err(p),
            None => Ok(report.out_of_order_rounds),
        }
    }

    /// Drop connections past their deadline (telling them why when they are still reading);
    /// report runs past theirs.
    fn expire(
        &mut self,
        registry: &mio::Registry,
        now: Instant,
        on_report: &mut dyn FnMut(&Report),
    ) {
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            let Some(mut conn) = self.conns.remove(&t) else {
                continue;
            };
            let why = match &conn.state {
                State::Header { got, .. } if *got == 0 => format!(
                    "read timeout: nothing received in {:?}",
                    self.cfg.read_timeout
                ),
                State::Header { got, .. } => {
                    format!("read timeout: {got} of {HEADER_LEN} header bytes")
                }
                State::Payload { len, buf } => {
                    format!("read timeout: {} of {len} bytes", buf.len())
                }
                State::Reply { .. } => {
                    eprintln!(
                        "compare: {}: closed: client did not read the reply",
                        conn.peer
                    );
                    continue;
                }
                State::Linger => continue,
            };
            eprintln!("compare: {}: rejected: {why}", conn.peer);
            // One try to say why, without waiting for the socket: the client has had its time.
            let _ = conn.stream.write(&frame(Kind::Rejected, &why));
            let _ = conn.stream.shutdown(Shutdown::Both);
            let _ = registry.deregister(&mut conn.stream);
        }
        let due: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let run = self.runs.remove(&id).expect("present");
            let missing: Vec<usize> = (0..run.have.len()).filter(|&p| !run.have[p]).collect();
            eprintln!("compare: run {id:#x}: run timeout; reporting without peers {missing:?}");
            let _ = self.complete(id, run, on_report);
        }
    }
}

/// One reply frame.
fn frame(kind: Kind, msg: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + msg.len());
    crate::wire::frame::write_frame(&mut bytes, kind, msg.as_bytes())
        .expect("writes to a Vec succeed");
    bytes
}

/// Write what the socket takes; true when all is sent.
fn write_some(stream: &mut TcpStream, bytes: &[u8], sent: &mut usize) -> io::Result<bool> {
    while *sent < bytes.len() {
        match stream.write(&bytes[*sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Discard input; true when the peer has closed, the socket failed or it keeps sending (the
/// linger is a courtesy, bounded per wake-up).
fn drain(stream: &mut TcpStream, scratch: &mut [u8]) -> bool {
    for _ in 0..64 {
        match stream.read(scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    true
}
