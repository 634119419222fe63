//! `mpcomm c2 serve`: the mio driver around the controller's core ([`super::control::Core`]).
//! One loop for agents and control clients; the comparator service in one thread (it reports
//! through a channel and the loop's waker); when stdin is a terminal, the `>>>` prompt read by
//! a helper thread ([`super::control::prompt`]). This file reads the clock, moves bytes and
//! admits connections; what to answer, when to time out and when to exit is the core's.
//!
//! Over 500 lines only because it still holds the clap `ServeArgs` and the admission code
//! (`listen` … `refused`), both about to move (to `cli` and to a shared acceptor in `net`).

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
use super::control::{prompt, Core, Out, ServeConfig};
use super::proto::Msg;
use super::registry::OrderBy;
use super::timing::LogLimiter;
use crate::compare::{Report, Server, ServerConfig, Stopper};
use crate::util::duration;

// `c2 run` and `c2 status` print and check with these too.
pub use super::control::prompt::print_status;
pub use super::control::refusal::load_profile;

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

/// After the exit, how long the requester's connection gets to take its ExitDone.
const EXIT_FLUSH: Duration = Duration::from_secs(1);

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

struct Client {
    conn: Conn<TcpStream>,
    addr: SocketAddr,
    since: Instant,
}

/// The core said the exit is over: only `conn`'s last bytes are still written, until `until`.
struct Closing {
    conn: Option<usize>,
    until: Instant,
}

struct Controller {
    poll: Poll,
    listener: TcpListener,
    key: Key,
    core: Core,
    clients: HashMap<usize, Client>,
    next_token: usize,
    reports: Receiver<(u64, String)>,
    prompt: Option<Receiver<String>>,
    stop: Arc<AtomicBool>,
    closing: Option<Closing>,
    refusals: LogLimiter,
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
    serve(ServeConfig::from(args))
}

pub fn serve(cfg: ServeConfig) -> anyhow::Result<ExitCode> {
    let key = super::key::load(&cfg.key_file)?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = listen(cfg.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another controller running? choose --listen",
            cfg.listen
        )
    })?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let listen = listener.local_addr()?;

    let results = cfg.results.clone().or_else(|| {
        std::env::var_os("STATE_DIRECTORY").map(|d| PathBuf::from(d).join("results.jsonl"))
    });
    let mut compare = ServerConfig::local(
        cfg.compare_listen
            .unwrap_or(SocketAddr::new(listen.ip(), crate::compare::DEFAULT_PORT)),
    );
    compare.run_timeout = cfg.run_timeout;
    compare.results = results.clone();
    compare.hist_dir = cfg.hist_dir.clone();
    let server = Server::bind(compare)
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
        (cfg.prompt && std::io::stdin().is_terminal()).then(|| prompt::spawn_prompt(waker.clone()));

    log(format_args!(
        "listening on {listen}, comparator on {compare_addr}{}",
        results
            .as_ref()
            .map_or(String::new(), |r| format!(", results to {}", r.display()))
    ));
    if let Err(e) = super::notify::notify("READY=1") {
        log(format_args!("cannot notify systemd: {e}"));
    }
    let seed = u64::from_be_bytes(fresh32()[..8].try_into().expect("8 bytes"));
    let mut c = Controller {
        poll,
        listener,
        key,
        core: Core::new(&cfg, compare_addr, seed),
        clients: HashMap::new(),
        next_token: FIRST_CONN,
        reports,
        prompt,
        stop,
        closing: None,
        refusals: LogLimiter::new(10, Duration::from_secs(10)),
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

impl Controller {
    fn event_loop(&mut self) -> anyhow::Result<ExitCode> {
        let mut events = Events::with_capacity(256);
        loop {
            self.drain();
            if let Some(c) = &self.closing {
                let flushed = c
                    .conn
                    .and_then(|t| self.clients.get(&t))
                    .is_none_or(|client| !client.conn.wants_write());
                if flushed || Instant::now() >= c.until {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let now = Instant::now();
            // Sources that stopped at a per-event cap get no new edge: poll without sleeping
            // and serve them again after this round's events.
            let accept_again = self.accept_more && self.closing.is_none();
            let read_again = std::mem::take(&mut self.read_more);
            let timeout = if accept_again || !read_again.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
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
            if let Some(c) = &self.closing {
                // The exit is over: only the requester's last bytes still matter.
                let conn = c.conn;
                if events.iter().any(|ev| Some(ev.token().0) == conn) {
                    self.flush_only(conn);
                }
                continue;
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
            self.on_timers(Instant::now());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if let Some(c) = &self.closing {
            return Some(c.until);
        }
        [self.core.poll_timeout(), self.refusals.due()]
            .into_iter()
            .flatten()
            .min()
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
                },
            );
            self.opened(now, token);
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

    /// The core learns of a connection as soon as it is accepted: its hello timeout runs
    /// from now.
    fn opened(&mut self, now: Instant, token: usize) {
        let Some(c) = self.clients.get(&token) else {
            return;
        };
        let local = c.conn.stream.local_addr().ok().map(|a| a.ip());
        self.core.on_open(now, token, c.addr, local);
    }

    fn drop_client(&mut self, token: usize, why: impl std::fmt::Display) {
        let Some(mut c) = self.clients.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.conn.stream);
        if !c.conn.is_established() {
            self.refused(c.addr, &why);
        }
        self.core.on_closed(Instant::now(), token, &why);
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
        if result.is_ok() && c.conn.read_pending() && !self.read_more.contains(&token) {
            self.read_more.push(token);
        }
        let established = c.conn.is_established();
        self.core
            .on_handshake(token, c.conn.peer_role(), established);
        // Messages that arrived before an error were authenticated: act on them first, and
        // never leave them in the shared buffer for the next connection's turn.
        let msgs = std::mem::take(&mut self.msgs);
        for m in &msgs {
            self.core.handle(now, token, m);
        }
        self.msgs = msgs;
        self.msgs.clear();
        self.drain();
        match result {
            Err(ConnError::Closed) if established => self.drop_client(token, "connection closed"),
            Err(e) => self.drop_client(token, e),
            Ok(_) => {}
        }
    }

    /// Carry out what the core decided, in its order.
    fn drain(&mut self) {
        while let Some(o) = self.core.poll_out() {
            match o {
                Out::Send { to, msg } => self.send(to, &msg),
                Out::Close { conn, reason } => self.drop_client(conn, reason),
                Out::Prompt(p) => prompt::show(p),
                Out::Log(line) => log(line),
                Out::Exit { flush } => {
                    self.closing = Some(Closing {
                        conn: flush,
                        until: Instant::now() + EXIT_FLUSH,
                    })
                }
            }
        }
    }

    fn send(&mut self, token: usize, m: &Msg) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if let Err(e) = c.conn.send(m).and_then(|_| c.conn.flush()) {
            self.drop_client(token, e);
        }
    }

    /// While closing: write what is queued for `conn`, nothing else.
    fn flush_only(&mut self, conn: Option<usize>) {
        let Some(t) = conn else { return };
        if let Some(c) = self.clients.get_mut(&t) {
            if let Err(e) = c.conn.flush() {
                self.drop_client(t, e);
            }
        }
    }

    fn on_wake(&mut self) {
        let now = Instant::now();
        loop {
            match self.reports.try_recv() {
                Ok((run_id, json)) => self.core.on_report(now, run_id, json),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.core.on_comparator_gone();
                    break;
                }
            }
        }
        let lines: Vec<String> = self
            .prompt
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default();
        for line in &lines {
            self.core.on_prompt(now, line);
        }
        self.drain();
        if !lines.is_empty() && !self.core.is_exiting() {
            prompt::show_prompt();
        }
    }

    fn on_timers(&mut self, now: Instant) {
        // A flood that stopped is still told: the count of the lines it was not given.
        if let Some(suppressed) = self.refusals.take_due(now).filter(|&n| n > 0) {
            log(format_args!("({suppressed} more refusals not logged)"));
        }
        self.core.handle_timeout(now);
        self.drain();
    }
}
