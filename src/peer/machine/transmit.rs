//! The machine's outputs: the outbox written out as datagrams, and what each one costs.

use super::*;

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

impl Machine {
    /// The next datagram to send, written into `buf` (at least `packet::MAX_DATAGRAM` long, or
    /// `config().size`); `None` when there is nothing to send now.
    pub fn poll_transmit(&mut self, now: Now, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let out = self.outbox.pop()?;
            if let Some(mut t) = self.emit(now, out, buf) {
                if let Some(key) = &self.cfg.run_key {
                    t.len = key.sign(buf, t.len);
                }
                self.account(out, t);
                return Some(t);
            }
        }
    }

    /// Count what a datagram costs (every copy a fan-out send makes).
    fn account(&mut self, out: Out, t: Transmit) {
        let copies = match (t.dest, self.cfg.transport) {
            (Dest::All, Transport::Fanout) => u64::from(self.cfg.peers),
            _ => 1,
        };
        let counters = &mut self.counters;
        let cost = &mut counters.cost;
        match out {
            Out::Data => {
                counters.data_datagrams += copies;
                counters.data_bytes += copies * t.len as u64;
            }
            Out::Retransmit { .. } => {
                cost.retransmissions += copies;
                counters.data_datagrams += copies;
                counters.data_bytes += copies * t.len as u64;
            }
            _ => {
                cost.control_datagrams += copies;
                cost.control_bytes += copies * t.len as u64;
            }
        }
    }

    fn repr(&self, body: Body) -> Repr {
        Repr {
            run_id: self.run_id.unwrap_or(0),
            sender: self.cfg.id,
            body,
        }
    }

    /// Write one outbox entry; `None` if it no longer applies.
    fn emit(&mut self, now: Now, out: Out, buf: &mut [u8]) -> Option<Transmit> {
        let all = |len| {
            Some(Transmit {
                dest: Dest::All,
                len,
            })
        };
        match out {
            Out::Hello(dest) => {
                if self.is_finished() {
                    return None;
                }
                if let Dest::Peer(p) = dest {
                    if self.agreed_with(usize::from(p)) {
                        return None;
                    }
                } else {
                    self.timers
                        .set(Timer::HelloRetry, now.at + self.hello_backoff);
                    self.hello_backoff = (self.hello_backoff * 3 / 2).min(self.cfg.hello_retry_max);
                }
                Some(self.emit_hello(dest, buf))
            }
            Out::Refuse(to) => Some(self.emit_hello(Dest::Peer(to), buf)),
            Out::HelloAck(to) => {
                let r = Repr {
                    run_id: self.cfg.run_id.unwrap_or(0),
                    sender: self.cfg.id,
                    body: Body::HelloAck {
                        to,
                        nonce: self.hello_nonce[usize::from(to)],
                        from_nonce: self.cfg.nonce,
                        run_nonce: self.peer0_nonce(),
                    },
                };
                Some(Transmit {
                    dest: Dest::Peer(to),
                    len: r.emit(buf),
                })
            }
            Out::Data => {
                if self.phase != Phase::Sending || self.run_id.is_none() {
                    return None;
                }
                let len = self.emit_data(now, buf);
                if self.next_seq < self.cfg.msgs {
                    self.schedule_send(now);
                } else {
                    self.start_draining(now);
                }
                all(len)
            }
            Out::Stop => {
                self.stops_left = self.stops_left.saturating_sub(1);
                if self.stops_left > 0 {
                    self.timers
                        .set(Timer::StopRetry, now.at + self.cfg.stop_gap);
                }
                let a = self.announcement();
                all(self.repr(Body::Stop(a)).emit(buf))
            }
            Out::Heartbeat => {
                self.run_id?;
                if self.announced_complete && self.complete_left > 0 {
                    self.complete_left -= 1;
                    if self.complete_left > 0 {
                        self.timers
                            .set(Timer::CompleteRetry, now.at + self.cfg.stop_gap);
                    }
                }
                let a = self.announcement();
                all(self.repr(Body::Heartbeat(a)).emit(buf))
            }
            Out::Nack(stream) => {
                let mut ranges = [(0, 0); MAX_NACK_RANGES];
                let n = self.repair.missing(stream, &mut ranges);
                if n == 0 || self.run_id.is_none() {
                    return None;
                }
                let (to, kind) = if stream == order_stream(self.cfg.peers) {
                    (0, Stream::Order)
                } else {
                    (stream, Stream::Data)
                };
                let body = Body::Nack {
                    to,
                    stream: kind,
                    ranges: n as u8,
                };
                let len = self.repr(body).emit(buf);
                for (i, &r) in ranges[..n].iter().enumerate() {
                    packet::put_nack_range(buf, i, r);
                }
                self.counters.cost.nacks_sent += 1;
                // To the sender only; on multicast the group hears it (and holds its own).
                Some(Transmit {
                    dest: Dest::Peer(to),
                    len,
                })
            }
            Out::Retransmit { dest, seq, end } => {
                if seq + 1 < end {
                    self.outbox.push_front(Out::Retransmit {
                        dest,
                        seq: seq + 1,
                        end,
                    });
                }
                let (send_ns, lamport, vector) = self.kept.get(seq);
                let v = vector.len();
                let body = Body::Data {
                    seq,
                    send_ns,
                    retransmit: true,
                    lamport,
                    vector: v as u16,
                    pad: (self
                        .cfg
                        .size
                        .saturating_sub(packet::data_len(v) + self.tag_len()))
                        as u16,
                };
                let len = self.repr(body).emit(buf);
                packet::put_data_vector(buf, vector);
                Some(Transmit { dest, len })
            }
            Out::Order => {
                let seq = self.orderer.sequencer()?;
                let (first, count) = seq.take_batch()?;
                if seq.unsent() > 0 {
                    self.outbox.push_front(Out::Order);
                }
                Some(Transmit {
                    dest: Dest::All,
                    len: self.emit_order(first, count, buf),
                })
            }
            Out::OrderResend { dest, first, end } => {
                let count = ((end - first) as usize).min(packet::MAX_ORDER_ENTRIES);
                if first + (count as u32) < end {
                    self.outbox.push_front(Out::OrderResend {
                        dest,
                        first: first + count as u32,
                        end,
                    });
                }
                Some(Transmit {
                    dest,
                    len: self.emit_order(first, count, buf),
                })
            }
        }
    }

    fn emit_order(&mut self, first: u32, count: usize, buf: &mut [u8]) -> usize {
        let body = Body::Order {
            first,
            entries: count as u16,
        };
        let len = self.repr(body).emit(buf);
        let seq = self
            .orderer
            .sequencer()
            .expect("ORDER only in sequencer mode");
        for i in 0..count {
            packet::put_order_entry(buf, i, seq.entry(first + i as u32));
        }
        len
    }

    fn emit_data(&mut self, now: Now, buf: &mut [u8]) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.counters.data_sent += 1;
        let me = self.cfg.id;
        let tag = self.tag_len();
        let lamport = self.orderer.lamport().map_or(0, |l| l.stamp());
        let vector: &[u32] = match self.orderer.causal() {
            Some(c) => c.stamp(me, seq),
            None => &[],
        };
        let v = vector.len();
        let body = Body::Data {
            seq,
            send_ns: now.unix_ns,
            retransmit: false,
            lamport,
            vector: v as u16,
            pad: (self.cfg.size.saturating_sub(packet::data_len(v) + tag)) as u16,
        };
        let len = Repr {
            run_id: self.run_id.unwrap_or(0),
            sender: me,
            body,
        }
        .emit(buf);
        packet::put_data_vector(buf, vector);
        self.kept.keep(seq, now.unix_ns, lamport, vector);
        len
    }

    /// What STOP and HEARTBEAT say about us now.
    fn announcement(&mut self) -> Announce {
        let complete = self.is_complete();
        Announce {
            sent: self.next_seq,
            lamport: self.orderer.lamport().map_or(0, |l| l.announce_clock()),
            ordered: self.orderer.sequencer().map_or(0, |s| {
                if s.is_sequencer() {
                    s.ordered()
                } else {
                    0
                }
            }),
            complete,
        }
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
}
