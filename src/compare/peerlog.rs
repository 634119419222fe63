//! One peer's delivery log, decoded into what the analysis needs and nothing more: per delivery
//! a u32 message index and a u16 latency code (the latency's HdrHistogram bucket at 3
//! significant digits), 6 bytes instead of the record's 48; when ordering changed anything,
//! also the message index in arrival order and a u16 ordering-delay code (12 bytes); per own
//! message where it was sent among the deliveries (8 bytes). Histograms are built from the
//! codes only when a run is analysed, so what a stored log costs is proportional to its
//! deliveries, whatever latencies it claims.

use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::wire::{self, log::LogHeader, log::LogView};

/// Message index of a delivery whose seq is not below M (no expected message; it never matches).
pub const NOT_EXPECTED: u32 = u32::MAX;
/// Per sender → receiver histograms (`.hgrm` files, the `--matrix` p50s) only up to this many
/// peers; above it, one per receiver.
pub const MAX_PAIR_HIST_PEERS: u16 = 64;
/// Latencies above this are recorded as this (an hour: no real run gets near it), which bounds
/// every histogram's size whatever a log claims.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Nanoseconds per millisecond, for the ms fields of reports and histogram files.
pub const NS_PER_MS: f64 = 1e6;
/// Significant digits of every latency histogram.
pub const SIGFIG: u8 = 3;
/// Latency code of a delivery with deliver_ns < send_ns (clock offset between hosts).
pub const NEGATIVE: u16 = u16::MAX;
/// Latency code of a delivery whose latency is over [`MAX_LATENCY_NS`] (a send time out of
/// range: forged, or a wrong clock): counted, never recorded (no silent clamp).
pub const OUT_OF_RANGE: u16 = u16::MAX - 1;
/// Number of distinct latency codes of values up to [`MAX_LATENCY_NS`].
const CODES: usize = 32 * 1024 + 2048;

/// The latency code of `ns`: the index of its bucket in an HdrHistogram of 3 significant
/// digits (2048 sub-buckets, unit 1 ns). Values up to [`MAX_LATENCY_NS`] (2^42) fit a u16.
#[inline]
pub fn latency_code(ns: u64) -> u16 {
    let v = ns.min(MAX_LATENCY_NS);
    if v < 2048 {
        return v as u16;
    }
    let shift = 63 - v.leading_zeros() - 10;
    let sub = v >> shift; // 1024..2048
    (u64::from(shift) * 1024 + sub) as u16
}

/// The lowest value of a code's bucket: recording it is recording any value of the bucket.
#[inline]
pub fn code_value(code: u16) -> u64 {
    let c = u64::from(code);
    if c < 2048 {
        return c;
    }
    let shift = c / 1024 - 1;
    (c - shift * 1024) << shift
}

/// A new empty latency histogram (ns, 3 significant digits, grows as needed up to
/// [`MAX_LATENCY_NS`]).
pub fn new_hist() -> Histogram<u64> {
    let mut h = Histogram::new_with_max(2, SIGFIG).expect("2 ns, 3 digits is a valid histogram");
    h.auto(true);
    h
}

/// A histogram of `codes` ([`NEGATIVE`] left out), built now (about 270 KB at most).
pub fn hist_of_codes(codes: &[u16]) -> Histogram<u64> {
    let mut counts = vec![0u64; CODES];
    for &c in codes {
        if c != NEGATIVE && c != OUT_OF_RANGE {
            counts[usize::from(c)] += 1;
        }
    }
    hist_of_counts(&counts)
}

/// A histogram of codes counted in `counts` (index = code).
fn hist_of_counts(counts: &[u64]) -> Histogram<u64> {
    let mut h = new_hist();
    for (code, &n) in counts.iter().enumerate() {
        if n > 0 {
            // Cannot fail: auto-resize, and the value is far below the type's limit.
            let _ = h.record_n(code_value(code as u16), n);
        }
    }
    h
}

/// One-way latency (deliver_ns − send_ns) of every delivery at one receiver, as codes.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// [`latency_code`] per delivery, in delivery order ([`NEGATIVE`] when deliver < send).
    pub codes: Vec<u16>,
    /// Sender of each delivery whose message index is [`NOT_EXPECTED`], in order.
    pub unexpected_senders: Vec<u16>,
    /// Deliveries with deliver_ns < send_ns (clock offset between hosts); never recorded.
    pub negative: u64,
    /// Deliveries with a latency over [`MAX_LATENCY_NS`]; never recorded.
    pub out_of_range: u64,
}

impl Latency {
    /// Every delivery's latency in one histogram (built now; about 270 KB at most).
    pub fn total(&self) -> Histogram<u64> {
        hist_of_codes(&self.codes)
    }

    pub fn negative_total(&self) -> u64 {
        self.negative
    }
}

/// What the analysis keeps of one peer's log.
#[derive(Clone, Debug)]
pub struct PeerLog {
    pub header: LogHeader,
    /// Message index `sender × M + seq` of every delivery, in delivery order
    /// ([`NOT_EXPECTED`] when seq ≥ M).
    pub order: Vec<u32>,
    /// Message indices in ARRIVAL order (records sorted by arrival index, ties by position);
    /// empty when that is the delivery order.
    arrival: Vec<u32>,
    /// Deliveries of a sender's seq after a higher seq of the same sender (network reordering).
    pub fifo_violations: u64,
    /// Latency codes of every delivery (histograms are built from them when needed).
    pub latency: Latency,
    /// [`latency_code`] of deliver_ns − arrive_ns per delivery (what ordering held it back; a
    /// negative difference counts as 0); empty when every one is 0.
    delay_codes: Vec<u16>,
    /// What happened-before needs of this peer's clock.
    pub sends: SendPoints,
    /// Per sender, `[min, max]` TTL / hop limit its first-transmission DATA arrived with
    /// (`[0, 0]`: none recorded); empty when no record carries a TTL (older logs).
    pub ttl_from: Vec<[u8; 2]>,
}

/// Where this peer's own messages were sent among its deliveries (one host, one clock).
#[derive(Clone, Debug, Default)]
pub struct SendPoints {
    /// `(seq, before)` per own message with seq < M, by seq: `before` = deliveries with
    /// deliver_ns < the send_ns of its first record in this log.
    pub own: Vec<(u32, u32)>,
    /// Message indices in deliver_ns order (ties by position); empty when that is the delivery
    /// order (deliver_ns never decreases, as in every honest log).
    by_time: Vec<u32>,
}

impl SendPoints {
    /// From a log's message indices and deliver_ns (in delivery order) and its own messages'
    /// `(seq, send_ns)` in delivery order.
    fn new(order: &[u32], deliver_ns: Vec<u64>, mut own: Vec<(u32, u64)>) -> SendPoints {
        // The first record of each own seq (the sort is stable).
        own.sort_by_key(|&(seq, _)| seq);
        own.dedup_by_key(|&mut (seq, _)| seq);
        let mut times = deliver_ns;
        let by_time = if times.windows(2).all(|w| w[0] <= w[1]) {
            Vec::new()
        } else {
            let mut keyed: Vec<(u64, u32)> = times.iter().copied().zip(0..).collect();
            keyed.sort_unstable();
            times = keyed.iter().map(|&(t, _)| t).collect();
            keyed.iter().map(|&(_, pos)| order[pos as usize]).collect()
        };
        let own = own
            .into_iter()
            .map(|(seq, send)| (seq, times.partition_point(|&t| t < send) as u32))
            .collect();
        SendPoints { own, by_time }
    }

    /// The log's message indices in deliver_ns order (`order` is the log's delivery order).
    pub fn by_time<'a>(&'a self, order: &'a [u32]) -> &'a [u32] {
        if self.by_time.is_empty() {
            order
        } else {
            &self.by_time
        }
    }

    /// Deliveries before the send of own message `seq`, if this log has it.
    pub fn before(&self, seq: u32) -> Option<usize> {
        self.own
            .binary_search_by_key(&seq, |&(s, _)| s)
            .ok()
            .map(|i| self.own[i].1 as usize)
    }
}

/// Deliveries in `order` (message indices of N senders × M) of a sender's seq after a higher
/// seq of the same sender; [`NOT_EXPECTED`] neither breaks nor sets a sender's order.
pub fn fifo_violations(order: &[u32], n: u16, m: u32) -> u64 {
    // Highest seq + 1 seen per sender (0 = none yet).
    let mut next_seq = vec![0u32; usize::from(n)];
    let mut violations = 0;
    for &msg in order.iter().filter(|&&x| x != NOT_EXPECTED) {
        let (sender, seq) = ((msg / m) as usize, msg % m);
        if seq + 1 < next_seq[sender] {
            violations += 1;
        } else {
            next_seq[sender] = next_seq[sender].max(seq + 1);
        }
    }
    violations
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
        let mut latency = Latency {
            codes: Vec::with_capacity(view.len()),
            ..Latency::default()
        };
        // Kept only while decoding: arrival index << 32 | position, delays, delivery times.
        let mut by_arrival: Vec<u64> = Vec::with_capacity(view.len());
        let mut delay_codes = Vec::with_capacity(view.len());
        let mut deliver_ns: Vec<u64> = Vec::with_capacity(view.len());
        let mut own: Vec<(u32, u64)> = Vec::new();
        let mut ttl_from: Vec<[u8; 2]> = Vec::new();
        for (pos, r) in view.records().enumerate() {
            // Retransmissions may take another path (unicast, TTL 64): first copies only.
            if r.ttl != 0 && !r.retransmitted {
                if ttl_from.is_empty() {
                    ttl_from = vec![[0, 0]; usize::from(header.peers)];
                }
                let cell = &mut ttl_from[usize::from(r.sender)];
                *cell = match *cell {
                    [0, 0] => [r.ttl, r.ttl],
                    [lo, hi] => [lo.min(r.ttl), hi.max(r.ttl)],
                };
            }
            latency
                .codes
                .push(match r.deliver_ns.checked_sub(r.send_ns) {
                    Some(ns) if ns > MAX_LATENCY_NS => {
                        latency.out_of_range += 1;
                        OUT_OF_RANGE
                    }
                    Some(ns) => latency_code(ns),
                    None => {
                        latency.negative += 1;
                        NEGATIVE
                    }
                });
            delay_codes.push(latency_code(r.deliver_ns.saturating_sub(r.arrive_ns)));
            by_arrival.push((u64::from(r.arrival) << 32) | pos as u64);
            deliver_ns.push(r.deliver_ns);
            let seq = u64::from(r.seq);
            if seq >= m {
                order.push(NOT_EXPECTED);
                latency.unexpected_senders.push(r.sender);
            } else {
                order.push((u64::from(r.sender) * m + seq) as u32);
                if r.sender == header.peer_id {
                    own.push((r.seq, r.send_ns));
                }
            }
        }
        // Nondecreasing arrival indices: the arrival order is the delivery order (no ordering).
        let arrival = if by_arrival.windows(2).all(|w| w[0] <= w[1]) {
            Vec::new()
        } else {
            by_arrival.sort_unstable();
            by_arrival
                .iter()
                .map(|&x| order[(x & 0xffff_ffff) as usize])
                .collect()
        };
        if delay_codes.iter().all(|&c| c == 0) {
            delay_codes = Vec::new();
        }
        Ok(PeerLog {
            fifo_violations: fifo_violations(&order, header.peers, header.msgs),
            sends: SendPoints::new(&order, deliver_ns, own),
            header,
            order,
            arrival,
            latency,
            delay_codes,
            ttl_from,
        })
    }

    /// Message indices in ARRIVAL order (records sorted by arrival index, ties by position).
    pub fn arrival_order(&self) -> &[u32] {
        if self.arrival.is_empty() {
            &self.order
        } else {
            &self.arrival
        }
    }

    /// deliver_ns − arrive_ns of every delivery in one histogram (built now).
    pub fn ordering_delay(&self) -> Histogram<u64> {
        if !self.delay_codes.is_empty() {
            return hist_of_codes(&self.delay_codes);
        }
        let mut h = new_hist();
        if !self.order.is_empty() {
            let _ = h.record_n(0, self.order.len() as u64);
        }
        h
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

    /// Heap bytes this log holds (what a stored upload costs the service).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<PeerLog>()
            + (self.order.capacity() + self.arrival.capacity()) * 4
            + (self.latency.codes.capacity() + self.delay_codes.capacity()) * 2
            + self.sends.own.capacity() * 8
            + self.sends.by_time.capacity() * 4
            + self.latency.unexpected_senders.capacity() * 2
            + self.header.zone.capacity()
            + self.header.wan.capacity()
            + self.ttl_from.capacity() * 2
    }

    /// Per sender → receiver histograms (only when N ≤ [`MAX_PAIR_HIST_PEERS`]), built one at a
    /// time and passed to `f(sender, histogram)` in sender order; senders without a recorded
    /// latency are skipped. Needs 4 bytes per delivery while it runs.
    pub fn for_each_pair_hist(&self, mut f: impl FnMut(u16, &Histogram<u64>)) {
        let m = self.header.msgs;
        let mut unexpected = self.latency.unexpected_senders.iter();
        let mut keys: Vec<u32> = Vec::with_capacity(self.order.len());
        for (&msg, &code) in self.order.iter().zip(&self.latency.codes) {
            let sender = if msg == NOT_EXPECTED {
                unexpected.next().copied().unwrap_or(0)
            } else {
                (msg / m.max(1)) as u16
            };
            if code != NEGATIVE && code != OUT_OF_RANGE {
                keys.push((u32::from(sender) << 16) | u32::from(code));
            }
        }
        keys.sort_unstable();
        let mut i = 0;
        while i < keys.len() {
            let sender = (keys[i] >> 16) as u16;
            let mut h = new_hist();
            while i < keys.len() && (keys[i] >> 16) as u16 == sender {
                let code = keys[i] as u16;
                let start = i;
                while i < keys.len() && keys[i] == keys[start] {
                    i += 1;
                }
                let _ = h.record_n(code_value(code), (i - start) as u64);
            }
            f(sender, &h);
        }
    }

    /// Sender of a message index.
    pub fn sender_of(&self, msg: u32) -> Option<u16> {
        (msg != NOT_EXPECTED && self.header.msgs > 0).then(|| (msg / self.header.msgs) as u16)
    }
}

#[cfg(test)]
mod tests;
