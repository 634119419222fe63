//! One peer's delivery log, decoded into what the analysis needs and nothing more: a u32 message
//! index per delivery (4 bytes instead of the record's 32) and one-way latency already folded
//! into histograms while decoding.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::wire::{self, log::LogHeader, log::LogView};

/// Message index of a delivery whose seq is not below M (no expected message; it never matches).
pub const NOT_EXPECTED: u32 = u32::MAX;
/// Keep one latency histogram per sender only up to this many peers (N² histograms per run);
/// above it, one per receiver.
pub const MAX_PAIR_HIST_PEERS: u16 = 64;
/// Latencies above this are recorded as this (an hour: no real run gets near it), which bounds
/// every histogram's size whatever a log claims.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Nanoseconds per millisecond, for the ms fields of reports and histogram files.
pub const NS_PER_MS: f64 = 1e6;
/// Significant digits of every latency histogram.
pub const SIGFIG: u8 = 3;

/// One-way latency (deliver_ns − send_ns) at one receiver, in ns.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Index = sender id when `per_sender`, else a single histogram for all senders.
    pub hists: Vec<Option<Histogram<u64>>>,
    /// Deliveries with deliver_ns < send_ns (clock offset between hosts), same indexing; never
    /// recorded in the histograms.
    pub negative: Vec<u64>,
    pub per_sender: bool,
}

/// A new empty latency histogram (ns, 3 significant digits, grows as needed up to
/// [`MAX_LATENCY_NS`]).
pub fn new_hist() -> Histogram<u64> {
    let mut h = Histogram::new_with_max(2, SIGFIG).expect("2 ns, 3 digits is a valid histogram");
    h.auto(true);
    h
}

impl Latency {
    fn new(peers: u16) -> Latency {
        let per_sender = peers <= MAX_PAIR_HIST_PEERS;
        let n = if per_sender { usize::from(peers) } else { 1 };
        Latency {
            hists: vec![None; n],
            negative: vec![0; n],
            per_sender,
        }
    }

    #[inline]
    fn record(&mut self, sender: u16, send_ns: u64, deliver_ns: u64) {
        let i = if self.per_sender {
            usize::from(sender)
        } else {
            0
        };
        match deliver_ns.checked_sub(send_ns) {
            Some(ns) => {
                let h = self.hists[i].get_or_insert_with(new_hist);
                // Cannot fail: auto-resize, and the value is far below the type's limit.
                let _ = h.record(ns.min(MAX_LATENCY_NS));
            }
            None => self.negative[i] += 1,
        }
    }

    /// Every sender merged.
    pub fn total(&self) -> Histogram<u64> {
        let mut all = new_hist();
        for h in self.hists.iter().flatten() {
            all.add(h).expect("auto-resizing histograms add");
        }
        all
    }

    pub fn negative_total(&self) -> u64 {
        self.negative.iter().sum()
    }
}

/// What the analysis keeps of one peer's log.
#[derive(Clone, Debug)]
pub struct PeerLog {
    pub header: LogHeader,
    /// Message index `sender × M + seq` of every delivery, in delivery order
    /// ([`NOT_EXPECTED`] when seq ≥ M).
    pub order: Vec<u32>,
    /// Deliveries of a sender's seq after a higher seq of the same sender (network reordering).
    pub fifo_violations: u64,
    pub latency: Latency,
}

impl PeerLog {
    /// Check and decode a whole log (the bytes of a `.mplog` file or an upload).
    ///
    /// Refuses (`BadValue`) a log whose N × M does not fit a u32 message index.
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerLog, wire::Error> {
        let view = LogView::parse(bytes)?;
        let header = view.header.clone();
        let m = u64::from(header.msgs);
        if u64::from(header.peers) * m >= u64::from(NOT_EXPECTED) {
            return Err(wire::Error::BadValue);
        }
        let mut order = Vec::with_capacity(view.len());
        let mut latency = Latency::new(header.peers);
        // Highest seq + 1 seen per sender (0 = none yet), for FIFO violations.
        let mut next_seq = vec![0u64; usize::from(header.peers)];
        let mut fifo_violations = 0;
        for r in view.records() {
            let s = usize::from(r.sender);
            let seq = u64::from(r.seq);
            order.push(if seq < m {
                (s as u64 * m + seq) as u32
            } else {
                NOT_EXPECTED
            });
            if seq + 1 < next_seq[s] {
                fifo_violations += 1;
            } else {
                next_seq[s] = next_seq[s].max(seq + 1);
            }
            latency.record(r.sender, r.send_ns, r.deliver_ns);
        }
        Ok(PeerLog {
            header,
            order,
            fifo_violations,
            latency,
        })
    }

    /// Read and decode a log file.
    pub fn from_file(p: &Path) -> anyhow::Result<PeerLog> {
        let bytes = std::fs::read(p).with_context(|| format!("cannot read log {}", p.display()))?;
        PeerLog::from_bytes(&bytes).with_context(|| {
            format!(
                "{} is not a valid mpcomm delivery log (check it with `mpcomm log dump`)",
                p.display()
            )
        })
    }

    /// Sender of a message index.
    pub fn sender_of(&self, msg: u32) -> Option<u16> {
        (msg != NOT_EXPECTED && self.header.msgs > 0).then(|| (msg / self.header.msgs) as u16)
    }
}
