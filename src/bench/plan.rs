//! What a bench runs: the points (host kind × N × transport) and the size of each run.

use std::time::Duration;

use super::BenchConfig;
use crate::lab::{MAX_PEERS, NETNS_MAX_PEERS};
use crate::wire::Transport;

/// Where the peers of a point live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// Every peer on its own 127.x.y.z address of this host.
    Loopback,
    /// Every peer in its own network namespace, on a Linux bridge.
    Netns,
    /// Loopback, then network namespaces.
    Both,
}

impl HostKind {
    pub fn list(self) -> Vec<HostKind> {
        match self {
            HostKind::Both => vec![HostKind::Loopback, HostKind::Netns],
            k => vec![k],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Loopback => "loopback",
            HostKind::Netns => "netns",
            HostKind::Both => "both",
        }
    }
}

/// A sorted list of distinct N, each in 2..=[`MAX_PEERS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList(pub Vec<u16>);

/// `2,8,32`: at least one N, each 2..=MAX_PEERS (the lab's limit on one machine).
pub fn parse_peers(s: &str) -> Result<PeerList, String> {
    let mut list = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let n: u16 = part
            .parse()
            .map_err(|_| format!("{part:?} is not a number of peers"))?;
        if !(2..=MAX_PEERS).contains(&n) {
            return Err(format!(
                "N = {n} is out of range: 2..={MAX_PEERS} peers on one machine"
            ));
        }
        list.push(n);
    }
    if list.is_empty() {
        return Err("give at least one N, e.g. --peers 2,8,32".into());
    }
    list.sort_unstable();
    list.dedup();
    Ok(PeerList(list))
}

/// The largest N of the default list.
pub const DEFAULT_MAX_N: u16 = 128;

/// The default list: 2, 4, 8, … 128 (or the lab's limit, if lower).
pub fn default_peers() -> PeerList {
    PeerList(
        std::iter::successors(Some(2u16), |n| n.checked_mul(2))
            .take_while(|&n| n <= MAX_PEERS.min(DEFAULT_MAX_N))
            .collect(),
    )
}

/// Fewest messages per peer of a run, however large N.
pub const MIN_MSGS: u32 = 10;

/// One host kind × N × transport: a saturation run and a paced run.
#[derive(Debug, Clone)]
pub struct Point {
    pub hosts: HostKind,
    pub peers: u16,
    pub transport: Transport,
    pub saturation_msgs: u32,
    pub paced_msgs: u32,
}

/// A bench the arguments make impossible; every one names its flag.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--rate must be 1..=1000000 messages/s per peer")]
    Rate,
    #[error("--deliveries must be at least 1 (a saturation run sends at least {MIN_MSGS} messages per peer)")]
    Deliveries,
    #[error("--paced-msgs must be at least 1")]
    PacedMsgs,
    #[error("--peers {0}: network namespaces take at most {NETNS_MAX_PEERS} peers (one /24 on the bridge)")]
    Netns(u16),
    /// What a peer of one of the runs would refuse.
    #[error(transparent)]
    Run(#[from] crate::peer::args::RunValueError),
}

pub struct Plan {
    pub points: Vec<Point>,
    pub peers: PeerList,
    pub paced_gap: Duration,
    pub rate: u32,
    /// Deliveries a saturation run aims at.
    pub deliveries: u64,
    pub size: usize,
    pub drain: Duration,
}

/// Messages per peer so that N² × M is about `deliveries` (at least [`MIN_MSGS`]).
pub fn msgs_for(deliveries: u64, peers: u16) -> u32 {
    let n2 = u64::from(peers) * u64::from(peers);
    u32::try_from(deliveries / n2)
        .unwrap_or(u32::MAX)
        .max(MIN_MSGS)
}

impl Plan {
    pub fn new(args: &BenchConfig, hosts: HostKind) -> Result<Plan, PlanError> {
        if !(1..=1_000_000).contains(&args.rate) {
            return Err(PlanError::Rate);
        }
        if args.deliveries < 1 {
            return Err(PlanError::Deliveries);
        }
        if args.paced_msgs < 1 {
            return Err(PlanError::PacedMsgs);
        }
        let peers = args.peers.clone().unwrap_or_else(default_peers);
        let largest = peers.0.last().copied().unwrap_or(2);
        if hosts != HostKind::Loopback && largest > NETNS_MAX_PEERS {
            return Err(PlanError::Netns(largest));
        }
        let paced_gap = Duration::from_nanos(1_000_000_000 / u64::from(args.rate));
        let mut points = Vec::new();
        for kind in hosts.list() {
            for &n in &peers.0 {
                for transport in args.transport.list() {
                    let saturation_msgs = msgs_for(args.deliveries, n);
                    points.push(Point {
                        hosts: kind,
                        peers: n,
                        transport,
                        saturation_msgs,
                        paced_msgs: args.paced_msgs.min(saturation_msgs),
                    });
                }
            }
        }
        let plan = Plan {
            points,
            peers,
            paced_gap,
            rate: args.rate,
            deliveries: args.deliveries,
            size: args.size,
            drain: args.drain,
        };
        // Before any peer starts: whatever a peer would refuse (size, counts, gaps).
        for p in &plan.points {
            plan.experiment(p, 0, true).check()?;
            plan.experiment(p, 0, false).check()?;
        }
        Ok(plan)
    }

    pub fn peers_label(&self) -> String {
        self.peers
            .0
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The lab run of `p`: at saturation, or paced.
    pub fn experiment(&self, p: &Point, seed: u64, saturation: bool) -> crate::lab::Experiment {
        let (msgs, interval) = if saturation {
            (p.saturation_msgs, (Duration::ZERO, Duration::ZERO))
        } else {
            (p.paced_msgs, (self.paced_gap, self.paced_gap))
        };
        crate::lab::Experiment {
            peers: p.peers,
            msgs,
            transport: p.transport,
            order: crate::wire::Order::None,
            repair: crate::wire::Repair::Off,
            interval,
            size: self.size,
            seed,
            wan: None,
            wan_loss: 0.0,
            time_scale: 1.0,
            drain: self.drain,
            handshake_timeout: Duration::from_secs(10)
                + Duration::from_millis(100) * p.peers.into(),
            wan_delay: Duration::ZERO,
            ssm: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_lists_are_checked_sorted_and_deduplicated() {
        assert_eq!(parse_peers("8, 2,8,32").unwrap(), PeerList(vec![2, 8, 32]));
        assert!(parse_peers("").unwrap_err().contains("at least one"));
        assert!(parse_peers(",").unwrap_err().contains("at least one"));
        assert!(parse_peers("1").unwrap_err().contains("out of range"));
        let over = (MAX_PEERS + 1).to_string();
        assert!(parse_peers(&over).unwrap_err().contains("out of range"));
        assert!(parse_peers("two").unwrap_err().contains("not a number"));
        let d = default_peers().0;
        assert_eq!(d[0], 2);
        assert_eq!(*d.last().unwrap(), DEFAULT_MAX_N.min(MAX_PEERS));
    }

    #[test]
    fn runs_shrink_with_n_squared() {
        assert_eq!(msgs_for(500_000, 2), 125_000);
        assert_eq!(msgs_for(500_000, 32), 488);
        assert_eq!(msgs_for(500_000, 64), 122);
        assert_eq!(msgs_for(100, 8), MIN_MSGS);
    }
}
