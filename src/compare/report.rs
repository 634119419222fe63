//! The per-run report: field names are a stable interface (`--json`, `--results`, `mpcomm
//! report`), documented in the README ("The comparator"). New fields may be added; none is renamed.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

/// Everything the comparator says about one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// 16 hex digits, a string in JSON (see `util::run_id`).
    #[serde(with = "crate::util::run_id::json")]
    pub run_id: u64,
    /// N, from the log headers.
    pub peers: u16,
    /// M, from the log headers.
    pub msgs_per_peer: u32,
    /// "fanout", "multicast" or null.
    pub transport: Option<String>,
    /// Emulated-WAN profile name, null when none.
    pub wan: Option<String>,
    /// Zone label per peer id (null: none or log missing).
    pub zones: Vec<Option<String>>,
    /// Time scale of the emulated WAN (1.0 = real time).
    pub time_scale: f64,
    /// DATA datagram size in bytes.
    pub size: u16,
    /// Ordering mode of the run ("none", "fifo", "causal", "sequencer", "lamport").
    pub order: String,
    /// Repair of the run ("off", "nack").
    pub repair: String,
    /// N × M.
    pub rounds: u64,
    /// Positions k < N × M at which not all N peers delivered the same (sender, seq).
    pub out_of_order_rounds: u64,
    /// The first such position, null when there is none.
    pub first_divergence: Option<u64>,
    /// Delivery records over all logs received.
    pub deliveries: u64,
    /// Expected (receiver, sender, seq) never delivered, over the receivers whose log arrived.
    pub lost: u64,
    /// Messages a crashed sender never sent (no log, no STOP: after the last one anyone saw);
    /// not counted in `lost`.
    pub unsent: u64,
    /// Datagrams the kernel dropped on the present peers' receive sockets because their
    /// receive buffers were full (SO_RXQ_OVFL / SO_MEMINFO, summed over peers and sockets):
    /// the part of `lost` (before repair) this host's buffers explain. Counts datagrams of
    /// every kind, control ones too, so with repair on it can exceed `lost` (repaired drops).
    pub kernel_drops: u64,
    /// Datagram copies the present peers' sends refused with an error (ENOBUFS, no route…).
    pub send_drops: u64,
    /// Deliveries beyond the first of the same (sender, seq) at a receiver.
    pub duplicates: u64,
    /// Deliveries with seq ≥ M (no expected message).
    pub unexpected: u64,
    /// Deliveries of a sender's seq after a higher seq of the same sender at the same receiver.
    pub fifo_violations: u64,
    /// The same disagreement metrics on the ARRIVAL order (what ordering had to work with).
    pub arrival: ArrivalMetrics,
    /// First deliveries at a receiver before one of their causal predecessors (happened-before
    /// from the logs: same-sender order and delivery before send on the same host); null when
    /// not computed (over the work cap, or a forged log made the relation cyclic).
    pub causal_violations: Option<u64>,
    /// Every two present peers delivered their common messages in the same relative order.
    pub total_order: bool,
    /// What ordering and repair sent, summed over the present peers.
    pub overhead: Overhead,
    /// deliver_ns − arrive_ns over every delivery: what ordering held messages back.
    pub ordering_delay_us: DelaySummary,
    pub repairs: Repairs,
    /// Sum of the headers' malformed-datagram counters.
    pub malformed: u64,
    /// Sum of the headers' forged-datagram counters (authenticated runs: the tag did not
    /// verify; such datagrams changed nothing else).
    pub forged: u64,
    /// Every present peer ran with a key (`--run-key-file`; lab and C2 always give one).
    pub authenticated: bool,
    /// Sum of the headers' datagrams-of-other-runs counters.
    pub foreign: u64,
    /// Peer ids whose log never arrived.
    pub missing_peers: Vec<u16>,
    /// Longest start → handshake-barrier time over the peers.
    pub setup_ms: f64,
    /// Longest start → end time over the peers.
    pub duration_ms: f64,
    /// Every log's peer read kernel receive timestamps.
    pub kernel_stamps: bool,
    pub pairwise_disagreement: Disagreement,
    pub consensus: Consensus,
    pub latency_us: LatencySummary,
    /// Largest clock error bound over the peers' headers; null when any peer's is unknown.
    pub clock_error_ms: Option<f64>,
    /// One entry per peer id 0..N.
    pub per_peer: Vec<PeerSummary>,
    /// Hop distance per sender → receiver pair (the sender's TTL minus the received one, as
    /// omping gives it), over first-transmission DATA; only pairs with a recorded TTL, and
    /// only up to `MAX_MATRIX_PEERS` peers. Empty for logs without TTLs (before version 4).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<PairHops>,
    /// Receiver × sender and peer × peer matrices (`--matrix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Matrices>,
    /// Things about the input a user should know (ignored logs, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Disagreement metrics of the arrival order (each log's records sorted by arrival index).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArrivalMetrics {
    pub out_of_order_rounds: u64,
    pub first_divergence: Option<u64>,
    pub pairwise_disagreement: Disagreement,
    pub fifo_violations: u64,
}

/// Datagrams beyond first-transmission DATA, from the log headers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overhead {
    /// Every copy of HELLO, ACK, STOP, HEARTBEAT, NACK, ORDER sent.
    pub control_datagrams: u64,
    pub control_bytes: u64,
    /// DATA copies sent again after a NACK.
    pub retransmissions: u64,
    pub nacks: u64,
    /// (control_datagrams + retransmissions) / deliveries (0 without deliveries).
    pub per_delivery: f64,
}

/// What repair could not or need not do, from the log headers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Repairs {
    /// Messages declared lost after the repair bound.
    pub given_up: u64,
    /// Arrivals dropped because the message had already arrived.
    pub duplicates_dropped: u64,
}

/// Percentiles of a delay in µs (null without values).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DelaySummary {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    pub count: u64,
}

/// Kendall tau distance between each pair of peers' orders, over the messages both delivered,
/// normalised to [0, 1].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disagreement {
    pub max: f64,
    pub mean: f64,
    /// Pairs compared (both logs present).
    pub pairs: u64,
    /// The pair with the largest distance (null if no pair disagrees).
    pub max_pair: Option<[u16; 2]>,
}

/// A consensus order and who is furthest from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Consensus {
    /// "mean-position" (messages ordered by their mean delivery position over the peers) or
    /// "reference" (one peer's order, `--reference`); "none" when not computed.
    pub method: String,
    pub reference: Option<u16>,
    /// Peer with the largest distance to the consensus (null if all agree with it).
    pub odd_one_out: Option<u16>,
    pub max_distance: f64,
}

/// One-way latency deliver_ns − send_ns in µs over every delivery with a non-negative value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencySummary {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    /// Deliveries recorded.
    pub count: u64,
    /// Deliveries with deliver_ns < send_ns (clocks apart); not recorded.
    pub negative: u64,
}

/// Serialised in full for a peer whose log arrived; for one whose log did not, only `peer`,
/// `present` (false) and `zone`, so a run that claims many peers makes a short line (a
/// reader's defaults give the rest: zeros and nulls).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PeerSummary {
    pub peer: u16,
    /// Its log arrived.
    pub present: bool,
    pub zone: Option<String>,
    pub deliveries: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub fifo_violations: u64,
    pub malformed: u64,
    pub forged: u64,
    pub setup_ms: f64,
    pub clock_error_ms: Option<f64>,
    /// Kendall distance of its order to the consensus order (null if absent).
    pub distance_to_consensus: Option<f64>,
    /// Latency of deliveries at this receiver.
    pub latency_us: LatencySummary,
    /// This peer's header counters (see [`Overhead`] and [`Repairs`]).
    pub control_datagrams: u64,
    pub control_bytes: u64,
    pub retransmissions: u64,
    pub nacks: u64,
    pub given_up: u64,
    pub duplicates_dropped: u64,
    /// 0, or 1: the sequencer fell silent with messages waiting for their order.
    pub failure: u32,
    /// Datagrams the kernel dropped on this peer's receive sockets, buffers full.
    pub kernel_drops: u64,
    /// Datagram copies this peer's sends refused with an error.
    pub send_drops: u64,
    /// DATA datagrams this peer handed to the kernel (every fan-out copy, retransmissions
    /// included) and their UDP payload bytes.
    pub data_datagrams_sent: u64,
    pub data_bytes_sent: u64,
    /// sendmmsg/sendmsg and recvmmsg/recvmsg calls.
    pub send_syscalls: u64,
    pub recv_syscalls: u64,
    /// The peer process's user + system CPU time, ns.
    pub cpu_ns: u64,
}

/// The derived serialisation of a [`PeerSummary`] (its `Serialize` picks this or
/// [`AbsentPeer`]).
#[derive(Serialize)]
#[serde(remote = "PeerSummary")]
struct FullPeer {
    pub peer: u16,
    /// Its log arrived.
    pub present: bool,
    pub zone: Option<String>,
    pub deliveries: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub fifo_violations: u64,
    pub malformed: u64,
    pub forged: u64,
    pub setup_ms: f64,
    pub clock_error_ms: Option<f64>,
    /// Kendall distance of its order to the consensus order (null if absent).
    pub distance_to_consensus: Option<f64>,
    /// Latency of deliveries at this receiver.
    pub latency_us: LatencySummary,
    /// This peer's header counters (see [`Overhead`] and [`Repairs`]).
    pub control_datagrams: u64,
    pub control_bytes: u64,
    pub retransmissions: u64,
    pub nacks: u64,
    pub given_up: u64,
    pub duplicates_dropped: u64,
    /// 0, or 1: the sequencer fell silent with messages waiting for their order.
    pub failure: u32,
    /// Datagrams the kernel dropped on this peer's receive sockets, buffers full.
    pub kernel_drops: u64,
    /// Datagram copies this peer's sends refused with an error.
    pub send_drops: u64,
    /// DATA datagrams this peer handed to the kernel (every fan-out copy, retransmissions
    /// included) and their UDP payload bytes.
    pub data_datagrams_sent: u64,
    pub data_bytes_sent: u64,
    /// sendmmsg/sendmsg and recvmmsg/recvmsg calls.
    pub send_syscalls: u64,
    pub recv_syscalls: u64,
    /// The peer process's user + system CPU time, ns.
    pub cpu_ns: u64,
}

#[derive(Serialize)]
struct AbsentPeer<'a> {
    peer: u16,
    present: bool,
    zone: &'a Option<String>,
}

impl Serialize for PeerSummary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.present {
            FullPeer::serialize(self, s)
        } else {
            AbsentPeer {
                peer: self.peer,
                present: false,
                zone: &self.zone,
            }
            .serialize(s)
        }
    }
}

/// How many hops one sender's DATA travelled to one receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairHops {
    pub sender: u16,
    pub receiver: u16,
    /// Fewest and most hops over that sender's first-transmission DATA at that receiver.
    pub min: u8,
    pub max: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Matrices {
    /// `lost[receiver][sender]`.
    pub lost: Vec<Vec<u64>>,
    /// `duplicates[receiver][sender]`.
    pub duplicates: Vec<Vec<u64>>,
    /// `disagreement[a][b]`: Kendall distance (null when a log is missing).
    pub disagreement: Vec<Vec<Option<f64>>>,
    /// `latency_p50_us[receiver][sender]` (null: no deliveries or not kept for large N).
    pub latency_p50_us: Vec<Vec<Option<f64>>>,
    /// `hops[receiver][sender]`: `[min, max]` hop distance (null: no TTL recorded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<Vec<Option<[u8; 2]>>>,
}

/// `1234567` as `1,234,567`.
pub fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

impl Report {
    /// One JSON object, no newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// Parse one line of a results file.
    pub fn from_json_line(line: &str) -> serde_json::Result<Report> {
        serde_json::from_str(line)
    }

    /// How much of `lost` the kernel drops explain: per receiver, at most its own drops
    /// (its drops of control datagrams explain nothing at another receiver).
    pub fn lost_to_kernel_drops(&self) -> u64 {
        let per_peer: u64 = self
            .per_peer
            .iter()
            .filter(|p| p.present)
            .map(|p| p.lost.min(p.kernel_drops))
            .sum();
        if self.per_peer.iter().any(|p| p.present) {
            per_peer.min(self.lost)
        } else {
            self.kernel_drops.min(self.lost)
        }
    }

    /// "lost N", and when N > 0 how much of it this host's full receive buffers (and refused
    /// sends) explain.
    pub fn lost_line(&self) -> String {
        let mut s = format!("lost {}", thousands(self.lost));
        if self.lost > 0 {
            s.push_str(&format!(
                ", of which {} dropped by this host's full receive buffers (kernel_drops)",
                thousands(self.lost_to_kernel_drops())
            ));
            if self.kernel_drops > self.lost {
                s.push_str(&format!(
                    " ({} kernel drops in all, some repaired or control datagrams)",
                    thousands(self.kernel_drops)
                ));
            }
            if self.send_drops > 0 {
                s.push_str(&format!(
                    ", {} datagram copies refused by send (send_drops)",
                    thousands(self.send_drops)
                ));
            }
        }
        s
    }

    /// The readable form: the original's line, a summary and a per-peer table (+ matrices).
    pub fn write_human(&self, w: &mut dyn Write) -> io::Result<()> {
        let transport = self.transport.as_deref().unwrap_or("?");
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "?".to_owned()
            } else {
                s.to_owned()
            }
        };
        write!(
            w,
            "run {:016x}: {} peers x {} msgs, {transport}, order {}, repair {}",
            self.run_id,
            self.peers,
            self.msgs_per_peer,
            or_unknown(&self.order),
            or_unknown(&self.repair)
        )?;
        if let Some(wan) = &self.wan {
            write!(w, ", wan {wan} (time scale {})", self.time_scale)?;
        }
        writeln!(w)?;
        writeln!(
            w,
            "Found {} unordered message rounds",
            self.out_of_order_rounds
        )?;
        let pct = if self.rounds > 0 {
            100.0 * self.out_of_order_rounds as f64 / self.rounds as f64
        } else {
            0.0
        };
        let first = self
            .first_divergence
            .map_or_else(|| "none".to_owned(), |k| format!("position {k}"));
        writeln!(
            w,
            "  rounds {}, out of order {} ({pct:.1}%), first divergence: {first}",
            self.rounds, self.out_of_order_rounds
        )?;
        let a = &self.arrival;
        let first_arrival = a
            .first_divergence
            .map_or_else(|| "none".to_owned(), |k| format!("position {k}"));
        writeln!(
            w,
            "  out-of-order rounds: delivery {}, arrival {} (first divergence: delivery {first}, arrival {first_arrival})",
            self.out_of_order_rounds, a.out_of_order_rounds
        )?;
        writeln!(
            w,
            "  arrival order: fifo violations {}, pairwise disagreement mean {:.4}, max {:.4}",
            a.fifo_violations, a.pairwise_disagreement.mean, a.pairwise_disagreement.max
        )?;
        let causal = self
            .causal_violations
            .map_or_else(|| "not computed".to_owned(), |c| c.to_string());
        writeln!(
            w,
            "  causal violations {causal}, total order {}",
            if self.total_order { "yes" } else { "no" }
        )?;
        let o = &self.overhead;
        writeln!(
            w,
            "  overhead: {} control datagrams ({} bytes), {} retransmissions, {} nacks; {:.3} per delivery",
            o.control_datagrams, o.control_bytes, o.retransmissions, o.nacks, o.per_delivery
        )?;
        let d = &self.ordering_delay_us;
        writeln!(
            w,
            "  ordering delay us: p50 {} p90 {} p99 {} max {} (n={}); repairs given up {}, duplicates dropped {}",
            opt(d.p50, 1),
            opt(d.p90, 1),
            opt(d.p99, 1),
            opt(d.max, 1),
            d.count,
            self.repairs.given_up,
            self.repairs.duplicates_dropped
        )?;
        writeln!(
            w,
            "  deliveries {}, {}, duplicates {}, fifo violations {}, unexpected {}, malformed {}, other-run {}",
            self.deliveries, self.lost_line(), self.duplicates, self.fifo_violations, self.unexpected, self.malformed, self.foreign
        )?;
        if self.lost == 0 && self.kernel_drops > 0 {
            writeln!(
                w,
                "  kernel drops {} (datagrams this host's full receive buffers dropped; repair or the protocol made up for them)",
                thousands(self.kernel_drops)
            )?;
        }
        if self.forged > 0 {
            writeln!(
                w,
                "  forged {} (datagrams whose tag did not verify: dropped, nothing else changed)",
                self.forged
            )?;
        }
        if self.unsent > 0 {
            writeln!(
                w,
                "  unsent {} (a sender stopped early: see the warnings; not counted as lost)",
                self.unsent
            )?;
        }
        let d = &self.pairwise_disagreement;
        write!(
            w,
            "  pairwise disagreement (Kendall): mean {:.4}, max {:.4}",
            d.mean, d.max
        )?;
        if let Some([a, b]) = d.max_pair {
            write!(w, " (peers {a} and {b})")?;
        }
        writeln!(w, " over {} pairs", d.pairs)?;
        let c = &self.consensus;
        match (c.odd_one_out, c.reference) {
            _ if c.method == "none" => {
                writeln!(w, "  pairwise distances and consensus not computed")?
            }
            (Some(p), Some(r)) => writeln!(
                w,
                "  furthest from reference peer {r}: peer {p} ({:.4})",
                c.max_distance
            )?,
            (Some(p), None) => writeln!(
                w,
                "  odd one out (vs {} consensus): peer {p} ({:.4})",
                c.method, c.max_distance
            )?,
            (None, _) => writeln!(w, "  every peer agrees with the {} consensus", c.method)?,
        }
        let l = &self.latency_us;
        writeln!(
            w,
            "  latency us: p50 {} p90 {} p99 {} p99.9 {} max {} (n={}, negative {})",
            opt(l.p50, 1),
            opt(l.p90, 1),
            opt(l.p99, 1),
            opt(l.p999, 1),
            opt(l.max, 1),
            l.count,
            l.negative
        )?;
        let clock = self
            .clock_error_ms
            .map_or_else(|| "unknown".to_owned(), |c| format!("{c:.3} ms"));
        writeln!(w, "  clock error bound: {clock}; one-way latency across hosts is only as good as their clock sync")?;
        if let Some(line) = self.hops_line() {
            writeln!(w, "  {line}")?;
        }
        if !self.missing_peers.is_empty() {
            writeln!(w, "  missing peers (no log): {:?}", self.missing_peers)?;
        }
        writeln!(
            w,
            "  setup {:.1} ms, duration {:.1} ms",
            self.setup_ms, self.duration_ms
        )?;
        for warning in &self.warnings {
            writeln!(w, "  warning: {warning}")?;
        }
        writeln!(
            w,
            "  {:>4} {:>8} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6}",
            "peer",
            "zone",
            "deliveries",
            "lost",
            "kdrops",
            "dups",
            "fifo",
            "p50 us",
            "p99 us",
            "neg",
            "dist",
            "control",
            "retx"
        )?;
        let shown = self.per_peer_rows();
        for p in self.per_peer.iter().filter(|p| shown.contains(&p.peer)) {
            if !p.present {
                writeln!(
                    w,
                    "  {:>4} {:>8} (no log)",
                    p.peer,
                    p.zone.as_deref().unwrap_or("-")
                )?;
                continue;
            }
            writeln!(
                w,
                "  {:>4} {:>8} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6}",
                p.peer,
                p.zone.as_deref().unwrap_or("-"),
                p.deliveries,
                p.lost,
                p.kernel_drops,
                p.duplicates,
                p.fifo_violations,
                opt(p.latency_us.p50, 1),
                opt(p.latency_us.p99, 1),
                p.latency_us.negative,
                opt(p.distance_to_consensus, 4),
                p.control_datagrams,
                p.retransmissions
            )?;
        }
        if shown.len() < self.per_peer.len() {
            writeln!(
                w,
                "  ({} more peers with nothing to note: no loss, duplicate, fifo violation or \
                 negative latency, not among the {PER_PEER_WORST} slowest p99; every row: \
                 --matrix or --json)",
                self.per_peer.len() - shown.len()
            )?;
        }
        if let Some(m) = &self.matrix {
            write_matrix(w, "lost (row: receiver, column: sender)", &m.lost, |v| {
                v.to_string()
            })?;
            write_matrix(
                w,
                "duplicates (row: receiver, column: sender)",
                &m.duplicates,
                |v| v.to_string(),
            )?;
            write_matrix(w, "pairwise disagreement", &m.disagreement, |v| opt(*v, 4))?;
            write_matrix(
                w,
                "latency p50 us (row: receiver, column: sender)",
                &m.latency_p50_us,
                |v| opt(*v, 1),
            )?;
            if !m.hops.is_empty() {
                write_matrix(
                    w,
                    "hops (row: receiver, column: sender; sender's TTL - received TTL)",
                    &m.hops,
                    |v| match v {
                        None => "-".into(),
                        Some([lo, hi]) if lo == hi => lo.to_string(),
                        Some([lo, hi]) => format!("{lo}-{hi}"),
                    },
                )?;
            }
        }
        Ok(())
    }
}

impl Report {
    /// `hops 0..2 over 12 sender → receiver pairs (...)`, or `None` without recorded TTLs.
    pub fn hops_line(&self) -> Option<String> {
        let lo = self.hops.iter().map(|h| h.min).min()?;
        let hi = self.hops.iter().map(|h| h.max).max()?;
        Some(format!(
            "hop distance {lo}..{hi} over {} sender -> receiver pairs (sender's TTL - received TTL; per pair: --matrix, --json \"hops\")",
            self.hops.len()
        ))
    }
}

/// Above this many peers the text report's per-peer table shows only the rows worth a look.
pub const PER_PEER_ROWS: usize = 32;
/// With a shortened table: the peers with the largest p99 latency shown anyway.
const PER_PEER_WORST: usize = 5;

impl Report {
    /// The peers whose row the text report prints: every one up to [`PER_PEER_ROWS`] peers or
    /// with `--matrix`; above, the absent ones, those with anything wrong, the odd one out and
    /// the [`PER_PEER_WORST`] slowest by p99 (256 rows per run helped nobody read a report).
    fn per_peer_rows(&self) -> std::collections::BTreeSet<u16> {
        if self.per_peer.len() <= PER_PEER_ROWS || self.matrix.is_some() {
            return self.per_peer.iter().map(|p| p.peer).collect();
        }
        let mut shown: std::collections::BTreeSet<u16> = self
            .per_peer
            .iter()
            .filter(|p| {
                !p.present
                    || p.lost > 0
                    || p.duplicates > 0
                    || p.fifo_violations > 0
                    || p.latency_us.negative > 0
            })
            .map(|p| p.peer)
            .collect();
        if let Some(odd) = self.consensus.odd_one_out {
            shown.insert(odd);
        }
        let mut by_p99: Vec<_> = self
            .per_peer
            .iter()
            .filter_map(|p| p.latency_us.p99.map(|v| (v, p.peer)))
            .collect();
        by_p99.sort_by(|a, b| b.0.total_cmp(&a.0));
        shown.extend(by_p99.iter().take(PER_PEER_WORST).map(|&(_, peer)| peer));
        shown
    }
}

fn write_matrix<T>(
    w: &mut dyn Write,
    title: &str,
    m: &[Vec<T>],
    cell: impl Fn(&T) -> String,
) -> io::Result<()> {
    writeln!(w, "  {title}:")?;
    write!(w, "  {:>4}", "")?;
    for j in 0..m.len() {
        write!(w, " {j:>8}")?;
    }
    writeln!(w)?;
    for (i, row) in m.iter().enumerate() {
        write!(w, "  {i:>4}")?;
        for v in row {
            write!(w, " {:>8}", cell(v))?;
        }
        writeln!(w)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_is_attributed_per_receiver_to_its_kernel_drops() {
        let peer = |p: u16, lost: u64, kernel_drops: u64| PeerSummary {
            peer: p,
            present: true,
            lost,
            kernel_drops,
            ..PeerSummary::default()
        };
        let mut r = Report {
            lost: 1_100,
            kernel_drops: 1_150,
            // Peer 1's 150 drops were control datagrams; peer 0's 50 lost are unexplained.
            per_peer: vec![peer(0, 1_050, 1_000), peer(1, 50, 150)],
            ..Report::default()
        };
        assert_eq!(r.lost_to_kernel_drops(), 1_050);
        assert_eq!(
            r.lost_line(),
            "lost 1,100, of which 1,050 dropped by this host's full receive buffers \
             (kernel_drops) (1,150 kernel drops in all, some repaired or control datagrams)"
        );
        r.per_peer.clear();
        r.kernel_drops = 1_100;
        assert_eq!(
            r.lost_line(),
            "lost 1,100, of which 1,100 dropped by this host's full receive buffers (kernel_drops)"
        );
        r.lost = 0;
        assert_eq!(r.lost_line(), "lost 0");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
