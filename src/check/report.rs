//! What a preflight found: per peer and transport, who heard whom, loss, round-trip time and
//! hop distance, and the verdict. Serde both ways, so the C2 agent can carry it later.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::wire::Transport;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Every pair passed over every transport asked for.
    pub pass: bool,
    /// This host's id (index in --peers) and listed address.
    pub id: u16,
    pub addr: String,
    pub transports: Vec<Transport>,
    /// How long each pair was counted, and how long multicast was given to build its tree
    /// before counting.
    pub duration_ms: f64,
    pub warmup_ms: f64,
    /// Probe rounds this host sent.
    pub probes: u32,
    pub pairs: Vec<PairReport>,
    /// One line per failed pair and transport (also in `pairs[].problem`).
    pub failures: Vec<String>,
    /// What the failures together suggest (see [`hints`]).
    #[serde(default)]
    pub hints: Vec<String>,
    /// The TTL multicast probes left with.
    pub multicast_ttl: u8,
    /// Datagrams ignored: not probes, another check's (other --peers list), stale replies.
    pub ignored: u64,
}

/// This host and one peer over one transport. "out": our probes to the peer and its replies;
/// "in": the peer's probes to us.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairReport {
    pub peer: u16,
    pub addr: String,
    pub transport: Transport,
    pub pass: bool,
    /// Why the pair failed (`None` when it passed).
    pub problem: Option<String>,
    /// Our probes counted, and how many the peer answered.
    pub sent: u32,
    pub answered: u32,
    pub loss_out: Option<f64>,
    /// The peer's probes we heard, out of the seq range they span.
    pub heard: u32,
    pub expected: u32,
    pub loss_in: Option<f64>,
    /// Round trip: our probe over this transport, its unicast reply.
    pub rtt_ms: Option<Rtt>,
    /// Hops from us to the peer (the TTL it saw on our probe) and from it to us.
    pub hops_out: Option<u8>,
    pub hops_in: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rtt {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

impl PairReport {
    /// The table columns from the transport on (transport, answered, loss out, heard, loss
    /// in, rtt, hops, verdict): this host's table and `c2 check`'s merged one print the same.
    pub fn columns(&self) -> String {
        let rtt = self.rtt_ms.map_or("-".into(), |r| {
            format!("{:.2}/{:.2}/{:.2}", r.min, r.avg, r.max)
        });
        format!(
            "{:<9}  {:>9}  {:>5}  {:>9}  {:>5}  {:>20}  {:>7}  {}",
            self.transport.as_str(),
            format!("{}/{}", self.answered, self.sent),
            pct(self.loss_out),
            format!("{}/{}", self.heard, self.expected),
            pct(self.loss_in),
            rtt,
            format!("{}/{}", hops(self.hops_out), hops(self.hops_in)),
            if self.pass { "ok" } else { "FAIL" }
        )
    }

    /// `FAIL peer 2 (10.0.0.3:4570) multicast: …`, or `None` for a pair that passed.
    pub fn failure_line(&self) -> Option<String> {
        let why = self.problem.as_ref()?;
        Some(format!(
            "FAIL peer {} ({}) {}: {why}",
            self.peer, self.addr, self.transport
        ))
    }
}

/// Where failed multicast pairs point, when unicast to the same peers works: a router in
/// between (unicast crosses hops a multicast TTL cannot), incoming multicast dropped here,
/// outgoing multicast reaching nobody, or multicast not carried at all.
pub fn hints(pairs: &[PairReport], ttl: u8) -> Vec<String> {
    let unicast_ok = |peer: u16| {
        pairs
            .iter()
            .find(|p| p.peer == peer && p.transport == Transport::Fanout)
            .is_none_or(|p| p.pass)
    };
    let failed: Vec<&PairReport> = pairs
        .iter()
        .filter(|p| p.transport == Transport::Multicast && !p.pass && unicast_ok(p.peer))
        .filter(|p| p.sent > 0)
        .collect();
    let mut hints = Vec::new();
    for p in &failed {
        let unicast = pairs
            .iter()
            .find(|u| u.peer == p.peer && u.transport == Transport::Fanout);
        let hops = unicast.and_then(|u| u.hops_in.max(u.hops_out)).unwrap_or(0);
        if hops >= ttl {
            hints.push(format!(
                "peer {} is {hops} router hop(s) away by unicast, but multicast leaves with TTL {ttl}: try --ttl {} (the routers must forward multicast too)",
                p.peer,
                hops + 1
            ));
        }
    }
    // About this host only when every multicast pair failed the same way.
    let multicast = pairs
        .iter()
        .filter(|p| p.transport == Transport::Multicast)
        .count();
    let all = |f: fn(&PairReport) -> bool| failed.len() == multicast && failed.iter().all(|p| f(p));
    if failed.is_empty() {
        // Nothing to explain.
    } else if all(|p| p.heard == 0 && p.answered > 0) {
        hints.push("no peer's multicast reaches this host, but ours reaches them: incoming multicast is dropped here (a firewall rule, or a switch port that IGMP snooping pruned: a network without a querier)".into());
    } else if all(|p| p.answered == 0 && p.heard > 0) {
        hints.push("this host hears the others' multicast, but they do not hear its: outgoing multicast leaves by the wrong interface (--iface) or is dropped on the way".into());
    } else if all(|p| p.answered == 0 && p.heard == 0) {
        hints.push("unicast works, multicast does not get through at all: a cloud network that drops multicast, IGMP snooping without a querier, or a router in between (README: \"Is multicast working here?\")".into());
    }
    hints
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |l| format!("{:.0}%", l * 100.0))
}

fn hops(v: Option<u8>) -> String {
    v.map_or("-".into(), |h| h.to_string())
}

impl CheckReport {
    /// The table, then one line per failure, then the verdict.
    pub fn write_human(&self, out: &mut impl Write) -> io::Result<()> {
        let names: Vec<&str> = self.transports.iter().map(|t| t.as_str()).collect();
        writeln!(
            out,
            "mpcomm check: peer {} ({}), {}, each pair counted {:.1} s after {:.1} s of warm-up",
            self.id,
            self.addr,
            names.join(" + "),
            self.duration_ms / 1e3,
            self.warmup_ms / 1e3
        )?;
        let width = self
            .pairs
            .iter()
            .map(|p| p.addr.len())
            .max()
            .unwrap_or(7)
            .max(7);
        writeln!(
            out,
            "{:>4}  {:<width$}  {:<9}  {:>9}  {:>5}  {:>9}  {:>5}  {:>20}  {:>7}  verdict",
            "peer",
            "address",
            "transport",
            "answered",
            "loss",
            "heard",
            "loss",
            "rtt min/avg/max ms",
            "hops",
        )?;
        for p in &self.pairs {
            writeln!(out, "{:>4}  {:<width$}  {}", p.peer, p.addr, p.columns())?;
        }
        writeln!(
            out,
            "(answered: our probes it answered; heard: its probes we heard; hops: to it / from it)"
        )?;
        for line in &self.failures {
            writeln!(out, "{line}")?;
        }
        for line in &self.hints {
            writeln!(out, "hint: {line}")?;
        }
        if self.pass {
            writeln!(
                out,
                "PASS: every peer reachable over {}",
                names.join(" and ")
            )
        } else {
            writeln!(
                out,
                "{} of {} pair(s) failed",
                self.failures.len(),
                self.pairs.len()
            )
        }
    }
}
