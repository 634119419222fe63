//! `c2 check` in the core: pick the live idle agents, send each a CHECK with the others'
//! advertised addresses, forward each CHECK_DONE to the requester as a CHECK_RESULT, and at the
//! deadline (or when an agent's link is lost) a failed result for every host still missing.
//! One check at a time; its agents are busy meanwhile, so no run picks them.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::Core;
use crate::c2::control::refusal::Refusal;
use crate::c2::control::timers::TimerId;
use crate::c2::preflight::{CHECK_WAIT, CONTROLLER_SLACK};
use crate::c2::proto::{CheckRequest, CheckResult, CheckSpec, Msg};
use crate::c2::registry::ConnId;
use rand::Rng;

/// The check in flight.
pub(in crate::c2::control) struct ActiveCheck {
    pub(in crate::c2::control) check_id: u64,
    requester: ConnId,
    /// Host i of the check: its agent, its advertised address, and whether its result is out.
    hosts: Vec<(u64, IpAddr, bool)>,
    deadline: Instant,
}

impl Core {
    pub(super) fn start_check(&mut self, now: Instant, req: &CheckRequest, who: ConnId) {
        let who_r = super::Requester::Conn(who);
        if self.exiting.is_some() {
            return self.refuse(now, who_r, Refusal::ShuttingDown);
        }
        if let Some(c) = &self.check {
            return self.refuse(now, who_r, Refusal::CheckInProgress(c.check_id));
        }
        if let Err(e) = req.check() {
            return self.refuse(now, who_r, Refusal::CheckBounds(e));
        }
        let live = self.registry.live(now);
        let idle: Vec<(u64, IpAddr, ConnId)> = live
            .iter()
            .filter(|a| a.busy.is_none())
            .filter_map(|a| Some((a.instance, a.advertise, a.conn?)))
            .collect();
        let want = if req.peers == 0 {
            idle.len()
        } else {
            usize::from(req.peers)
        };
        if idle.len() < want.max(2) {
            let refusal = Refusal::CheckAgents {
                want: want.max(2),
                idle: idle.len(),
                live: live.len(),
            };
            return self.refuse(now, who_r, refusal);
        }
        let chosen = &idle[..want];
        let port = if req.port == 0 {
            self.defaults.peer_port
        } else {
            req.port
        };
        let group = req
            .group
            .or(self.defaults.group)
            .unwrap_or_else(|| default_group(chosen[0].1));
        let peers: Vec<SocketAddr> = chosen
            .iter()
            .map(|(_, ip, _)| SocketAddr::new(*ip, port))
            .collect();
        let check_id = self.ids.gen::<u64>() >> 1 | 1;
        let transports = match (req.fanout, req.multicast) {
            (true, true) => "fanout and multicast",
            (true, false) => "fanout",
            _ => "multicast",
        };
        let mut bound = None;
        for (id, &(instance, _, conn)) in chosen.iter().enumerate() {
            let spec = CheckSpec {
                check_id,
                id: id as u16,
                peers: peers.clone(),
                fanout: req.fanout,
                multicast: req.multicast,
                group,
                duration_ms: req.duration_ms,
                wait_ms: CHECK_WAIT.as_millis() as u32,
            };
            bound = Some(spec.bound());
            self.registry.set_busy(instance, Some(check_id));
            self.send(now, conn, Msg::Check(Box::new(spec)));
        }
        let deadline = now + bound.unwrap_or_default() + CONTROLLER_SLACK;
        let text = format!(
            "check {check_id:016x} started: {want} hosts, {transports}, port {port}, group {group}, {} ms counted",
            req.duration_ms
        );
        self.out.log(text.clone());
        self.send(now, who, Msg::Progress { text });
        self.check = Some(ActiveCheck {
            check_id,
            requester: who,
            hosts: chosen.iter().map(|&(i, ip, _)| (i, ip, false)).collect(),
            deadline,
        });
        self.timers.set(TimerId::Check, Some(deadline));
    }

    /// An agent's CHECK_DONE: forwarded, and the agent is idle again.
    pub(super) fn on_check_done(
        &mut self,
        now: Instant,
        instance: u64,
        check_id: u64,
        report: &str,
        error: &str,
    ) {
        if self
            .registry
            .connected()
            .any(|a| a.instance == instance && a.busy == Some(check_id))
        {
            self.registry.set_busy(instance, None);
        }
        let Some(c) = self.check.as_ref().filter(|c| c.check_id == check_id) else {
            self.out.log(format!(
                "check {check_id:016x}: a late or unknown result from agent {instance:016x} ignored"
            ));
            return;
        };
        let Some(host) = c.hosts.iter().position(|h| h.0 == instance && !h.2) else {
            return;
        };
        self.finish_host(now, host, report.to_owned(), error.to_owned());
    }

    /// The agent's link is gone: its host of the check fails now.
    pub(super) fn on_check_agent_lost(&mut self, now: Instant, instance: u64) {
        let Some(c) = &self.check else { return };
        if let Some(host) = c.hosts.iter().position(|h| h.0 == instance && !h.2) {
            let why = "the agent's link to the controller was lost during the check";
            self.finish_host(now, host, String::new(), why.into());
        }
    }

    /// The deadline: every host still missing fails.
    pub(super) fn poll_check(&mut self, now: Instant) {
        let Some(c) = &self.check else { return };
        if now < c.deadline {
            return self.timers.set(TimerId::Check, Some(c.deadline));
        }
        let late: Vec<usize> = (0..c.hosts.len()).filter(|&h| !c.hosts[h].2).collect();
        for host in late {
            let why = "no result from the agent in time (its check was killed, or lost)";
            self.finish_host(now, host, String::new(), why.into());
        }
    }

    /// The controller is exiting: the check ends with it.
    pub(super) fn abandon_check(&mut self, now: Instant) {
        if let Some(c) = self.check.take() {
            self.timers.set(TimerId::Check, None);
            let text = format!(
                "check {:016x} abandoned: the controller is exiting",
                c.check_id
            );
            self.send(now, c.requester, Msg::Refused { text });
        }
    }

    fn finish_host(&mut self, now: Instant, host: usize, report: String, error: String) {
        let Some(c) = self.check.as_mut() else { return };
        c.hosts[host].2 = true;
        let (advertise, hosts, to, id) = (c.hosts[host].1, c.hosts.len(), c.requester, c.check_id);
        let all = c.hosts.iter().all(|h| h.2);
        self.out.log(if error.is_empty() {
            format!("check {id:016x}: host {host} ({advertise}) reported")
        } else {
            format!("check {id:016x}: host {host} ({advertise}): {error}")
        });
        let result = CheckResult {
            host: host as u16,
            hosts: hosts as u16,
            advertise,
            report,
            error,
        };
        self.send(now, to, Msg::CheckResult(Box::new(result)));
        if all {
            self.out.log(format!("check {id:016x}: done"));
            self.check = None;
            self.timers.set(TimerId::Check, None);
        }
    }
}

/// The peer's default group for the agents' family: the one their runs use.
fn default_group(first: IpAddr) -> SocketAddr {
    crate::peer::args::default_group(first.is_ipv6(), false)
}
