//! What the core does for requests: start a run and follow it to its report, refuse what
//! cannot run, and the exit with its grace period. A second `impl Core`, kept apart from the
//! connection handling so each file stays readable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Core, Exiting, Requester};
use crate::c2::control::outbox::{Out, PromptOut};
use crate::c2::control::refusal::{load_profile, Refusal};
use crate::c2::control::timers::TimerId;
use crate::c2::exit::{Exit, EXIT_GRACE};
use crate::c2::proto::{Msg, RunRequest};
use crate::c2::registry::ConnId;
use crate::c2::runs::{plan, ActiveRun, Candidate, Update};
use rand::Rng;

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_finished(
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

    // ---- runs ----

    pub(super) fn start_run(&mut self, now: Instant, req: &RunRequest, who: Requester) {
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
    pub(super) fn poll_run(&mut self, now: Instant) {
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

    pub(super) fn deliver_active(&mut self, now: Instant, update: Option<Update>) {
        if let (Some(u), Some((_, who))) = (update, &self.active) {
            let who = *who;
            self.deliver(now, who, u);
        }
    }

    pub(super) fn deliver(&mut self, now: Instant, who: Requester, u: Update) {
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

    pub(super) fn refuse(&mut self, now: Instant, who: Requester, why: Refusal) {
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

    pub(super) fn begin_exit(&mut self, now: Instant, who: Requester) {
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
        self.abandon_check(now);
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

    pub(super) fn poll_exit(&mut self, now: Instant) {
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
}
