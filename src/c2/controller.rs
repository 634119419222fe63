//! `mpcomm c2 serve`: the controller. One mio loop for agents and control clients, the
//! comparator service in one thread (it reports through a channel and the loop's waker), and,
//! when stdin is a terminal, the original's `>>>` prompt read by a helper thread.

use anyhow::Context;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{fresh32, Handshake, Key};
use super::conn::{Conn, ConnError};
use super::exit::{Exit, EXIT_GRACE};
use super::proto::{Msg, Role, RunRequest};
use super::registry::{OrderBy, Registry};
use super::runs::{plan, ActiveRun, Candidate, RunDefaults, Update};
use super::timing::{Liveness, LogLimiter, HANDSHAKE_TIMEOUT, HELLO_TIMEOUT};
use crate::compare::{Report, Server, ServerConfig, Stopper};
use crate::util::duration;
use crate::wire::{Order, Transport};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Connections still authenticating, in all and from one source (an IPv4 address or an IPv6
/// /64). A newcomer beyond either cap evicts the oldest such connection (one that has not sent
/// its Hello first), so silent sockets cannot lock everyone out: a real client finishes its
/// handshake in one round trip, and a connection without a Hello is closed after 1 s.
const MAX_UNAUTHENTICATED: usize = 64;
const MAX_PENDING_PER_SOURCE: usize = 16;
const MAX_CONNECTIONS: usize = 2048;
/// Accepts per readiness event; the loop comes back (zero poll timeout) when more may wait.
const ACCEPTS_PER_EVENT: usize = 256;
/// Slack on top of the sending time: the peer's 30 s handshake timeout, drain, upload retries
/// and the comparator's own run timeout.
const RUN_SLACK: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address agents and control clients connect to.
    #[arg(long, env = "MPCOMM_LISTEN", default_value = "0.0.0.0:4569")]
    pub listen: SocketAddr,
    /// Pre-shared key file (`mpcomm c2 keygen`); must not be readable by group or others.
    #[arg(long, env = "MPCOMM_KEY_FILE")]
    pub key_file: PathBuf,
    /// Address of the in-process comparator (default: the --listen address, port 4568).
    #[arg(long, env = "MPCOMM_COMPARE_LISTEN")]
    pub compare_listen: Option<SocketAddr>,
    /// UDP port every peer uses on its host.
    #[arg(long, env = "MPCOMM_PEER_PORT", default_value_t = 4567)]
    pub peer_port: u16,
    /// Multicast group for multicast runs (default: the peer's default group).
    #[arg(long, env = "MPCOMM_GROUP")]
    pub group: Option<SocketAddr>,
    /// How agents get their peer ids.
    #[arg(
        long,
        value_enum,
        env = "MPCOMM_ORDER_BY",
        default_value = "registration"
    )]
    pub order_by: OrderBy,
    /// Append every report as a JSON line (default under systemd: $STATE_DIRECTORY/results.jsonl).
    #[arg(long, env = "MPCOMM_RESULTS")]
    pub results: Option<PathBuf>,
    /// Write every run's latency histograms here.
    #[arg(long, env = "MPCOMM_HIST_DIR")]
    pub hist_dir: Option<PathBuf>,
    /// The comparator reports a run this long after its first upload even with logs missing.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub run_timeout: Duration,
    /// Never offer the interactive prompt, even when stdin is a terminal.
    #[arg(long)]
    pub no_prompt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requester {
    Conn(usize),
    Prompt,
}

struct Client {
    conn: Conn<TcpStream>,
    addr: SocketAddr,
    since: Instant,
    live: Liveness,
    /// Set once an authenticated agent registered.
    agent: Option<u64>,
}

struct Exiting {
    requester: Requester,
    state: Exit,
}

struct Controller {
    poll: Poll,
    listener: TcpListener,
    key: Key,
    registry: Registry,
    clients: HashMap<usize, Client>,
    next_token: usize,
    active: Option<(ActiveRun, Requester)>,
    reports: Receiver<(u64, String)>,
    prompt: Option<Receiver<String>>,
    stop: Arc<AtomicBool>,
    exiting: Option<Exiting>,
    refusals: LogLimiter,
    defaults: RunDefaults,
    compare_addr: SocketAddr,
    msgs: Vec<Msg>,
    /// The accept loop stopped at its cap: connections may still wait in the backlog, and the
    /// edge-triggered listener will not report them again.
    accept_more: bool,
    /// Connections whose read loop stopped at its cap with data possibly left in the socket.
    read_more: Vec<usize>,
}

/// Connections the kernel may queue before we accept them (std and mio use 128): a fleet of
/// agents reconnecting at once after a restart should not see its SYNs dropped.
const LISTEN_BACKLOG: i32 = 1024;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into()))
}

/// The address a per-source cap counts by: IPv4 (also v4-mapped), or the /64 of an IPv6 address.
fn source_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

fn log(msg: impl std::fmt::Display) {
    say!("mpcomm c2 serve: {msg}");
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let key = super::key::load(&args.key_file)?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = listen(args.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another controller running? choose --listen",
            args.listen
        )
    })?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let listen = listener.local_addr()?;

    let results = args.results.clone().or_else(|| {
        std::env::var_os("STATE_DIRECTORY").map(|d| PathBuf::from(d).join("results.jsonl"))
    });
    let mut cfg = ServerConfig::local(
        args.compare_listen
            .unwrap_or(SocketAddr::new(listen.ip(), crate::compare::DEFAULT_PORT)),
    );
    cfg.run_timeout = args.run_timeout;
    cfg.results = results.clone();
    cfg.hist_dir = args.hist_dir.clone();
    let server = Server::bind(cfg)
        .context("cannot start the in-process comparator (choose --compare-listen)")?;
    let compare_addr = server.local_addr();
    let (stopper, reports) = spawn_comparator(server, waker.clone())?;

    let stop = Arc::new(AtomicBool::new(false));
    let (s, w) = (stop.clone(), waker.clone());
    ctrlc::set_handler(move || {
        s.store(true, Ordering::SeqCst);
        let _ = w.wake();
    })
    .context("cannot install the SIGINT/SIGTERM handler")?;
    let prompt =
        (!args.no_prompt && std::io::stdin().is_terminal()).then(|| spawn_prompt(waker.clone()));

    log(format_args!(
        "listening on {listen}, comparator on {compare_addr}{}",
        results
            .as_ref()
            .map_or(String::new(), |r| format!(", results to {}", r.display()))
    ));
    if let Err(e) = super::notify::notify("READY=1") {
        log(format_args!("cannot notify systemd: {e}"));
    }
    let mut c = Controller {
        poll,
        listener,
        key,
        registry: Registry::new(args.order_by),
        clients: HashMap::new(),
        next_token: FIRST_CONN,
        active: None,
        reports,
        prompt,
        stop,
        exiting: None,
        refusals: LogLimiter::new(10, Duration::from_secs(10)),
        defaults: RunDefaults {
            peer_port: args.peer_port,
            group: args.group,
            slack: RUN_SLACK,
        },
        compare_addr,
        msgs: Vec::new(),
        accept_more: false,
        read_more: Vec::new(),
    };
    let code = c.event_loop();
    let _ = super::notify::notify("STOPPING=1");
    stopper.stop();
    code
}

fn spawn_comparator(
    server: Server,
    waker: Arc<Waker>,
) -> anyhow::Result<(Stopper, Receiver<(u64, String)>)> {
    let stopper = server.stopper();
    let (tx, rx) = sync_channel(256);
    std::thread::Builder::new()
        .name("comparator".into())
        .spawn(move || {
            let result = server.run(|r: &Report| {
                let _ = tx.send((r.run_id, r.to_json_line()));
                let _ = waker.wake();
            });
            if let Err(e) = result {
                log(format_args!("comparator stopped: {e:#}"));
            }
        })
        .context("cannot start the comparator thread")?;
    Ok((stopper, rx))
}

fn spawn_prompt(waker: Arc<Waker>) -> Receiver<String> {
    let (tx, rx) = sync_channel(16);
    let _ = std::thread::Builder::new()
        .name("prompt".into())
        .spawn(move || {
            use std::io::{BufRead, Write};
            say!("commands: run N N_MSGS [fanout|multicast] [ORDER], status, exit");
            let stdin = std::io::stdin();
            let _ = write!(std::io::stderr(), ">>> ");
            loop {
                let mut line = String::new();
                match stdin.lock().read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if tx.send(line).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        });
    rx
}

/// A prompt line as a request; `Err` is the text to show.
pub fn parse_prompt(line: &str) -> Result<Option<Msg>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(None),
        ["status"] => Ok(Some(Msg::StatusRequest)),
        ["exit"] => Ok(Some(Msg::ExitRequest)),
        ["run", n, m, rest @ ..] if rest.len() <= 2 => {
            let peers = n
                .parse()
                .map_err(|_| format!("N must be a number, got {n:?}"))?;
            let msgs = m
                .parse()
                .map_err(|_| format!("N_MSGS must be a number, got {m:?}"))?;
            // Transport and order, each optional, in either order: the words do not overlap.
            let (mut transport, mut order) = (Transport::Fanout, Order::None);
            for w in rest {
                match (w.parse(), w.parse()) {
                    (Ok(t), _) => transport = t,
                    (_, Ok(o)) => order = o,
                    (Err(e), Err(_)) => {
                        return Err(format!(
                            "{e}; or an order: none, fifo, causal, sequencer, lamport"
                        ))
                    }
                }
            }
            Ok(Some(Msg::RunRequest(RunRequest {
                peers,
                msgs,
                transport,
                order,
                repair: None,
                interval_ms: (10, 100),
                size: 0,
                wan: String::new(),
                time_scale: 1.0,
                wan_loss: 0.0,
                seed: None,
                ssm: false,
            })))
        }
        _ => Err("commands: run N N_MSGS [fanout|multicast] [ORDER], status, exit".into()),
    }
}

impl Controller {
    fn event_loop(&mut self) -> anyhow::Result<ExitCode> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            // Sources that stopped at a per-event cap get no new edge: poll without sleeping
            // and serve them again after this round's events.
            let accept_again = self.accept_more;
            let read_again = std::mem::take(&mut self.read_more);
            let timeout = if accept_again || !read_again.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.next_deadline(now)
                    .map(|d| d.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    self.accept_more |= accept_again;
                    self.read_more.extend(read_again);
                    continue;
                }
                return Err(e.into());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.on_wake(),
                    Token(t) => self.on_client_event(t),
                }
            }
            if accept_again {
                self.accept();
            }
            for t in read_again {
                self.on_client_event(t);
            }
            if self.stop.load(Ordering::SeqCst) {
                log("signal received: stopping (agents stay up and reconnect to the next controller)");
                return Ok(ExitCode::SUCCESS);
            }
            let now = Instant::now();
            self.on_timers(now);
            if let Some(code) = self.exit_if_done(now) {
                return Ok(code);
            }
        }
    }

    fn next_deadline(&self, _now: Instant) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut at = |t: Instant| d = Some(d.map_or(t, |x| x.min(t)));
        for c in self.clients.values() {
            if c.conn.is_established() {
                at(c.live.next_deadline());
                if c.agent.is_none() && c.conn.peer_role() == Some(Role::Agent) {
                    at(c.since + HANDSHAKE_TIMEOUT);
                }
            } else if c.conn.peer_role().is_none() {
                at(c.since + HELLO_TIMEOUT);
            } else {
                at(c.since + HANDSHAKE_TIMEOUT);
            }
        }
        if let Some((r, _)) = &self.active {
            at(r.next_deadline());
        }
        if let Some(e) = &self.exiting {
            at(e.state.next_deadline(_now));
        }
        if let Some(t) = self.refusals.due() {
            at(t);
        }
        d
    }

    fn accept(&mut self) {
        self.accept_more = false;
        for _ in 0..ACCEPTS_PER_EVENT {
            let (mut stream, addr) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log(format_args!("accept: {e}"));
                    return;
                }
            };
            if !self.make_room(addr) {
                self.refused(addr, "too many connections: closed at once");
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log(format_args!("register {addr}: {e}"));
                continue;
            }
            let now = Instant::now();
            let hs = Handshake::server(self.key, fresh32());
            self.clients.insert(
                token,
                Client {
                    conn: Conn::new(stream, hs),
                    addr,
                    since: now,
                    live: Liveness::new(now),
                    agent: None,
                },
            );
            // The client sends its Hello right after connecting: take it now if it is there,
            // so the connection counts as talking before the next newcomer looks for a victim.
            self.on_client_event(token);
        }
        self.accept_more = true;
    }

    /// Room for one more connection from `addr`: evict the oldest connection still
    /// authenticating from its source (or, at the global cap, from anywhere), preferring ones
    /// that have not even sent a Hello. False only when every slot holds an established one.
    fn make_room(&mut self, addr: SocketAddr) -> bool {
        let src = source_of(addr.ip());
        let victim = |clients: &HashMap<usize, Client>, same_source: bool| {
            clients
                .iter()
                .filter(|(_, c)| !c.conn.is_established())
                .filter(|(_, c)| !same_source || source_of(c.addr.ip()) == src)
                .min_by_key(|(t, c)| (c.conn.peer_role().is_some(), c.since, **t))
                .map(|(t, _)| *t)
        };
        let from_src = self
            .clients
            .values()
            .filter(|c| !c.conn.is_established() && source_of(c.addr.ip()) == src)
            .count();
        let pending = self
            .clients
            .values()
            .filter(|c| !c.conn.is_established())
            .count();
        let evict = if from_src >= MAX_PENDING_PER_SOURCE {
            victim(&self.clients, true)
        } else if pending >= MAX_UNAUTHENTICATED || self.clients.len() >= MAX_CONNECTIONS {
            victim(&self.clients, false)
        } else {
            return true;
        };
        match evict {
            Some(t) => {
                self.drop_client(
                    t,
                    format_args!(
                        "evicted for a newer connection: too many still authenticating (at most {MAX_PENDING_PER_SOURCE} per source, {MAX_UNAUTHENTICATED} in all)"
                    ),
                );
                self.clients.len() < MAX_CONNECTIONS
            }
            None => false,
        }
    }

    fn refused(&mut self, addr: SocketAddr, why: impl std::fmt::Display) {
        if let Some(suppressed) = self.refusals.allow(Instant::now()) {
            if suppressed > 0 {
                log(format_args!("({suppressed} more refusals not logged)"));
            }
            log(format_args!("refused connection from {addr}: {why}"));
        }
    }

    fn drop_client(&mut self, token: usize, why: impl std::fmt::Display) {
        let Some(mut c) = self.clients.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.conn.stream);
        if !c.conn.is_established() {
            return self.refused(c.addr, why);
        }
        if let Some(instance) = c.agent {
            self.registry.disconnected(token);
            let live = self.registry.live(Instant::now()).len();
            log(format_args!(
                "agent {} ({instance:016x}) disconnected: {why}; {live} live",
                c.addr
            ));
        } else {
            let who = match c.conn.peer_role() {
                Some(Role::Agent) => "unregistered agent",
                _ => "control client",
            };
            log(format_args!("{who} {} disconnected: {why}", c.addr));
        }
    }

    fn on_client_event(&mut self, token: usize) {
        let now = Instant::now();
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        let result = c
            .conn
            .flush()
            .and_then(|_| c.conn.on_readable(&mut self.msgs));
        if !self.msgs.is_empty() {
            c.live.received(now);
        }
        if result.is_ok() && c.conn.read_pending() && !self.read_more.contains(&token) {
            self.read_more.push(token);
        }
        let established = c.conn.is_established();
        // Messages that arrived before an error were authenticated: act on them first, and
        // never leave them in the shared buffer for the next connection's turn.
        let msgs = std::mem::take(&mut self.msgs);
        for m in &msgs {
            self.on_msg(token, m, now);
        }
        self.msgs = msgs;
        self.msgs.clear();
        match result {
            Err(ConnError::Closed) if established => self.drop_client(token, "connection closed"),
            Err(e) => self.drop_client(token, e),
            Ok(_) => {}
        }
    }

    fn send(&mut self, token: usize, m: &Msg) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        c.live.sent(Instant::now());
        if let Err(e) = c.conn.send(m).and_then(|_| c.conn.flush()) {
            self.drop_client(token, e);
        }
    }

    fn on_msg(&mut self, token: usize, m: &Msg, now: Instant) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        let role = c.conn.peer_role();
        let addr = c.addr;
        match (role, m) {
            (_, Msg::Heartbeat) => self.registry.seen(token, now),
            (
                Some(Role::Agent),
                Msg::Register {
                    instance,
                    advertise,
                    zone,
                    running,
                },
            ) => {
                c.agent = Some(*instance);
                let ip = advertise.unwrap_or(addr.ip());
                self.registry
                    .register(now, token, *instance, ip, zone.clone(), *running);
                let live = self.registry.live(now).len();
                log(format_args!(
                    "agent {addr} registered as {ip}{}{}; {live} live",
                    if zone.is_empty() {
                        String::new()
                    } else {
                        format!(" zone {zone}")
                    },
                    running.map_or(String::new(), |r| format!(", busy with run {r:016x}"))
                ));
                // An agent that was still connecting when the exit was ordered stops too.
                if let Some(e) = self.exiting.as_mut().filter(|e| e.state.in_grace(now)) {
                    e.state.told();
                    log(format_args!("exit in progress: stopping agent {addr} too"));
                    self.send(token, &Msg::Shutdown);
                }
            }
            (Some(Role::Agent), Msg::RunReady { run_id }) => {
                self.registry.seen(token, now);
                let update = c.agent.and_then(|i| {
                    self.active
                        .as_mut()
                        .filter(|(r, _)| r.run_id == *run_id)
                        .and_then(|(r, _)| r.on_ready(i))
                });
                self.deliver_opt(update);
            }
            (
                Some(Role::Agent),
                Msg::RunFinished {
                    run_id,
                    ok,
                    detail,
                    running,
                },
            ) => {
                self.registry.seen(token, now);
                let Some(instance) = c.agent else { return };
                let still = running.map_or(String::from("idle"), |r| {
                    format!("still busy with run {r:016x}")
                });
                if *ok {
                    log(format_args!(
                        "agent {addr}: run {run_id:016x} finished; {still}"
                    ));
                } else {
                    log(format_args!(
                        "agent {addr}: run {run_id:016x} failed: {detail}; {still}"
                    ));
                }
                // The agent's own word on what it runs now: idle after its run ended (also a
                // run this controller did not start, or one already reported), still busy
                // after refusing a run because another one is running.
                self.registry.set_busy(instance, *running);
                let update = self
                    .active
                    .as_mut()
                    .filter(|(r, _)| r.run_id == *run_id)
                    .and_then(|(r, _)| r.on_finished(instance, *ok, detail.clone()));
                self.deliver_opt(update);
            }
            (Some(Role::Control), Msg::RunRequest(req)) => {
                self.start_run(req, Requester::Conn(token), now)
            }
            (Some(Role::Control), Msg::StatusRequest) => {
                let agents = self.registry.status(now);
                self.send(token, &Msg::Status { agents });
            }
            (Some(Role::Control), Msg::ExitRequest) => self.begin_exit(Requester::Conn(token), now),
            (_, other) => log(format_args!(
                "{addr}: message not allowed for role {role:?} ignored: {other:?}"
            )),
        }
    }

    fn deliver_opt(&mut self, update: Option<Update>) {
        if let (Some(u), Some((_, who))) = (update, &self.active) {
            let who = *who;
            self.deliver(who, u);
        }
    }

    fn deliver(&mut self, who: Requester, u: Update) {
        match who {
            Requester::Conn(t) => {
                let m = match u {
                    Update::Progress(text) => Msg::Progress { text },
                    Update::Failed(text) => Msg::Refused { text },
                    Update::Done(json) => {
                        let run_id = self.active.as_ref().map_or(0, |(r, _)| r.run_id);
                        Msg::RunReport { run_id, json }
                    }
                };
                self.send(t, &m);
            }
            Requester::Prompt => match u {
                Update::Progress(t) | Update::Failed(t) => say!("{t}"),
                Update::Done(json) => match Report::from_json_line(&json) {
                    Ok(r) => {
                        let _ = r.write_human(&mut crate::util::out::stdout());
                    }
                    Err(_) => out!("{json}"),
                },
            },
        }
    }

    fn refuse(&mut self, who: Requester, text: String) {
        log(format_args!("request refused: {text}"));
        match who {
            Requester::Conn(t) => self.send(t, &Msg::Refused { text }),
            Requester::Prompt => say!("refused: {text}"),
        }
    }

    fn start_run(&mut self, req: &RunRequest, who: Requester, now: Instant) {
        if self.exiting.is_some() {
            return self.refuse(who, "the controller is shutting down".into());
        }
        if let Some((r, _)) = &self.active {
            let text = format!(
                "run {:016x} is in progress: one run at a time, retry when it is reported",
                r.run_id
            );
            return self.refuse(who, text);
        }
        let live = self.registry.live(now);
        let live_total = live.len();
        let mut candidates = Vec::with_capacity(live.len());
        let mut conn_of = HashMap::new();
        for a in live.iter().filter(|a| a.busy.is_none()) {
            let Some(token) = a.conn else { continue };
            let Some(c) = self.clients.get(&token) else {
                continue;
            };
            // The comparator as this agent reaches it: our address on its connection.
            let ip = if self.compare_addr.ip().is_unspecified() {
                c.conn
                    .stream
                    .local_addr()
                    .map(|l| l.ip())
                    .unwrap_or(self.compare_addr.ip())
            } else {
                self.compare_addr.ip()
            };
            conn_of.insert(a.instance, token);
            candidates.push(Candidate {
                instance: a.instance,
                advertise: a.advertise,
                zone: &a.zone,
                comparator: SocketAddr::new(ip, self.compare_addr.port()),
            });
        }
        let run_id = u64::from_be_bytes(fresh32()[..8].try_into().expect("8 bytes")) >> 1 | 1;
        let seed = u64::from_be_bytes(fresh32()[..8].try_into().expect("8 bytes"));
        let profile = match load_profile(&req.wan) {
            Ok(p) => p,
            Err(text) => return self.refuse(who, text),
        };
        let plan = match plan(
            profile.as_ref(),
            req,
            &candidates,
            live_total,
            &self.defaults,
            run_id,
            seed,
        ) {
            Ok(p) => p,
            Err(text) => return self.refuse(who, text),
        };
        drop(candidates);
        let run = ActiveRun::new(&plan, req.transport, now);
        log(format_args!(
            "run {run_id:016x}: {} peers x {} msgs, {}, order {}{}",
            req.peers,
            req.msgs,
            req.transport,
            req.order,
            if req.wan.is_empty() {
                String::new()
            } else {
                format!(", wan {}", req.wan)
            }
        ));
        self.active = Some((run, who));
        for (instance, spec) in plan.specs {
            self.registry.set_busy(instance, Some(run_id));
            if let Some(&token) = conn_of.get(&instance) {
                self.send(token, &Msg::Run(Box::new(spec)));
            }
        }
        let text = format!(
            "run {run_id:016x} started: {} peers x {} msgs, {}, order {}",
            req.peers, req.msgs, req.transport, req.order
        );
        self.deliver(who, Update::Progress(text));
    }

    fn begin_exit(&mut self, who: Requester, now: Instant) {
        if self.exiting.is_some() {
            return self.refuse(who, "an exit is already in progress".into());
        }
        let tokens: Vec<usize> = self.registry.connected().filter_map(|a| a.conn).collect();
        log(format_args!(
            "exit requested: stopping {} agents, and those that register within {EXIT_GRACE:?}",
            tokens.len()
        ));
        let mut state = Exit::new(now);
        for t in &tokens {
            state.told();
            self.send(*t, &Msg::Shutdown);
        }
        if let Some((r, w)) = self.active.take() {
            self.deliver(
                w,
                Update::Failed(format!(
                    "run {:016x} abandoned: the controller is exiting",
                    r.run_id
                )),
            );
        }
        self.exiting = Some(Exiting {
            requester: who,
            state,
        });
    }

    fn exit_if_done(&mut self, now: Instant) -> Option<ExitCode> {
        let e = self.exiting.as_ref()?;
        let outcome = e.state.poll(now, self.registry.connected().count())?;
        let who = e.requester;
        if outcome.stragglers > 0 {
            log(format_args!(
                "{} agents did not close their connection in time",
                outcome.stragglers
            ));
        }
        let stopped = outcome.stopped();
        match who {
            Requester::Conn(t) => {
                self.send(t, &Msg::ExitDone { agents: stopped });
                // Bounded: the reply is small; give the socket up to a second to take it.
                let until = Instant::now() + Duration::from_secs(1);
                while let Some(c) = self.clients.get_mut(&t) {
                    if !c.conn.wants_write() || Instant::now() >= until || c.conn.flush().is_err() {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            Requester::Prompt => say!("{stopped} agents stopped"),
        }
        log(format_args!("exiting: {stopped} agents stopped"));
        Some(ExitCode::SUCCESS)
    }

    fn on_wake(&mut self) {
        loop {
            match self.reports.try_recv() {
                Ok((run_id, json)) => match self.active.as_mut() {
                    Some((r, _)) if r.run_id == run_id => {
                        log(format_args!("run {run_id:016x}: comparator report in"));
                        r.on_report(json, Instant::now());
                    }
                    _ => log(format_args!(
                        "report for run {run_id:016x}, which this controller did not start (logged by the comparator only)"
                    )),
                },
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    log("the comparator thread ended: runs cannot be reported; restart the controller");
                    break;
                }
            }
        }
        let lines: Vec<String> = self
            .prompt
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default();
        let prompted = !lines.is_empty();
        for line in lines {
            match parse_prompt(&line) {
                Ok(None) => {}
                Ok(Some(Msg::RunRequest(req))) => {
                    self.start_run(&req, Requester::Prompt, Instant::now())
                }
                Ok(Some(Msg::ExitRequest)) => self.begin_exit(Requester::Prompt, Instant::now()),
                Ok(Some(_)) => print_status(&self.registry.status(Instant::now())),
                Err(text) => say!("{text}"),
            }
        }
        if prompted && self.exiting.is_none() {
            use std::io::Write;
            let _ = write!(std::io::stderr(), ">>> ");
        }
    }

    fn on_timers(&mut self, now: Instant) {
        // A flood that stopped is still told: the count of the lines it was not given.
        if let Some(suppressed) = self.refusals.take_due(now).filter(|&n| n > 0) {
            log(format_args!("({suppressed} more refusals not logged)"));
        }
        let mut drop: Vec<(usize, &'static str)> = Vec::new();
        let mut beat: Vec<usize> = Vec::new();
        for (t, c) in &self.clients {
            if !c.conn.is_established() {
                if c.conn.peer_role().is_none() && now >= c.since + HELLO_TIMEOUT {
                    drop.push((*t, "no hello within 1 s"));
                } else if now >= c.since + HANDSHAKE_TIMEOUT {
                    drop.push((*t, "no authentication within 5 s"));
                }
            } else if c.agent.is_none()
                && c.conn.peer_role() == Some(Role::Agent)
                && now >= c.since + HANDSHAKE_TIMEOUT
            {
                drop.push((*t, "agent did not register within 5 s"));
            } else if c.live.is_dead(now) {
                drop.push((*t, "silent: heartbeats missed"));
            } else if c.live.heartbeat_due(now) {
                beat.push(*t);
            }
        }
        for (t, why) in drop {
            self.drop_client(t, why);
        }
        // The exit's requester gets no heartbeats: it only waits for ExitDone (at most
        // EXIT_GRACE + EXIT_WAIT, less than a client's silence limit), and an answer crossing
        // our close would reset the connection before it read ExitDone.
        let requester = match &self.exiting {
            Some(Exiting {
                requester: Requester::Conn(t),
                ..
            }) => Some(*t),
            _ => None,
        };
        for t in beat.into_iter().filter(|t| Some(*t) != requester) {
            self.send(t, &Msg::Heartbeat);
        }
        let update = self.active.as_mut().and_then(|(r, _)| r.poll(now));
        if let Some(u) = update {
            let done = matches!(u, Update::Done(_) | Update::Failed(_));
            if let Update::Failed(t) = &u {
                log(t);
            }
            self.deliver_opt(Some(u));
            if done {
                // Its agents stay busy until each says its peer ended (RunFinished) or its
                // link is lost: a peer may outlive the report or the run's deadline.
                if let Some((r, _)) = self.active.take() {
                    log(format_args!("run {:016x}: done", r.run_id));
                }
            }
        }
    }
}

/// The WAN profile of a request: only names the agents can resolve too (shipped profiles, or a
/// file name both sides have), never a path.
pub fn load_profile(wan: &str) -> Result<Option<crate::wan::Profile>, String> {
    if wan.is_empty() {
        return Ok(None);
    }
    if !wan
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(format!(
            "--wan {wan:?}: give a profile name (e.g. lan, gcp8), not a path"
        ));
    }
    crate::wan::Profile::load(wan)
        .map(Some)
        .map_err(|e| format!("--wan {wan}: {e}"))
}

pub fn print_status(agents: &[super::proto::AgentInfo]) {
    let live = agents.iter().filter(|a| a.live).count();
    out!("{live} live agents ({} known)", agents.len());
    out!(
        "{:>3}  {:<40} {:<12} {:<6} {:>10}",
        "#",
        "address",
        "zone",
        "state",
        "seen"
    );
    for (i, a) in agents.iter().enumerate() {
        let state = match (a.live, a.busy) {
            (false, _) => "lost",
            (true, true) => "busy",
            (true, false) => "idle",
        };
        out!(
            "{i:>3}  {:<40} {:<12} {state:<6} {:>8}ms",
            a.advertise.to_string(),
            a.zone,
            a.seen_ms_ago
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lines() {
        assert_eq!(parse_prompt("  "), Ok(None));
        assert_eq!(parse_prompt("status"), Ok(Some(Msg::StatusRequest)));
        let Ok(Some(Msg::RunRequest(r))) = parse_prompt("run 4 10 multicast") else {
            panic!()
        };
        assert_eq!(
            (r.peers, r.msgs, r.transport),
            (4, 10, Transport::Multicast)
        );
        assert!(parse_prompt("run 4 x").unwrap_err().contains("N_MSGS"));
        let Ok(Some(Msg::RunRequest(r))) = parse_prompt("run 4 10 causal multicast") else {
            panic!()
        };
        assert_eq!(
            (r.transport, r.order),
            (Transport::Multicast, Order::Causal)
        );
        assert_eq!(r.repair, None, "the mode's default");
        let e = parse_prompt("run 4 10 carrier-pigeon").unwrap_err();
        assert!(
            e.contains("carrier-pigeon") && e.contains("sequencer"),
            "{e}"
        );
        assert!(parse_prompt("run 4 10 fifo fanout extra").is_err());
        assert!(parse_prompt("rm -rf /").is_err());
    }
}
