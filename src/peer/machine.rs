//! The peer protocol as a sans-IO state machine: datagrams and `now` in, datagrams and the next
//! deadline out. No sockets, no clock reads, so it runs unchanged under the mio driver and under
//! the virtual-time simulator ([`super::sim`]).
//!
//! Phases: **handshake** (HELLO retransmitted with backoff until we heard a HELLO from every
//! peer *and* every peer acknowledged ours: the barrier; a peer with another ordering mode or
//! repair setting is refused) → **sending** (M DATA messages at seeded random gaps) →
//! **draining** (STOP repeated; wait until every stream is complete, or a quiet period passes,
//! never past a hard bound) → **done**. HELLOs are answered in every phase, since a peer still
//! in its handshake may have lost our ACK.
//!
//! A run's datagrams go up a pipeline, one stage per concern, each with its own timers:
//! emulated WAN ([`super::netem`], where a real network would be) → repair
//! ([`super::repair`]: gaps, NACKs, give-ups; only first arrivals pass) → ordering
//! ([`super::order`]: hold back until the mode allows) → delivery record. What the stages want
//! sent goes into one bounded [`Outbox`]; `poll_transmit` writes it out.
//!
//! Call order after every input, as in quinn-proto: `poll_transmit` until `None`, then
//! `poll_timeout`; call `handle_timeout` when that deadline passes (early calls are harmless).
//!
//! Files: this one holds the machine, its inputs and its timers; `machine/config.rs` the
//! configuration, `machine/status.rs` what the driver reads back (phase, counters, refusals),
//! `machine/transmit.rs` the outputs, `machine/handshake.rs` and `machine/run.rs` the phases.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use super::netem::DelayModel;
use super::netem::{Admit, WanStage};
use super::order::{Msg, Orderer, Sink};
use super::outbox::{Out, Outbox};
use super::repair::{self, Kept, Repair, RepairConfig};
use super::timers::{Timer, TimerTable};
use crate::util::clock::Now;
use crate::wire::auth::{RunKey, TAG_LEN};
use crate::wire::log::{Cost, Record, FAILURE_SEQUENCER_LOST};
use crate::wire::packet::{self, Announce, Body, Repr, Stream, MAX_NACK_RANGES};
use crate::wire::{Error, Order, Repair as RepairMode, Transport};

pub use config::Config;
pub use status::{Counters, OtherRun, Phase, Refusal, WAIT_NOTE_EVERY};
pub use transmit::{Dest, Transmit};

/// How a datagram arrived: the driver's receive time and whether the kernel stamped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub recv_ns: u64,
    pub kernel_stamp: bool,
    /// The TTL / hop limit it arrived with (0 = unknown), for the log's hop distances.
    pub ttl: u8,
}

/// The ORDER stream's index in the repair stage (after the N DATA streams).
fn order_stream(peers: u16) -> u16 {
    peers
}

pub struct Machine {
    cfg: Config,
    phase: Phase,
    start: Now,
    timers: TimerTable,
    rng: ChaCha8Rng,
    net: Option<WanStage>,
    /// Reused for datagrams the WAN stage releases.
    scratch: Vec<u8>,
    outbox: Outbox,

    // Handshake.
    hello_nonce: Vec<u64>,
    acked_by: Vec<bool>,
    /// Peer 0's nonce as each acknowledging peer knew it (run-id agreement).
    acked_run_nonce: Vec<u64>,
    /// The incarnation (nonce) of each peer that acknowledged us: an ACK of an earlier
    /// incarnation says nothing about a restarted peer.
    acked_from_nonce: Vec<u64>,
    hello_backoff: Duration,
    run_id: Option<u64>,
    setup: Option<Duration>,
    /// Run datagrams that arrived before we knew the run id: replayed once we do (bounded).
    early: Vec<(Vec<u8>, Arrival)>,
    refused: Option<Refusal>,
    other_run: Option<OtherRun>,
    /// The wait note is due (`take_wait_note`).
    wait_note: bool,

    // Sending.
    next_seq: u32,
    stops_left: u32,
    kept: Kept,

    // Delivery pipeline.
    repair: Repair,
    orderer: Orderer,
    /// Only first arrivals go up (every mode but `none` without repair).
    dedup: bool,
    next_arrival: u32,
    records: Vec<Record>,
    /// Heartbeat after a receipt raised the Lamport clock (how long to wait for a DATA first).
    heartbeat_after: Duration,
    order_flush: Duration,
    /// `sequencer` (not peer 0): since when messages have waited without ORDER progress.
    waiting_since: Option<Instant>,
    failure: u32,

    // The end.
    peer_complete: Vec<bool>,
    /// The highest "sent so far" each peer announced: a repeat of it is no news.
    peer_announced: Vec<Option<u32>>,
    announced_complete: bool,
    complete_left: u32,
    drain_backoff: Duration,
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
        let n = usize::from(cfg.peers);
        let causal = cfg.order == Order::Causal;
        let tag = if cfg.run_key.is_some() { TAG_LEN } else { 0 };
        let min_size = packet::data_len(if causal { n } else { 0 }) + tag;
        cfg.size = cfg.size.clamp(min_size, packet::MAX_DATAGRAM);
        let expected = n * cfg.msgs as usize;
        let mut timers = TimerTable::default();
        timers.set(Timer::HandshakeTimeout, now.at + cfg.handshake_timeout);
        timers.set(Timer::WaitNote, now.at + WAIT_NOTE_EVERY);
        let max_delay = delay.as_ref().map_or(Duration::ZERO, |d| d.max_delay());
        let margin = Duration::from_millis(250);
        let quiet = cfg
            .drain
            .max(cfg.interval.1 + max_delay + margin)
            .max(cfg.hello_retry_max + margin);
        // Repair waits out reordering first; a NACK's answer takes a round trip.
        let nack_delay = Duration::from_millis(2).max(max_delay / 10);
        let rto = Duration::from_millis(10).max(max_delay * 2 + nack_delay);
        cfg.give_up = cfg.give_up.max(rto * 20);
        cfg.drain_max = cfg.drain_max.max(cfg.give_up * 4 + quiet * 2);
        let nack = cfg.repair == RepairMode::Nack;
        let repair_cfg = RepairConfig {
            nack,
            give_up_gaps: cfg.order != Order::None || nack,
            nack_delay,
            rto,
            give_up: cfg.give_up,
        };
        let sequencer = cfg.order == Order::Sequencer;
        let mut outbox = Outbox::new(n);
        outbox.push(Out::Hello(Dest::All));
        Machine {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ u64::from(cfg.id).rotate_left(32)),
            phase: Phase::Handshake,
            start: now,
            timers,
            net: delay.map(|d| WanStage::new(d, cfg.id, cfg.peers)),
            scratch: Vec::with_capacity(packet::MAX_DATAGRAM),
            outbox,
            hello_nonce: vec![0; n],
            acked_by: vec![false; n],
            acked_run_nonce: vec![0; n],
            acked_from_nonce: vec![0; n],
            hello_backoff: cfg.hello_retry,
            run_id: cfg.run_id,
            setup: None,
            early: Vec::new(),
            refused: None,
            other_run: None,
            wait_note: false,
            next_seq: 0,
            stops_left: 0,
            kept: Kept::new(cfg.msgs, cfg.peers, cfg.order == Order::Lamport, causal),
            repair: Repair::new(repair_cfg, cfg.peers, cfg.msgs, sequencer),
            orderer: Orderer::new(cfg.order, cfg.id, cfg.peers, cfg.msgs),
            dedup: cfg.order != Order::None || nack,
            next_arrival: 0,
            // Slack for duplicates; growth beyond it is amortised and rare.
            records: Vec::with_capacity(expected + expected / 8 + 16),
            heartbeat_after: cfg.interval.1.max(Duration::from_millis(1)),
            order_flush: Duration::from_millis(2),
            waiting_since: None,
            failure: 0,
            peer_complete: vec![false; n],
            peer_announced: vec![None; n],
            announced_complete: false,
            complete_left: 0,
            drain_backoff: rto,
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
    pub fn cost(&self) -> Cost {
        Cost {
            given_up: self.repair.given_up + self.counters.cost.given_up,
            ..self.counters.cost
        }
    }
    /// 0, or the log's failure code (`FAILURE_SEQUENCER_LOST`).
    pub fn failure(&self) -> u32 {
        self.failure
    }
    /// Bytes of the tag every datagram ends in (0 without a run key).
    fn tag_len(&self) -> usize {
        if self.cfg.run_key.is_some() {
            TAG_LEN
        } else {
            0
        }
    }
    /// The peer refused in the handshake, if that is why it failed.
    /// The last listed peer heard asking for another run (N, M or run id), if any.
    pub fn other_run(&self) -> Option<OtherRun> {
        self.other_run
    }

    /// Once per `WAIT_NOTE_EVERY` while the handshake waits: the peers not heard from yet.
    pub fn take_wait_note(&mut self) -> Option<Vec<u16>> {
        if !std::mem::take(&mut self.wait_note) || self.phase != Phase::Handshake {
            return None;
        }
        Some(self.missing())
    }

    pub fn refused(&self) -> Option<Refusal> {
        self.refused
    }
    /// Peers we have no HELLO from, or that have not acknowledged ours.
    /// The other peers the handshake still waits for (never this peer itself: its own HELLO
    /// comes back through its own socket).
    pub fn missing(&self) -> Vec<u16> {
        (0..self.cfg.peers)
            .filter(|&p| p != self.cfg.id)
            .filter(|&p| {
                let p = usize::from(p);
                self.hello_nonce[p] == 0
                    || !self.acked_by[p]
                    || self.acked_from_nonce[p] != self.hello_nonce[p]
            })
            .collect()
    }
    /// How far every sender's stream got as we saw it (for the log header).
    pub fn stream_ends(&self) -> Vec<Option<crate::wire::log::StreamEnd>> {
        (0..self.cfg.peers)
            .map(|p| {
                Some(crate::wire::log::StreamEnd {
                    known: self.repair.known(p),
                    stop: self.repair.final_count(p),
                })
            })
            .collect()
    }
    /// Peers whose STOP never arrived or whose messages are incomplete (after the run).
    pub fn incomplete(&self) -> Vec<u16> {
        (0..self.cfg.peers)
            .filter(|&p| !self.repair.complete(p))
            .collect()
    }

    // ---- inputs ----

    /// One datagram from the network. Anything undecodable is counted and dropped.
    pub fn handle_datagram(&mut self, now: Now, bytes: &[u8], arrival: Arrival) {
        if self.is_finished() {
            return; // Like a process that has exited: it hears nothing.
        }
        let bytes = match &self.cfg.run_key {
            None => bytes,
            Some(key) => match key.verify(bytes) {
                Some(body) => body,
                None => {
                    self.counters.forged += 1;
                    return;
                }
            },
        };
        if let Some(net) = self.net.as_mut() {
            match net.push(now, bytes, arrival) {
                Admit::PassNow => {}
                Admit::Held => return self.release_net(now),
                Admit::Dropped => {
                    self.counters.wan_dropped += 1;
                    return;
                }
            }
        }
        self.on_datagram(now, bytes, arrival);
    }

    /// Hand up what the emulated WAN says has arrived by now.
    fn release_net(&mut self, now: Now) {
        let mut buf = std::mem::take(&mut self.scratch);
        while let Some(arrival) = self.net.as_mut().and_then(|n| n.pop_due(now.at, &mut buf)) {
            self.on_datagram(now, &buf, arrival);
            if self.is_finished() {
                break;
            }
        }
        self.scratch = buf;
    }

    fn on_datagram(&mut self, now: Now, bytes: &[u8], arrival: Arrival) {
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
                nonce,
                peers,
                msgs,
                order,
                repair,
            } => self.on_hello(now, repr, (nonce, peers, msgs), (order, repair)),
            Body::HelloAck {
                to,
                nonce,
                from_nonce,
                run_nonce,
            } => self.on_hello_ack(now, repr, (to, nonce), from_nonce, run_nonce),
            _ => match self.run_id {
                Some(id) if repr.run_id != id => self.counters.foreign += 1,
                Some(_) => self.on_run_message(now, bytes, repr, arrival),
                // Not yet agreed: keep it (bounded), never misread it.
                None if self.early.len() < self.records.capacity().max(64) => {
                    self.early.push((bytes.to_vec(), arrival))
                }
                None => self.counters.foreign += 1,
            },
        }
    }

    /// Fire every expired timer.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.timers.expire(Timer::HandshakeTimeout, now.at) && self.phase == Phase::Handshake {
            return self.fail(now);
        }
        if self.timers.expire(Timer::WaitNote, now.at) && self.phase == Phase::Handshake {
            self.wait_note = true;
            self.timers.set(Timer::WaitNote, now.at + WAIT_NOTE_EVERY);
        }
        if self.timers.expire(Timer::HelloRetry, now.at)
            && !self.all_agreed()
            && !self.is_finished()
        {
            self.retry_hello(now);
        }
        if self.is_finished() {
            return;
        }
        if self.timers.expire(Timer::NextSend, now.at) && self.phase == Phase::Sending {
            self.outbox.push_data();
        }
        if self.timers.expire(Timer::StopRetry, now.at) && self.stops_left > 0 {
            self.outbox.push(Out::Stop);
        }
        self.release_net(now);
        if self.is_finished() {
            return;
        }
        self.poll_repair(now);
        if self.timers.expire(Timer::Heartbeat, now.at) {
            self.idle_heartbeat(now);
        }
        if self.timers.expire(Timer::OrderFlush, now.at) {
            self.outbox.push(Out::Order);
        }
        if self.timers.expire(Timer::DrainHeartbeat, now.at) && self.phase == Phase::Draining {
            self.outbox.push(Out::Heartbeat);
            self.drain_backoff = (self.drain_backoff * 2).min(self.quiet / 2);
            self.timers
                .set(Timer::DrainHeartbeat, now.at + self.drain_backoff);
        }
        if self.timers.expire(Timer::CompleteRetry, now.at) && self.complete_left > 0 {
            self.outbox.push(Out::Heartbeat);
        }
        if self.timers.expire(Timer::SequencerStall, now.at) {
            self.watch_sequencer(now);
        }
        if self.timers.expire(Timer::HardBound, now.at) && self.phase == Phase::Draining {
            // Whatever is still missing now is lost; say so in the counts.
            self.counters.cost.given_up += self.orderer.held() as u64;
            return self.finish(now);
        }
        if self.timers.expire(Timer::Drain, now.at) && self.phase == Phase::Draining {
            // Quiet for long enough: what has not arrived is lost. First send our STOPs, and
            // with repair, wait while a gap is still being repaired (give-up bounds that).
            let repairing = self.repair.config().nack && self.repair.outstanding();
            if self.stops_left == 0 && !repairing && self.net.as_ref().is_none_or(|n| n.is_empty())
            {
                self.counters.cost.given_up += self.orderer.held() as u64;
                return self.finish(now);
            }
            self.timers.set(Timer::Drain, now.at + self.quiet);
        }
        self.check_done(now);
    }

    fn poll_repair(&mut self, now: Now) {
        while let Some(event) = self.repair.poll(now.at) {
            match event {
                repair::Event::Nack(stream) => {
                    self.outbox.push(Out::Nack(stream));
                }
                repair::Event::GiveUp { stream, index } if stream < self.cfg.peers => {
                    let mut sink = Sink {
                        records: &mut self.records,
                        now_ns: now.unix_ns,
                    };
                    self.orderer.skip(stream, index, &mut sink);
                }
                repair::Event::GiveUp { .. } => {
                    // ORDER positions the sequencer never resent: without them nothing after
                    // them can be delivered in order.
                    return self.fail_sequencer(now);
                }
            }
        }
        self.after_ordering(now);
    }

    /// When `handle_timeout` should next be called. `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_finished() {
            return None;
        }
        [
            self.timers.next(),
            self.repair.next_deadline(),
            self.net.as_ref().and_then(WanStage::next_due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether `poll_transmit` has something right now (the driver's "keep going" test).
    pub fn wants_transmit(&self) -> bool {
        !self.outbox.is_empty()
    }
}

mod config;
mod handshake;
mod run;
mod status;
mod transmit;
