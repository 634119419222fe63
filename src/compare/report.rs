//! The per-run report: field names are a stable interface (`--json`, `--results`, `mpcomm
//! report`), documented in the README ("The comparator"). New fields may be added; none is renamed.

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
}

#[cfg(test)]
mod tests;
mod text;

pub use text::PER_PEER_ROWS;
