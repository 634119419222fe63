//! The preflight as a sans-IO state machine: time and datagrams in, datagrams and deadlines
//! out, a [`CheckReport`] at the end. No sockets, no clock: the driver (`driver.rs`) and the
//! tests (virtual time) call it the same way, quinn-proto's order: `handle_*`, then
//! `poll_transmit` until `None`, then `poll_timeout`.
//!
//! Every `interval` the machine sends a PROBE to each peer by unicast and one to the group,
//! and answers every PROBE it hears with a unicast REPLY. A pair is counted from the moment the
//! peer is first heard (hosts start by hand, seconds apart), multicast one `warmup` later (the
//! first datagrams are often lost while the multicast tree builds); probing ends `duration`
//! after the last peer's count started, or once `wait` passed with peers still unheard. Then
//! it goes on answering for `reply_timeout`, so late replies and peers that started a little
//! later are served, and is done.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::report::{CheckReport, PairReport, Rtt};
use crate::wire::probe::{Body, Repr};
use crate::wire::{self, Transport};

/// The most probes a check sends per transport (a bound on every table below).
pub const MAX_TICKS: usize = 1 << 16;
/// Replies queued at most; past it a flood of probes gets no answer (and is counted).
const MAX_QUEUED: usize = 4096;

#[derive(Debug, Clone)]
pub struct Config {
    /// This host's index in `peers`.
    pub id: u16,
    /// Every host's unicast address, this one included (for names only: sends name ids).
    pub peers: Vec<SocketAddr>,
    pub fanout: bool,
    pub multicast: bool,
    /// Gap between probe rounds.
    pub interval: Duration,
    /// How long every pair is counted.
    pub duration: Duration,
    /// With multicast, pairs are counted this long after a peer is first heard.
    pub warmup: Duration,
    /// Give up on peers not heard by then (from the start).
    pub wait: Duration,
    /// A probe without a reply this long after it was sent is lost.
    pub reply_timeout: Duration,
    /// TTL the driver sends unicast with, and multicast with (carried in every datagram).
    pub unicast_ttl: u8,
    pub multicast_ttl: u8,
    /// A pair whose loss (either way) is above this fails.
    pub max_loss: f64,
    /// [`list_hash`] of `peers`: datagrams of a check with another list are ignored.
    pub list_hash: u32,
}

/// The hash every datagram carries: the same `--peers` list in the same order gives the same.
pub fn list_hash(peers: &[SocketAddr]) -> u32 {
    let text: Vec<String> = peers.iter().map(ToString::to_string).collect();
    let h = blake3::hash(text.join(",").as_bytes());
    u32::from_be_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Peer id, by unicast.
    Peer(u16),
    /// The multicast group.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    /// Bytes written at the start of the caller's buffer.
    pub len: usize,
}

/// One direction-pair of counts for one peer over one transport.
#[derive(Debug, Default)]
struct Lane {
    /// Our probe seq → round-trip time of its reply.
    answered: BTreeMap<u32, Duration>,
    /// TTL our probe arrived with at the peer (it says so in the reply), last seen.
    ttl_at_peer: Option<u8>,
    /// Their probes: seq → arrival.
    heard: BTreeMap<u32, Instant>,
    /// Hop distance of their last probe (sent TTL − received TTL).
    hops_in: Option<u8>,
}

#[derive(Debug, Default)]
struct Remote {
    first_heard: Option<Instant>,
    /// Indexed by `Transport::as_u8`.
    lanes: [Lane; 2],
}

pub struct Machine {
    cfg: Config,
    epoch: Instant,
    /// Send time of probe round k (seq k, both transports).
    ticks: Vec<Instant>,
    next_tick: Instant,
    /// Probing stops here; `None` until every peer is heard or `wait` has passed.
    end: Option<Instant>,
    remotes: Vec<Remote>,
    queue: std::collections::VecDeque<(Dest, Repr)>,
    /// Datagrams ignored: not ours, another peer list, stale or unsolicited replies, floods.
    ignored: u64,
    refused: [u64; wire::Error::COUNT],
}

fn lane_index(t: Transport) -> usize {
    usize::from(t.as_u8())
}

impl Machine {
    pub fn new(cfg: Config, now: Instant) -> Machine {
        let remotes = (0..cfg.peers.len()).map(|_| Remote::default()).collect();
        Machine {
            cfg,
            epoch: now,
            ticks: Vec::new(),
            next_tick: now,
            end: None,
            remotes,
            queue: Default::default(),
            ignored: 0,
            refused: [0; wire::Error::COUNT],
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn others(&self) -> impl Iterator<Item = usize> + '_ {
        let me = usize::from(self.cfg.id);
        (0..self.remotes.len()).filter(move |&i| i != me)
    }

    fn longest_warmup(&self) -> Duration {
        if self.cfg.multicast {
            self.cfg.warmup
        } else {
            Duration::ZERO
        }
    }

    fn ns_since_epoch(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Probing is over (replies are still collected and probes answered).
    pub fn probing_ended(&self, now: Instant) -> bool {
        self.end.is_some_and(|e| now >= e)
    }

    /// Nothing more to do: the driver stops and takes the report.
    pub fn is_done(&self, now: Instant) -> bool {
        self.end
            .is_some_and(|e| now >= e + self.cfg.reply_timeout && self.queue.is_empty())
    }

    fn fix_end(&mut self, now: Instant) {
        if self.end.is_some() {
            return;
        }
        let heard: Vec<Option<Instant>> =
            self.others().map(|i| self.remotes[i].first_heard).collect();
        let all = heard.iter().all(Option::is_some);
        if all || now >= self.epoch + self.cfg.wait {
            let latest = heard.iter().flatten().max().copied().unwrap_or(self.epoch);
            let end = latest + self.longest_warmup() + self.cfg.duration;
            self.end = Some(end.max(now));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.fix_end(now);
        if now >= self.next_tick && !self.probing_ended(now) && self.ticks.len() < MAX_TICKS {
            self.probe_round(now);
            self.next_tick += self.cfg.interval;
            if self.next_tick <= now {
                // Woken late (a busy host): no burst to catch up.
                self.next_tick = now + self.cfg.interval;
            }
        }
    }

    fn probe_round(&mut self, now: Instant) {
        let seq = self.ticks.len() as u32;
        self.ticks.push(now);
        let sent_ns = self.ns_since_epoch(now);
        let probe = |transport, ttl| Repr {
            list_hash: self.cfg.list_hash,
            sender: self.cfg.id,
            transport,
            ttl,
            body: Body::Probe { seq, sent_ns },
        };
        if self.cfg.fanout {
            let p = probe(Transport::Fanout, self.cfg.unicast_ttl);
            let others: Vec<usize> = self.others().collect();
            for i in others {
                self.queue.push_back((Dest::Peer(i as u16), p));
            }
        }
        if self.cfg.multicast {
            let p = probe(Transport::Multicast, self.cfg.multicast_ttl);
            self.queue.push_back((Dest::Group, p));
        }
    }

    /// A datagram arrived on the socket of transport `via`, with TTL (IPv6: hop limit) `ttl`
    /// if the kernel said.
    pub fn handle_datagram(&mut self, now: Instant, via: Transport, ttl: Option<u8>, bytes: &[u8]) {
        let repr = match Repr::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.refused[e as usize] += 1;
                return;
            }
        };
        let sender = usize::from(repr.sender);
        if repr.list_hash != self.cfg.list_hash
            || sender >= self.remotes.len()
            || repr.transport != via
        {
            self.ignored += 1;
            return;
        }
        if repr.sender == self.cfg.id {
            return; // our own multicast, looped back
        }
        match repr.body {
            Body::Probe { seq, sent_ns } => {
                self.remotes[sender].first_heard.get_or_insert(now);
                let lane = &mut self.remotes[sender].lanes[lane_index(via)];
                if lane.heard.len() < MAX_TICKS {
                    lane.heard.entry(seq).or_insert(now);
                }
                if let Some(got) = ttl {
                    lane.hops_in = repr.ttl.checked_sub(got);
                }
                if self.queue.len() >= MAX_QUEUED {
                    self.ignored += 1;
                    return;
                }
                let reply = Repr {
                    list_hash: self.cfg.list_hash,
                    sender: self.cfg.id,
                    transport: Transport::Fanout,
                    ttl: self.cfg.unicast_ttl,
                    body: Body::Reply {
                        to: repr.sender,
                        seq,
                        sent_ns,
                        transport: via,
                        ttl: ttl.unwrap_or(0),
                    },
                };
                self.queue.push_back((Dest::Peer(repr.sender), reply));
            }
            Body::Reply {
                to,
                seq,
                sent_ns,
                transport,
                ttl: ttl_at_peer,
            } => {
                let sent = self.ticks.get(seq as usize).copied();
                // Ours, and the very probe we sent (not a stale one of an earlier check).
                let Some(sent) =
                    sent.filter(|&s| to == self.cfg.id && self.ns_since_epoch(s) == sent_ns)
                else {
                    self.ignored += 1;
                    return;
                };
                self.remotes[sender].first_heard.get_or_insert(now);
                let lane = &mut self.remotes[sender].lanes[lane_index(transport)];
                lane.answered
                    .entry(seq)
                    .or_insert(now.saturating_duration_since(sent));
                if ttl_at_peer != 0 {
                    lane.ttl_at_peer = Some(ttl_at_peer);
                }
            }
        }
    }

    /// The next datagram to send, written into `buf` (at least 64 bytes).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let (dest, repr) = self.queue.pop_front()?;
        let len = repr.emit(buf);
        Some(Transmit { dest, len })
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.end {
            None => Some(self.next_tick.min(self.epoch + self.cfg.wait)),
            Some(end) if self.next_tick < end => Some(self.next_tick),
            Some(end) => Some(end + self.cfg.reply_timeout),
        }
    }

    /// What was measured, and the verdict (complete once [`Self::is_done`]).
    pub fn report(&self) -> CheckReport {
        let end = self.end.unwrap_or(self.epoch + self.cfg.wait);
        let mut transports = Vec::new();
        if self.cfg.fanout {
            transports.push(Transport::Fanout);
        }
        if self.cfg.multicast {
            transports.push(Transport::Multicast);
        }
        let mut pairs = Vec::new();
        for i in self.others() {
            for &t in &transports {
                pairs.push(self.pair(i, t, end));
            }
        }
        let failures: Vec<String> = pairs.iter().filter_map(PairReport::failure_line).collect();
        let hints = super::report::hints(&pairs, self.cfg.multicast_ttl);
        CheckReport {
            pass: failures.is_empty(),
            id: self.cfg.id,
            addr: self.cfg.peers[usize::from(self.cfg.id)].to_string(),
            transports,
            duration_ms: self.cfg.duration.as_secs_f64() * 1e3,
            warmup_ms: self.longest_warmup().as_secs_f64() * 1e3,
            probes: self.ticks.len() as u32,
            pairs,
            failures,
            hints,
            multicast_ttl: self.cfg.multicast_ttl,
            ignored: self.ignored + self.refused.iter().sum::<u64>(),
        }
    }

    fn pair(&self, i: usize, t: Transport, end: Instant) -> PairReport {
        let remote = &self.remotes[i];
        let lane = &remote.lanes[lane_index(t)];
        let mut p = PairReport {
            peer: i as u16,
            addr: self.cfg.peers[i].to_string(),
            transport: t,
            pass: false,
            problem: None,
            sent: 0,
            answered: 0,
            loss_out: None,
            heard: 0,
            expected: 0,
            loss_in: None,
            rtt_ms: None,
            hops_out: None,
            hops_in: lane.hops_in,
        };
        let sent_ttl = match t {
            Transport::Fanout => self.cfg.unicast_ttl,
            Transport::Multicast => self.cfg.multicast_ttl,
        };
        p.hops_out = lane.ttl_at_peer.and_then(|got| sent_ttl.checked_sub(got));
        let Some(first) = remote.first_heard else {
            // With multicast alone, broken multicast looks the same as an absent peer.
            let alone = if self.cfg.fanout {
                ""
            } else {
                " (or multicast does not work at all: --transport both tells the two apart)"
            };
            p.problem = Some(format!(
                "never heard from (no probe, no reply, {} waited): is `mpcomm check` running there with the same --peers, and is its UDP port open?{alone}",
                crate::util::duration::human(self.cfg.wait)
            ));
            return p;
        };
        // Fan-out too waits out the warm-up: every pair is counted the same `duration`.
        let start = first + self.longest_warmup();
        // Outbound: our probes in the window, and which of them the peer answered.
        let mut rtts = Vec::new();
        for (seq, &at) in self.ticks.iter().enumerate() {
            if at >= start && at < end {
                p.sent += 1;
                if let Some(&rtt) = lane.answered.get(&(seq as u32)) {
                    rtts.push(rtt);
                }
            }
        }
        p.answered = rtts.len() as u32;
        if p.sent > 0 {
            p.loss_out = Some(1.0 - f64::from(p.answered) / f64::from(p.sent));
        }
        if !rtts.is_empty() {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let sum: Duration = rtts.iter().sum();
            p.rtt_ms = Some(Rtt {
                min: ms(*rtts.iter().min().expect("not empty")),
                avg: ms(sum / rtts.len() as u32),
                max: ms(*rtts.iter().max().expect("not empty")),
            });
        }
        // Inbound: their probes from the window on; expected from the seqs they carry.
        let counted: Vec<u32> = lane
            .heard
            .iter()
            .filter(|(_, &at)| at >= start)
            .map(|(&seq, _)| seq)
            .collect();
        p.heard = counted.len() as u32;
        if let (Some(lo), Some(hi)) = (counted.first(), counted.last()) {
            p.expected = hi - lo + 1;
            p.loss_in = Some(1.0 - f64::from(p.heard) / f64::from(p.expected));
        } else if p.sent > 0 {
            p.loss_in = Some(1.0);
        }
        p.problem = if p.sent == 0 {
            Some("heard too late to be counted (it started after this host stopped probing)".into())
        } else if p.heard == 0 && p.answered == 0 {
            Some(format!(
                "nothing got through either way ({} probes sent)",
                p.sent
            ))
        } else if p.heard == 0 {
            Some("its probes never arrived here (it heard ours)".into())
        } else if p.answered == 0 {
            Some(format!(
                "it answered none of our {} probes (we heard its)",
                p.sent
            ))
        } else {
            let out = p.loss_out.unwrap_or(0.0);
            let inn = p.loss_in.unwrap_or(0.0);
            (out > self.cfg.max_loss || inn > self.cfg.max_loss).then(|| {
                format!(
                    "loss {:.0}% out, {:.0}% in: above --max-loss {:.0}%",
                    out * 100.0,
                    inn * 100.0,
                    self.cfg.max_loss * 100.0
                )
            })
        };
        p.pass = p.problem.is_none();
        p
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
