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

/// Check `req` against the live, idle agents and build the specs. Nothing is sent on error.
pub fn plan(
    profile: Option<&crate::wan::Profile>,
    req: &RunRequest,
    idle: &[Candidate],
    live_total: usize,
    d: &RunDefaults,
    run_id: u64,
    seed: u64,
) -> Result<Plan, String> {
    check_run_shape(req.peers as usize, req.msgs, req.interval_ms, req.size)?;
    super::proto::check_emulation(req.time_scale, req.interval_ms.1, &req.wan, req.wan_loss)?;
    if let Some(p) = profile {
        // What the peer refuses: an emulated delay, scaled, beyond its cap.
        let cap = crate::peer::args::MAX_SCALED_DELAY;
        let delay = p.max_one_way().mul_f64(req.time_scale);
        if delay > cap {
            return Err(format!(
                "--wan {} × --time-scale {} delays a datagram up to {delay:.1?}: at most {cap:?} (use a smaller --time-scale)",
                req.wan, req.time_scale
            ));
        }
    }
    let seed = req.seed.unwrap_or(seed);
    let n = req.peers as usize;
    if n > idle.len() {
        return Err(if idle.len() < live_total {
            format!(
                "{n} peers requested but only {} of {live_total} live agents are idle (the others still run a peer: `mpcomm c2 status`)",
                idle.len()
            )
        } else {
            format!("{n} peers requested but only {live_total} agents are live: start more agents or ask for fewer peers (`mpcomm c2 status`)")
        });
    }
    let chosen = &idle[..n];
    if req.wan.len() > MAX_LABEL {
        return Err(format!("WAN profile name longer than {MAX_LABEL} bytes"));
    }
    let zones: Vec<String> = match (req.wan.is_empty(), profile) {
        (true, _) => Vec::new(),
        (false, None) => return Err(format!("unknown WAN profile {:?}", req.wan)),
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
                return Err(format!(
                    "--wan {}: agent {} has no zone while others do; give every agent a --zone or none",
                    req.wan, c.advertise
                ));
            } else if let Some(c) = chosen.iter().find(|c| p.zone_index(c.zone).is_none()) {
                return Err(format!(
                    "--wan {}: zone {:?} of agent {} is not in the profile (zones: {})",
                    req.wan,
                    c.zone,
                    c.advertise,
                    p.zones.join(" ")
                ));
            } else {
                chosen.iter().map(|c| c.zone.to_owned()).collect()
            }
        }
    };
    if let Some(other) = chosen
        .iter()
        .find(|c| c.advertise.is_ipv6() != chosen[0].advertise.is_ipv6())
    {
        return Err(format!(
            "the agents mix IPv4 and IPv6 ({} and {}): a run uses one family; start the agents with --advertise addresses of one family",
            chosen[0].advertise, other.advertise
        ));
    }
    if let Some(g) = d.group {
        if req.transport == crate::wire::Transport::Multicast
            && g.is_ipv6() != chosen[0].advertise.is_ipv6()
        {
            return Err(format!(
                "the controller's --group {g} and the agents ({}) are of different families",
                chosen[0].advertise
            ));
        }
        if req.ssm && !crate::peer::socket::is_ssm_group(g.ip()) {
            return Err(format!(
                "--ssm needs a source-specific group, and the controller's --group {g} is not one (232.0.0.0/8, ff3x::/96): restart it with such a --group, or without one"
            ));
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
        return Err(format!(
            "two agents advertise the same address {dup}: give each a distinct --advertise"
        ));
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
        spec.check()?;
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
mod tests {
    use super::*;
    use crate::wire::Transport;

    fn cands(n: usize, zone: &'static str) -> Vec<Candidate<'static>> {
        (0..n)
            .map(|i| Candidate {
                instance: 100 + i as u64,
                advertise: format!("10.0.0.{}", i + 1).parse().unwrap(),
                zone,
                comparator: "10.0.0.254:4568".parse().unwrap(),
            })
            .collect()
    }

    fn req(peers: u16, msgs: u32) -> RunRequest {
        RunRequest {
            peers,
            msgs,
            transport: Transport::Fanout,
            order: crate::wire::Order::None,
            repair: None,
            interval_ms: (10, 100),
            size: 0,
            wan: String::new(),
            time_scale: 1.0,
            wan_loss: 0.0,
            seed: None,
            ssm: false,
        }
    }

    const D: RunDefaults = RunDefaults {
        peer_port: 4567,
        group: None,
        slack: Duration::from_secs(60),
    };

    #[test]
    fn every_spec_gets_the_order_and_the_resolved_repair() {
        use crate::wire::{Order, Repair};
        let c = cands(3, "");
        for (order, asked, want) in [
            (Order::None, None, Repair::Off),
            (Order::Causal, None, Repair::Nack),
            (Order::Lamport, Some(Repair::Off), Repair::Off),
        ] {
            let r = RunRequest {
                order,
                repair: asked,
                ..req(3, 5)
            };
            let p = plan(None, &r, &c, 3, &D, 9, 1).unwrap();
            assert!(p
                .specs
                .iter()
                .all(|(_, s)| (s.order, s.repair) == (order, want)));
        }
    }

    #[test]
    fn the_requested_seed_time_scale_and_loss_reach_every_spec() {
        let c = cands(3, "");
        let lan = crate::wan::Profile::load("lan").unwrap();
        let r = RunRequest {
            wan: "lan".into(),
            time_scale: 0.1,
            wan_loss: 0.01,
            seed: Some(1000),
            ..req(3, 5)
        };
        let p = plan(Some(&lan), &r, &c, 3, &D, 9, 77).unwrap();
        for (i, (_, s)) in p.specs.iter().enumerate() {
            assert_eq!(
                (s.seed, s.time_scale, s.wan_loss),
                (1000 + i as u64, 0.1, 0.01)
            );
        }
        assert_eq!(
            p.deadline,
            Duration::from_millis(50) + D.slack,
            "sending time scaled"
        );
        let drawn = plan(None, &req(3, 5), &c, 3, &D, 9, 77).unwrap();
        assert_eq!(drawn.specs[2].1.seed, 79, "no seed asked: the controller's");
        for (bad, flag) in [
            (
                RunRequest {
                    time_scale: 0.0,
                    ..r.clone()
                },
                "--time-scale",
            ),
            (
                RunRequest {
                    wan_loss: 2.0,
                    ..r.clone()
                },
                "--wan-loss",
            ),
            (
                RunRequest {
                    wan: String::new(),
                    ..r.clone()
                },
                "--wan-loss",
            ),
        ] {
            let e = plan(Some(&lan), &bad, &c, 3, &D, 9, 1).unwrap_err();
            assert!(e.contains(flag), "{e}");
        }
        let gcp8 = crate::wan::Profile::load("gcp8").unwrap();
        let slow = RunRequest {
            wan: "gcp8".into(),
            time_scale: 1000.0,
            interval_ms: (0, 1),
            ..r
        };
        let e = plan(Some(&gcp8), &slow, &c, 3, &D, 9, 1).unwrap_err();
        assert!(e.contains("--time-scale"), "{e}");
    }

    #[test]
    fn plans_in_order_and_refuses_out_of_bounds() {
        let c = cands(4, "");
        let p = plan(None, &req(3, 50), &c, 4, &D, 9, 1).unwrap();
        assert_eq!(p.specs.len(), 3);
        assert_eq!(p.specs[2].0, 102);
        assert_eq!(p.specs[2].1.peer_id, 2);
        assert_eq!(p.specs[0].1.peers[1], "10.0.0.2:4567".parse().unwrap());
        assert_eq!(p.deadline, Duration::from_millis(5000) + D.slack);
        assert!(plan(None, &req(5, 50), &c, 4, &D, 9, 1)
            .unwrap_err()
            .contains("only 4 agents are live"));
        assert!(plan(None, &req(4, 50), &c[..2], 4, &D, 9, 1)
            .unwrap_err()
            .contains("idle"));
        assert!(plan(None, &req(0, 50), &c, 4, &D, 9, 1).is_err());
        assert!(plan(None, &req(2, 0), &c, 4, &D, 9, 1).is_err());
        assert!(plan(
            None,
            &req(2, super::super::proto::MAX_MSGS + 1),
            &c,
            4,
            &D,
            9,
            1
        )
        .unwrap_err()
        .contains("msgs"));
        let lan = crate::wan::Profile::load("lan").unwrap();
        let mut w = req(2, 5);
        w.wan = "lan".into();
        assert!(plan(None, &w, &c, 4, &D, 9, 1)
            .unwrap_err()
            .contains("unknown WAN profile"));
        assert!(plan(Some(&lan), &w, &c, 4, &D, 9, 1).unwrap().specs[0]
            .1
            .zones
            .is_empty());
        let z = cands(2, "LAN");
        assert_eq!(
            plan(Some(&lan), &w, &z, 2, &D, 9, 1).unwrap().specs[1]
                .1
                .zones,
            ["LAN", "LAN"]
        );
        let bad = cands(2, "eu");
        assert!(plan(Some(&lan), &w, &bad, 2, &D, 9, 1)
            .unwrap_err()
            .contains("not in the profile"));
        let mut mixed = cands(2, "LAN");
        mixed[1].zone = "";
        assert!(plan(Some(&lan), &w, &mixed, 2, &D, 9, 1)
            .unwrap_err()
            .contains("has no zone"));
        let mut dup = cands(2, "");
        dup[1].advertise = dup[0].advertise;
        assert!(plan(None, &req(2, 5), &dup, 2, &D, 9, 1)
            .unwrap_err()
            .contains("same address"));
    }

    #[test]
    fn one_family_per_run_and_loopback_agents_get_their_own_ports() {
        let mut mixed = cands(2, "");
        mixed[1].advertise = "fd00::2".parse().unwrap();
        let e = plan(None, &req(2, 5), &mixed, 2, &D, 9, 1).unwrap_err();
        assert!(e.contains("mix IPv4 and IPv6"), "{e}");
        let mut v6 = cands(3, "");
        for c in &mut v6 {
            c.advertise = "::1".parse().unwrap();
        }
        let p = plan(None, &req(3, 5), &v6, 3, &D, 9, 1).unwrap();
        let ports: Vec<u16> = p.specs[0].1.peers.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [4567, 4568, 4569]);
        // A v4 group for v6 agents, or a non-SSM group with --ssm: refused before a run.
        let mcast = RunRequest {
            transport: Transport::Multicast,
            ..req(3, 5)
        };
        let v4_group = RunDefaults {
            group: Some("239.1.2.3:4570".parse().unwrap()),
            ..D
        };
        let e = plan(None, &mcast, &v6, 3, &v4_group, 9, 1).unwrap_err();
        assert!(e.contains("different families"), "{e}");
        let ssm = RunRequest {
            ssm: true,
            ..mcast.clone()
        };
        let c = cands(3, "");
        let e = plan(None, &ssm, &c, 3, &v4_group, 9, 1).unwrap_err();
        assert!(e.contains("source-specific group"), "{e}");
        let ssm_group = RunDefaults {
            group: Some("232.1.2.3:4570".parse().unwrap()),
            ..D
        };
        let p = plan(None, &ssm, &c, 3, &ssm_group, 9, 1).unwrap();
        assert!(p.specs.iter().all(|(_, s)| s.ssm));
    }

    #[test]
    fn run_completes_on_report_and_all_finished_or_fails_in_virtual_time() {
        let t0 = Instant::now();
        let c = cands(2, "");
        let p = plan(None, &req(2, 10), &c, 2, &D, 7, 1).unwrap();
        let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
        assert_eq!(
            r.on_ready(100),
            Some(Update::Progress(
                "run 0000000000000007: 1/2 peers ready".into()
            ))
        );
        assert_eq!(r.on_ready(100), None);
        assert_eq!(r.on_ready(555), None);
        r.on_report("{}".into(), t0);
        assert_eq!(r.poll(t0), None);
        r.on_finished(100, true, String::new());
        r.on_finished(101, true, String::new());
        assert_eq!(r.poll(t0), Some(Update::Done("{}".into())));

        let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
        r.on_finished(100, false, "exit 1".into());
        assert_eq!(r.poll(t0), None);
        r.on_finished(101, false, "exit 2".into());
        assert!(matches!(r.poll(t0), Some(Update::Failed(t)) if t.contains("exit 2")));

        let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
        assert_eq!(r.poll(r.next_deadline() - Duration::from_millis(1)), None);
        assert!(
            matches!(r.poll(r.next_deadline()), Some(Update::Failed(t)) if t.contains("timed out"))
        );

        // Report in, one agent never says it finished: the report goes out after the grace.
        let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
        r.on_report("{}".into(), t0);
        r.on_finished(100, true, String::new());
        assert_eq!(r.poll(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.poll(r.next_deadline()), Some(Update::Done("{}".into())));
    }
}
