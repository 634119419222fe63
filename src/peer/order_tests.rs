//! Every ordering mode on the simulated network (virtual time, seeded): under loss,
//! reordering and duplication the mode's guarantee holds on the delivered records and, with
//! repair, nothing is lost or delivered twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::machine::{Config, DelayModel, Phase};
use super::sim::{Link, Sim};
use crate::wire::packet::{Body, Repr};
use crate::wire::{log::Record, log::FAILURE_SEQUENCER_LOST, Order, Repair, Transport};

const MODES: [Order; 4] = [Order::Fifo, Order::Causal, Order::Sequencer, Order::Lamport];

fn cfg(n: u16, m: u32, order: Order, transport: Transport) -> impl Fn(u16) -> Config {
    move |id| {
        let mut c = Config::new(id, n, m);
        c.seed = 9;
        c.nonce = 500 + u64::from(id);
        c.interval = (Duration::from_millis(1), Duration::from_millis(6));
        c.order = order;
        c.repair = order.default_repair();
        c.transport = transport;
        c
    }
}

/// Each peer a different, fixed delay to each other peer (as the emulated WAN's zones do),
/// plus loss: the ordering problem shows up, and repair has work to do.
struct PairDelay {
    loss_every: u32,
    count: u32,
}

impl DelayModel for PairDelay {
    fn delay(&mut self, from: u16, to: u16) -> Option<Duration> {
        self.count += 1;
        if self.loss_every > 0 && self.count % self.loss_every == 0 {
            return None;
        }
        let ms = (u64::from(from) * 7 + u64::from(to) * 3) % 11;
        Some(Duration::from_micros(200 + ms * 900))
    }
    fn max_delay(&self) -> Duration {
        Duration::from_micros(200 + 10 * 900)
    }
}

fn lossy() -> Link {
    Link {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(4),
        loss: 0.05,
        dup: 0.05,
    }
}

/// Every peer finished, with each of the N × M messages delivered exactly once.
fn assert_all_once(sim: &Sim, n: usize, m: usize, what: &str) {
    for (id, peer) in sim.machines.iter().enumerate() {
        assert_eq!(peer.phase(), Phase::Done, "{what}: peer {id}");
        assert_eq!(peer.failure(), 0, "{what}: peer {id}");
        let recs = peer.records();
        let distinct: HashSet<(u16, u32)> = recs.iter().map(|r| (r.sender, r.seq)).collect();
        assert_eq!(distinct.len(), n * m, "{what}: peer {id} lost some");
        assert_eq!(recs.len(), n * m, "{what}: peer {id} delivered a duplicate");
    }
}

fn fifo_violations(recs: &[Record]) -> usize {
    let mut last: HashMap<u16, u32> = HashMap::new();
    let mut bad = 0;
    for r in recs {
        if let Some(&prev) = last.get(&r.sender) {
            if r.seq < prev {
                bad += 1;
            }
        }
        last.insert(
            r.sender,
            r.seq.max(last.get(&r.sender).copied().unwrap_or(0)),
        );
    }
    bad
}

/// Causal violations by brute force: predecessors of (q, j) are q's earlier messages, what q
/// delivered before it sent (q, j), and theirs. One virtual clock, so send order is real.
fn causal_violations(sim: &Sim, n: usize, m: usize) -> usize {
    let logs: Vec<&[Record]> = sim.machines.iter().map(|p| p.records()).collect();
    let mut send: HashMap<(u16, u32), u64> = HashMap::new();
    for recs in &logs {
        for r in recs.iter() {
            send.insert((r.sender, r.seq), r.send_ns);
        }
    }
    let mut msgs: Vec<(u16, u32)> = send.keys().copied().collect();
    msgs.sort_by_key(|k| (send[k], k.0, k.1));
    let mut vc: HashMap<(u16, u32), Vec<u32>> = HashMap::new();
    for &(q, j) in &msgs {
        let mut v = vec![0u32; n];
        if j > 0 {
            if let Some(prev) = vc.get(&(q, j - 1)) {
                v.clone_from(prev);
            }
            v[usize::from(q)] = v[usize::from(q)].max(j);
        }
        for r in logs[usize::from(q)].iter() {
            if r.deliver_ns < send[&(q, j)] {
                if let Some(pv) = vc.get(&(r.sender, r.seq)) {
                    for i in 0..n {
                        v[i] = v[i].max(pv[i]);
                    }
                }
                let p = usize::from(r.sender);
                v[p] = v[p].max(r.seq + 1);
            }
        }
        vc.insert((q, j), v);
    }
    let mut bad = 0;
    for recs in &logs {
        let mut got = vec![vec![false; m]; n];
        for r in recs.iter() {
            if got[usize::from(r.sender)][r.seq as usize] {
                continue;
            }
            let v = &vc[&(r.sender, r.seq)];
            let missing = (0..n).any(|p| {
                (0..v[p] as usize)
                    .any(|k| !(got[p][k] || p == usize::from(r.sender) && k == r.seq as usize))
            });
            if missing {
                bad += 1;
            }
            got[usize::from(r.sender)][r.seq as usize] = true;
        }
    }
    bad
}

fn same_order_everywhere(sim: &Sim) -> bool {
    let first: Vec<(u16, u32)> = sim.machines[0]
        .records()
        .iter()
        .map(|r| (r.sender, r.seq))
        .collect();
    sim.machines.iter().all(|p| {
        p.records()
            .iter()
            .map(|r| (r.sender, r.seq))
            .eq(first.iter().copied())
    })
}

fn assert_guarantee(sim: &Sim, order: Order, n: usize, m: usize, what: &str) {
    for (id, p) in sim.machines.iter().enumerate() {
        assert_eq!(fifo_violations(p.records()), 0, "{what}: peer {id} FIFO");
    }
    if order == Order::Causal || order == Order::Sequencer || order == Order::Lamport {
        assert_eq!(causal_violations(sim, n, m), 0, "{what}: causal");
    }
    if order == Order::Sequencer || order == Order::Lamport {
        assert!(same_order_everywhere(sim), "{what}: total order");
    }
}

#[test]
fn every_mode_keeps_its_guarantee_under_loss_reordering_and_duplication() {
    for order in MODES {
        for transport in [Transport::Fanout, Transport::Multicast] {
            let what = format!("{order} over {transport}");
            let mut sim = Sim::new(5, lossy(), 3, cfg(5, 30, order, transport));
            assert!(sim.run(2_000_000), "{what}: finished");
            assert_all_once(&sim, 5, 30, &what);
            assert_guarantee(&sim, order, 5, 30, &what);
            let nacks: u64 = sim.machines.iter().map(|p| p.cost().nacks_sent).sum();
            assert!(nacks > 0, "{what}: 5 % loss was repaired by NACKs");
        }
    }
}

#[test]
fn every_mode_holds_behind_the_emulated_wan_with_its_loss() {
    for order in MODES {
        let what = format!("{order} behind the WAN");
        let mut sim = Sim::with_delay(
            6,
            Link::default(),
            4,
            cfg(6, 25, order, Transport::Fanout),
            |_| {
                Some(Box::new(PairDelay {
                    loss_every: 17,
                    count: 0,
                }) as Box<dyn DelayModel>)
            },
        );
        assert!(sim.run(2_000_000), "{what}: finished");
        assert_all_once(&sim, 6, 25, &what);
        assert_guarantee(&sim, order, 6, 25, &what);
        let dropped: u64 = sim.machines.iter().map(|p| p.counters().wan_dropped).sum();
        assert!(dropped > 0, "{what}: the WAN dropped some");
    }
}

#[test]
fn without_ordering_the_same_network_shows_the_problem() {
    let mut sim = Sim::with_delay(
        6,
        Link::default(),
        4,
        cfg(6, 25, Order::None, Transport::Fanout),
        |_| {
            Some(Box::new(PairDelay {
                loss_every: 0,
                count: 0,
            }) as Box<dyn DelayModel>)
        },
    );
    assert!(sim.run(2_000_000));
    assert!(
        !same_order_everywhere(&sim),
        "different paths, different orders"
    );
    assert!(
        causal_violations(&sim, 6, 25) > 0,
        "and causality is broken (the checker sees it)"
    );
}

/// The tail case: a sender's last DATA and every one of its STOPs are lost. Its heartbeats
/// while draining announce the tail; the receivers NACK it; nothing is lost.
#[test]
fn a_lost_last_data_and_all_its_stops_are_repaired() {
    for order in MODES {
        let m = 12;
        let mut sim = Sim::new(4, Link::default(), 8, cfg(4, m, order, Transport::Fanout));
        let dropped = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let d = dropped.clone();
        sim.drop_if = Some(Box::new(move |from, _to, bytes| {
            if from != 1 {
                return false;
            }
            let drop = match Repr::decode(bytes).map(|r| r.body) {
                Ok(Body::Data {
                    seq, retransmit, ..
                }) => seq == m - 1 && !retransmit,
                Ok(Body::Stop(_)) => true,
                _ => false,
            };
            if drop {
                d.set(d.get() + 1);
            }
            drop
        }));
        assert!(sim.run(2_000_000), "{order}: finished");
        assert!(
            dropped.get() >= 4 * 2,
            "{order}: the tail and the STOPs were dropped"
        );
        assert_all_once(&sim, 4, m as usize, &format!("{order}, lost tail"));
        assert_guarantee(&sim, order, 4, m as usize, &format!("{order}, lost tail"));
    }
}

#[test]
fn a_peer_with_another_mode_is_refused_naming_both() {
    let mut sim = Sim::new(3, Link::default(), 1, |id| {
        let order = if id == 2 { Order::Lamport } else { Order::Fifo };
        cfg(3, 5, order, Transport::Fanout)(id)
    });
    assert!(sim.run(100_000));
    for (id, p) in sim.machines.iter().enumerate() {
        assert_eq!(p.phase(), Phase::Failed, "peer {id}");
    }
    let r = sim.machines[0].refused().expect("peer 0 refused peer 2");
    assert_eq!(r.peer, 2);
    let text = r.describe(sim.machines[0].config());
    assert!(
        text.contains("--order lamport") && text.contains("--order fifo"),
        "{text}"
    );
    assert_eq!(
        sim.machines[2].refused().map(|r| r.order),
        Some(Order::Fifo.as_u8())
    );
    let bound = sim.machines[0].config().handshake_timeout;
    assert!(
        sim.machines[0].duration().unwrap() < bound,
        "refused before the timeout"
    );
}

/// The refused peer started after our HELLOs went out: the refusal itself tells it our mode,
/// so it fails at once too instead of waiting for the handshake timeout.
#[test]
fn a_late_peer_with_another_mode_learns_it_from_the_refusal() {
    let mut sim = Sim::new(2, Link::default(), 1, |id| {
        let order = if id == 1 { Order::Causal } else { Order::Fifo };
        cfg(2, 5, order, Transport::Fanout)(id)
    });
    sim.down[1] = true;
    for _ in 0..20 {
        sim.step();
    }
    sim.down[1] = false;
    assert!(sim.run(100_000));
    let bound = sim.machines[1].config().handshake_timeout;
    for p in &sim.machines {
        assert_eq!(p.phase(), Phase::Failed);
        assert!(p.refused().is_some(), "both know why");
        assert!(p.duration().unwrap() < bound);
    }
}

#[test]
fn repair_settings_must_agree_too() {
    let mut sim = Sim::new(2, Link::default(), 1, |id| {
        let mut c = cfg(2, 5, Order::Fifo, Transport::Fanout)(id);
        if id == 1 {
            c.repair = Repair::Off;
        }
        c
    });
    assert!(sim.run(100_000));
    assert!(sim.machines.iter().all(|p| p.phase() == Phase::Failed));
}

/// The sequencer dies after the barrier: the others do not wait for ever; they end within
/// repair's bound and say why.
#[test]
fn a_dead_sequencer_ends_the_run_with_a_clear_failure() {
    let mut sim = Sim::new(
        4,
        Link::default(),
        2,
        cfg(4, 40, Order::Sequencer, Transport::Fanout),
    );
    for _ in 0..100_000 {
        sim.step();
        if sim.machines[0].records().len() > 10 {
            break;
        }
    }
    sim.down[0] = true;
    let t0 = sim.now.at;
    assert!(sim.run(2_000_000));
    for p in &sim.machines[1..] {
        assert_eq!(p.phase(), Phase::Done);
        assert_eq!(p.failure(), FAILURE_SEQUENCER_LOST);
        assert!(p.cost().given_up > 0, "what waited is counted as given up");
    }
    let took = sim.now.at - t0;
    let bound = sim.machines[1].config().give_up * 3;
    assert!(took < bound, "ended after {took:?}, bound {bound:?}");
}

/// At N = 8 without loss, sequencer and lamport stay at or under one control datagram per
/// delivery (the cost bar; the lab measures it on real sockets too).
#[test]
fn sequencer_and_lamport_cost_at_most_one_control_datagram_per_delivery() {
    for order in [Order::Sequencer, Order::Lamport] {
        let mut sim = Sim::new(8, Link::default(), 5, |id| {
            let mut c = cfg(8, 60, order, Transport::Fanout)(id);
            c.interval = (Duration::from_millis(1), Duration::from_millis(10));
            c
        });
        assert!(sim.run(4_000_000));
        assert_all_once(&sim, 8, 60, &order.to_string());
        let control: u64 = sim
            .machines
            .iter()
            .map(|p| p.cost().control_datagrams + p.cost().retransmissions)
            .sum();
        let deliveries: usize = sim.machines.iter().map(|p| p.records().len()).sum();
        let per = control as f64 / deliveries as f64;
        assert!(
            per <= 1.0,
            "{order}: {per:.3} control datagrams per delivery"
        );
    }
}

/// A peer crashes mid-run under `lamport`: the others cannot move the total order past its
/// silence, but they do not wait for the hard bound either: repeated heartbeats are no news,
/// so the quiet period ends the run, and what stayed held back is counted as given up.
#[test]
fn a_crashed_peer_holds_lamport_only_until_the_quiet_period() {
    let mut sim = Sim::new(
        4,
        Link::default(),
        2,
        cfg(4, 40, Order::Lamport, Transport::Fanout),
    );
    for _ in 0..100_000 {
        sim.step();
        if sim.machines[3].counters().data_sent > 10 {
            break;
        }
    }
    sim.down[3] = true;
    let t0 = sim.now.at;
    assert!(sim.run(4_000_000));
    let c = sim.machines[0].config().clone();
    for p in &sim.machines[..3] {
        assert_eq!(p.phase(), Phase::Done);
        assert!(p.cost().given_up > 0, "held-back messages are counted");
        assert_eq!(fifo_violations(p.records()), 0);
    }
    let took = sim.now.at - t0;
    assert!(
        took < c.drain_max / 2,
        "took {took:?} (hard bound {:?})",
        c.drain_max
    );
}

/// With a run key, forged datagrams of every kind — with the right run id, unsigned or signed
/// with another key — change nothing but the `forged` counter.
#[test]
fn with_a_run_key_forged_datagrams_change_nothing_but_the_counter() {
    use crate::wire::auth::RunKey;
    use crate::wire::packet::{Announce, Stream};
    let run_id = 0x4b;
    let keyed = |id| {
        let mut c = cfg(4, 20, Order::Lamport, Transport::Fanout)(id);
        c.run_id = Some(run_id);
        c.run_key = Some(RunKey::new([0x11; 32]));
        c
    };
    let mut sim = Sim::new(4, lossy(), 6, keyed);
    for _ in 0..30 {
        sim.step();
    }
    let bodies = [
        Body::Hello {
            nonce: 9,
            peers: 4,
            msgs: 20,
            order: Order::Lamport.as_u8(),
            repair: Repair::Nack.as_u8(),
        },
        Body::HelloAck {
            to: 0,
            nonce: 1,
            from_nonce: 2,
            run_nonce: 3,
        },
        Body::Data {
            seq: 3,
            send_ns: 1,
            retransmit: false,
            lamport: 1 << 40,
            vector: 0,
            pad: 0,
        },
        Body::Stop(Announce {
            sent: 1,
            lamport: u64::MAX,
            ordered: 0,
            complete: true,
        }),
        Body::Heartbeat(Announce {
            sent: 20,
            lamport: u64::MAX,
            ordered: 0,
            complete: true,
        }),
        Body::Nack {
            to: 0,
            stream: Stream::Data,
            ranges: 1,
        },
        Body::Order {
            first: 0,
            entries: 1,
        },
    ];
    let other = RunKey::new([0x22; 32]);
    let mut forged = 0;
    for body in bodies {
        let r = Repr {
            run_id,
            sender: 2,
            body,
        };
        let mut buf = vec![0u8; 2048];
        let n = r.emit(&mut buf);
        sim.inject(0, buf[..n].to_vec());
        let n = other.sign(&mut buf, n);
        sim.inject(0, buf[..n].to_vec());
        forged += 2;
    }
    assert!(sim.run(2_000_000));
    assert_all_once(&sim, 4, 20, "keyed lamport");
    assert_guarantee(&sim, Order::Lamport, 4, 20, "keyed lamport");
    assert_eq!(sim.machines[0].counters().forged, forged);
    assert_eq!(sim.machines[0].counters().malformed_total(), 0);
    assert!(sim.machines[1..].iter().all(|p| p.counters().forged == 0));
}
