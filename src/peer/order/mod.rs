//! The ordering stage: messages come up from repair (first arrivals, in arrival order) and go
//! out as delivery records when the mode's rule allows. One small component per mode, in its
//! own file, behind one enum (no boxing on the per-message path):
//!
//! * `none`: deliver on arrival (the original experiment; duplicates too, without repair).
//! * [`fifo`]: each sender's messages in sequence order.
//! * [`causal`]: vector timestamps (CBCAST).
//! * [`sequencer`]: peer 0 fixes a global order in ORDER messages.
//! * [`lamport`]: (Lamport timestamp, sender) order, released once every peer has been heard
//!   from with a timestamp at least as late (implicit acknowledgement by DATA and HEARTBEAT).
//!
//! Every stage is told when repair gives a message up (`skip`), so a loss holds nothing back
//! for longer than repair's bound.

pub mod causal;
pub mod fifo;
pub mod lamport;
pub mod sequencer;

use crate::wire::log::Record;
use crate::wire::packet::Announce;
use crate::wire::Order;

/// A message that reached the ordering stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Msg {
    pub sender: u16,
    pub seq: u32,
    pub send_ns: u64,
    pub recv_ns: u64,
    pub kernel_stamp: bool,
    /// Received TTL / hop limit (0 = unknown).
    pub ttl: u8,
    pub retransmitted: bool,
    pub lamport: u64,
    pub arrive_ns: u64,
    pub arrival: u32,
}

impl Msg {
    fn record(&self, deliver_ns: u64) -> Record {
        Record {
            sender: self.sender,
            seq: self.seq,
            send_ns: self.send_ns,
            recv_ns: self.recv_ns,
            deliver_ns,
            kernel_stamp: self.kernel_stamp,
            arrive_ns: self.arrive_ns,
            arrival: self.arrival,
            retransmitted: self.retransmitted,
            ttl: self.ttl,
        }
    }
}

/// Where deliveries go: the log's records (preallocated), stamped with the time.
pub struct Sink<'a> {
    pub records: &'a mut Vec<Record>,
    pub now_ns: u64,
}

impl Sink<'_> {
    fn deliver(&mut self, m: &Msg) {
        self.records.push(m.record(self.now_ns));
    }
}

/// One bit per (sender, seq).
#[derive(Debug, Clone)]
pub struct Bits {
    words: Vec<u64>,
}

impl Bits {
    pub fn new(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
        }
    }
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }
    pub fn clear(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }
}

/// Messages held back, one slot per (sender, seq), allocated once.
pub struct Store {
    msgs: u32,
    slots: Vec<Msg>,
    held: Bits,
    count: usize,
}

impl Store {
    pub fn new(peers: u16, msgs: u32) -> Store {
        let len = usize::from(peers) * msgs as usize;
        Store {
            msgs,
            slots: vec![Msg::default(); len],
            held: Bits::new(len),
            count: 0,
        }
    }
    pub fn index(&self, sender: u16, seq: u32) -> usize {
        usize::from(sender) * self.msgs as usize + seq as usize
    }
    pub fn put(&mut self, m: Msg) {
        let i = self.index(m.sender, m.seq);
        if !self.held.get(i) {
            self.count += 1;
        }
        self.slots[i] = m;
        self.held.set(i);
    }
    pub fn is_held(&self, sender: u16, seq: u32) -> bool {
        self.held.get(self.index(sender, seq))
    }
    pub fn take(&mut self, sender: u16, seq: u32) -> Option<Msg> {
        let i = self.index(sender, seq);
        if !self.held.get(i) {
            return None;
        }
        self.held.clear(i);
        self.count -= 1;
        Some(self.slots[i])
    }
    /// Messages held.
    pub fn held(&self) -> usize {
        self.count
    }
}

/// The ordering stage of one peer.
pub enum Orderer {
    None,
    Fifo(fifo::Fifo),
    Causal(causal::Causal),
    Sequencer(sequencer::Sequencer),
    Lamport(lamport::Lamport),
}

impl Orderer {
    pub fn new(order: Order, me: u16, peers: u16, msgs: u32) -> Orderer {
        match order {
            Order::None => Orderer::None,
            Order::Fifo => Orderer::Fifo(fifo::Fifo::new(peers, msgs)),
            Order::Causal => Orderer::Causal(causal::Causal::new(peers, msgs)),
            Order::Sequencer => Orderer::Sequencer(sequencer::Sequencer::new(me == 0, peers, msgs)),
            Order::Lamport => Orderer::Lamport(lamport::Lamport::new(peers, msgs)),
        }
    }

    /// A first arrival (or, with `none` and no repair, any arrival). `vector` reads entry `i`
    /// of the DATA's vector stamp (causal only).
    pub fn arrive(&mut self, m: Msg, vector: impl Fn(usize) -> u32, sink: &mut Sink) {
        match self {
            Orderer::None => sink.deliver(&m),
            Orderer::Fifo(o) => o.arrive(m, sink),
            Orderer::Causal(o) => o.arrive(m, vector, sink),
            Orderer::Sequencer(o) => o.arrive(m, sink),
            Orderer::Lamport(o) => o.arrive(m, sink),
        }
    }

    /// Repair gave (sender, seq) up: never wait for it.
    pub fn skip(&mut self, sender: u16, seq: u32, sink: &mut Sink) {
        match self {
            Orderer::None => {}
            Orderer::Fifo(o) => o.skip(sender, seq, sink),
            Orderer::Causal(o) => o.skip(sender, seq, sink),
            Orderer::Sequencer(o) => o.skip(sender, seq, sink),
            Orderer::Lamport(o) => o.skip(sender, seq, sink),
        }
    }

    /// A STOP (`is_stop`) or HEARTBEAT from `sender`.
    pub fn announce(&mut self, sender: u16, a: &Announce, is_stop: bool, sink: &mut Sink) {
        if let Orderer::Lamport(o) = self {
            o.announce(sender, a, is_stop, sink);
        }
    }

    /// Messages waiting for their turn.
    pub fn held(&self) -> usize {
        match self {
            Orderer::None => 0,
            Orderer::Fifo(o) => o.held(),
            Orderer::Causal(o) => o.held(),
            Orderer::Sequencer(o) => o.held(),
            Orderer::Lamport(o) => o.held(),
        }
    }

    pub fn sequencer(&mut self) -> Option<&mut sequencer::Sequencer> {
        match self {
            Orderer::Sequencer(o) => Some(o),
            _ => None,
        }
    }

    pub fn lamport(&mut self) -> Option<&mut lamport::Lamport> {
        match self {
            Orderer::Lamport(o) => Some(o),
            _ => None,
        }
    }

    pub fn causal(&mut self) -> Option<&mut causal::Causal> {
        match self {
            Orderer::Causal(o) => Some(o),
            _ => None,
        }
    }
}
