//! The run after the barrier: sending, the pipeline's inputs (DATA, STOP, HEARTBEAT, NACK,
//! ORDER), and the end (completion, quiet period, hard bound).

use super::*;

impl Machine {
    pub(super) fn schedule_send(&mut self, now: Now) {
        let (lo, hi) = self.cfg.interval;
        let gap = if hi.is_zero() {
            Duration::ZERO
        } else {
            self.rng.gen_range(lo..=hi)
        };
        if gap.is_zero() {
            self.outbox.push_data();
        } else {
            self.timers.set(Timer::NextSend, now.at + gap);
        }
    }

    pub(super) fn start_draining(&mut self, now: Now) {
        self.phase = Phase::Draining;
        self.timers.stop(Timer::Heartbeat);
        self.stops_left = self.cfg.stop_repeats.max(1);
        self.outbox.push(Out::Stop);
        self.timers.set(Timer::Drain, now.at + self.quiet);
        self.timers
            .set(Timer::HardBound, now.at + self.cfg.drain_max);
        if self.repair.config().nack {
            // Our tail may be lost with every STOP: keep announcing it (backed off) until
            // every peer says it has everything.
            self.timers
                .set(Timer::DrainHeartbeat, now.at + self.drain_backoff);
        }
        self.check_done(now);
    }

    pub(super) fn on_run_message(&mut self, now: Now, bytes: &[u8], repr: Repr, arrival: Arrival) {
        let sender = repr.sender;
        let news = match repr.body {
            Body::Data {
                seq,
                send_ns,
                retransmit,
                lamport,
                vector,
                ..
            } => {
                let stamp = (send_ns, retransmit, lamport, vector);
                self.on_data(now, bytes, sender, seq, stamp, arrival)
            }
            Body::Stop(a) => self.on_announce(now, sender, &a, true),
            Body::Heartbeat(a) => self.on_announce(now, sender, &a, false),
            Body::Nack { to, stream, ranges } => {
                self.on_nack(now, bytes, sender, to, stream, ranges);
                true
            }
            Body::Order { first, entries } => self.on_order(now, bytes, sender, first, entries),
            Body::Hello { .. } | Body::HelloAck { .. } => unreachable!("handled by the caller"),
        };
        self.heard_from_run(now, news);
        self.after_ordering(now);
        self.check_done(now);
    }

    fn on_data(
        &mut self,
        now: Now,
        bytes: &[u8],
        sender: u16,
        seq: u32,
        (send_ns, retransmit, lamport, vector): (u64, bool, u64, u16),
        arrival: Arrival,
    ) -> bool {
        let causal = self.cfg.order == Order::Causal;
        if seq >= self.cfg.msgs || (causal && vector != self.cfg.peers) {
            self.counters.malformed[Error::BadValue as usize] += 1;
            return false;
        }
        if self.repair.final_count(sender).is_some_and(|f| seq >= f) {
            // A DATA past its sender's STOP count proves that STOP forged (a real sender never
            // sends past its own STOP): count it now, and wait for the real one.
            self.counters.malformed[Error::BadValue as usize] += 1;
            self.repair.forget_final(sender);
        }
        let first = self.repair.arrive(now.at, sender, seq);
        // A duplicate is never news (a trickle of them must not keep a run alive), and
        // without dedup only as many are stored as the log has room for: the rest are counted.
        if !first && (self.dedup || self.records.len() >= self.records.capacity()) {
            self.counters.cost.duplicates_dropped += 1;
            return false;
        }
        let m = Msg {
            sender,
            seq,
            send_ns,
            recv_ns: arrival.recv_ns,
            kernel_stamp: arrival.kernel_stamp,
            ttl: arrival.ttl,
            retransmitted: retransmit,
            lamport,
            arrive_ns: now.unix_ns,
            arrival: self.next_arrival,
        };
        self.next_arrival += 1;
        let mut sink = Sink {
            records: &mut self.records,
            now_ns: now.unix_ns,
        };
        self.orderer
            .arrive(m, |i| packet::data_vector(bytes, i), &mut sink);
        first
    }

    /// STOP or HEARTBEAT. Returns whether it is news (a peer still working), which keeps the
    /// run from ending as quiet; "I have everything" from a finished peer is not.
    fn on_announce(&mut self, now: Now, sender: u16, a: &Announce, is_stop: bool) -> bool {
        if is_stop && a.sent < self.repair.known(sender) {
            // A sender never sends past its own STOP: a count below what we know exists is
            // forged (or broken) and must not end the stream early.
            self.counters.malformed[Error::BadValue as usize] += 1;
            return false;
        }
        let is_final = is_stop || a.sent >= self.cfg.msgs;
        // A count below what already arrived changes nothing (the stream keeps its maximum).
        self.repair
            .announce(now.at, sender, a.sent.min(self.cfg.msgs), is_final);
        // News keeps the run from ending as quiet: a STOP, a longer stream, a first "I have
        // everything". Heartbeats that repeat themselves (a draining peer waiting for a crashed
        // one) are not, so a dead peer cannot hold the others until the hard bound.
        let seen = &mut self.peer_announced[usize::from(sender)];
        let longer = seen.is_none_or(|old| a.sent > old);
        *seen = Some(seen.map_or(a.sent, |old| old.max(a.sent)));
        let news = is_stop || longer || (a.complete && !self.peer_complete[usize::from(sender)]);
        if a.complete {
            self.peer_complete[usize::from(sender)] = true;
        }
        let order_stream = order_stream(self.cfg.peers);
        if sender == 0 && self.cfg.order == Order::Sequencer && self.cfg.id != 0 {
            // Peer 0's word on how many positions exist; final once it has everything.
            self.repair
                .announce(now.at, order_stream, a.ordered, a.complete);
        }
        let mut sink = Sink {
            records: &mut self.records,
            now_ns: now.unix_ns,
        };
        self.orderer.announce(sender, a, is_stop, &mut sink);
        news
    }

    fn on_nack(&mut self, now: Now, bytes: &[u8], from: u16, to: u16, stream: Stream, ranges: u8) {
        let order_stream = order_stream(self.cfg.peers);
        if to != self.cfg.id {
            if self.cfg.transport == Transport::Multicast {
                let s = if stream == Stream::Order {
                    order_stream
                } else {
                    to
                };
                for i in 0..usize::from(ranges) {
                    let (first, count) = packet::nack_range(bytes, i);
                    self.repair.overheard_nack(now.at, s, first, count);
                }
            }
            return;
        }
        if !self.repair.config().nack {
            return; // We agreed on no repair; a NACK is someone else's mistake or a forgery.
        }
        // In fan-out the asker alone gets the copy; in multicast the group does anyway, and
        // every receiver missing it is served by the one send.
        let dest = match self.cfg.transport {
            Transport::Fanout => Dest::Peer(from),
            Transport::Multicast => Dest::All,
        };
        // Bound what one NACK can make us send (a forged one asks for everything).
        const MAX_PER_RANGE: u32 = 256;
        for i in 0..usize::from(ranges) {
            let (first, count) = packet::nack_range(bytes, i);
            let count = count.min(MAX_PER_RANGE);
            match stream {
                Stream::Data => {
                    let end = first.saturating_add(count).min(self.next_seq);
                    if first < end {
                        self.outbox.push(Out::Retransmit {
                            dest,
                            seq: first,
                            end,
                        });
                    }
                }
                Stream::Order => {
                    let Some(seq) = self.orderer.sequencer() else {
                        return;
                    };
                    if !seq.is_sequencer() {
                        return;
                    }
                    let end = first.saturating_add(count).min(seq.ordered());
                    if first < end {
                        self.outbox.push(Out::OrderResend { dest, first, end });
                    }
                }
            }
        }
    }

    /// Returns whether it held a new position (news).
    fn on_order(&mut self, now: Now, bytes: &[u8], sender: u16, first: u32, entries: u16) -> bool {
        if self.cfg.order != Order::Sequencer || sender != 0 || self.cfg.id == 0 {
            self.counters.malformed[Error::BadValue as usize] += 1;
            return false;
        }
        let order_stream = order_stream(self.cfg.peers);
        let Machine {
            repair,
            orderer,
            records,
            ..
        } = self;
        let mut new = false;
        for g in first..first.saturating_add(u32::from(entries)) {
            new |= repair.arrive(now.at, order_stream, g);
        }
        let mut sink = Sink {
            records,
            now_ns: now.unix_ns,
        };
        let seq = orderer.sequencer().expect("sequencer mode");
        let before = seq.ordered();
        seq.entries(
            first,
            usize::from(entries),
            |i| packet::order_entry(bytes, i),
            // An entry proves the message exists: a lost one is found and repaired.
            |s, k| repair.announce(now.at, s, k + 1, false),
            &mut sink,
        );
        if seq.ordered() > before {
            self.waiting_since = None;
        }
        new
    }

    /// Any datagram of this run with news (a late peer's HELLO included) proves the run is
    /// not quiet.
    pub(super) fn heard_from_run(&mut self, now: Now, news: bool) {
        if self.phase == Phase::Draining && news {
            self.timers.set(Timer::Drain, now.at + self.quiet);
        }
    }

    /// After the ordering stage moved: arm what it needs next (the sequencer's ORDER flush, a
    /// Lamport heartbeat, the watch on a silent sequencer).
    pub(super) fn after_ordering(&mut self, now: Now) {
        let flush = self.order_flush;
        let heartbeat_after = self.heartbeat_after;
        let sending = self.phase == Phase::Sending;
        match &mut self.orderer {
            Orderer::Sequencer(s) if s.is_sequencer() => {
                if s.unsent() as usize >= packet::MAX_ORDER_ENTRIES {
                    self.outbox.push(Out::Order);
                } else if s.unsent() > 0 && !self.timers.is_set(Timer::OrderFlush) {
                    self.timers.set(Timer::OrderFlush, now.at + flush);
                }
            }
            Orderer::Sequencer(_) => self.watch_sequencer(now),
            Orderer::Lamport(l)
                if sending && l.needs_heartbeat() && !self.timers.is_set(Timer::Heartbeat) =>
            {
                self.timers.set(Timer::Heartbeat, now.at + heartbeat_after);
            }
            _ => {}
        }
    }

    /// `lamport`: others may be waiting for word that our clock passed their stamps. Our next
    /// DATA says so too; a HEARTBEAT only if it is not about to leave.
    pub(super) fn idle_heartbeat(&mut self, now: Now) {
        if self.phase != Phase::Sending {
            return;
        }
        let needs = self.orderer.lamport().is_some_and(|l| l.needs_heartbeat());
        let data_soon = self
            .timers
            .get(Timer::NextSend)
            .is_some_and(|t| t <= now.at + self.heartbeat_after / 2)
            || self.outbox.data_due();
        if needs && !data_soon {
            self.outbox.push(Out::Heartbeat);
        } else if needs {
            self.timers
                .set(Timer::Heartbeat, now.at + self.heartbeat_after);
        }
    }

    /// `sequencer`, not peer 0: messages waiting for a position for `give_up` without any
    /// ORDER progress means the sequencer is gone.
    pub(super) fn watch_sequencer(&mut self, now: Now) {
        if self.orderer.held() == 0 || self.is_finished() {
            self.waiting_since = None;
            self.timers.stop(Timer::SequencerStall);
            return;
        }
        let since = *self.waiting_since.get_or_insert(now.at);
        let deadline = since + self.cfg.give_up;
        if now.at >= deadline {
            return self.fail_sequencer(now);
        }
        self.timers.set(Timer::SequencerStall, deadline);
    }

    pub(super) fn fail_sequencer(&mut self, now: Now) {
        if self.cfg.order != Order::Sequencer || self.is_finished() {
            return;
        }
        self.failure = FAILURE_SEQUENCER_LOST;
        self.counters.cost.given_up += self.orderer.held() as u64;
        self.finish(now);
    }

    /// Every stream is complete and nothing is held back: we have all we will ever get.
    pub(super) fn is_complete(&self) -> bool {
        let data = (0..self.cfg.peers).all(|s| self.repair.complete(s));
        if !data {
            return false;
        }
        match &self.orderer {
            Orderer::Sequencer(s) if s.is_sequencer() => s.unsent() == 0 && s.held() == 0,
            Orderer::Sequencer(_) => {
                self.repair.complete(order_stream(self.cfg.peers)) && self.orderer.held() == 0
            }
            o => o.held() == 0,
        }
    }

    pub(super) fn check_done(&mut self, now: Now) {
        if self.phase != Phase::Draining || self.stops_left > 0 {
            return;
        }
        if !self.is_complete() {
            return;
        }
        if !self.repair.config().nack {
            return self.finish(now);
        }
        if !self.announced_complete {
            // Tell the others; they may stop once everyone has said so.
            self.announced_complete = true;
            self.complete_left = self.cfg.stop_repeats.max(1);
            self.peer_complete[usize::from(self.cfg.id)] = true;
            self.outbox.push(Out::Heartbeat);
        }
        if self.complete_left == 0 && self.peer_complete.iter().all(|&c| c) {
            self.finish(now);
        }
    }

    pub(super) fn finish(&mut self, now: Now) {
        self.phase = Phase::Done;
        self.end = Some(now);
        self.timers = TimerTable::default();
    }
}
