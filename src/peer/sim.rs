//! A deterministic network for peer state machines: virtual time, seeded per-link delay, jitter
//! and loss (quinn-proto's `Pair`, for N peers). Used by the unit tests; reproducible by seed,
//! no sleeps, bounded steps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::machine::{Arrival, Config, DelayModel, Dest, Machine};
use crate::util::clock::Now;
use crate::wire::packet::MAX_DATAGRAM;

/// How the simulated network treats a datagram.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub latency: Duration,
    /// Extra delay uniform in `0..=jitter`: large jitter reorders.
    pub jitter: Duration,
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// Probability a datagram arrives twice (the copy with its own jitter).
    pub dup: f64,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            latency: Duration::from_micros(100),
            jitter: Duration::ZERO,
            loss: 0.0,
            dup: 0.0,
        }
    }
}

/// Decides, per datagram (from, to, bytes), whether the network drops it.
pub type DropRule = Box<dyn FnMut(usize, usize, &[u8]) -> bool>;

/// A datagram in flight: (due, order, to, bytes).
type InFlight = (Instant, u64, usize, Vec<u8>);

pub struct Sim {
    pub machines: Vec<Machine>,
    /// Peers that are "down": they neither send nor receive.
    pub down: Vec<bool>,
    /// Finished peers whose last datagrams went out: their process has exited.
    exited: Vec<bool>,
    pub now: Now,
    pub link: Link,
    /// Called for each datagram in flight: (from, to) → drop it?
    pub drop_if: Option<DropRule>,
    rng: ChaCha8Rng,
    inbound: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    buf: Vec<u8>,
    pub sent: u64,
}

impl Sim {
    /// `n` peers with `cfg(id)` each, on a network described by `link`, seeded.
    pub fn new(n: u16, link: Link, seed: u64, cfg: impl Fn(u16) -> Config) -> Sim {
        Sim::with_delay(n, link, seed, cfg, |_| None)
    }

    /// Like [`Sim::new`], each peer with its own emulated-WAN delay model.
    pub fn with_delay(
        n: u16,
        link: Link,
        seed: u64,
        cfg: impl Fn(u16) -> Config,
        delay: impl Fn(u16) -> Option<Box<dyn DelayModel>>,
    ) -> Sim {
        let now = Now {
            at: Instant::now(),
            unix_ns: 1_700_000_000_000_000_000,
        };
        let machines = (0..n)
            .map(|i| Machine::new(cfg(i), now, delay(i)))
            .collect();
        Sim {
            machines,
            down: vec![false; usize::from(n)],
            exited: vec![false; usize::from(n)],
            now,
            link,
            drop_if: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            inbound: BinaryHeap::new(),
            order: 0,
            buf: vec![0; MAX_DATAGRAM],
            sent: 0,
        }
    }

    /// Queue a raw datagram for peer `to` at the current time (garbage injection).
    pub fn inject(&mut self, to: usize, bytes: Vec<u8>) {
        self.order += 1;
        self.inbound
            .push(Reverse((self.now.at, self.order, to, bytes)));
    }

    fn flush_transmits(&mut self) {
        let n = self.machines.len();
        for from in 0..n {
            if self.down[from] || self.exited[from] {
                continue;
            }
            // As the driver does: a finished peer flushes what it has, then exits.
            self.exited[from] = self.machines[from].is_finished();
            while let Some(t) = self.machines[from].poll_transmit(self.now, &mut self.buf) {
                let targets: Vec<usize> = match t.dest {
                    Dest::All => (0..n).collect(),
                    Dest::Peer(p) => vec![usize::from(p)],
                };
                for to in targets {
                    self.sent += 1;
                    let bytes = self.buf[..t.len].to_vec();
                    if self.rng.gen_bool(self.link.loss) {
                        continue;
                    }
                    if let Some(f) = self.drop_if.as_mut() {
                        if f(from, to, &bytes) {
                            continue;
                        }
                    }
                    let copies = if self.rng.gen_bool(self.link.dup) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let jitter = if self.link.jitter.is_zero() {
                            Duration::ZERO
                        } else {
                            self.rng.gen_range(Duration::ZERO..=self.link.jitter)
                        };
                        self.order += 1;
                        let due = self.now.at + self.link.latency + jitter;
                        self.inbound
                            .push(Reverse((due, self.order, to, bytes.clone())));
                    }
                }
            }
        }
    }

    /// One step: send what is due, jump to the next event, deliver and fire timers.
    /// Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.flush_transmits();
        let next_timer = self
            .machines
            .iter()
            .zip(&self.down)
            .filter(|(_, &down)| !down)
            .filter_map(|(m, _)| m.poll_timeout())
            .min();
        let next_packet = self.inbound.peek().map(|Reverse((at, ..))| *at);
        let Some(next) = [next_timer, next_packet].into_iter().flatten().min() else {
            return false;
        };
        if next > self.now.at {
            self.now = self.now.plus(next - self.now.at);
        }
        while let Some(Reverse((at, ..))) = self.inbound.peek() {
            if *at > self.now.at {
                break;
            }
            let Reverse((_, _, to, bytes)) = self.inbound.pop().expect("peeked");
            if !self.down[to] && !self.exited[to] {
                let arrival = Arrival {
                    recv_ns: self.now.unix_ns,
                    kernel_stamp: false,
                    ttl: 0,
                };
                self.machines[to].handle_datagram(self.now, &bytes, arrival);
            }
        }
        for (m, &down) in self.machines.iter_mut().zip(&self.down) {
            if !down {
                m.handle_timeout(self.now);
            }
        }
        true
    }

    /// Step until every live machine is finished, at most `max_steps` steps.
    pub fn run(&mut self, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            let all_done = self
                .machines
                .iter()
                .zip(&self.down)
                .all(|(m, &d)| d || m.is_finished());
            if all_done || !self.step() {
                return self
                    .machines
                    .iter()
                    .zip(&self.down)
                    .all(|(m, &d)| d || m.is_finished());
            }
        }
        false
    }
}
