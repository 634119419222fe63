//! Total order by a sequencer (Kaashoek's, or JGroups' SEQUENCER without forwarding): every
//! peer multicasts its DATA as usual; peer 0 takes each message in per-sender FIFO order,
//! gives it the next global position and announces positions in batched ORDER messages. Every
//! peer (peer 0 too) delivers in global-position order, so all delivery orders are equal.
//!
//! ORDER is a stream like DATA: gaps are found from positions and from peer 0's `ordered`
//! announcement, NACKed and resent by the repair stage. If peer 0 falls silent while messages
//! wait for their position, the machine ends the run after repair's bound and says so: the
//! run cannot keep its guarantee without a sequencer (no takeover is attempted).

use super::{Bits, Msg, Sink, Store};
use crate::wire::packet::MAX_ORDER_ENTRIES;

/// A global position that must be skipped (a duplicate entry in a forged ORDER).
const HOLE: (u16, u32) = (u16::MAX, 0);

pub struct Sequencer {
    is_sequencer: bool,
    peers: u16,
    msgs: u32,
    store: Store,
    gone: Bits,
    /// Global position → (sender, seq); valid where `known` is set.
    order: Vec<(u16, u32)>,
    known: Bits,
    /// Messages already given a position (so a forged duplicate entry cannot stall us).
    placed: Bits,
    next: u32,
    // The sequencer's side.
    fifo_next: Vec<u32>,
    assigned: u32,
    /// First position not yet sent in an ORDER.
    unsent: u32,
}

impl Sequencer {
    pub fn new(is_sequencer: bool, peers: u16, msgs: u32) -> Sequencer {
        let len = usize::from(peers) * msgs as usize;
        Sequencer {
            is_sequencer,
            peers,
            msgs,
            store: Store::new(peers, msgs),
            gone: Bits::new(len),
            order: vec![HOLE; len],
            known: Bits::new(len),
            placed: Bits::new(len),
            next: 0,
            fifo_next: vec![0; usize::from(peers)],
            assigned: 0,
            unsent: 0,
        }
    }

    pub fn is_sequencer(&self) -> bool {
        self.is_sequencer
    }

    pub fn arrive(&mut self, m: Msg, sink: &mut Sink) {
        let s = m.sender;
        self.store.put(m);
        if self.is_sequencer {
            self.assign(s);
        }
        self.release(sink);
    }

    pub fn skip(&mut self, sender: u16, seq: u32, sink: &mut Sink) {
        self.gone.set(self.store.index(sender, seq));
        if self.is_sequencer {
            self.assign(sender);
        }
        self.release(sink);
    }

    /// The sequencer: give positions to `s`'s messages that are next in its FIFO order.
    fn assign(&mut self, s: u16) {
        loop {
            let k = self.fifo_next[usize::from(s)];
            if k >= self.msgs {
                return;
            }
            let i = self.store.index(s, k);
            if self.store.is_held(s, k) {
                let g = self.assigned as usize;
                self.order[g] = (s, k);
                self.known.set(g);
                self.placed.set(i);
                self.assigned += 1;
            } else if !self.gone.get(i) {
                return;
            }
            self.fifo_next[usize::from(s)] = k + 1;
        }
    }

    /// Entries of an ORDER from peer 0: `entry(i)` for `i in 0..count`, positions from `first`.
    /// Returns the entries' messages, for repair to learn they exist.
    pub fn entries(
        &mut self,
        first: u32,
        count: usize,
        entry: impl Fn(usize) -> (u16, u32),
        mut exists: impl FnMut(u16, u32),
        sink: &mut Sink,
    ) {
        if self.is_sequencer {
            return;
        }
        for i in 0..count {
            let g = first as usize + i;
            let (s, k) = entry(i);
            if g >= self.order.len() || self.known.get(g) {
                continue;
            }
            if s >= self.peers || k >= self.msgs {
                continue; // Not a message of this run: leave the position unknown.
            }
            let idx = self.store.index(s, k);
            self.order[g] = if self.placed.get(idx) { HOLE } else { (s, k) };
            self.placed.set(idx);
            self.known.set(g);
            exists(s, k);
        }
        self.release(sink);
    }

    /// Deliver in position order while the next position is known and its message is here.
    fn release(&mut self, sink: &mut Sink) {
        while (self.next as usize) < self.order.len() && self.known.get(self.next as usize) {
            let (s, k) = self.order[self.next as usize];
            if (s, k) != HOLE {
                if let Some(m) = self.store.take(s, k) {
                    sink.deliver(&m);
                } else if !self.gone.get(self.store.index(s, k)) {
                    return;
                }
            }
            self.next += 1;
        }
    }

    /// Positions known contiguously from 0 (receivers), or assigned (the sequencer).
    pub fn ordered(&self) -> u32 {
        if self.is_sequencer {
            self.assigned
        } else {
            self.next
        }
    }

    /// The sequencer: positions assigned but not yet sent.
    pub fn unsent(&self) -> u32 {
        self.assigned - self.unsent
    }

    /// The sequencer: take the next batch to send, as (first position, count).
    pub fn take_batch(&mut self) -> Option<(u32, usize)> {
        let count = (self.assigned - self.unsent) as usize;
        if count == 0 {
            return None;
        }
        let count = count.min(MAX_ORDER_ENTRIES);
        let first = self.unsent;
        self.unsent += count as u32;
        Some((first, count))
    }

    /// Entry at global position `g` (for writing an ORDER).
    pub fn entry(&self, g: u32) -> (u16, u32) {
        self.order[g as usize]
    }

    pub fn held(&self) -> usize {
        self.store.held()
    }
}
