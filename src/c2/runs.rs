//! Run bookkeeping in the controller: turn a request into one `RunSpec` per agent (or a clear
//! refusal, before anything starts), then follow the run to its report. Plain data over `Instant`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::proto::{check_run_shape, RunRequest, RunSpec, MAX_LABEL};

/// The agents a run may use, in peer-id order: (agent instance, advertised address, zone).
pub struct Candidate<'a> {
    pub instance: u64,
    pub advertise: IpAddr,
    pub zone: &'a str,
    /// The comparator as this agent reaches it (the controller's address on its connection).
    pub comparator: SocketAddr,
}

#[derive(Debug)]
pub struct Plan {
    pub run_id: u64,
    pub specs: Vec<(u64, RunSpec)>,
    pub deadline: Duration,
}

/// Settings of the controller that shape every run.
pub struct RunDefaults {
    pub peer_port: u16,
    pub group: Option<SocketAddr>,
    /// The peer's own handshake timeout plus upload and comparator slack.
    pub slack: Duration,
}

/// Why a request cannot run; the text is what the requester is told.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Out of the bounds `proto` checks (its words name the flag).
    #[error("{0}")]
    Shape(#[from] super::proto::BoundsError),
    #[error("--wan {wan} × --time-scale {time_scale} delays a datagram up to {delay:.1?}: at most {cap:?} (use a smaller --time-scale)")]
    DelayTooLong {
        wan: String,
        time_scale: f64,
        delay: Duration,
        cap: Duration,
    },
    #[error("{n} peers requested but only {idle} of {live} live agents are idle (the others still run a peer: `mpcomm c2 status`)")]
    TooFewIdle { n: usize, idle: usize, live: usize },
    #[error("{n} peers requested but only {live} agents are live: start more agents or ask for fewer peers (`mpcomm c2 status`)")]
    TooFewLive { n: usize, live: usize },
    #[error("WAN profile name longer than {} bytes", MAX_LABEL)]
    LongProfileName,
    #[error("unknown WAN profile {0:?}")]
    UnknownProfile(String),
    #[error(
        "--wan {wan}: agent {agent} has no zone while others do; give every agent a --zone or none"
    )]
    MixedZones { wan: String, agent: IpAddr },
    #[error("--wan {wan}: zone {zone:?} of agent {agent} is not in the profile (zones: {zones})")]
    ZoneNotInProfile {
        wan: String,
        zone: String,
        agent: IpAddr,
        zones: String,
    },
    #[error("two agents advertise the same address {0}: give each a distinct --advertise")]
    SameAddress(SocketAddr),
    #[error("the agents mix IPv4 and IPv6 ({0} and {1}): a run uses one family; start the agents with --advertise addresses of one family")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("the controller's --group {group} and the agents ({agent}) are of different families")]
    GroupFamily { group: SocketAddr, agent: IpAddr },
    #[error("--ssm needs a source-specific group, and the controller's --group {0} is not one (232.0.0.0/8, ff3x::/96): restart it with such a --group, or without one")]
    NotSsmGroup(SocketAddr),
}

/// Check `req` against the live, idle agents and build the specs. Nothing is sent on error.
pub fn plan(
    profile: Option<&crate::wan::Profile>,
    req: &RunRequest,
    idle: &[Candidate],
    live_total: usize,
    d: &RunDefaults,
    run_id: u64,
    seed: u64,
) -> Result<Plan, PlanError> {
    check_run_shape(req.peers as usize, req.msgs, req.interval_ms, req.size)
        .map_err(PlanError::Shape)?;
    super::proto::check_emulation(req.time_scale, req.interval_ms.1, &req.wan, req.wan_loss)
        .map_err(PlanError::Shape)?;
    if let Some(p) = profile {
        // What the peer refuses: an emulated delay, scaled, beyond its cap.
        let cap = crate::peer::args::MAX_SCALED_DELAY;
        let delay = p.max_one_way().mul_f64(req.time_scale);
        if delay > cap {
            return Err(PlanError::DelayTooLong {
                wan: req.wan.clone(),
                time_scale: req.time_scale,
                delay,
                cap,
            });
        }
    }
    let seed = req.seed.unwrap_or(seed);
    let n = req.peers as usize;
    if n > idle.len() {
        return Err(if idle.len() < live_total {
            PlanError::TooFewIdle {
                n,
                idle: idle.len(),
                live: live_total,
            }
        } else {
            PlanError::TooFewLive {
                n,
                live: live_total,
            }
        });
    }
    let chosen = &idle[..n];
    if req.wan.len() > MAX_LABEL {
        return Err(PlanError::LongProfileName);
    }
    let zones: Vec<String> = match (req.wan.is_empty(), profile) {
        (true, _) => Vec::new(),
        (false, None) => return Err(PlanError::UnknownProfile(req.wan.clone())),
        (false, Some(p)) => {
            let labelled = chosen.iter().filter(|c| !c.zone.is_empty()).count();
            if labelled == 0 {
                // No agent has a zone: the peers assign the profile's zones round-robin.
                Vec::new()
            } else if labelled < n {
                let c = chosen
                    .iter()
                    .find(|c| c.zone.is_empty())
                    .expect("some unlabelled");
                return Err(PlanError::MixedZones {
                    wan: req.wan.clone(),
                    agent: c.advertise,
                });
            } else if let Some(c) = chosen.iter().find(|c| p.zone_index(c.zone).is_none()) {
                return Err(PlanError::ZoneNotInProfile {
                    wan: req.wan.clone(),
                    zone: c.zone.to_owned(),
                    agent: c.advertise,
                    zones: p.zones.join(" "),
                });
            } else {
                chosen.iter().map(|c| c.zone.to_owned()).collect()
            }
        }
    };
    if let Some(other) = chosen
        .iter()
        .find(|c| c.advertise.is_ipv6() != chosen[0].advertise.is_ipv6())
    {
        return Err(PlanError::MixedFamilies(
            chosen[0].advertise,
            other.advertise,
        ));
    }
    if let Some(g) = d.group {
        if req.transport == crate::wire::Transport::Multicast
            && g.is_ipv6() != chosen[0].advertise.is_ipv6()
        {
            return Err(PlanError::GroupFamily {
                group: g,
                agent: chosen[0].advertise,
            });
        }
        if req.ssm && !crate::peer::socket::is_ssm_group(g.ip()) {
            return Err(PlanError::NotSsmGroup(g));
        }
    }
    // Agents on one host's loopback (several advertising ::1, which has no siblings like
    // 127.0.0.x) take consecutive ports; elsewhere one address is one agent.
    let mut on_loopback: Vec<IpAddr> = Vec::new();
    let peers: Vec<SocketAddr> = chosen
        .iter()
        .map(|c| {
            let ip = c.advertise;
            let k = if ip.is_loopback() {
                on_loopback.push(ip);
                on_loopback.iter().filter(|&&x| x == ip).count() as u16 - 1
            } else {
                0
            };
            SocketAddr::new(ip, d.peer_port.wrapping_add(k))
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = peers.iter().find(|p| !seen.insert(**p)) {
        return Err(PlanError::SameAddress(*dup));
    }
    let mut specs = Vec::with_capacity(n);
    // One datagram key per run, the same for all its peers.
    let run_key = super::auth::fresh32();
    for (i, c) in chosen.iter().enumerate() {
        let spec = RunSpec {
            run_id,
            peer_id: i as u16,
            transport: req.transport,
            order: req.order,
            repair: req.repair.unwrap_or(req.order.default_repair()),
            msgs: req.msgs,
            interval_ms: req.interval_ms,
            size: req.size,
            seed: seed.wrapping_add(i as u64),
            group: d.group,
            comparator: c.comparator,
            peers: peers.clone(),
            wan: req.wan.clone(),
            zones: zones.clone(),
            time_scale: req.time_scale,
            wan_loss: req.wan_loss,
            run_key,
            ssm: req.ssm,
        };
        spec.check().map_err(PlanError::Shape)?;
        specs.push((c.instance, spec));
    }
    let sending = Duration::from_millis(u64::from(req.msgs) * u64::from(req.interval_ms.1))
        .mul_f64(req.time_scale);
    Ok(Plan {
        run_id,
        specs,
        deadline: sending + d.slack,
    })
}

/// What the controller tells the requester next.
#[derive(Debug, PartialEq, Eq)]
pub enum Update {
    Progress(String),
    Done(String),
    Failed(String),
}

/// A run in flight: which agents are ready, which finished, whether the report is in.
#[derive(Debug)]
pub struct ActiveRun {
    pub run_id: u64,
    pub transport: crate::wire::Transport,
    agents: Vec<u64>,
    ready: Vec<bool>,
    finished: Vec<Option<(bool, String)>>,
    report: Option<String>,
    report_at: Option<Instant>,
    deadline: Instant,
}

/// After the report, agents still running get this long to say they finished (so the next run
/// does not find a peer port still taken).
const FINISH_GRACE: Duration = Duration::from_secs(10);

impl ActiveRun {
    pub fn new(plan: &Plan, transport: crate::wire::Transport, now: Instant) -> ActiveRun {
        let n = plan.specs.len();
        ActiveRun {
            run_id: plan.run_id,
            transport,
            agents: plan.specs.iter().map(|(i, _)| *i).collect(),
            ready: vec![false; n],
            finished: vec![None; n],
            report: None,
            report_at: None,
            deadline: now + plan.deadline,
        }
    }

    pub fn agents(&self) -> &[u64] {
        &self.agents
    }

    fn index(&self, instance: u64) -> Option<usize> {
        self.agents.iter().position(|a| *a == instance)
    }

    pub fn on_ready(&mut self, instance: u64) -> Option<Update> {
        let i = self.index(instance)?;
        if std::mem::replace(&mut self.ready[i], true) {
            return None;
        }
        let k = self.ready.iter().filter(|r| **r).count();
        Some(Update::Progress(format!(
            "run {:016x}: {k}/{} peers ready",
            self.run_id,
            self.agents.len()
        )))
    }

    pub fn on_finished(&mut self, instance: u64, ok: bool, detail: String) -> Option<Update> {
        let i = self.index(instance)?;
        let text = if ok {
            format!("run {:016x}: peer {i} finished", self.run_id)
        } else {
            format!("run {:016x}: peer {i} failed: {detail}", self.run_id)
        };
        self.finished[i] = Some((ok, detail));
        Some(Update::Progress(text))
    }

    pub fn on_report(&mut self, json: String, now: Instant) {
        self.report = Some(json);
        self.report_at = Some(now);
    }

    /// The outcome once there is one: the report when every agent finished (or the grace ran
    /// out), a failure at the deadline or when every peer failed without any upload.
    pub fn poll(&mut self, now: Instant) -> Option<Update> {
        let all_finished = self.finished.iter().all(Option::is_some);
        if let (Some(_), Some(at)) = (&self.report, self.report_at) {
            if all_finished || now >= at + FINISH_GRACE {
                return self.report.take().map(Update::Done);
            }
            return None;
        }
        let failures: Vec<String> = self
            .finished
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match f {
                Some((false, d)) => Some(format!("peer {i}: {d}")),
                _ => None,
            })
            .collect();
        if all_finished && failures.len() == self.agents.len() {
            return Some(Update::Failed(format!(
                "run {:016x} failed on every peer: {}",
                self.run_id,
                failures.join("; ")
            )));
        }
        if now >= self.deadline {
            let missing: Vec<String> = (0..self.agents.len())
                .filter(|i| self.finished[*i].is_none())
                .map(|i| i.to_string())
                .collect();
            return Some(Update::Failed(format!(
                "run {:016x} timed out without a comparator report; peers not finished: [{}]; failures: [{}]",
                self.run_id,
                missing.join(", "),
                failures.join("; ")
            )));
        }
        None
    }

    pub fn next_deadline(&self) -> Instant {
        match self.report_at {
            Some(at) => at + FINISH_GRACE,
            None => self.deadline,
        }
    }
}

#[cfg(test)]
mod tests;
