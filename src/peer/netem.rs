//! The emulated WAN, in front of the protocol where a real network would be: every datagram
//! of the run (DATA, STOP, HEARTBEAT, NACK, ORDER) from peer `s` is held until its emulated
//! arrival, or dropped by the emulated loss, before the machine sees it. The handshake passes
//! at once (it is not what is measured, and its own retries would only slow the start).
//!
//! A first transmission of DATA arrives at `send_ns + delay` on the sender's clock (on one
//! machine, ours): the delay counts from when it was sent, not from when the loopback handed
//! it over. Everything else (retransmissions, control) arrives `delay` after it reached us.
//! Buffers are recycled: after warm-up nothing is allocated per datagram.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::machine::Arrival;
use crate::util::clock::Now;
use crate::wire::packet;

/// The emulated WAN, as a peer sees it: a delay (or a drop) per sender → us.
pub trait DelayModel: Send {
    /// `None` drops the message; `Some(d)` delivers it `d` after it was sent.
    fn delay(&mut self, from: u16, to: u16) -> Option<Duration>;
    /// The longest delay `delay` can return.
    fn max_delay(&self) -> Duration;
}

/// What the stage did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Not the stage's business (handshake, or not ours at all): handle it now.
    PassNow,
    Held,
    Dropped,
}

struct Slot {
    bytes: Vec<u8>,
    arrival: Arrival,
}

pub struct WanStage {
    model: Box<dyn DelayModel>,
    me: u16,
    peers: u16,
    /// (due, order of arrival, slot): the order keeps equal deadlines first-in, first-out.
    due: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    order: u64,
    pub dropped: u64,
}

impl WanStage {
    pub fn new(model: Box<dyn DelayModel>, me: u16, peers: u16) -> WanStage {
        WanStage {
            model,
            me,
            peers,
            due: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: 0,
            dropped: 0,
        }
    }

    /// Take a datagram from the network.
    pub fn push(&mut self, now: Now, bytes: &[u8], arrival: Arrival) -> Admit {
        let Some((from, send_ns)) = packet::wan_view(bytes) else {
            return Admit::PassNow;
        };
        if from >= self.peers {
            return Admit::PassNow; // The machine counts it as malformed.
        }
        let Some(d) = self.model.delay(from, self.me) else {
            self.dropped += 1;
            return Admit::Dropped;
        };
        // Never hold longer than `d` from now: a send time in the future (a skewed clock, or a
        // forged datagram) must not pin the queue, and with it the run, for ever.
        let wait = match send_ns {
            Some(sent) => {
                let target = sent.saturating_add(d.as_nanos() as u64);
                Duration::from_nanos(target.saturating_sub(now.unix_ns)).min(d)
            }
            None => d,
        };
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    bytes: Vec::with_capacity(bytes.len()),
                    arrival,
                });
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[slot];
        s.bytes.clear();
        s.bytes.extend_from_slice(bytes);
        s.arrival = arrival;
        self.order += 1;
        self.due.push(Reverse((now.at + wait, self.order, slot)));
        Admit::Held
    }

    /// When the next held datagram is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, ..))| *at)
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// The next datagram due at `now`, copied into `out` (cleared first).
    pub fn pop_due(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<Arrival> {
        let &Reverse((at, _, slot)) = self.due.peek()?;
        if at > now {
            return None;
        }
        self.due.pop();
        out.clear();
        out.extend_from_slice(&self.slots[slot].bytes);
        self.free.push(slot);
        Some(self.slots[slot].arrival)
    }
}
