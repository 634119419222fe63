//! The controller as a plain state machine: connection events, messages, comparator reports
//! and prompt lines in, each with `now`; an [`Outbox`] of messages, closes, prompt and log lines
//! out, and one deadline ([`Core::poll_timeout`]) from a [`Timers`] set. No sockets, no clock,
//! no threads: the mio driver (`c2::controller`) feeds it, the tests drive it in virtual time.
//!
//! Call order, as in quinn-proto: after every input drain [`Core::poll_out`], then ask
//! [`Core::poll_timeout`]; call [`Core::handle_timeout`] when it passes (early calls are
//! harmless).

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::link::{Due, Link};
use super::outbox::{Out, Outbox, PromptOut};
use super::prompt::parse_prompt;
use super::refusal::{load_profile, Refusal};
use super::timers::{TimerId, Timers};
use super::ServeConfig;
use crate::c2::exit::{Exit, EXIT_GRACE};
use crate::c2::proto::{Msg, Role, RunRequest};
use crate::c2::registry::{ConnId, Registry};
use crate::c2::runs::{plan, ActiveRun, Candidate, RunDefaults, Update};

pub use super::link::CloseReason;

/// Who asked for a run or the exit, and so hears how it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    Conn(ConnId),
    Prompt,
}

struct Exiting {
    requester: Requester,
    state: Exit,
}

pub struct Core {
    registry: Registry,
    links: HashMap<ConnId, Link>,
    timers: Timers,
    active: Option<(ActiveRun, Requester)>,
    exiting: Option<Exiting>,
    defaults: RunDefaults,
    /// The comparator's listening address (its IP may be unspecified).
    comparator: SocketAddr,
    /// Draws run ids and seeds (the driver seeds it from the OS, tests with a constant).
    ids: ChaCha8Rng,
    out: Outbox,
    done: bool,
}

impl Core {
    pub fn new(cfg: &ServeConfig, comparator: SocketAddr, seed: u64) -> Core {
        Core {
            registry: Registry::new(cfg.order_by),
            links: HashMap::new(),
            timers: Timers::default(),
            active: None,
            exiting: None,
            defaults: RunDefaults {
                peer_port: cfg.peer_port,
                group: cfg.group,
                slack: cfg.run_slack,
            },
            comparator,
            ids: ChaCha8Rng::seed_from_u64(seed),
            out: Outbox::default(),
            done: false,
        }
    }

    // ---- getters and outputs ----

    pub fn poll_out(&mut self) -> Option<Out> {
        self.out.pop()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn is_exiting(&self) -> bool {
        self.exiting.is_some()
    }

    /// The exit finished (`Out::Exit` was queued); further inputs are ignored.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The run in flight, if any.
    pub fn active_run(&self) -> Option<u64> {
        self.active.as_ref().map(|(r, _)| r.run_id)
    }

    // ---- connection inputs ----

    /// A connection was accepted from `addr`; `local_ip` is our address on it.
    pub fn on_open(
        &mut self,
        now: Instant,
        conn: ConnId,
        addr: SocketAddr,
        local_ip: Option<IpAddr>,
    ) {
        self.links.insert(conn, Link::new(now, addr, local_ip));
        self.arm_link(conn);
    }

    /// The handshake's progress after a read: the client's role once its Hello arrived, and
    /// whether the session is up.
    pub fn on_handshake(&mut self, conn: ConnId, role: Option<Role>, established: bool) {
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        if (l.role, l.established) != (role, established) {
            (l.role, l.established) = (role, established);
            self.arm_link(conn);
        }
    }

    /// The connection is gone (closed, failed or evicted by the driver).
    pub fn on_closed(&mut self, now: Instant, conn: ConnId, why: &dyn Display) {
        let Some(l) = self.links.remove(&conn) else {
            return;
        };
        self.timers.set(TimerId::Link(conn), None);
        if !l.established {
            return;
        }
        if let Some(instance) = l.agent {
            self.registry.disconnected(conn);
            let live = self.registry.live(now).len();
            self.out.log(format!(
                "agent {} ({instance:016x}) disconnected: {why}; {live} live",
                l.addr
            ));
        } else {
            let who = match l.role {
                Some(Role::Agent) => "unregistered agent",
                _ => "control client",
            };
            self.out
                .log(format!("{who} {} disconnected: {why}", l.addr));
        }
        self.poll_exit(now);
    }

    /// One authenticated message from `conn`.
    pub fn handle(&mut self, now: Instant, conn: ConnId, m: &Msg) {
        if self.done {
            return;
        }
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        l.live.received(now);
        let (role, addr, agent) = (l.role, l.addr, l.agent);
        match (role, m) {
            (_, Msg::Heartbeat) => self.registry.seen(conn, now),
            (
                Some(Role::Agent),
                Msg::Register {
                    instance,
                    advertise,
                    zone,
                    running,
                },
            ) => {
                l.agent = Some(*instance);
                let ip = advertise.unwrap_or(addr.ip());
                self.registry
                    .register(now, conn, *instance, ip, zone.clone(), *running);
                let live = self.registry.live(now).len();
                self.out.log(format!(
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
                    self.out
                        .log(format!("exit in progress: stopping agent {addr} too"));
                    self.send(now, conn, Msg::Shutdown);
                }
            }
            (Some(Role::Agent), Msg::RunReady { run_id }) => {
                self.registry.seen(conn, now);
                let update = agent.and_then(|i| {
                    self.active
                        .as_mut()
                        .filter(|(r, _)| r.run_id == *run_id)
                        .and_then(|(r, _)| r.on_ready(i))
                });
                self.deliver_active(now, update);
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
                self.registry.seen(conn, now);
                if let Some(instance) = agent {
                    self.on_finished(now, addr, instance, *run_id, *ok, detail, *running);
                }
            }
            (Some(Role::Control), Msg::RunRequest(req)) => {
                self.start_run(now, req, Requester::Conn(conn))
            }
            (Some(Role::Control), Msg::StatusRequest) => {
                let agents = self.registry.status(now);
                self.send(now, conn, Msg::Status { agents });
            }
            (Some(Role::Control), Msg::ExitRequest) => self.begin_exit(now, Requester::Conn(conn)),
            (_, other) => self.out.log(format!(
                "{addr}: message not allowed for role {role:?} ignored: {other:?}"
            )),
        }
        self.arm_link(conn);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_finished(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        instance: u64,
        run_id: u64,
        ok: bool,
        detail: &str,
        running: Option<u64>,
    ) {
        let still = running.map_or(String::from("idle"), |r| {
            format!("still busy with run {r:016x}")
        });
        self.out.log(if ok {
            format!("agent {addr}: run {run_id:016x} finished; {still}")
        } else {
            format!("agent {addr}: run {run_id:016x} failed: {detail}; {still}")
        });
        // The agent's own word on what it runs now: idle after its run ended (also a run this
        // controller did not start, or one already reported), still busy after refusing a run
        // because another one is running.
        self.registry.set_busy(instance, running);
        let update = self
            .active
            .as_mut()
            .filter(|(r, _)| r.run_id == run_id)
            .and_then(|(r, _)| r.on_finished(instance, ok, detail.to_owned()));
        self.deliver_active(now, update);
        self.poll_run(now);
    }

    // ---- other inputs ----

    /// The comparator reported `run_id`.
    pub fn on_report(&mut self, now: Instant, run_id: u64, json: String) {
        match self.active.as_mut() {
            Some((r, _)) if r.run_id == run_id => {
                self.out
                    .log(format!("run {run_id:016x}: comparator report in"));
                r.on_report(json, now);
                self.poll_run(now);
            }
            _ => self.out.log(format!(
                "report for run {run_id:016x}, which this controller did not start (logged by the comparator only)"
            )),
        }
    }

    pub fn on_comparator_gone(&mut self) {
        self.out
            .log("the comparator thread ended: runs cannot be reported; restart the controller");
    }

    /// One line typed at the `>>>` prompt.
    pub fn on_prompt(&mut self, now: Instant, line: &str) {
        if self.done {
            return;
        }
        match parse_prompt(line) {
            Ok(None) => {}
            Ok(Some(Msg::RunRequest(req))) => self.start_run(now, &req, Requester::Prompt),
            Ok(Some(Msg::ExitRequest)) => self.begin_exit(now, Requester::Prompt),
            Ok(Some(_)) => self
                .out
                .push(Out::Prompt(PromptOut::Status(self.registry.status(now)))),
            Err(e) => self.out.push(Out::Prompt(PromptOut::Say(e.to_string()))),
        }
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for id in self.timers.take_due(now) {
            if self.done {
                return;
            }
            match id {
                TimerId::Link(conn) => self.on_link_timer(now, conn),
                TimerId::Run => self.poll_run(now),
                TimerId::Exit => self.poll_exit(now),
            }
        }
    }

    fn on_link_timer(&mut self, now: Instant, conn: ConnId) {
        let quiet = self.is_quiet(conn);
        let Some(l) = self.links.get(&conn) else {
            return;
        };
        match l.due(now, quiet) {
            Some(Due::Close(reason)) => {
                let why = reason.to_string();
                self.on_closed(now, conn, &why);
                self.out.push(Out::Close { conn, reason });
            }
            Some(Due::Heartbeat) => self.send(now, conn, Msg::Heartbeat),
            None => self.arm_link(conn),
        }
    }

    // ---- runs ----

    fn start_run(&mut self, now: Instant, req: &RunRequest, who: Requester) {
        if self.exiting.is_some() {
            return self.refuse(now, who, Refusal::ShuttingDown);
        }
        if let Some((r, _)) = &self.active {
            return self.refuse(now, who, Refusal::RunInProgress(r.run_id));
        }
        let live = self.registry.live(now);
        let live_total = live.len();
        let mut candidates = Vec::with_capacity(live.len());
        let mut conn_of = HashMap::new();
        for a in live.iter().filter(|a| a.busy.is_none()) {
            let Some(conn) = a.conn else { continue };
            let Some(l) = self.links.get(&conn) else {
                continue;
            };
            // The comparator as this agent reaches it: our address on its connection.
            let ip = match (self.comparator.ip().is_unspecified(), l.local_ip) {
                (true, Some(ip)) => ip,
                _ => self.comparator.ip(),
            };
            conn_of.insert(a.instance, conn);
            candidates.push(Candidate {
                instance: a.instance,
                advertise: a.advertise,
                zone: &a.zone,
                comparator: SocketAddr::new(ip, self.comparator.port()),
            });
        }
        let run_id = self.ids.gen::<u64>() >> 1 | 1;
        let seed = self.ids.gen::<u64>();
        let planned = load_profile(&req.wan)
            .map_err(Refusal::from)
            .and_then(|profile| {
                plan(
                    profile.as_ref(),
                    req,
                    &candidates,
                    live_total,
                    &self.defaults,
                    run_id,
                    seed,
                )
                .map_err(Refusal::from)
            });
        drop(candidates);
        let plan = match planned {
            Ok(p) => p,
            Err(refusal) => return self.refuse(now, who, refusal),
        };
        let run = ActiveRun::new(&plan, req.transport, now);
        self.out.log(format!(
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
            if let Some(&conn) = conn_of.get(&instance) {
                self.send(now, conn, Msg::Run(Box::new(spec)));
            }
        }
        let text = format!(
            "run {run_id:016x} started: {} peers x {} msgs, {}, order {}",
            req.peers, req.msgs, req.transport, req.order
        );
        self.deliver(now, who, Update::Progress(text));
        self.poll_run(now);
    }

    /// The run's outcome once there is one; re-arms its timer otherwise.
    fn poll_run(&mut self, now: Instant) {
        let update = self.active.as_mut().and_then(|(r, _)| r.poll(now));
        if let Some(u) = update {
            if let Update::Failed(t) = &u {
                self.out.log(t.clone());
            }
            self.deliver_active(now, Some(u));
            // Its agents stay busy until each says its peer ended (RunFinished) or its link is
            // lost: a peer may outlive the report or the run's deadline.
            if let Some((r, _)) = self.active.take() {
                self.out.log(format!("run {:016x}: done", r.run_id));
            }
        }
        let at = self.active.as_ref().map(|(r, _)| r.next_deadline());
        self.timers.set(TimerId::Run, at);
    }

    fn deliver_active(&mut self, now: Instant, update: Option<Update>) {
        if let (Some(u), Some((_, who))) = (update, &self.active) {
            let who = *who;
            self.deliver(now, who, u);
        }
    }

    fn deliver(&mut self, now: Instant, who: Requester, u: Update) {
        match who {
            Requester::Conn(t) => {
                let m = match u {
                    Update::Progress(text) => Msg::Progress { text },
                    Update::Failed(text) => Msg::Refused { text },
                    Update::Done(json) => {
                        let run_id = self.active_run().unwrap_or(0);
                        Msg::RunReport { run_id, json }
                    }
                };
                self.send(now, t, m);
            }
            Requester::Prompt => self.out.push(Out::Prompt(match u {
                Update::Progress(t) | Update::Failed(t) => PromptOut::Say(t),
                Update::Done(json) => PromptOut::Report(json),
            })),
        }
    }

    fn refuse(&mut self, now: Instant, who: Requester, why: Refusal) {
        let text = why.to_string();
        self.out.log(format!("request refused: {text}"));
        match who {
            Requester::Conn(t) => self.send(now, t, Msg::Refused { text }),
            Requester::Prompt => self
                .out
                .push(Out::Prompt(PromptOut::Say(format!("refused: {text}")))),
        }
    }

    // ---- the exit ----

    fn begin_exit(&mut self, now: Instant, who: Requester) {
        if self.exiting.is_some() {
            return self.refuse(now, who, Refusal::ExitInProgress);
        }
        let conns: Vec<ConnId> = self.registry.connected().filter_map(|a| a.conn).collect();
        self.out.log(format!(
            "exit requested: stopping {} agents, and those that register within {EXIT_GRACE:?}",
            conns.len()
        ));
        let mut state = Exit::new(now);
        for c in conns {
            state.told();
            self.send(now, c, Msg::Shutdown);
        }
        if let Some((r, w)) = self.active.take() {
            self.timers.set(TimerId::Run, None);
            let text = format!("run {:016x} abandoned: the controller is exiting", r.run_id);
            self.deliver(now, w, Update::Failed(text));
        }
        self.timers
            .set(TimerId::Exit, Some(state.next_deadline(now)));
        self.exiting = Some(Exiting {
            requester: who,
            state,
        });
        if let Requester::Conn(c) = who {
            // It becomes quiet: no more heartbeats.
            self.arm_link(c);
        }
    }

    fn poll_exit(&mut self, now: Instant) {
        let Some(e) = &self.exiting else { return };
        if self.done {
            return;
        }
        let Some(outcome) = e.state.poll(now, self.registry.connected().count()) else {
            let at = e.state.next_deadline(now);
            self.timers.set(TimerId::Exit, Some(at));
            return;
        };
        let who = e.requester;
        self.timers.set(TimerId::Exit, None);
        if outcome.stragglers > 0 {
            self.out.log(format!(
                "{} agents did not close their connection in time",
                outcome.stragglers
            ));
        }
        let stopped = outcome.stopped();
        let flush = match who {
            Requester::Conn(c) => {
                self.send(now, c, Msg::ExitDone { agents: stopped });
                Some(c)
            }
            Requester::Prompt => {
                self.out.push(Out::Prompt(PromptOut::Say(format!(
                    "{stopped} agents stopped"
                ))));
                None
            }
        };
        self.out.log(format!("exiting: {stopped} agents stopped"));
        self.out.push(Out::Exit { flush });
        self.done = true;
    }

    // ---- helpers ----

    fn send(&mut self, now: Instant, conn: ConnId, msg: Msg) {
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        l.live.sent(now);
        self.out.push(Out::Send { to: conn, msg });
        self.arm_link(conn);
    }

    /// The exit's requester gets no heartbeats.
    fn is_quiet(&self, conn: ConnId) -> bool {
        matches!(&self.exiting, Some(e) if e.requester == Requester::Conn(conn))
    }

    fn arm_link(&mut self, conn: ConnId) {
        let quiet = self.is_quiet(conn);
        let at = self.links.get(&conn).map(|l| l.deadline(quiet));
        self.timers.set(TimerId::Link(conn), at);
    }
}
