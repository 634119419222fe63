//! The peer protocol as a sans-IO state machine: datagrams and `now` in, datagrams and the next
//! deadline out. No sockets, no clock reads, so it runs unchanged under the mio driver and under
//! the virtual-time simulator ([`super::sim`]).
//!
//! Phases: **handshake** (HELLO retransmitted with backoff until we heard a HELLO from every
//! peer *and* every peer acknowledged ours: the barrier) → **sending** (M DATA messages at seeded
//! random gaps) → **draining** (STOP repeated; wait until every peer's STOP arrived and its count
//! is complete, or until a quiet period passes) → **done**. HELLOs are answered in every phase,
//! since a peer still in its handshake may have lost our ACK.
//!
//! Call order after every input, as in quinn-proto: `poll_transmit` until `None`, then
//! `poll_timeout`; call `handle_timeout` when that deadline passes (early calls are harmless).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::timers::{Timer, TimerTable};
use crate::util::clock::Now;
use crate::wire::log::Record;
use crate::wire::packet::{self, Body, Repr};
use crate::wire::{Error, Order, Repair, Transport};

/// How a peer's protocol behaves; sizes come from here, nothing is hard-coded.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: u16,
    pub peers: u16,
    pub msgs: u32,
    /// Gap between two DATA sends, uniform in `interval.0..=interval.1`; zero = back to back.
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes (raised to the minimum).
    pub size: usize,
    /// Seeds the send schedule (and nothing that must differ between runs).
    pub seed: u64,
    /// The run id given by the user, or `None` to take peer 0's nonce.
    pub run_id: Option<u64>,
    /// This incarnation's random, non-zero nonce (the driver draws it from the OS).
    pub nonce: u64,
    pub hello_retry: Duration,
    pub hello_retry_max: Duration,
    pub handshake_timeout: Duration,
    pub drain: Duration,
    /// How many times STOP is sent, `stop_gap` apart.
    pub stop_repeats: u32,
    pub stop_gap: Duration,
    /// The delivery guarantee; every peer of a run must use the same (checked in HELLO).
    pub order: Order,
    /// Gap repair; agreed in HELLO like `order`.
    pub repair: Repair,
    /// Fan-out (a `Dest::All` send costs N datagrams) or multicast (one).
    pub transport: Transport,
}

impl Config {
    pub fn new(id: u16, peers: u16, msgs: u32) -> Config {
        Config {
            id,
            peers,
            msgs,
            interval: (Duration::from_millis(10), Duration::from_millis(100)),
            size: packet::DATA_MIN_LEN,
            seed: 0,
            run_id: None,
            nonce: 0x6d70_636f_6d6d_0001 ^ u64::from(id),
            hello_retry: Duration::from_millis(100),
            hello_retry_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(2),
            stop_repeats: 3,
            stop_gap: Duration::from_millis(20),
            order: Order::None,
            repair: Repair::Off,
            transport: Transport::Fanout,
        }
    }
}

/// Where a datagram goes. Fan-out versus multicast is the driver's mapping of `All`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Every peer, ourselves included (one multicast send, or one unicast per peer).
    All,
    /// One peer (the driver may still send it to the group; others ignore it).
    Peer(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    pub len: usize,
}

/// The emulated WAN, as the machine sees it: a delay (or a drop) per sender → us.
pub trait DelayModel: Send {
    /// `None` drops the message; `Some(d)` delivers it `d` after it was sent.
    fn delay(&mut self, from: u16, to: u16) -> Option<Duration>;
    /// The longest delay `delay` can return.
    fn max_delay(&self) -> Duration;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Sending,
    Draining,
    Done,
    /// The handshake timed out; `missing()` names the peers.
    Failed,
}

/// How a datagram arrived: the driver's receive time and whether the kernel stamped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub recv_ns: u64,
    pub kernel_stamp: bool,
}

/// What one peer counted besides its deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Undecodable datagrams, by reason (index = `wire::Error as usize`).
    pub malformed: [u64; Error::COUNT],
    /// Well-formed datagrams of another run (or another configuration).
    pub foreign: u64,
    /// DATA dropped by the emulated WAN's loss.
    pub wan_dropped: u64,
    pub hellos_sent: u64,
    pub data_sent: u32,
}

impl Counters {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    order: u64,
    sender: u16,
    seq: u32,
    send_ns: u64,
    recv_ns: u64,
    kernel_stamp: bool,
}

pub struct Machine {
    cfg: Config,
    phase: Phase,
    start: Now,
    timers: TimerTable,
    rng: ChaCha8Rng,
    delay: Option<Box<dyn DelayModel>>,

    // Handshake.
    hello_nonce: Vec<u64>,
    acked_by: Vec<bool>,
    /// Peer 0's nonce as each acknowledging peer knew it (run-id agreement).
    acked_run_nonce: Vec<u64>,
    /// The incarnation (nonce) of each peer that acknowledged us: an ACK of an earlier
    /// incarnation says nothing about a restarted peer.
    acked_from_nonce: Vec<u64>,
    ack_due: Vec<bool>,
    /// A peer we just heard from for the first time has not acknowledged us: it probably
    /// started after our last HELLO, so it gets one at once instead of at the next retry.
    hello_to_due: Vec<bool>,
    hello_due: bool,
    hello_backoff: Duration,
    run_id: Option<u64>,
    setup: Option<Duration>,
    /// DATA/STOP that arrived before we knew the run id: replayed once we do.
    early: Vec<(Repr, Arrival)>,

    // Sending.
    next_seq: u32,
    data_due: bool,
    stops_left: u32,
    stop_due: bool,

    // Receiving.
    records: Vec<Record>,
    held: BinaryHeap<Reverse<Held>>,
    held_order: u64,
    /// One bit per (sender, seq): first deliveries, to tell when counts are complete.
    seen: Vec<u64>,
    distinct: Vec<u32>,
    stop_count: Vec<Option<u32>>,
    end: Option<Now>,
    counters: Counters,
    /// The quiet period that ends a run: `drain`, but never shorter than a peer's longest send
    /// gap plus the WAN's longest delay, nor than a joining peer's HELLO retry.
    quiet: Duration,
}

impl Machine {
    pub fn new(mut cfg: Config, now: Now, delay: Option<Box<dyn DelayModel>>) -> Machine {
        assert!(
            cfg.peers > 0 && cfg.id < cfg.peers,
            "peer id must be below the peer count"
        );
        assert!(cfg.nonce != 0, "nonce must be non-zero");
        cfg.size = cfg.size.clamp(packet::DATA_MIN_LEN, packet::MAX_DATAGRAM);
        let n = usize::from(cfg.peers);
        let expected = n * cfg.msgs as usize;
        let mut timers = TimerTable::default();
        timers.set(Timer::HandshakeTimeout, now.at + cfg.handshake_timeout);
        let max_delay = delay.as_ref().map_or(Duration::ZERO, |d| d.max_delay());
        let margin = Duration::from_millis(250);
        let quiet = cfg
            .drain
            .max(cfg.interval.1 + max_delay + margin)
            .max(cfg.hello_retry_max + margin);
        // The hold-back queue exists only under an emulated WAN.
        let held_capacity = if delay.is_some() { expected } else { 0 };
        Machine {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ u64::from(cfg.id).rotate_left(32)),
            phase: Phase::Handshake,
            start: now,
            timers,
            delay,
            hello_nonce: vec![0; n],
            acked_by: vec![false; n],
            acked_run_nonce: vec![0; n],
            acked_from_nonce: vec![0; n],
            ack_due: vec![false; n],
            hello_to_due: vec![false; n],
            hello_due: true,
            hello_backoff: cfg.hello_retry,
            run_id: cfg.run_id,
            setup: None,
            early: Vec::new(),
            next_seq: 0,
            data_due: false,
            stops_left: 0,
            stop_due: false,
            // Slack for duplicates; growth beyond it is amortised and rare.
            records: Vec::with_capacity(expected + expected / 8 + 16),
            held: BinaryHeap::with_capacity(held_capacity),
            held_order: 0,
            seen: vec![0; expected.div_ceil(64)],
            distinct: vec![0; n],
            stop_count: vec![None; n],
            end: None,
            counters: Counters::default(),
            quiet,
            cfg,
        }
    }

    // ---- getters ----

    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }
    /// The agreed run id, once the handshake has it.
    pub fn run_id(&self) -> Option<u64> {
        self.run_id
    }
    /// Time from start to passing the barrier.
    pub fn setup_time(&self) -> Option<Duration> {
        self.setup
    }
    pub fn duration(&self) -> Option<Duration> {
        self.end.map(|e| e.at - self.start.at)
    }
    pub fn start(&self) -> Now {
        self.start
    }
    pub fn records(&self) -> &[Record] {
        &self.records
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// What repair and ordering cost this peer (for the log header).
    pub fn cost(&self) -> crate::wire::log::Cost {
        crate::wire::log::Cost::default()
    }
    /// 0, or the log's failure code.
    pub fn failure(&self) -> u32 {
        0
    }
    /// Peers we have no HELLO from, or that have not acknowledged ours.
    pub fn missing(&self) -> Vec<u16> {
        (0..self.cfg.peers)
            .filter(|&p| {
                let p = usize::from(p);
                self.hello_nonce[p] == 0
                    || !self.acked_by[p]
                    || self.acked_from_nonce[p] != self.hello_nonce[p]
            })
            .collect()
    }
    /// Peers whose STOP never arrived or whose messages are incomplete (after the run).
    pub fn incomplete(&self) -> Vec<u16> {
        (0..self.cfg.peers)
            .filter(|&p| !self.sender_complete(usize::from(p)))
            .collect()
    }

    // ---- inputs ----

    /// One datagram from the network. Anything undecodable is counted and dropped.
    pub fn handle_datagram(&mut self, now: Now, bytes: &[u8], arrival: Arrival) {
        if self.is_finished() {
            return; // Like a process that has exited: it hears nothing.
        }
        let repr = match Repr::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.counters.malformed[e as usize] += 1;
                return;
            }
        };
        if repr.sender >= self.cfg.peers {
            self.counters.malformed[Error::BadValue as usize] += 1;
            return;
        }
        match repr.body {
            Body::Hello {
                nonce, peers, msgs, ..
            } => self.on_hello(now, repr, nonce, peers, msgs),
            Body::HelloAck {
                to,
                nonce,
                from_nonce,
                run_nonce,
            } => self.on_hello_ack(now, repr, (to, nonce), from_nonce, run_nonce),
            _ => match self.run_id {
                Some(id) if repr.run_id != id => self.counters.foreign += 1,
                Some(_) => self.on_run_message(now, repr, arrival),
                // Not yet agreed: keep it (bounded), never misread it.
                None if self.early.len() < self.records.capacity() => {
                    self.early.push((repr, arrival))
                }
                None => self.counters.foreign += 1,
            },
        }
    }

    /// Fire every expired timer.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.timers.expire(Timer::HandshakeTimeout, now.at) && self.phase == Phase::Handshake {
            self.phase = Phase::Failed;
            self.end = Some(now);
            self.timers = TimerTable::default();
            return;
        }
        if self.timers.expire(Timer::HelloRetry, now.at) && !self.all_agreed() {
            self.hello_due = true;
        }
        if self.timers.expire(Timer::NextSend, now.at) && self.phase == Phase::Sending {
            self.data_due = true;
        }
        if self.timers.expire(Timer::StopRetry, now.at) && self.stops_left > 0 {
            self.stop_due = true;
        }
        if self.timers.expire(Timer::HoldBack, now.at) {
            self.release_held(now);
        }
        if self.timers.expire(Timer::Drain, now.at) && self.phase == Phase::Draining {
            // Quiet for long enough: what has not arrived is lost. First flush the hold-back
            // queue (its deadlines are bounded by the WAN's largest delay) and send our STOPs.
            if self.held.is_empty() && self.stops_left == 0 {
                self.finish(now);
            } else {
                self.timers.set(Timer::Drain, now.at + self.quiet);
            }
        }
        self.check_done(now);
    }

    // ---- outputs ----

    /// The next datagram to send, written into `buf` (at least `packet::MAX_DATAGRAM` long, or
    /// `config().size`); `None` when there is nothing to send now.
    pub fn poll_transmit(&mut self, now: Now, buf: &mut [u8]) -> Option<Transmit> {
        let hello_run = self.cfg.run_id.unwrap_or(0);
        if let Some(to) = self.ack_due.iter().position(|&d| d) {
            self.ack_due[to] = false;
            let to = to as u16;
            let nonce = self.hello_nonce[usize::from(to)];
            let r = Repr {
                run_id: hello_run,
                sender: self.cfg.id,
                body: Body::HelloAck {
                    to,
                    nonce,
                    from_nonce: self.cfg.nonce,
                    run_nonce: self.peer0_nonce(),
                },
            };
            return Some(Transmit {
                dest: Dest::Peer(to),
                len: r.emit(buf),
            });
        }
        if let Some(to) = self.hello_to_due.iter().position(|&d| d) {
            self.hello_to_due[to] = false;
            if !self.acked_by[to] && !self.is_finished() {
                return Some(self.emit_hello(Dest::Peer(to as u16), buf));
            }
        }
        if self.hello_due && !self.is_finished() {
            self.hello_due = false;
            self.timers
                .set(Timer::HelloRetry, now.at + self.hello_backoff);
            self.hello_backoff = (self.hello_backoff * 3 / 2).min(self.cfg.hello_retry_max);
            return Some(self.emit_hello(Dest::All, buf));
        }
        let run_id = self.run_id?;
        if self.data_due && self.phase == Phase::Sending {
            self.data_due = false;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.counters.data_sent += 1;
            let pad = (self.cfg.size - packet::DATA_MIN_LEN) as u16;
            let body = Body::Data {
                seq,
                send_ns: now.unix_ns,
                retransmit: false,
                lamport: 0,
                vector: 0,
                pad,
            };
            let len = Repr {
                run_id,
                sender: self.cfg.id,
                body,
            }
            .emit(buf);
            if self.next_seq < self.cfg.msgs {
                self.schedule_send(now);
            } else {
                self.start_draining(now);
            }
            return Some(Transmit {
                dest: Dest::All,
                len,
            });
        }
        if self.stop_due {
            self.stop_due = false;
            self.stops_left -= 1;
            if self.stops_left > 0 {
                self.timers
                    .set(Timer::StopRetry, now.at + self.cfg.stop_gap);
            }
            let r = Repr {
                run_id,
                sender: self.cfg.id,
                body: Body::Stop(packet::Announce {
                    sent: self.next_seq,
                    ..Default::default()
                }),
            };
            return Some(Transmit {
                dest: Dest::All,
                len: r.emit(buf),
            });
        }
        None
    }

    fn emit_hello(&mut self, dest: Dest, buf: &mut [u8]) -> Transmit {
        self.counters.hellos_sent += 1;
        let body = Body::Hello {
            nonce: self.cfg.nonce,
            peers: self.cfg.peers,
            msgs: self.cfg.msgs,
            order: self.cfg.order.as_u8(),
            repair: self.cfg.repair.as_u8(),
        };
        let r = Repr {
            run_id: self.cfg.run_id.unwrap_or(0),
            sender: self.cfg.id,
            body,
        };
        Transmit {
            dest,
            len: r.emit(buf),
        }
    }

    /// When `handle_timeout` should next be called. `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        self.timers.next()
    }

    /// Whether `poll_transmit` has something right now (the driver's "keep going" test).
    pub fn wants_transmit(&self) -> bool {
        self.ack_due.iter().any(|&d| d)
            || self.hello_to_due.iter().any(|&d| d)
            || (self.hello_due && !self.is_finished())
            || (self.run_id.is_some()
                && ((self.data_due && self.phase == Phase::Sending) || self.stop_due))
    }

    // ---- internals ----

    fn on_hello(&mut self, now: Now, repr: Repr, nonce: u64, peers: u16, msgs: u32) {
        if repr.run_id != self.cfg.run_id.unwrap_or(0)
            || peers != self.cfg.peers
            || msgs != self.cfg.msgs
        {
            self.counters.foreign += 1;
            return;
        }
        let from = usize::from(repr.sender);
        if self.hello_nonce[from] != nonce {
            if self.hello_nonce[from] != 0 && self.phase != Phase::Handshake {
                // A restarted peer after we agreed: it belongs to another run now.
                self.counters.foreign += 1;
                return;
            }
            let restarted = self.hello_nonce[from] != 0;
            self.hello_nonce[from] = nonce;
            if restarted {
                // Its old incarnation's ACK says nothing about the new one.
                self.acked_by[from] = false;
                self.hello_due = true;
            }
            if from == 0 && self.cfg.id != 0 {
                // Our view of the run id changed: tell everyone we have acknowledged, and
                // collect fresh acknowledgements of ours.
                for p in 0..self.ack_due.len() {
                    self.ack_due[p] |= self.hello_nonce[p] != 0;
                }
                self.hello_due |= restarted;
            }
            // A new incarnation: it may not have our HELLO yet.
            self.hello_to_due[from] = true;
        }
        self.ack_due[from] = true;
        self.heard_from_run(now);
        // The last piece of the barrier may be a HELLO as well as an ACK.
        self.try_pass_barrier(now);
    }

    fn on_hello_ack(
        &mut self,
        now: Now,
        repr: Repr,
        (to, nonce): (u16, u64),
        from_nonce: u64,
        run_nonce: u64,
    ) {
        if repr.run_id != self.cfg.run_id.unwrap_or(0) {
            self.counters.foreign += 1;
            return;
        }
        if to != self.cfg.id || nonce != self.cfg.nonce {
            return; // For another peer (multicast carries everyone's ACKs), or a stale one.
        }
        let from = usize::from(repr.sender);
        self.acked_by[from] = true;
        self.acked_from_nonce[from] = from_nonce;
        self.acked_run_nonce[from] = run_nonce;
        if self.all_agreed() {
            self.timers.stop(Timer::HelloRetry);
            self.hello_due = false;
        }
        self.try_pass_barrier(now);
    }

    /// Peer 0's nonce as we know it (0 = not heard yet); without `--run-id` it is the run id.
    fn peer0_nonce(&self) -> u64 {
        if self.cfg.id == 0 {
            self.cfg.nonce
        } else {
            self.hello_nonce[0]
        }
    }

    /// Every peer acknowledged our HELLO, and (without `--run-id`) every acknowledgement names
    /// the peer-0 nonce we know: then all of us will use the same run id.
    fn all_agreed(&self) -> bool {
        let run = self.peer0_nonce();
        (0..self.acked_by.len()).all(|p| {
            self.acked_by[p]
                && self.acked_from_nonce[p] == self.hello_nonce[p]
                && (self.cfg.run_id.is_some() || (run != 0 && self.acked_run_nonce[p] == run))
        })
    }

    fn try_pass_barrier(&mut self, now: Now) {
        if self.phase != Phase::Handshake || !self.all_agreed() || self.hello_nonce.contains(&0) {
            return;
        }
        self.run_id = Some(self.cfg.run_id.unwrap_or(self.peer0_nonce()));
        self.setup = Some(now.at - self.start.at);
        self.timers.stop(Timer::HandshakeTimeout);
        self.phase = Phase::Sending;
        if self.cfg.msgs == 0 {
            self.start_draining(now);
        } else {
            self.schedule_send(now);
        }
        for (repr, arrival) in std::mem::take(&mut self.early) {
            if Some(repr.run_id) == self.run_id {
                self.on_run_message(now, repr, arrival);
            } else {
                self.counters.foreign += 1;
            }
        }
    }

    fn schedule_send(&mut self, now: Now) {
        let (lo, hi) = self.cfg.interval;
        let gap = if hi.is_zero() {
            Duration::ZERO
        } else {
            self.rng.gen_range(lo..=hi)
        };
        if gap.is_zero() {
            self.data_due = true;
        } else {
            self.timers.set(Timer::NextSend, now.at + gap);
        }
    }

    fn start_draining(&mut self, now: Now) {
        self.phase = Phase::Draining;
        self.stops_left = self.cfg.stop_repeats.max(1);
        self.stop_due = true;
        self.timers.set(Timer::Drain, now.at + self.quiet);
        self.check_done(now);
    }

    fn on_run_message(&mut self, now: Now, repr: Repr, arrival: Arrival) {
        let sender = repr.sender;
        match repr.body {
            Body::Data { seq, send_ns, .. } => {
                if seq >= self.cfg.msgs {
                    self.counters.malformed[Error::BadValue as usize] += 1;
                    return;
                }
                let delay = match self.delay.as_mut() {
                    None => None,
                    Some(model) => match model.delay(sender, self.cfg.id) {
                        None => {
                            self.counters.wan_dropped += 1;
                            return;
                        }
                        Some(d) => Some(d),
                    },
                };
                match delay {
                    None => self.deliver(now, sender, seq, send_ns, arrival),
                    Some(d) => self.hold(now, sender, seq, send_ns, arrival, d),
                }
            }
            Body::Stop(packet::Announce { sent, .. }) => {
                self.stop_count[usize::from(sender)] = Some(sent.min(self.cfg.msgs));
            }
            _ => {}
        }
        self.heard_from_run(now);
        self.check_done(now);
    }

    /// Any datagram of this run, a late peer's HELLO included, proves the run is not quiet.
    fn heard_from_run(&mut self, now: Now) {
        if self.phase == Phase::Draining {
            self.timers.set(Timer::Drain, now.at + self.quiet);
        }
    }

    /// The emulated WAN delivers at `send_ns + delay` on the sender's clock, which on one
    /// machine is ours; mapped onto the monotonic clock through `now`.
    fn hold(
        &mut self,
        now: Now,
        sender: u16,
        seq: u32,
        send_ns: u64,
        arrival: Arrival,
        d: Duration,
    ) {
        let target = send_ns.saturating_add(d.as_nanos() as u64);
        // Never hold longer than `d` from now: a send time in the future (a skewed clock, or a
        // forged datagram) must not pin the queue, and with it the run, for ever.
        let wait = Duration::from_nanos(target.saturating_sub(now.unix_ns)).min(d);
        let due = now.at + wait;
        self.held_order += 1;
        self.held.push(Reverse(Held {
            due,
            order: self.held_order,
            sender,
            seq,
            send_ns,
            recv_ns: arrival.recv_ns,
            kernel_stamp: arrival.kernel_stamp,
        }));
        self.release_held(now);
    }

    fn release_held(&mut self, now: Now) {
        while let Some(Reverse(h)) = self.held.peek() {
            if h.due > now.at {
                self.timers.set(Timer::HoldBack, h.due);
                return;
            }
            let Reverse(h) = self.held.pop().expect("peeked");
            let arrival = Arrival {
                recv_ns: h.recv_ns,
                kernel_stamp: h.kernel_stamp,
            };
            self.deliver(now, h.sender, h.seq, h.send_ns, arrival);
        }
        self.timers.stop(Timer::HoldBack);
    }

    fn deliver(&mut self, now: Now, sender: u16, seq: u32, send_ns: u64, arrival: Arrival) {
        let bit = usize::from(sender) * self.cfg.msgs as usize + seq as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.seen[word] & mask == 0 {
            self.seen[word] |= mask;
            self.distinct[usize::from(sender)] += 1;
        }
        self.records.push(Record {
            sender,
            seq,
            send_ns,
            recv_ns: arrival.recv_ns,
            deliver_ns: now.unix_ns,
            kernel_stamp: arrival.kernel_stamp,
            arrive_ns: now.unix_ns,
            arrival: self.records.len() as u32,
            retransmitted: false,
        });
    }

    fn sender_complete(&self, s: usize) -> bool {
        self.stop_count[s].is_some_and(|sent| self.distinct[s] >= sent)
    }

    fn check_done(&mut self, now: Now) {
        if self.phase != Phase::Draining || self.stops_left > 0 || !self.held.is_empty() {
            return;
        }
        if (0..usize::from(self.cfg.peers)).all(|s| self.sender_complete(s)) {
            self.finish(now);
        }
    }

    fn finish(&mut self, now: Now) {
        self.phase = Phase::Done;
        self.end = Some(now);
        self.timers = TimerTable::default();
    }
}
