//! `mpcomm c2 serve`: the mio driver around the controller's core ([`super::control::Core`]).
//! One loop for agents and control clients; the comparator service in one thread (it reports
//! through a channel and the loop's waker); when stdin is a terminal, the `>>>` prompt read by
//! a helper thread ([`super::control::prompt`]). This file reads the clock, moves bytes and
//! admits connections; what to answer, when to time out and when to exit is the core's.
//!
//! Admission (accept rounds, per-source caps, eviction) is the shared layer in [`crate::net`].

use anyhow::Context;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{fresh32, Handshake, Key};
use super::conn::{Conn, ConnError};
use super::control::{prompt, Core, Out, ServeConfig};
use super::proto::Msg;
use super::timing::LogLimiter;
use crate::compare::{Report, Server, ServerConfig, Stopper};
use crate::net::{Acceptor, Admit, ConnTable, Limits, StopHandle};

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
const LIMITS: Limits = Limits {
    max_connections: MAX_CONNECTIONS,
    max_per_source: None,
    max_pending: Some(MAX_UNAUTHENTICATED),
    max_pending_per_source: Some(MAX_PENDING_PER_SOURCE),
};
/// Eviction class of a connection that sent its Hello (one that has not goes first).
const CLASS_HELLO: u8 = 1;

/// After the exit, how long the requester's connection gets to take its ExitDone.
const EXIT_FLUSH: Duration = Duration::from_secs(1);

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
    /// Accepts in bounded rounds, and again after a failure (out of descriptors).
    acceptor: Acceptor,
    key: Key,
    core: Core,
    clients: HashMap<usize, Client>,
    /// Tokens, per-source counts and the connections still authenticating, for admission.
    admission: ConnTable<()>,
    reports: Receiver<(u64, String)>,
    prompt: Option<Receiver<String>>,
    stop: StopHandle,
    closing: Option<Closing>,
    refusals: LogLimiter,
    msgs: Vec<Msg>,
    /// Connections whose read loop stopped at its cap with data possibly left in the socket.
    read_more: Vec<usize>,
}

fn log(msg: impl std::fmt::Display) {
    say!("mpcomm c2 serve: {msg}");
}

pub fn serve(cfg: ServeConfig) -> anyhow::Result<ExitCode> {
    let key = super::key::load(&cfg.key_file)?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let listener = crate::net::listen(cfg.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another controller running? choose --listen",
            cfg.listen
        )
    })?;
    let acceptor = Acceptor::new(listener, poll.registry(), LISTENER)?;
    let listen = acceptor.local_addr()?;

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

    let stop = StopHandle::new(waker.clone());
    let s = stop.clone();
    ctrlc::set_handler(move || s.stop()).context("cannot install the SIGINT/SIGTERM handler")?;
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
        acceptor,
        key,
        core: Core::new(&cfg, compare_addr, seed),
        clients: HashMap::new(),
        admission: ConnTable::new(FIRST_CONN, LIMITS),
        reports,
        prompt,
        stop,
        closing: None,
        refusals: LogLimiter::new(10, Duration::from_secs(10)),
        msgs: Vec::new(),
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
            let accepting = self.closing.is_none();
            let read_again = std::mem::take(&mut self.read_more);
            let timeout = if (accepting && self.acceptor.has_more()) || !read_again.is_empty() {
                Some(Duration::ZERO)
            } else {
                // After a failed accept the listener is tried again without an event.
                let retry = self.acceptor.retry_at().filter(|_| accepting);
                let next = self.next_deadline().into_iter().chain(retry).min();
                next.map(|d| d.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
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
            let mut accepted = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => {
                        self.accept();
                        accepted = true;
                    }
                    WAKER => self.on_wake(),
                    Token(t) => self.on_client_event(t),
                }
            }
            if !accepted && self.acceptor.wants_round(Instant::now()) {
                self.accept();
            }
            for t in read_again {
                self.on_client_event(t);
            }
            if self.stop.is_stopped() {
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
        let now = Instant::now();
        self.acceptor.start_round();
        while let Some(next) = self.acceptor.next(now) {
            let (mut stream, addr) = match next {
                Ok(x) => x,
                Err(e) => {
                    if self.acceptor.failures_in_a_row() == 1 {
                        let every = crate::net::acceptor::RETRY_AFTER;
                        log(format_args!("accept failed: {e}; retrying every {every:?}"));
                    }
                    continue;
                }
            };
            if !self.make_room(addr) {
                self.refused(addr, "too many connections: closed at once");
                continue;
            }
            let token = self.admission.insert(addr, (), now);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log(format_args!("register {addr}: {e}"));
                self.admission.remove(token);
                continue;
            }
            let hs = Handshake::server(self.key, fresh32());
            self.clients.insert(
                token.0,
                Client {
                    conn: Conn::new(stream, hs),
                    addr,
                    since: now,
                },
            );
            self.opened(now, token.0);
            // The client sends its Hello right after connecting: take it now if it is there,
            // so the connection counts as talking before the next newcomer looks for a victim.
            self.on_client_event(token.0);
        }
    }

    /// Room for one more connection from `addr`: evict the oldest connection still
    /// authenticating from its source (or, at the global cap, from anywhere), preferring ones
    /// that have not even sent a Hello. False only when every slot holds an established one.
    fn make_room(&mut self, addr: SocketAddr) -> bool {
        // Bounded: each eviction frees the slot the next decision looks at.
        for _ in 0..4 {
            match self.admission.admit(addr) {
                Admit::Yes => return true,
                Admit::Evict(t) => self.drop_client(
                    t.0,
                    format_args!(
                        "evicted for a newer connection: too many still authenticating (at most {MAX_PENDING_PER_SOURCE} per source, {MAX_UNAUTHENTICATED} in all)"
                    ),
                ),
                Admit::SourceFull { .. } | Admit::Full { .. } => return false,
            }
        }
        false
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
        self.admission.remove(Token(token));
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
        if established {
            self.admission.settle(Token(token));
        } else if c.conn.peer_role().is_some() {
            self.admission
                .mark_pending(Token(token), CLASS_HELLO, c.since);
        }
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
