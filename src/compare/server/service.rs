//! The comparator's driver state: the connection table, the run store, the timers, and the
//! glue between them. Everything here runs on the one mio loop of [`Server::run`]; the
//! decisions live in [`RunStore`](super::store::RunStore),
//! [`ConnTable`](crate::net::ConnTable) and [`Conn`](super::conn::Conn).
//!
//! [`Server::run`]: super::Server::run

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::conn::{over_budget, refuse_at_once, Budget, Conn, State, Step, LINGER};
use super::store::{Finished, Offer, Refusal, RunStore};
use super::worker::{Done, Job, Outcome};
use super::{ServerConfig, ServerStats};
use crate::compare::peerlog::PeerLog;
use crate::compare::report::Report;
use crate::net::{Acceptor, Admit, ConnTable, Deadlines};
use crate::util::loglimit::LogLimiter;
use crate::viz::trace::Times;
use crate::wire::frame::{Kind, Reason};

/// Refusal lines: at most this many per window, then one line with the count of the others.
const REFUSAL_LOG_BURST: u32 = 10;
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);
pub const READ_CHUNK: usize = 64 << 10;
/// Eviction classes in the connection table: a connection whose reply is sent goes first (it
/// is closed without a word), then one still silent in its header; within a class, the one
/// idle longest (ordered by its idle deadline, which moves only when bytes arrive).
const CLASS_LINGER: u8 = 0;
const CLASS_HEADER: u8 = 1;

pub struct Service {
    pub cfg: ServerConfig,
    pub poll: Poll,
    pub acceptor: Acceptor,
    conns: ConnTable<Conn>,
    pub store: RunStore,
    /// Connection deadlines (none while a connection waits for the worker).
    timers: Deadlines<Token>,
    /// Capacity of every upload buffer, kept as they grow and go.
    buffered: usize,
    scratch: Vec<u8>,
    /// Connections whose read stopped at its bound: served again without an event.
    pub read_more: Vec<Token>,
    /// Every refusal line goes through here: a flood costs a few lines, not one per connection.
    refusals: LogLimiter,
    pub jobs: mpsc::Sender<Job>,
    stats: Arc<ServerStats>,
}

impl Service {
    pub fn new(
        cfg: ServerConfig,
        poll: Poll,
        acceptor: Acceptor,
        store: RunStore,
        jobs: mpsc::Sender<Job>,
        stats: Arc<ServerStats>,
    ) -> Service {
        let limits = cfg.conn_limits();
        Service {
            cfg,
            poll,
            acceptor,
            conns: ConnTable::new(super::FIRST_CONN, limits),
            store,
            timers: Deadlines::new(),
            buffered: 0,
            scratch: vec![0u8; READ_CHUNK],
            read_more: Vec::new(),
            refusals: LogLimiter::new(REFUSAL_LOG_BURST, REFUSAL_LOG_WINDOW),
            jobs,
            stats,
        }
    }

    /// The poll timeout's deadline: zero when work is left over from the last round.
    pub fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        if self.acceptor.has_more() || !self.read_more.is_empty() {
            return Some(now);
        }
        [
            self.timers.earliest(),
            self.store.next_deadline(),
            self.acceptor.retry_at(),
            self.refusals.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Stored logs plus every upload buffer.
    fn pending_bytes(&self) -> usize {
        self.store.stored_bytes() + self.buffered
    }

    pub fn publish(&self) {
        let s = &self.stats;
        s.pending_bytes
            .store(self.pending_bytes() as u64, Ordering::SeqCst);
        s.connections
            .store(self.conns.len() as u64, Ordering::SeqCst);
        s.incomplete_runs
            .store(self.store.incomplete() as u64, Ordering::SeqCst);
        s.accept_errors
            .store(self.acceptor.errors(), Ordering::SeqCst);
    }

    pub fn accept(&mut self) {
        let now = Instant::now();
        self.acceptor.start_round();
        while let Some(next) = self.acceptor.next(now) {
            match next {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if self.acceptor.failures_in_a_row() == 1 => say!(
                    "compare: accept failed: {e}; retrying every {:?}",
                    crate::net::acceptor::RETRY_AFTER
                ),
                Err(_) => {}
            }
        }
    }

    /// Take one new connection, making room at the cap, or tell it to come back later.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        // Bounded: each eviction frees a slot the next decision sees.
        for _ in 0..4 {
            match self.conns.admit(peer) {
                Admit::Yes => break,
                Admit::Evict(t) => self.evict(t, now),
                Admit::SourceFull { source, cap } => {
                    let why = format!("too many connections from {source} (at most {cap} at once); send fewer uploads at a time, try again");
                    return self.refuse_now(stream, peer, Refusal::new(Reason::SourceFull, why));
                }
                Admit::Full { cap } => {
                    let why = format!(
                        "busy: {cap} connections are uploading (the most at once); try again"
                    );
                    return self.refuse_now(stream, peer, Refusal::new(Reason::Full, why));
                }
            }
        }
        let rt = self.cfg.read_timeout;
        let token = self
            .conns
            .insert(peer, Conn::new(stream, peer, now, rt), now);
        self.conns.mark_pending(token, CLASS_HEADER, now + rt);
        let conn = self.conns.get_mut(token).expect("just inserted");
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut conn.stream, token, Interest::READABLE)
        {
            say!("compare: {peer}: cannot register connection: {e}");
            self.conns.remove(token);
            return;
        }
        self.timers.set(token, now + rt);
    }

    /// Close a pending connection for a newcomer: one whose reply is sent without a word, one
    /// that has sent nothing for the longest with a `Busy` (it may try again).
    fn evict(&mut self, token: Token, now: Instant) {
        let Some(mut conn) = self.close(token) else {
            return;
        };
        if matches!(conn.state, State::Linger) {
            return;
        }
        let quiet = conn
            .idle
            .checked_sub(self.cfg.read_timeout)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let why = format!(
            "evicted: sent nothing for {:.1} s while the comparator is at its {} connections; try again",
            quiet.as_secs_f64(),
            self.cfg.max_connections
        );
        let peer = conn.peer;
        self.refuse_now_ref(&mut conn.stream, peer, Refusal::new(Reason::Evicted, why));
    }

    fn refuse_now(&mut self, mut stream: TcpStream, peer: SocketAddr, refusal: Refusal) {
        self.refuse_now_ref(&mut stream, peer, refusal);
    }

    fn refuse_now_ref(&mut self, stream: &mut TcpStream, peer: SocketAddr, refusal: Refusal) {
        self.refusal(format_args!("{peer}: busy: {}", refusal.text));
        refuse_at_once(stream, &refusal);
    }

    /// Log one refusal line, unless too many came lately (then they are counted).
    fn refusal(&mut self, line: std::fmt::Arguments) {
        if let Some(suppressed) = self.refusals.allow(Instant::now()) {
            log_suppressed(suppressed);
            say!("compare: {line}");
        }
    }

    /// Take a connection out of the table, its timer and its buffer out of the accounts.
    fn close(&mut self, token: Token) -> Option<Conn> {
        let (mut conn, _) = self.conns.remove(token)?;
        self.timers.remove(token);
        self.buffered -= conn.buffered();
        let _ = self.poll.registry().deregister(&mut conn.stream);
        Some(conn)
    }

    /// Readiness (or a read left over from the last round) on `token`.
    pub fn drive(&mut self, token: Token) {
        let budget = Budget {
            pending: self.pending_bytes(),
            max: self.cfg.max_pending_bytes,
        };
        let (cap, rt) = (self.cfg.max_upload_bytes, self.cfg.read_timeout);
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let before = conn.buffered();
        let step = match conn.state {
            State::Header { .. } | State::Payload { .. } => {
                conn.read(&mut self.scratch, cap, rt, budget)
            }
            // No timer while the worker has the run: the reply comes from `finish`.
            State::Waiting => return,
            State::Reply(_) => return self.write_reply(token),
            State::Linger => {
                if conn.drain(&mut self.scratch) {
                    self.close(token); // the peer closed: done
                }
                return;
            }
        };
        // Grown by reading, or taken out whole with the upload (then it is 0 here).
        self.buffered = self.buffered + conn.buffered() - before;
        let (deadline, idle) = (conn.deadline, conn.idle);
        if matches!(conn.state, State::Header { .. }) {
            self.conns.mark_pending(token, CLASS_HEADER, idle);
        } else {
            self.conns.settle(token);
        }
        self.timers.set(token, deadline);
        self.after(token, step);
    }

    /// Carry out a step's decision.
    fn after(&mut self, token: Token, step: Step) {
        let Some(peer) = self.conns.peer(token) else {
            return;
        };
        match step {
            Step::Wait => {}
            Step::More => {
                if !self.read_more.contains(&token) {
                    self.read_more.push(token);
                }
            }
            Step::Left => {
                self.close(token);
            }
            Step::Close(why) => {
                self.refusal(format_args!("{peer}: closed: {why}"));
                self.close(token);
            }
            Step::Refuse(r) => self.reply(token, r.kind(), r.reason, r.text),
            Step::Upload(bytes) => self.on_upload(token, peer, bytes),
        }
    }

    /// A whole upload: decode it, check the budget, offer it to the store.
    fn on_upload(&mut self, token: Token, peer: SocketAddr, bytes: Vec<u8>) {
        let log = match PeerLog::from_bytes(&bytes) {
            Ok(log) => log,
            Err(e) => {
                return self.reply(
                    token,
                    Kind::Rejected,
                    Reason::BadLog,
                    format!("bad log: {e}"),
                )
            }
        };
        // The page's times are read now: the bytes are not kept.
        let times = self.cfg.html_dir.as_ref().map(|_| {
            let (stride, cap) = crate::viz::service_drawing(log.header.peers, log.header.msgs);
            Times::from_bytes(&bytes, stride, cap).unwrap_or_default()
        });
        drop(bytes);
        let cost = log.heap_bytes() + times.as_ref().map_or(0, Times::heap_bytes);
        // Over the memory budget is "not now", not "never".
        let pending = self.pending_bytes();
        if (pending + cost) as u64 > self.cfg.max_pending_bytes {
            let r = over_budget(pending, self.cfg.max_pending_bytes);
            return self.reply(token, r.kind(), r.reason, r.text);
        }
        let peer_id = log.header.peer_id;
        let run_id = log.header.run_id;
        match self.store.offer(log, times, peer.ip(), Instant::now()) {
            Ok(Offer::Stored { have, of }) => {
                let msg =
                    format!("stored log of peer {peer_id} for run {run_id:016x} ({have} of {of})");
                self.reply(token, Kind::Accepted, Reason::Unstated, msg)
            }
            Ok(Offer::Complete { id, run }) => {
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.state = State::Waiting;
                }
                self.timers.remove(token);
                self.dispatch(id, run, Some((token, peer_id)));
            }
            Err(r) => self.reply(token, r.kind(), r.reason, r.text),
        }
    }

    /// Hand a completed (or timed-out) run to the worker.
    pub fn dispatch(&mut self, id: u64, run: super::store::Run, waiting: Option<(Token, u16)>) {
        if self.jobs.send(Job { id, run, waiting }).is_err() {
            // The worker is gone (it only ends when the loop does): nothing can be reported.
            say!("compare: run {id:016x}: the report thread is gone; run dropped");
            self.store.dropped(id);
        }
    }

    /// Log the reply, queue it and start writing.
    fn reply(&mut self, token: Token, kind: Kind, reason: Reason, msg: String) {
        let Some(peer) = self.conns.peer(token) else {
            return;
        };
        match kind {
            Kind::Accepted if self.cfg.quiet => {}
            Kind::Accepted => say!("compare: {peer}: accepted: {msg}"),
            Kind::Busy => self.refusal(format_args!("{peer}: busy: {msg}")),
            _ => self.refusal(format_args!("{peer}: rejected: {msg}")),
        }
        let deadline = Instant::now() + self.cfg.read_timeout;
        let conn = self.conns.get_mut(token).expect("present");
        self.buffered -= conn.buffered();
        conn.start_reply(kind, reason, &msg, deadline);
        self.conns.settle(token);
        self.timers.set(token, deadline);
        let conn = self.conns.get_mut(token).expect("present");
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .reregister(&mut conn.stream, token, interest)
            .is_err()
        {
            self.close(token);
            return;
        }
        self.write_reply(token);
    }

    fn write_reply(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.write_reply() {
            Ok(true) => {
                let now = Instant::now();
                conn.state = State::Linger;
                conn.deadline = now + LINGER.min(self.cfg.read_timeout);
                let deadline = conn.deadline;
                if conn.drain(&mut self.scratch) {
                    self.close(token);
                    return;
                }
                let idle = conn.idle;
                self.timers.set(token, deadline);
                self.conns.mark_pending(token, CLASS_LINGER, idle);
            }
            Ok(false) => {}
            Err(e) => {
                let peer = conn.peer;
                self.refusal(format_args!("{peer}: reply not delivered: {e}"));
                self.close(token);
            }
        }
    }

    /// The worker is done with a run: account for it, answer the upload that completed it.
    pub fn finish(&mut self, done: Done, on_report: &mut dyn FnMut(&Report)) {
        let Done {
            id,
            waiting,
            outcome,
        } = done;
        let now = Instant::now();
        let reply = match outcome {
            Outcome::Reported(report) => {
                self.store.finish(id, Finished::Reported, now);
                self.stats.runs_reported.fetch_add(1, Ordering::SeqCst);
                on_report(&report);
                waiting.map(|(_, peer)| {
                    let msg = format!(
                        "stored log of peer {peer}; run {id:016x} complete: {} unordered message rounds",
                        report.out_of_order_rounds
                    );
                    (Kind::Accepted, Reason::Unstated, msg)
                })
            }
            Outcome::Broken => {
                self.store.finish(id, Finished::Broken, now);
                waiting.map(|_| {
                    let msg = format!("run {id:016x} could not be analysed (a bug in the comparator: please report it with the logs)");
                    (Kind::Rejected, Reason::AnalysisFailed, msg)
                })
            }
            Outcome::NotWritten { reason, run } => {
                // Keep the run, without the log whose upload is refused now, so that upload
                // can be sent again; a timed-out run is tried again after another timeout.
                let refused_peer = waiting.map(|(_, peer)| peer);
                self.store
                    .finish(id, Finished::NotWritten { run, refused_peer }, now);
                say!(
                    "compare: run {id:016x}: not reported: {reason}; kept, tried again with the next upload or in {:?}",
                    self.cfg.run_timeout
                );
                waiting.map(|(_, peer)| {
                    let msg = format!("run {id:016x} could not be reported: {reason}; the log of peer {peer} was not stored: upload it again");
                    (Kind::Busy, Reason::NotWritten, msg)
                })
            }
        };
        if let (Some((token, _)), Some((kind, reason, msg))) = (waiting, reply) {
            let waits = self
                .conns
                .get(token)
                .is_some_and(|c| matches!(c.state, State::Waiting));
            if waits {
                self.reply(token, kind, reason, msg);
            }
        }
    }

    /// Drop connections past their deadline (telling them why when they are still reading);
    /// hand runs past theirs to the worker.
    pub fn expire(&mut self, now: Instant) {
        if let Some(suppressed) = self.refusals.take_due(now) {
            log_suppressed(suppressed);
        }
        while let Some(token) = self.timers.pop_due(now) {
            let Some(mut conn) = self.close(token) else {
                continue;
            };
            let peer = conn.peer;
            match conn.timeout_refusal(now, self.cfg.read_timeout) {
                Some(r) => {
                    self.refusal(format_args!("{peer}: rejected: {}", r.text));
                    refuse_at_once(&mut conn.stream, &r);
                }
                None if matches!(conn.state, State::Reply(_)) => {
                    self.refusal(format_args!(
                        "{peer}: closed: client did not read the reply"
                    ));
                }
                None => {}
            }
        }
        while let Some((id, run)) = self.store.poll_due(now) {
            let missing = usize::from(run.peers) - run.logs_in();
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
