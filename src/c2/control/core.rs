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

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::link::{Due, Link};
use super::outbox::{Out, Outbox, PromptOut};
use super::prompt::parse_prompt;
use super::timers::{TimerId, Timers};
use super::ServeConfig;
use crate::c2::exit::Exit;
use crate::c2::proto::{Msg, Role};
use crate::c2::registry::{ConnId, Registry};
use crate::c2::runs::{ActiveRun, RunDefaults};

pub use super::link::CloseReason;

mod checks;
mod requests;

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
    check: Option<checks::ActiveCheck>,
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
            check: None,
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
            self.on_check_agent_lost(now, instance);
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
                    ..
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
            (Some(Role::Control), Msg::CheckRequest(req)) => self.start_check(now, req, conn),
            (
                Some(Role::Agent),
                Msg::CheckDone {
                    check_id,
                    report,
                    error,
                },
            ) => {
                self.registry.seen(conn, now);
                if let Some(instance) = agent {
                    self.on_check_done(now, instance, *check_id, report, error);
                }
            }
            (_, other) => self.out.log(format!(
                "{addr}: message not allowed for role {role:?} ignored: {other:?}"
            )),
        }
        self.arm_link(conn);
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
                TimerId::Check => self.poll_check(now),
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
