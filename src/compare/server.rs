//! The comparator service: one mio loop receiving log uploads for any number of runs.
//!
//! Per connection: one `Upload` frame in (header checked against the cap from its 12 bytes
//! alone, payload buffered only as it arrives and only while it keeps up
//! [`MIN_UPLOAD_RATE`]), one `Accepted`/`Rejected`/`Busy` frame out, close. Every way a client
//! can misbehave ends its own connection with a reason (refusal lines are rate-limited);
//! nothing a client sends makes [`Server::run`] return or panic. Silent connections cannot
//! lock users out: at [`ServerConfig::max_connections`] a newcomer takes the place of the one
//! silent longest.
//!
//! A completed run is analysed on one worker thread, which also appends the report to the
//! results file (fsynced) and writes the histograms; the loop keeps serving meanwhile, and
//! answers the upload that completed the run only when the worker is done: `Accepted` once the
//! results line is on disk, `Busy` (the log not stored, so it can be sent again) when it
//! could not be written.
//!
//! Memory: stored logs of incomplete runs plus upload buffers stay under
//! [`ServerConfig::max_pending_bytes`]; a source address may hold at most
//! [`ServerConfig::max_conns_per_source`] connections and have started at most
//! [`ServerConfig::max_runs_per_source`] incomplete runs; a log may claim at most
//! [`ServerConfig::max_peers`] peers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::analyse::{analyse, AnalyseOptions};
use super::peerlog::PeerLog;
use super::report::Report;
use super::{append_result, hist, open_results, DEFAULT_MAX_UPLOAD};
use crate::util::loglimit::LogLimiter;
use crate::viz::trace::Times;
use crate::wire::frame::{FrameHeader, Kind, HEADER_LEN};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Default connections at once (each costs a buffer and a descriptor). At the cap a newcomer
/// takes the place of the connection that has sent nothing for the longest, or, when every one
/// is busy uploading, gets a `Busy` reply (which peers retry).
pub const MAX_CONNECTIONS: usize = 1024;
/// Accepts per wake-up; the loop comes back without waiting when more may be queued, so a flood
/// of connects cannot starve the uploads already in.
const ACCEPTS_PER_WAKE: usize = 256;
/// Refusal lines: at most this many per window, then one line with the count of the others.
const REFUSAL_LOG_BURST: u32 = 10;
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);
/// After its first `read_timeout`, an upload must have delivered at least this many bytes per
/// second since its header: received ≥ rate × (elapsed − read_timeout), checked on every read
/// and at the deadline it implies.
pub const MIN_UPLOAD_RATE: u64 = 64 << 10;
/// Default largest N a log may claim (`--max-peers`).
pub const DEFAULT_MAX_PEERS: u16 = 1024;
/// Default memory for stored logs of incomplete runs plus upload buffers (`--max-pending`).
pub const DEFAULT_MAX_PENDING: u64 = 2 << 30;
/// Default connections at once from one source address.
pub const DEFAULT_MAX_CONNS_PER_SOURCE: usize = 256;
/// Default incomplete runs one source address may have started.
pub const DEFAULT_MAX_RUNS_PER_SOURCE: usize = 64;
/// After the reply, unread input is drained this long before closing, so the close does not
/// turn into a reset that destroys the reply.
const LINGER: Duration = Duration::from_secs(2);
/// Reported run ids remembered (to refuse late uploads); the oldest are forgotten first.
const REPORTED_MEMORY: usize = 1 << 16;
const READ_CHUNK: usize = 64 << 10;
/// After a failed accept (e.g. out of descriptors), try again this soon even without an event:
/// the pending connection raises no new edge.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// A connection waiting for the worker has no read deadline; this stands for "none".
const NO_DEADLINE: Duration = Duration::from_secs(365 * 86400);

/// Connections the kernel may queue before we accept them (std uses 128): a burst of connects
/// (a fleet uploading at once, or a flood) is queued rather than its SYNs dropped, which would
/// cost each dropped client a 1 s retransmission.
const LISTEN_BACKLOG: i32 = 1024;

fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s.into())
}

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
    /// Write every run's page here (`run-<16 hex>.html`).
    pub html_dir: Option<PathBuf>,
    pub analyse: AnalyseOptions,
    /// Do not log accepted uploads (refusals and failures are always logged).
    pub quiet: bool,
    /// Largest N a log may claim.
    pub max_peers: u16,
    /// Bytes of stored logs of incomplete runs plus upload buffers; an upload that would go
    /// over is refused.
    pub max_pending_bytes: u64,
    /// Connections at once from one source address.
    pub max_conns_per_source: usize,
    /// Connections at once in all.
    pub max_connections: usize,
    /// Incomplete runs whose first log came from one source address.
    pub max_runs_per_source: usize,
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
            html_dir: None,
            analyse: AnalyseOptions::default(),
            quiet: false,
            max_peers: DEFAULT_MAX_PEERS,
            max_pending_bytes: DEFAULT_MAX_PENDING,
            max_conns_per_source: DEFAULT_MAX_CONNS_PER_SOURCE,
            max_connections: MAX_CONNECTIONS,
            max_runs_per_source: DEFAULT_MAX_RUNS_PER_SOURCE,
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

/// The service's own accounting, readable from any thread while it runs (updated once per
/// loop iteration).
#[derive(Debug, Default)]
pub struct ServerStats {
    pending_bytes: AtomicU64,
    connections: AtomicU64,
    incomplete_runs: AtomicU64,
    accept_errors: AtomicU64,
    runs_reported: AtomicU64,
}

impl ServerStats {
    /// Bytes held for stored logs of incomplete (or being reported) runs and upload buffers.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn incomplete_runs(&self) -> u64 {
        self.incomplete_runs.load(Ordering::SeqCst)
    }
    /// Failed `accept` calls so far (e.g. out of descriptors).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::SeqCst)
    }
    pub fn runs_reported(&self) -> u64 {
        self.runs_reported.load(Ordering::SeqCst)
    }
}

enum State {
    /// The header must be complete by `by`.
    Header {
        buf: [u8; HEADER_LEN],
        got: usize,
        by: Instant,
    },
    /// The header was complete at `since`.
    Payload {
        len: usize,
        buf: Vec<u8>,
        since: Instant,
    },
    /// The upload completed its run; the reply waits for the worker.
    Waiting,
    Reply {
        bytes: Vec<u8>,
        sent: usize,
    },
    Linger,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// When the connection is dropped: the earliest of the idle deadline and the state's own.
    deadline: Instant,
    /// Last progress + `read_timeout`.
    idle: Instant,
}

impl Conn {
    fn buffered(&self) -> usize {
        match &self.state {
            State::Payload { buf, .. } => buf.capacity(),
            _ => 0,
        }
    }
}

struct Run {
    logs: Vec<PeerLog>,
    /// With an html directory: what the page draws of each log, in the order of `logs`.
    times: Vec<Times>,
    have: Vec<bool>,
    peers: u16,
    msgs: u32,
    deadline: Instant,
    /// Address of the first upload.
    source: IpAddr,
    /// Heap bytes of `logs` and `times`.
    bytes: usize,
}

/// A completed run for the worker; `waiting` is the connection whose upload completed it.
struct Job {
    id: u64,
    run: Run,
    waiting: Option<(Token, u16)>,
}

enum Outcome {
    /// Analysed, appended and fsynced.
    Reported(Box<Report>),
    /// The results line could not be written (the file is as before); the run comes back.
    NotWritten { reason: String, run: Run },
    /// The analysis panicked (a bug).
    Broken,
}

struct Done {
    id: u64,
    waiting: Option<(Token, u16)>,
    bytes: usize,
    outcome: Outcome,
}

pub struct Server {
    cfg: ServerConfig,
    poll: Poll,
    listener: TcpListener,
    addr: SocketAddr,
    stop: Stopper,
    results: Option<File>,
    stats: Arc<ServerStats>,
}

impl Server {
    /// Bind the listening socket and open the results file; nothing is served until `run`.
    pub fn bind(cfg: ServerConfig) -> anyhow::Result<Server> {
        let listener = listen(cfg.listen).with_context(|| {
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
        if let Some(dir) = &cfg.html_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create page directory {}", dir.display()))?;
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
            stats: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// The service's accounting, for monitoring and tests.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serve until stopped; every completed run goes to `on_report` (after its results line is
    /// fsynced, when there is a results file). Runs still incomplete at the stop are dropped
    /// with a note on stderr; runs being reported are finished first.
    pub fn run(self, mut on_report: impl FnMut(&Report)) -> anyhow::Result<()> {
        let Server {
            cfg,
            mut poll,
            listener,
            stop,
            results,
            stats,
            ..
        } = self;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let worker = {
            let waker = stop.waker.clone();
            let dirs = OutDirs {
                hist: cfg.hist_dir.clone(),
                html: cfg.html_dir.clone(),
            };
            let opts = cfg.analyse.clone();
            std::thread::Builder::new()
                .name("compare-report".into())
                .spawn(move || report_runs(job_rx, done_tx, waker, results, dirs, opts))
                .context("cannot start the report thread")?
        };
        let mut svc = Service {
            cfg,
            listener,
            conns: HashMap::new(),
            runs: HashMap::new(),
            reported: HashSet::new(),
            reported_order: VecDeque::new(),
            reporting: HashSet::new(),
            stored_bytes: 0,
            next_token: FIRST_CONN,
            scratch: vec![0u8; READ_CHUNK],
            accept_retry: None,
            accept_more: false,
            refusals: LogLimiter::new(REFUSAL_LOG_BURST, REFUSAL_LOG_WINDOW),
            jobs: job_tx,
            stats,
        };
        let mut events = Events::with_capacity(256);
        let mut result = Ok(());
        while !stop.flag.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = svc
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                result = Err(e).context("event loop failed");
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => svc.accept(poll.registry()),
                    WAKER => {}
                    t => svc.drive(poll.registry(), t),
                }
            }
            while let Ok(done) = done_rx.try_recv() {
                svc.finish(poll.registry(), done, &mut on_report);
            }
            if svc.accept_more || svc.accept_retry.is_some_and(|t| t <= Instant::now()) {
                svc.accept(poll.registry());
            }
            svc.expire(poll.registry(), Instant::now());
            svc.publish();
        }
        for (id, run) in &svc.runs {
            let have = run.have.iter().filter(|&&h| h).count();
            say!(
                "compare: stopping with run {id:016x} incomplete ({have} of {} logs); not reported",
                run.peers
            );
        }
        // Finish the runs being reported, so what was analysed is on disk and on stdout.
        let Service { jobs, .. } = svc;
        drop(jobs);
        let _ = worker.join();
        while let Ok(done) = done_rx.try_recv() {
            if let Outcome::Reported(report) = done.outcome {
                on_report(&report);
            }
        }
        result
    }
}

/// Where the worker writes each run's histograms and page.
struct OutDirs {
    hist: Option<PathBuf>,
    html: Option<PathBuf>,
}

/// The worker: analyse, append (fsynced), write histograms and page, hand back.
fn report_runs(
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
    waker: Arc<Waker>,
    mut results: Option<File>,
    dirs: OutDirs,
    opts: AnalyseOptions,
) {
    for Job { id, run, waiting } in jobs {
        let bytes = run.bytes;
        let analysed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| analyse(&run.logs, &opts)));
        let outcome = match analysed {
            Err(_) => {
                say!("compare: run {id:016x}: the analysis failed (a bug: please report it with the logs)");
                Outcome::Broken
            }
            Ok(report) => match results.as_mut().map(|f| append_result(f, &report)) {
                Some(Err(e)) => {
                    say!("compare: run {id:016x}: cannot append to the results file: {e}");
                    Outcome::NotWritten {
                        reason: format!("the results file could not be written ({e})"),
                        run,
                    }
                }
                _ => {
                    if let Some(dir) = &dirs.html {
                        let page = dir.join(format!("run-{id:016x}.html"));
                        let (stride, _) = crate::viz::service_drawing(run.peers, run.msgs);
                        if let Err(e) = crate::viz::write_page_file(
                            &page, &run.logs, &run.times, &report, stride,
                        ) {
                            say!("compare: run {id:016x}: {e:#}");
                        }
                    }
                    if let Some(dir) = &dirs.hist {
                        if let Err(e) = hist::write_run(dir, &run.logs, &report) {
                            say!(
                                "compare: run {id:016x}: cannot write histograms into {}: {e}",
                                dir.display()
                            );
                        }
                    }
                    drop(run);
                    Outcome::Reported(Box::new(report))
                }
            },
        };
        let d = Done {
            id,
            waiting,
            bytes,
            outcome,
        };
        if done.send(d).is_err() {
            return;
        }
        let _ = waker.wake();
    }
}

struct Service {
    cfg: ServerConfig,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    runs: HashMap<u64, Run>,
    reported: HashSet<u64>,
    reported_order: VecDeque<u64>,
    /// Runs handed to the worker and not back yet.
    reporting: HashSet<u64>,
    /// Heap bytes of the logs in `runs` and with the worker.
    stored_bytes: usize,
    next_token: usize,
    scratch: Vec<u8>,
    /// A failed accept to retry at this time.
    accept_retry: Option<Instant>,
    /// The last accept round stopped at its cap: accept again without waiting for an event.
    accept_more: bool,
    /// Every refusal line goes through here: a flood costs a few lines, not one per connection.
    refusals: LogLimiter,
    jobs: mpsc::Sender<Job>,
    stats: Arc<ServerStats>,
}

/// What a connection step decided.
enum Step {
    /// Keep waiting for readiness.
    Wait,
    /// Send this reply frame, then close.
    Reply(Kind, String),
    /// Close now (nothing useful can be sent).
    Close(String),
    /// The client connected and left without a byte (a reachability probe, a health check):
    /// close without a log line.
    Left,
}

impl Service {
    fn next_deadline(&self) -> Option<Instant> {
        let c = self.conns.values().map(|c| c.deadline);
        let r = self.runs.values().map(|r| r.deadline);
        let now = self.accept_more.then(Instant::now);
        c.chain(r)
            .chain(self.accept_retry)
            .chain(self.refusals.due())
            .chain(now)
            .min()
    }

    /// Stored logs plus every upload buffer.
    fn pending_bytes(&self) -> usize {
        self.stored_bytes + self.conns.values().map(Conn::buffered).sum::<usize>()
    }

    fn publish(&self) {
        let s = &self.stats;
        s.pending_bytes
            .store(self.pending_bytes() as u64, Ordering::SeqCst);
        s.connections
            .store(self.conns.len() as u64, Ordering::SeqCst);
        s.incomplete_runs
            .store(self.runs.len() as u64, Ordering::SeqCst);
    }

    fn accept(&mut self, registry: &mio::Registry) {
        let was_retry = self.accept_retry.take().is_some();
        self.accept_more = false;
        for _ in 0..ACCEPTS_PER_WAKE {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(registry, stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of descriptors. The pending connection raises no new event, so
                    // come back to it soon without one.
                    self.stats.accept_errors.fetch_add(1, Ordering::SeqCst);
                    if !was_retry {
                        say!("compare: accept failed: {e}; retrying every {ACCEPT_RETRY:?}");
                    }
                    self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
        self.accept_more = true;
    }

    /// Take one new connection, making room at the cap, or tell it to come back later.
    fn admit(&mut self, registry: &mio::Registry, mut stream: TcpStream, peer: SocketAddr) {
        // The source's own cap first: a source at its cap evicts nobody else.
        let ip = peer.ip();
        let cap = self.cfg.max_conns_per_source;
        if self.conns.values().filter(|c| c.peer.ip() == ip).count() >= cap {
            let why = format!(
                "too many connections from {ip} (at most {cap} at once); send fewer uploads at a time, try again"
            );
            return self.refuse_at_once(stream, peer, &why);
        }
        let cap = self.cfg.max_connections;
        if self.conns.len() >= cap && !self.make_room(registry) {
            let why =
                format!("busy: {cap} connections are uploading (the most at once); try again");
            return self.refuse_at_once(stream, peer, &why);
        }
        let token = self.fresh_token();
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            say!("compare: {peer}: cannot register connection: {e}");
            return;
        }
        let now = Instant::now();
        let deadline = now + self.cfg.read_timeout;
        let state = State::Header {
            buf: [0; HEADER_LEN],
            got: 0,
            by: deadline,
        };
        self.conns.insert(
            token,
            Conn {
                stream,
                peer,
                state,
                deadline,
                idle: deadline,
            },
        );
    }

    /// At the connection cap: close a connection whose reply is already sent, else the one that
    /// has sent nothing for the longest (told to try again). False when every connection is
    /// uploading or waiting for its reply: those are real users.
    fn make_room(&mut self, registry: &mio::Registry) -> bool {
        let victim = self
            .conns
            .iter()
            .filter_map(|(t, c)| match c.state {
                State::Linger => Some((false, c.idle, *t)),
                State::Header { .. } => Some((true, c.idle, *t)),
                _ => None,
            })
            .min();
        let Some((told, _, token)) = victim else {
            return false;
        };
        let mut conn = self.conns.remove(&token).expect("present");
        let _ = registry.deregister(&mut conn.stream);
        if told {
            let last_progress = conn.idle.checked_sub(self.cfg.read_timeout);
            let quiet = last_progress.map_or(Duration::ZERO, |t| t.elapsed());
            let why = format!(
                "evicted: sent nothing for {:.1} s while the comparator is at its {} connections; try again",
                quiet.as_secs_f64(),
                self.cfg.max_connections
            );
            self.refuse_at_once(conn.stream, conn.peer, &why);
        }
        true
    }

    /// Say `why` in a `Busy` reply (one try, without waiting for the socket) and close.
    fn refuse_at_once(&mut self, mut stream: TcpStream, peer: SocketAddr, why: &str) {
        self.refusal(format_args!("{peer}: busy: {why}"));
        let _ = stream.write(&frame(Kind::Busy, why));
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// Log one refusal line, unless too many came lately (then they are counted).
    fn refusal(&mut self, line: std::fmt::Arguments) {
        if let Some(suppressed) = self.refusals.allow(Instant::now()) {
            log_suppressed(suppressed);
            say!("compare: {line}");
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

    fn drive(&mut self, registry: &mio::Registry, token: Token) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let step = match conn.state {
            State::Header { .. } | State::Payload { .. } => self.read(&mut conn, token),
            State::Waiting | State::Reply { .. } => Step::Wait,
            State::Linger => {
                if drain(&mut conn.stream, &mut self.scratch) {
                    return; // peer closed: done
                }
                Step::Wait
            }
        };
        self.after(registry, token, conn, step);
    }

    /// Carry out a step's decision and keep the connection when it is not finished.
    fn after(&mut self, registry: &mio::Registry, token: Token, mut conn: Conn, step: Step) {
        match step {
            Step::Wait => {}
            Step::Close(why) => {
                self.refusal(format_args!("{}: closed: {why}", conn.peer));
                return;
            }
            Step::Left => return,
            Step::Reply(kind, msg) => {
                match kind {
                    Kind::Accepted if self.cfg.quiet => {}
                    Kind::Accepted => say!("compare: {}: accepted: {msg}", conn.peer),
                    Kind::Busy => self.refusal(format_args!("{}: busy: {msg}", conn.peer)),
                    _ => self.refusal(format_args!("{}: rejected: {msg}", conn.peer)),
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
                    self.refusal(format_args!("{}: reply not delivered: {e}", conn.peer));
                    return;
                }
            }
        }
        self.conns.insert(token, conn);
    }

    /// Read what is there; decide when the frame is complete or broken.
    fn read(&mut self, conn: &mut Conn, token: Token) -> Step {
        let cap = self.cfg.max_upload_bytes;
        let rt = self.cfg.read_timeout;
        loop {
            let n = match &mut conn.state {
                State::Header { buf, got, .. } => conn.stream.read(&mut buf[*got..]),
                State::Payload { len, buf, .. } => {
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
            conn.idle = now + rt;
            match &mut conn.state {
                State::Header { buf, got, by } => {
                    conn.deadline = conn.idle.min(*by);
                    if n == 0 {
                        return if *got == 0 {
                            Step::Left
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
                    conn.state = State::Payload {
                        len: h.len as usize,
                        buf: Vec::new(),
                        since: now,
                    };
                    conn.deadline = rate_deadline(now, 0, rt).min(conn.idle);
                }
                State::Payload { len, buf, since } => {
                    if n == 0 {
                        return Step::Reply(
                            Kind::Rejected,
                            format!("truncated upload: {} of {len} bytes", buf.len()),
                        );
                    }
                    let grow = (buf.len() + n).saturating_sub(buf.capacity());
                    if grow > 0 {
                        // Doubling, but never past the announced length.
                        let want = (buf.capacity() * 2).max(buf.len() + n).min(*len);
                        let others = self.stored_bytes
                            + self.conns.values().map(Conn::buffered).sum::<usize>()
                            + buf.capacity();
                        let extra = want - buf.capacity();
                        if (others + extra) as u64 > self.cfg.max_pending_bytes {
                            return Step::Reply(
                                Kind::Busy,
                                over_budget(others, self.cfg.max_pending_bytes),
                            );
                        }
                        buf.reserve_exact(want - buf.len());
                    }
                    buf.extend_from_slice(&self.scratch[..n]);
                    let by = rate_deadline(*since, buf.len(), rt);
                    if now > by {
                        return Step::Reply(Kind::Rejected, too_slow(buf.len(), *len, *since, now));
                    }
                    conn.deadline = by.min(conn.idle);
                }
                _ => unreachable!("read only in Header and Payload"),
            }
            if let State::Payload { len, buf, .. } = &mut conn.state {
                if buf.len() == *len {
                    let bytes = std::mem::take(buf);
                    let source = conn.peer.ip();
                    let log = match PeerLog::from_bytes(&bytes) {
                        Ok(log) => log,
                        Err(e) => return Step::Reply(Kind::Rejected, format!("bad log: {e}")),
                    };
                    // The page's times are read now: the bytes are not kept.
                    let times = self.cfg.html_dir.as_ref().map(|_| {
                        let (stride, cap) =
                            crate::viz::service_drawing(log.header.peers, log.header.msgs);
                        Times::from_bytes(&bytes, stride, cap).unwrap_or_default()
                    });
                    let cost = log.heap_bytes() + times.as_ref().map_or(0, Times::heap_bytes);
                    // Over the memory budget is "not now", not "never".
                    let pending = self.pending_bytes();
                    if (pending + cost) as u64 > self.cfg.max_pending_bytes {
                        return Step::Reply(
                            Kind::Busy,
                            over_budget(pending, self.cfg.max_pending_bytes),
                        );
                    }
                    return match self.upload(log, times, source, token) {
                        Ok(Some(msg)) => Step::Reply(Kind::Accepted, msg),
                        Ok(None) => {
                            conn.state = State::Waiting;
                            conn.deadline = now + NO_DEADLINE;
                            Step::Wait
                        }
                        Err(reason) => Step::Reply(Kind::Rejected, reason),
                    };
                }
            }
        }
    }

    /// Store one log: `Ok(Some(reply))`, or `Ok(None)` when it completed its run (handed to
    /// the worker; the reply comes from [`Service::finish`]).
    fn upload(
        &mut self,
        log: PeerLog,
        times: Option<Times>,
        source: IpAddr,
        token: Token,
    ) -> Result<Option<String>, String> {
        let (id, peer, n, m) = (
            log.header.run_id,
            log.header.peer_id,
            log.header.peers,
            log.header.msgs,
        );
        if n > self.cfg.max_peers {
            return Err(format!(
                "log of peer {peer} says {n} peers; this comparator takes at most {} (--max-peers)",
                self.cfg.max_peers
            ));
        }
        if self.reported.contains(&id) {
            return Err(format!(
                "run {id:016x} was already reported; a new run needs a new run id"
            ));
        }
        if self.reporting.contains(&id) {
            return Err(format!(
                "run {id:016x} is being reported (its run timeout passed or all its logs are in); a new run needs a new run id"
            ));
        }
        let size = log.heap_bytes() + times.as_ref().map_or(0, Times::heap_bytes);
        if !self.runs.contains_key(&id) {
            let cap = self.cfg.max_runs_per_source;
            let mine = self.runs.values().filter(|r| r.source == source).count();
            if mine >= cap {
                return Err(format!(
                    "{source} already started {mine} incomplete runs (at most {cap}); wait until they complete or time out"
                ));
            }
        }
        let timeout = self.cfg.run_timeout;
        let run = self.runs.entry(id).or_insert_with(|| Run {
            logs: Vec::new(),
            times: Vec::new(),
            have: vec![false; usize::from(n)],
            peers: n,
            msgs: m,
            deadline: Instant::now() + timeout,
            source,
            bytes: 0,
        });
        if (run.peers, run.msgs) != (n, m) {
            return Err(format!(
                "log of peer {peer} says {n} peers x {m} msgs, but run {id:016x} has {} x {}",
                run.peers, run.msgs
            ));
        }
        if std::mem::replace(&mut run.have[usize::from(peer)], true) {
            return Err(format!(
                "duplicate upload for run {id:016x} peer {peer}: the first one is kept (whoever sent it first)"
            ));
        }
        run.logs.push(log);
        run.times.extend(times);
        run.bytes += size;
        self.stored_bytes += size;
        let have = run.logs.len();
        if have < usize::from(n) {
            return Ok(Some(format!(
                "stored log of peer {peer} for run {id:016x} ({have} of {n})"
            )));
        }
        let run = self.runs.remove(&id).expect("present");
        self.dispatch(id, run, Some((token, peer)));
        Ok(None)
    }

    /// Hand a completed (or timed-out) run to the worker.
    fn dispatch(&mut self, id: u64, run: Run, waiting: Option<(Token, u16)>) {
        self.reporting.insert(id);
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { id, run, waiting }) {
            // The worker is gone (it only ends when the loop does): nothing can be reported.
            say!("compare: run {id:016x}: the report thread is gone; run dropped");
            self.reporting.remove(&id);
            self.stored_bytes -= job.run.bytes;
        }
    }

    /// The worker is done with a run: report it, answer the upload that completed it.
    fn finish(&mut self, registry: &mio::Registry, done: Done, on_report: &mut dyn FnMut(&Report)) {
        let Done {
            id,
            waiting,
            bytes,
            outcome,
        } = done;
        self.reporting.remove(&id);
        let reply = match outcome {
            Outcome::Reported(report) => {
                self.stored_bytes -= bytes;
                self.remember_reported(id);
                self.stats.runs_reported.fetch_add(1, Ordering::SeqCst);
                on_report(&report);
                waiting.map(|(_, peer)| {
                    (
                        Kind::Accepted,
                        format!(
                            "stored log of peer {peer}; run {id:016x} complete: {} unordered message rounds",
                            report.out_of_order_rounds
                        ),
                    )
                })
            }
            Outcome::Broken => {
                self.stored_bytes -= bytes;
                self.remember_reported(id);
                waiting.map(|_| {
                    (
                        Kind::Rejected,
                        format!("run {id:016x} could not be analysed (a bug in the comparator: please report it with the logs)"),
                    )
                })
            }
            Outcome::NotWritten { reason, mut run } => {
                // Keep the run, without the log whose upload is refused now, so that upload
                // can be sent again; a timed-out run is tried again after another timeout.
                if let Some((_, peer)) = waiting {
                    if let Some(i) = run.logs.iter().position(|l| l.header.peer_id == peer) {
                        let log = run.logs.swap_remove(i);
                        let mut size = log.heap_bytes();
                        if i < run.times.len() {
                            size += run.times.swap_remove(i).heap_bytes();
                        }
                        run.bytes -= size;
                        self.stored_bytes -= size;
                    }
                    run.have[usize::from(peer)] = false;
                }
                run.deadline = Instant::now() + self.cfg.run_timeout;
                say!(
                    "compare: run {id:016x}: not reported: {reason}; kept, tried again with the next upload or in {:?}",
                    self.cfg.run_timeout
                );
                self.runs.insert(id, run);
                waiting.map(|(_, peer)| {
                    (
                        Kind::Busy,
                        format!("run {id:016x} could not be reported: {reason}; the log of peer {peer} was not stored: upload it again"),
                    )
                })
            }
        };
        if let (Some((token, _)), Some((kind, msg))) = (waiting, reply) {
            if let Some(conn) = self.conns.remove(&token) {
                if matches!(conn.state, State::Waiting) {
                    self.after(registry, token, conn, Step::Reply(kind, msg));
                } else {
                    self.conns.insert(token, conn);
                }
            }
        }
    }

    fn remember_reported(&mut self, id: u64) {
        self.reported.insert(id);
        self.reported_order.push_back(id);
        if self.reported_order.len() > REPORTED_MEMORY {
            if let Some(old) = self.reported_order.pop_front() {
                self.reported.remove(&old);
            }
        }
    }

    /// Drop connections past their deadline (telling them why when they are still reading);
    /// hand runs past theirs to the worker.
    fn expire(&mut self, registry: &mio::Registry, now: Instant) {
        if let Some(suppressed) = self.refusals.take_due(now) {
            log_suppressed(suppressed);
        }
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now && !matches!(c.state, State::Waiting))
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
                State::Payload { len, buf, .. } if conn.idle <= now => {
                    format!("read timeout: {} of {len} bytes", buf.len())
                }
                State::Payload { len, buf, since } => too_slow(buf.len(), *len, *since, now),
                State::Reply { .. } => {
                    let peer = conn.peer;
                    self.refusal(format_args!(
                        "{peer}: closed: client did not read the reply"
                    ));
                    continue;
                }
                State::Waiting | State::Linger => continue,
            };
            self.refusal(format_args!("{}: rejected: {why}", conn.peer));
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
            let missing = run.have.iter().filter(|&&h| !h).count();
            say!(
                "compare: run {id:016x}: run timeout; reporting without {missing} of {} peers",
                run.peers
            );
            self.dispatch(id, run, None);
        }
    }
}

fn log_suppressed(count: u32) {
    if count > 0 {
        say!("compare: ({count} more refusals not logged)");
    }
}

/// When an upload whose header came at `since` and that has `got` bytes falls below
/// [`MIN_UPLOAD_RATE`] after its first `read_timeout`.
fn rate_deadline(since: Instant, got: usize, read_timeout: Duration) -> Instant {
    since + read_timeout + Duration::from_secs_f64(got as f64 / MIN_UPLOAD_RATE as f64)
}

fn too_slow(got: usize, len: usize, since: Instant, now: Instant) -> String {
    format!(
        "too slow: {got} of {len} bytes in {:.1} s; an upload must average {} KiB/s after its first read timeout",
        now.saturating_duration_since(since).as_secs_f64(),
        MIN_UPLOAD_RATE >> 10
    )
}

fn over_budget(pending: usize, budget: u64) -> String {
    format!(
        "the comparator is busy: it holds {} MiB of incomplete runs and uploads, its budget is {} MiB (--max-pending); try again when runs complete",
        pending >> 20,
        budget >> 20
    )
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
