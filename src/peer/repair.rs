//! Gap repair, between the network and the ordering stage (JGroups' NAKACK2, PGM's NAK/SPM).
//!
//! Receiver side, per stream (each sender's DATA, and the sequencer's ORDER entries): which
//! indices arrived, the contiguous prefix, the highest index known to exist — from DATA itself,
//! from STOP and HEARTBEAT ("sent so far", like PGM's SPM, so a lost tail is found too) and
//! from ORDER entries. A gap gets a NACK to its sender after `nack_delay` (reordering settles
//! first), then again with backoff; after `give_up` without progress, what is still missing is
//! declared lost (counted), so ordering can move on. Only first arrivals pass up.
//!
//! Sender side ([`Kept`]): what a retransmission needs, one slot per own message, allocated up
//! front (seq → send time, Lamport stamp, vector).

use std::time::{Duration, Instant};

use crate::wire::packet::MAX_NACK_RANGES;

#[derive(Debug, Clone, Copy)]
pub struct RepairConfig {
    /// Send NACKs (`--repair nack`); without, gaps are only given up.
    pub nack: bool,
    /// Give gaps up at all (ordering modes, and any mode with NACKs; `none` without repair
    /// holds nothing back and asks for nothing, so it has nothing to give up).
    pub give_up_gaps: bool,
    pub nack_delay: Duration,
    /// First NACK repeat; doubled per try up to 16×.
    pub rto: Duration,
    pub give_up: Duration,
}

/// What a timer of the repair stage asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Send a NACK about this stream.
    Nack(u16),
    /// This index is declared lost.
    GiveUp { stream: u16, index: u32 },
}

struct Stream {
    /// Every index below it arrived or was given up.
    contig: u32,
    /// One past the highest index known to exist.
    known: u32,
    /// The stream's length, once a STOP (or a final announcement) said it.
    final_count: Option<u32>,
    /// When the stream last made progress while it had a gap.
    gap_since: Option<Instant>,
    nack_at: Option<Instant>,
    tries: u32,
    cap: u32,
    /// Arrived or given up, one bit per index.
    resolved: Vec<u64>,
}

impl Stream {
    fn new(cap: u32) -> Stream {
        Stream {
            contig: 0,
            known: 0,
            final_count: None,
            gap_since: None,
            nack_at: None,
            tries: 0,
            cap,
            resolved: vec![0; (cap as usize).div_ceil(64)],
        }
    }
    fn is_resolved(&self, i: u32) -> bool {
        let i = i as usize;
        self.resolved[i / 64] & (1 << (i % 64)) != 0
    }
    fn resolve(&mut self, i: u32) {
        let i = i as usize;
        self.resolved[i / 64] |= 1 << (i % 64);
    }
}

pub struct Repair {
    cfg: RepairConfig,
    streams: Vec<Stream>,
    /// No later than the earliest stream deadline (may be early: firing early is harmless).
    next: Option<Instant>,
    pub given_up: u64,
}

impl Repair {
    /// `peers` DATA streams of `msgs` each, plus one ORDER stream of `peers × msgs` entries
    /// if `order_stream`.
    pub fn new(cfg: RepairConfig, peers: u16, msgs: u32, order_stream: bool) -> Repair {
        let mut streams: Vec<Stream> = (0..peers).map(|_| Stream::new(msgs)).collect();
        if order_stream {
            streams.push(Stream::new(u32::from(peers).saturating_mul(msgs)));
        }
        Repair {
            cfg,
            streams,
            next: None,
            given_up: 0,
        }
    }

    pub fn config(&self) -> &RepairConfig {
        &self.cfg
    }

    /// Index `i` of `stream` arrived: true the first time (false for a duplicate, or a late
    /// copy of something given up).
    pub fn arrive(&mut self, now: Instant, stream: u16, i: u32) -> bool {
        let s = &mut self.streams[usize::from(stream)];
        if i >= s.cap || s.is_resolved(i) {
            return false;
        }
        s.resolve(i);
        s.known = s.known.max(i + 1);
        self.update(now, stream, true);
        true
    }

    /// The sender says `count` indices exist (`is_final`: and no more ever will).
    pub fn announce(&mut self, now: Instant, stream: u16, count: u32, is_final: bool) {
        let s = &mut self.streams[usize::from(stream)];
        let count = count.min(s.cap);
        s.known = s.known.max(count);
        if is_final {
            s.final_count = Some(s.final_count.map_or(count, |f| f.max(count)));
        }
        self.update(now, stream, false);
    }

    pub fn is_resolved(&self, stream: u16, i: u32) -> bool {
        self.streams[usize::from(stream)].is_resolved(i)
    }

    /// Its length is known and every index arrived or was given up.
    pub fn complete(&self, stream: u16) -> bool {
        let s = &self.streams[usize::from(stream)];
        s.final_count.is_some_and(|f| s.contig >= f)
    }

    pub fn known(&self, stream: u16) -> u32 {
        self.streams[usize::from(stream)].known
    }

    /// The stream's STOP was wrong (a DATA came past it): its length is unknown again.
    pub fn forget_final(&mut self, stream: u16) {
        self.streams[usize::from(stream)].final_count = None;
    }

    /// The count a STOP (or a final announcement) gave, if one arrived.
    pub fn final_count(&self, stream: u16) -> Option<u32> {
        self.streams[usize::from(stream)].final_count
    }

    /// Whether any stream waits for a repair.
    pub fn outstanding(&self) -> bool {
        self.streams.iter().any(|s| s.contig < s.known)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Another receiver asked the group for `first..first + count` of this stream (multicast):
    /// if that covers the oldest index we miss, the retransmission will reach us too, so our
    /// own NACK waits one `rto` (NAK suppression, as in PGM and SRM).
    pub fn overheard_nack(&mut self, now: Instant, stream: u16, first: u32, count: u32) {
        let rto = self.cfg.rto;
        let Some(s) = self.streams.get_mut(usize::from(stream)) else {
            return;
        };
        let covered = s.contig < s.known && first <= s.contig && s.contig - first < count;
        if let (true, Some(at)) = (covered, s.nack_at.as_mut()) {
            *at = (*at).max(now + rto);
        }
    }

    /// Advance the prefix and (re)arm the stream's timers.
    fn update(&mut self, now: Instant, stream: u16, arrival: bool) {
        let cfg = self.cfg;
        let s = &mut self.streams[usize::from(stream)];
        let before = s.contig;
        while s.contig < s.known && s.is_resolved(s.contig) {
            s.contig += 1;
        }
        if s.contig >= s.known {
            s.gap_since = None;
            s.nack_at = None;
            s.tries = 0;
            return;
        }
        if s.contig > before && arrival {
            // Progress: the give-up clock starts again, and so does the NACK backoff.
            s.gap_since = Some(now);
            s.tries = 0;
        }
        let since = *s.gap_since.get_or_insert(now);
        let mut deadlines = [None, None];
        if cfg.give_up_gaps {
            deadlines[0] = Some(since + cfg.give_up);
        }
        if cfg.nack {
            deadlines[1] = Some(*s.nack_at.get_or_insert(now + cfg.nack_delay));
        }
        for d in deadlines.into_iter().flatten() {
            self.next = Some(self.next.map_or(d, |n| n.min(d)));
        }
    }

    /// The next thing due at `now`, if any; call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Event> {
        if self.next.is_none_or(|n| n > now) {
            return None;
        }
        let cfg = self.cfg;
        for id in 0..self.streams.len() {
            let s = &mut self.streams[id];
            let id = id as u16;
            if s.contig >= s.known {
                continue;
            }
            if cfg.give_up_gaps && s.gap_since.is_some_and(|t| t + cfg.give_up <= now) {
                let index = s.contig;
                s.resolve(index);
                self.given_up += 1;
                // Giving up is not progress: the rest of the gap goes too, on this same clock.
                self.update(now, id, false);
                return Some(Event::GiveUp { stream: id, index });
            }
            if s.nack_at.is_some_and(|t| t <= now) {
                let backoff = cfg.rto * (1u32 << s.tries.min(4));
                s.tries += 1;
                s.nack_at = Some(now + backoff);
                return Some(Event::Nack(id));
            }
        }
        // Nothing due: recompute the true earliest deadline.
        self.next = self
            .streams
            .iter()
            .filter(|s| s.contig < s.known)
            .flat_map(|s| {
                [
                    s.nack_at,
                    s.gap_since
                        .filter(|_| cfg.give_up_gaps)
                        .map(|t| t + cfg.give_up),
                ]
            })
            .flatten()
            .min();
        None
    }

    /// The missing ranges (first, count) of `stream`, oldest first, at most
    /// `MAX_NACK_RANGES`; returns how many were written.
    pub fn missing(&self, stream: u16, out: &mut [(u32, u32); MAX_NACK_RANGES]) -> usize {
        let s = &self.streams[usize::from(stream)];
        let mut n = 0;
        let mut i = s.contig;
        while i < s.known && n < MAX_NACK_RANGES {
            if s.is_resolved(i) {
                i += 1;
                continue;
            }
            let first = i;
            while i < s.known && !s.is_resolved(i) {
                i += 1;
            }
            out[n] = (first, i - first);
            n += 1;
        }
        n
    }
}

/// What a sender keeps of its own messages for retransmission, allocated once.
pub struct Kept {
    send_ns: Vec<u64>,
    lamport: Vec<u64>,
    /// `peers` entries per message (causal mode only).
    vectors: Vec<u32>,
    peers: usize,
}

impl Kept {
    pub fn new(msgs: u32, peers: u16, lamport: bool, vectors: bool) -> Kept {
        let m = msgs as usize;
        let n = usize::from(peers);
        Kept {
            send_ns: vec![0; m],
            lamport: if lamport { vec![0; m] } else { Vec::new() },
            vectors: if vectors { vec![0; m * n] } else { Vec::new() },
            peers: n,
        }
    }

    pub fn keep(&mut self, seq: u32, send_ns: u64, lamport: u64, vector: &[u32]) {
        let i = seq as usize;
        self.send_ns[i] = send_ns;
        if !self.lamport.is_empty() {
            self.lamport[i] = lamport;
        }
        if !self.vectors.is_empty() {
            self.vectors[i * self.peers..(i + 1) * self.peers].copy_from_slice(vector);
        }
    }

    /// (send time, Lamport stamp, vector) of own message `seq`.
    pub fn get(&self, seq: u32) -> (u64, u64, &[u32]) {
        let i = seq as usize;
        let lamport = self.lamport.get(i).copied().unwrap_or(0);
        let vector = if self.vectors.is_empty() {
            &[][..]
        } else {
            &self.vectors[i * self.peers..(i + 1) * self.peers]
        };
        (self.send_ns[i], lamport, vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RepairConfig {
        RepairConfig {
            nack: true,
            give_up_gaps: true,
            nack_delay: Duration::from_millis(2),
            rto: Duration::from_millis(10),
            give_up: Duration::from_millis(100),
        }
    }

    #[test]
    fn a_gap_is_nacked_with_backoff_then_given_up() {
        let t0 = Instant::now();
        let mut r = Repair::new(cfg(), 2, 10, false);
        assert!(r.arrive(t0, 1, 0));
        assert!(!r.arrive(t0, 1, 0), "a duplicate");
        assert!(r.arrive(t0, 1, 3));
        let mut ranges = [(0, 0); MAX_NACK_RANGES];
        assert_eq!(r.missing(1, &mut ranges), 1);
        assert_eq!(ranges[0], (1, 2));
        assert_eq!(r.poll(t0), None);
        let t = t0 + Duration::from_millis(2);
        assert_eq!(r.poll(t), Some(Event::Nack(1)));
        assert_eq!(r.poll(t), None, "backed off");
        assert_eq!(r.poll(t + Duration::from_millis(10)), Some(Event::Nack(1)));
        // A tail announced by a heartbeat is missing too.
        r.announce(t, 1, 6, false);
        assert_eq!(r.missing(1, &mut ranges), 2);
        assert_eq!(ranges[1], (4, 2));
        let late = t0 + Duration::from_millis(100);
        let mut lost = vec![];
        while let Some(e) = r.poll(late) {
            if let Event::GiveUp { index, .. } = e {
                lost.push(index);
            }
        }
        assert_eq!(lost, vec![1, 2, 4, 5]);
        assert_eq!(r.given_up, 4);
        assert!(!r.outstanding());
        assert!(
            !r.arrive(late, 1, 2),
            "a copy after the give-up is not passed up"
        );
        r.announce(late, 1, 6, true);
        assert!(r.complete(1));
        assert!(!r.complete(0));
    }

    #[test]
    fn progress_restarts_the_give_up_clock() {
        let t0 = Instant::now();
        let mut r = Repair::new(cfg(), 1, 10, false);
        r.arrive(t0, 0, 2);
        let t = t0 + Duration::from_millis(90);
        r.arrive(t, 0, 0);
        while let Some(e) = r.poll(t0 + Duration::from_millis(150)) {
            assert!(matches!(e, Event::Nack(0)), "{e:?}: not given up yet");
        }
        assert_eq!(r.given_up, 0);
    }
}
