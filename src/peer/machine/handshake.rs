//! The handshake: HELLOs, their acknowledgements, the barrier and the mode check.

use super::*;

impl Machine {
    pub(super) fn on_hello(
        &mut self,
        now: Now,
        repr: Repr,
        (nonce, peers, msgs): (u64, u16, u32),
        (order, repair): (u8, u8),
    ) {
        if repr.run_id != self.cfg.run_id.unwrap_or(0)
            || peers != self.cfg.peers
            || msgs != self.cfg.msgs
        {
            if repr.sender < self.cfg.peers && self.phase == Phase::Handshake {
                self.other_run = Some(OtherRun {
                    peer: repr.sender,
                    peers,
                    msgs,
                    run_id: repr.run_id,
                });
            }
            self.counters.foreign += 1;
            return;
        }
        if (order, repair) != (self.cfg.order.as_u8(), self.cfg.repair.as_u8()) {
            // Same run, other guarantee: mixing them would prove nothing. Refuse at once (the
            // other side refuses us too, on our HELLO) and name both modes.
            if self.phase == Phase::Handshake {
                self.refused = Some(Refusal {
                    peer: repr.sender,
                    order,
                    repair,
                });
                self.fail(now);
                self.outbox.push(Out::Refuse(repr.sender));
                self.outbox.push(Out::Refuse(repr.sender));
            } else {
                self.counters.foreign += 1;
            }
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
                self.outbox.push(Out::Hello(Dest::All));
            }
            if from == 0 && self.cfg.id != 0 {
                // Our view of the run id changed: tell everyone we have acknowledged, and
                // collect fresh acknowledgements of ours.
                for p in 0..self.cfg.peers {
                    if self.hello_nonce[usize::from(p)] != 0 {
                        self.outbox.push(Out::HelloAck(p));
                    }
                }
                if restarted {
                    self.outbox.push(Out::Hello(Dest::All));
                }
            }
            // A new incarnation: it may not have our HELLO yet.
            self.outbox.push(Out::Hello(Dest::Peer(repr.sender)));
        }
        self.outbox.push(Out::HelloAck(repr.sender));
        self.heard_from_run(now, true);
        // The last piece of the barrier may be a HELLO as well as an ACK.
        self.try_pass_barrier(now);
    }

    pub(super) fn on_hello_ack(
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
        }
        self.try_pass_barrier(now);
    }

    /// Peer 0's nonce as we know it (0 = not heard yet); without `--run-id` it is the run id.
    pub(super) fn peer0_nonce(&self) -> u64 {
        if self.cfg.id == 0 {
            self.cfg.nonce
        } else {
            self.hello_nonce[0]
        }
    }

    /// Every peer acknowledged our HELLO, and (without `--run-id`) every acknowledgement names
    /// the peer-0 nonce we know: then all of us will use the same run id.
    pub(super) fn all_agreed(&self) -> bool {
        (0..self.acked_by.len()).all(|p| self.agreed_with(p))
    }

    /// Peer `p` acknowledged our HELLO, in its present incarnation, naming the run we know.
    pub(super) fn agreed_with(&self, p: usize) -> bool {
        let run = self.peer0_nonce();
        self.acked_by[p]
            && self.acked_from_nonce[p] == self.hello_nonce[p]
            && (self.cfg.run_id.is_some() || (run != 0 && self.acked_run_nonce[p] == run))
    }

    /// The HELLO retry timer fired with agreement still missing. Multicast: one HELLO to the
    /// group. Fan-out: a HELLO only to each peer we lack agreement with — a peer that
    /// acknowledged us has our HELLO. Sending to all was N datagrams per peer per retry; with
    /// 256 peers started one after the other that made a storm of a million datagrams (each
    /// answered), which took the two cores the lab needed to start the last peers.
    pub(super) fn retry_hello(&mut self, now: Now) {
        if self.cfg.transport == Transport::Multicast {
            self.outbox.push(Out::Hello(Dest::All));
            return;
        }
        for p in 0..self.cfg.peers {
            if !self.agreed_with(usize::from(p)) {
                self.outbox.push(Out::Hello(Dest::Peer(p)));
            }
        }
        self.timers
            .set(Timer::HelloRetry, now.at + self.hello_backoff);
        self.hello_backoff = (self.hello_backoff * 3 / 2).min(self.cfg.hello_retry_max);
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
        for (bytes, arrival) in std::mem::take(&mut self.early) {
            match Repr::decode(&bytes) {
                Ok(repr) if Some(repr.run_id) == self.run_id => {
                    self.on_run_message(now, &bytes, repr, arrival)
                }
                _ => self.counters.foreign += 1,
            }
        }
    }

    /// The handshake failed (timed out, or a peer was refused): nothing more is sent.
    pub(super) fn fail(&mut self, now: Now) {
        self.phase = Phase::Failed;
        self.end = Some(now);
        self.timers = TimerTable::default();
        self.outbox.clear();
    }
}
