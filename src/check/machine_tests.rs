//! The preflight machine in virtual time: N machines, a fixed one-way latency, a rule that drops
//! datagrams, and TTLs lowered by a per-link hop count, all without a socket.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;

const LATENCY: Duration = Duration::from_millis(2);

fn config(id: u16, n: usize, fanout: bool, multicast: bool) -> Config {
    let peers: Vec<SocketAddr> = (0..n)
        .map(|i| format!("10.9.0.{}:4570", i + 1).parse().unwrap())
        .collect();
    Config {
        id,
        list_hash: list_hash(&peers),
        peers,
        fanout,
        multicast,
        interval: Duration::from_millis(100),
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        wait: Duration::from_secs(10),
        reply_timeout: Duration::from_millis(500),
        unicast_ttl: 64,
        multicast_ttl: 8,
        max_loss: 0.2,
    }
}

/// (from, to, transport of the datagram, virtual time since start) → drop it?
type Drop = Box<dyn Fn(usize, usize, Transport, Duration) -> bool>;

/// (arrival, tie-break, to, transport code, TTL on arrival, bytes).
type InFlight = (Instant, u64, usize, u8, u8, Vec<u8>);

struct Sim {
    start: Instant,
    /// `None`: that host never runs (absent).
    starts: Vec<Option<Duration>>,
    machines: Vec<Option<Machine>>,
    done: Vec<bool>,
    cfgs: Vec<Config>,
    inbound: BinaryHeap<Reverse<InFlight>>,
    drop: Drop,
    hops: u8,
    count: u64,
}

impl Sim {
    fn new(cfgs: Vec<Config>, starts: Vec<Option<Duration>>, drop: Drop) -> Sim {
        Sim {
            start: Instant::now(),
            machines: cfgs.iter().map(|_| None).collect(),
            done: vec![false; cfgs.len()],
            starts,
            cfgs,
            inbound: BinaryHeap::new(),
            drop,
            hops: 3,
            count: 0,
        }
    }

    fn deliver(&mut self, from: usize, t: Transmit, buf: &[u8], now: Instant) {
        let repr = Repr::decode(&buf[..t.len]).expect("the machine emits valid datagrams");
        let targets: Vec<usize> = match t.dest {
            Dest::Peer(p) => vec![usize::from(p)],
            Dest::Group => (0..self.cfgs.len()).collect(), // loopback: the sender hears itself
        };
        for to in targets {
            if (self.drop)(from, to, repr.transport, now - self.start) {
                continue;
            }
            let hops = if to == from { 0 } else { self.hops };
            if hops > 0 && repr.ttl <= hops {
                continue; // a router drops it when its TTL runs out
            }
            let ttl = repr.ttl - hops;
            self.count += 1;
            self.inbound.push(Reverse((
                now + LATENCY,
                self.count,
                to,
                repr.transport.as_u8(),
                ttl,
                buf[..t.len].to_vec(),
            )));
        }
    }

    fn flush(&mut self, i: usize, now: Instant) {
        let mut buf = [0u8; 64];
        while let Some(t) = self.machines[i]
            .as_mut()
            .and_then(|m| m.poll_transmit(&mut buf))
        {
            self.deliver(i, t, &buf, now);
        }
    }

    /// Run until every started machine is done; returns the reports (`None`: absent).
    fn run(mut self) -> Vec<Option<CheckReport>> {
        for _ in 0..1_000_000 {
            let mut next: Option<Instant> = self.inbound.peek().map(|Reverse(e)| e.0);
            for i in 0..self.cfgs.len() {
                let at = match (&self.machines[i], self.starts[i]) {
                    (Some(_), _) if self.done[i] => None,
                    (Some(m), _) => m.poll_timeout(),
                    (None, Some(s)) => Some(self.start + s),
                    _ => None,
                };
                next = match (next, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let Some(now) = next else { break };
            for i in 0..self.cfgs.len() {
                if self.machines[i].is_none()
                    && self.starts[i].is_some_and(|s| self.start + s <= now)
                {
                    self.machines[i] = Some(Machine::new(self.cfgs[i].clone(), now));
                }
            }
            while self.inbound.peek().is_some_and(|Reverse(e)| e.0 <= now) {
                let Reverse((_, _, to, via, ttl, bytes)) = self.inbound.pop().unwrap();
                let via = Transport::from_u8(via).unwrap();
                if let Some(m) = self.machines[to].as_mut() {
                    if !self.done[to] {
                        m.handle_datagram(now, via, Some(ttl), &bytes);
                        self.flush(to, now);
                    }
                }
            }
            for i in 0..self.cfgs.len() {
                if let Some(m) = self.machines[i].as_mut() {
                    if !self.done[i] {
                        m.handle_timeout(now);
                        self.flush(i, now);
                        self.done[i] = self.machines[i].as_ref().unwrap().is_done(now);
                    }
                }
            }
            let all_done = (0..self.cfgs.len()).all(|i| self.done[i] || self.starts[i].is_none());
            if all_done && self.inbound.is_empty() {
                break;
            }
        }
        self.machines
            .iter()
            .map(|m| m.as_ref().map(Machine::report))
            .collect()
    }
}

fn no_drop() -> Drop {
    Box::new(|_, _, _, _| false)
}

fn all_at_once(n: usize) -> Vec<Option<Duration>> {
    vec![Some(Duration::ZERO); n]
}

#[test]
fn every_pair_passes_when_nothing_is_lost() {
    let n = 3;
    let cfgs = (0..n).map(|i| config(i as u16, n, true, true)).collect();
    let reports = Sim::new(cfgs, all_at_once(n), no_drop()).run();
    for r in reports.iter().flatten() {
        assert!(r.pass, "{:?}", r.failures);
        assert_eq!(r.pairs.len(), 2 * (n - 1));
        for p in &r.pairs {
            assert_eq!((p.loss_out, p.loss_in), (Some(0.0), Some(0.0)), "{p:?}");
            let rtt = p.rtt_ms.unwrap();
            assert!(
                (rtt.min - 4.0).abs() < 1e-6 && (rtt.max - 4.0).abs() < 1e-6,
                "{rtt:?}"
            );
            assert_eq!((p.hops_out, p.hops_in), (Some(3), Some(3)));
            // 3 s at 100 ms after the warm-up: 30 rounds counted, a round more or less.
            assert!((29..=31).contains(&p.sent), "{p:?}");
            assert!(p.expected >= 29 && p.heard == p.expected, "{p:?}");
        }
    }
}

#[test]
fn a_host_that_drops_incoming_multicast_fails_only_its_multicast_pairs() {
    let n = 3;
    let cfgs = (0..n).map(|i| config(i as u16, n, true, true)).collect();
    let drop: Drop = Box::new(|from, to, t, _| to == 2 && from != 2 && t == Transport::Multicast);
    let reports = Sim::new(cfgs, all_at_once(n), drop).run();
    let victim = reports[2].as_ref().unwrap();
    assert!(!victim.pass);
    assert_eq!(victim.failures.len(), 2, "{:?}", victim.failures);
    assert_eq!(victim.hints.len(), 1, "{:?}", victim.hints);
    assert!(victim.hints[0].contains("incoming multicast is dropped here"));
    for (peer, line) in [(0, &victim.failures[0]), (1, &victim.failures[1])] {
        assert!(line.starts_with(&format!("FAIL peer {peer} ")), "{line}");
        assert!(
            line.contains("multicast: its probes never arrived here"),
            "{line}"
        );
    }
    for r in [&reports[0], &reports[1]].into_iter().flatten() {
        assert!(!r.pass);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert!(
            r.failures[0].starts_with("FAIL peer 2 (10.9.0.3:4570) multicast: it answered none")
        );
        let fanout: Vec<_> = r
            .pairs
            .iter()
            .filter(|p| p.transport == Transport::Fanout)
            .collect();
        assert!(fanout.iter().all(|p| p.pass));
        assert!(
            r.hints.is_empty(),
            "one peer of two: nothing to say about this host: {:?}",
            r.hints
        );
    }
}

#[test]
fn a_multicast_ttl_too_small_for_the_routers_in_between_is_named() {
    let n = 2;
    let cfgs = (0..n)
        .map(|i| Config {
            multicast_ttl: 1,
            ..config(i as u16, n, true, true)
        })
        .collect();
    let reports = Sim::new(cfgs, all_at_once(n), no_drop()).run();
    for r in reports.iter().flatten() {
        assert!(!r.pass);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert!(r.failures[0].contains("multicast: nothing got through either way"));
        assert!(
            r.hints[0].contains(
                "3 router hop(s) away by unicast, but multicast leaves with TTL 1: try --ttl 4"
            ),
            "{:?}",
            r.hints
        );
        assert!(r.hints[1].contains("multicast does not get through at all"));
    }
}

#[test]
fn an_absent_peer_is_named_after_the_wait() {
    let n = 3;
    let cfgs: Vec<Config> = (0..n)
        .map(|i| Config {
            wait: Duration::from_secs(2),
            ..config(i as u16, n, true, false)
        })
        .collect();
    let mut starts = all_at_once(n);
    starts[1] = None;
    let reports = Sim::new(cfgs, starts, no_drop()).run();
    for r in [&reports[0], &reports[2]].into_iter().flatten() {
        assert!(!r.pass);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert!(r.failures[0].starts_with("FAIL peer 1 (10.9.0.2:4570) fanout: never heard from"));
        // Probing ended at the wait: the others were heard at once, counted 3 s from then.
        assert!(r.probes >= 29 && r.probes <= 32, "{}", r.probes);
    }
}

#[test]
fn hosts_started_seconds_apart_are_counted_from_when_they_appear() {
    let n = 2;
    let cfgs = (0..n).map(|i| config(i as u16, n, true, true)).collect();
    let starts = vec![Some(Duration::ZERO), Some(Duration::from_secs(5))];
    let reports = Sim::new(cfgs, starts, no_drop()).run();
    for r in reports.iter().flatten() {
        assert!(r.pass, "{:?}", r.failures);
    }
    // Host 0 probed the 5 s alone and then the counted 4 s (warm-up + duration).
    assert!(reports[0].as_ref().unwrap().probes >= 88);
    assert!(reports[1].as_ref().unwrap().probes <= 41);
}

#[test]
fn multicast_lost_while_the_tree_builds_is_not_counted() {
    let n = 2;
    let cfgs = (0..n).map(|i| config(i as u16, n, false, true)).collect();
    // Every multicast datagram of the first 900 ms is lost.
    let drop: Drop = Box::new(|from, to, t, at| {
        from != to && t == Transport::Multicast && at < Duration::from_millis(900)
    });
    let reports = Sim::new(cfgs, all_at_once(n), drop).run();
    for r in reports.iter().flatten() {
        assert!(r.pass, "{:?}", r.failures);
        assert_eq!(r.pairs[0].loss_out, Some(0.0));
    }
}

#[test]
fn heavy_loss_fails_with_the_numbers() {
    let n = 2;
    let cfgs = (0..n).map(|i| config(i as u16, n, true, false)).collect();
    // Two of every three unicast datagrams from host 1 to host 0 are lost.
    let counter = std::cell::Cell::new(0u32);
    let drop: Drop = Box::new(move |from, _, _, _| {
        if from != 1 {
            return false;
        }
        // Probes and replies alternate: a period of 3 hits both kinds.
        counter.set(counter.get() + 1);
        counter.get() % 3 != 0
    });
    let reports = Sim::new(cfgs, all_at_once(n), drop).run();
    let r = reports[0].as_ref().unwrap();
    assert!(!r.pass);
    assert!(
        r.failures[0].contains("above --max-loss 20%"),
        "{:?}",
        r.failures
    );
}

#[test]
fn foreign_and_stale_datagrams_are_ignored_not_counted() {
    let now = Instant::now();
    let cfg = config(0, 2, true, false);
    let mut m = Machine::new(cfg.clone(), now);
    m.handle_timeout(now);
    let mut buf = [0u8; 64];
    while m.poll_transmit(&mut buf).is_some() {}
    let probe = |hash, sender| Repr {
        list_hash: hash,
        sender,
        transport: Transport::Fanout,
        ttl: 64,
        body: Body::Probe { seq: 0, sent_ns: 0 },
    };
    let stale = Repr {
        body: Body::Reply {
            to: 0,
            seq: 0,
            sent_ns: 12345,
            transport: Transport::Fanout,
            ttl: 64,
        },
        ..probe(cfg.list_hash, 1)
    };
    for r in [probe(cfg.list_hash ^ 1, 1), probe(cfg.list_hash, 7), stale] {
        let n = r.emit(&mut buf);
        m.handle_datagram(now, Transport::Fanout, Some(64), &buf[..n]);
    }
    m.handle_datagram(now, Transport::Fanout, None, b"garbage");
    // A probe claiming multicast on the unicast socket.
    let n = Repr {
        transport: Transport::Multicast,
        ..probe(cfg.list_hash, 1)
    }
    .emit(&mut buf);
    m.handle_datagram(now, Transport::Fanout, None, &buf[..n]);
    assert!(m.poll_transmit(&mut buf).is_none(), "nothing answered");
    assert_eq!(m.report().ignored, 5);
    assert!(
        m.remotes[1].first_heard.is_none(),
        "none of it counts as hearing peer 1"
    );
}
