//! One bounded queue of what the machine wants to send (quinn's `pending` idea): inputs and
//! timers push small descriptors, `poll_transmit` pops one and writes its bytes at send time,
//! so a DATA is stamped when it leaves and a NACK lists the gaps as they are then.
//!
//! Per-peer entries (an ACK, a HELLO to one peer, a NACK about one stream) are queued at most
//! once each: a flood of HELLOs or gaps cannot grow the queue past `capacity`.
//!
//! Our next DATA has a slot of its own, never refused, and takes turns with the queue: with
//! `--interval 0` a DATA is always due, and letting it go first would starve the ACK a peer
//! still in its handshake waits for (that peer then sat out our whole run).

use std::collections::VecDeque;

use super::machine::Dest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// HELLO to everyone (`Dest::All`) or to a newcomer.
    Hello(Dest),
    /// HELLO_ACK to this peer.
    HelloAck(u16),
    /// One last HELLO to a peer we refused, sent even though we have failed: it may have
    /// started after our HELLOs went out, and must learn our mode to refuse us in turn.
    Refuse(u16),
    /// Our next DATA.
    Data,
    Stop,
    Heartbeat,
    /// NACK about this stream (a sender's DATA, or the ORDER stream: `stream == peers`).
    Nack(u16),
    /// DATA `seq..end` again (ours), to `dest`.
    Retransmit {
        dest: Dest,
        seq: u32,
        end: u32,
    },
    /// The sequencer's ORDER entries not sent yet.
    Order,
    /// ORDER entries `first..end` again.
    OrderResend {
        dest: Dest,
        first: u32,
        end: u32,
    },
}

/// Which once-per-peer entries are in the queue.
#[derive(Debug, Clone, Copy)]
enum Once {
    Ack = 0,
    HelloTo = 1,
    Nack = 2,
}

pub struct Outbox {
    queue: VecDeque<Out>,
    data: bool,
    /// The queue went last: DATA goes next if it is due.
    data_turn: bool,
    capacity: usize,
    /// `queued[kind][peer]`; the NACK row has one more entry, for the ORDER stream.
    queued: [Vec<bool>; 3],
    /// Entries refused because the queue was full (a NACK will ask again).
    pub overflow: u64,
}

impl Outbox {
    pub fn new(peers: usize) -> Outbox {
        let capacity = 256 + 4 * peers;
        Outbox {
            queue: VecDeque::with_capacity(capacity),
            data: false,
            data_turn: false,
            capacity,
            queued: [
                vec![false; peers],
                vec![false; peers],
                vec![false; peers + 1],
            ],
            overflow: 0,
        }
    }

    fn once(out: Out) -> Option<(Once, usize)> {
        match out {
            Out::HelloAck(p) => Some((Once::Ack, usize::from(p))),
            Out::Hello(Dest::Peer(p)) => Some((Once::HelloTo, usize::from(p))),
            Out::Nack(s) => Some((Once::Nack, usize::from(s))),
            _ => None,
        }
    }

    /// Queue at the back; false if it was full (or, for a per-peer entry, already queued).
    pub fn push(&mut self, out: Out) -> bool {
        if let Some((kind, i)) = Outbox::once(out) {
            if self.queued[kind as usize][i] {
                return false;
            }
            if self.queue.len() >= self.capacity {
                self.overflow += 1;
                return false;
            }
            self.queued[kind as usize][i] = true;
        } else if self.queue.len() >= self.capacity {
            self.overflow += 1;
            return false;
        }
        self.queue.push_back(out);
        true
    }

    /// Queue at the front: the rest of an entry that was only partly sent (a range of
    /// retransmissions, a batch of ORDER entries).
    pub fn push_front(&mut self, out: Out) {
        self.queue.push_front(out);
    }

    /// Our next DATA is due (it goes at the next turn; its send time is stamped then).
    pub fn push_data(&mut self) {
        self.data = true;
    }

    pub fn data_due(&self) -> bool {
        self.data
    }

    pub fn pop(&mut self) -> Option<Out> {
        if self.data && (self.data_turn || self.queue.is_empty()) {
            self.data = false;
            self.data_turn = false;
            return Some(Out::Data);
        }
        let out = self.queue.pop_front()?;
        self.data_turn = true;
        if let Some((kind, i)) = Outbox::once(out) {
            self.queued[kind as usize][i] = false;
        }
        Some(out)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && !self.data
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Drop everything (a failed handshake sends nothing more).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.data = false;
        for row in &mut self.queued {
            row.fill(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_entries_are_queued_once_and_the_queue_is_bounded() {
        let mut o = Outbox::new(2);
        assert!(o.push(Out::HelloAck(1)));
        assert!(!o.push(Out::HelloAck(1)), "already queued");
        assert!(o.push(Out::Nack(2)), "the ORDER stream has a row entry too");
        o.push_data();
        assert_eq!(
            o.pop(),
            Some(Out::HelloAck(1)),
            "the queue first, then DATA"
        );
        o.push_data();
        assert_eq!(o.pop(), Some(Out::Data), "DATA's turn");
        o.push_data();
        assert_eq!(
            o.pop(),
            Some(Out::Nack(2)),
            "an always-due DATA cannot starve the queue"
        );
        assert_eq!(o.pop(), Some(Out::Data));
        assert_eq!(o.pop(), None);
        assert!(o.push(Out::Nack(2)));
        assert_eq!(o.pop(), Some(Out::Nack(2)));
        assert!(o.push(Out::HelloAck(1)), "taken, so it may be queued again");
        for _ in 0..10_000 {
            o.push(Out::Heartbeat);
        }
        assert_eq!(o.len(), 256 + 8);
        assert!(o.overflow > 0);
        o.clear();
        assert!(o.is_empty());
        assert!(o.push(Out::Nack(2)));
    }
}
