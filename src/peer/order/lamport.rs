//! Symmetric total order with Lamport timestamps (Lamport 1978, §"the mutual exclusion
//! problem"; the implicit-acknowledgement variant used by Totem-like and ISIS-era systems).
//!
//! Every DATA carries its sender's clock `T` (incremented per send; every receipt raises the
//! clock to at least the received stamp). Messages are delivered in (T, sender) order. A held
//! message (T, p) is released once every peer `r` (us included) is known to send nothing
//! more with a stamp ≤ T: its contiguous prefix (repaired, so no unseen earlier message)
//! reaches a stamp ≥ T, or a HEARTBEAT covering that prefix says its clock is ≥ T, or its STOP
//! is in and every one of its messages arrived. No explicit ACKs: DATA and heartbeats are the
//! acknowledgements, so the cost is at most one HEARTBEAT per peer per quiet gap, not N²
//! unicasts per message.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Bits, Msg, Sink, Store};
use crate::wire::packet::Announce;

pub struct Lamport {
    msgs: u32,
    clock: u64,
    /// The clock we last put on the wire (DATA or HEARTBEAT).
    announced: u64,
    store: Store,
    heap: BinaryHeap<Reverse<(u64, u16, u32)>>,
    arrived: Bits,
    gone: Bits,
    stamp_of: Vec<u64>,
    /// Per sender: contiguous prefix of arrived-or-given-up messages.
    prefix: Vec<u32>,
    /// Per sender: no future message of it has a stamp ≤ this (u64::MAX once finished).
    bound: Vec<u64>,
    /// Per sender: the latest heartbeat (sent, clock) not yet covered by the prefix.
    pending: Vec<(u32, u64)>,
    final_sent: Vec<Option<u32>>,
    min_bound: u64,
}

impl Lamport {
    pub fn new(peers: u16, msgs: u32) -> Lamport {
        let n = usize::from(peers);
        let len = n * msgs as usize;
        Lamport {
            msgs,
            clock: 0,
            announced: 0,
            store: Store::new(peers, msgs),
            heap: BinaryHeap::with_capacity(len),
            arrived: Bits::new(len),
            gone: Bits::new(len),
            stamp_of: vec![0; len],
            prefix: vec![0; n],
            bound: vec![0; n],
            pending: vec![(0, 0); n],
            final_sent: vec![None; n],
            min_bound: 0,
        }
    }

    /// Stamp for our next DATA.
    pub fn stamp(&mut self) -> u64 {
        self.clock += 1;
        self.announced = self.clock;
        self.clock
    }

    /// The clock, for a HEARTBEAT or STOP (which then announces it).
    pub fn announce_clock(&mut self) -> u64 {
        self.announced = self.clock;
        self.clock
    }

    /// Someone's stamp passed what we last announced: others may wait for word from us.
    pub fn needs_heartbeat(&self) -> bool {
        self.clock > self.announced
    }

    pub fn arrive(&mut self, m: Msg, sink: &mut Sink) {
        self.clock = self.clock.max(m.lamport);
        let i = self.store.index(m.sender, m.seq);
        self.arrived.set(i);
        self.stamp_of[i] = m.lamport;
        self.heap.push(Reverse((m.lamport, m.sender, m.seq)));
        self.store.put(m);
        self.advance(m.sender);
        self.release(sink);
    }

    pub fn skip(&mut self, sender: u16, seq: u32, sink: &mut Sink) {
        self.gone.set(self.store.index(sender, seq));
        self.advance(sender);
        self.release(sink);
    }

    pub fn announce(&mut self, sender: u16, a: &Announce, is_stop: bool, sink: &mut Sink) {
        self.clock = self.clock.max(a.lamport);
        let s = usize::from(sender);
        if is_stop || a.sent >= self.msgs {
            let f = a.sent.min(self.msgs);
            self.final_sent[s] = Some(self.final_sent[s].map_or(f, |old| old.max(f)));
        }
        if a.lamport > self.pending[s].1 {
            self.pending[s] = (a.sent.min(self.msgs), a.lamport);
        }
        self.advance(sender);
        self.release(sink);
    }

    fn advance(&mut self, sender: u16) {
        let s = usize::from(sender);
        while self.prefix[s] < self.msgs {
            let i = self.store.index(sender, self.prefix[s]);
            if self.arrived.get(i) {
                self.bound[s] = self.bound[s].max(self.stamp_of[i]);
            } else if !self.gone.get(i) {
                break;
            }
            self.prefix[s] += 1;
        }
        let (sent, clock) = self.pending[s];
        if sent <= self.prefix[s] {
            self.bound[s] = self.bound[s].max(clock);
        }
        if self.final_sent[s].is_some_and(|f| f <= self.prefix[s]) {
            self.bound[s] = u64::MAX;
        }
        self.min_bound = self.bound.iter().copied().min().unwrap_or(u64::MAX);
    }

    fn release(&mut self, sink: &mut Sink) {
        while let Some(&Reverse((t, s, k))) = self.heap.peek() {
            if t > self.min_bound {
                return;
            }
            self.heap.pop();
            let m = self.store.take(s, k).expect("a queued message is held");
            sink.deliver(&m);
        }
    }

    pub fn held(&self) -> usize {
        self.store.held()
    }
}
