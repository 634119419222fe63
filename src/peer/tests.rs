//! State-machine tests on the simulated network: virtual time, seeded loss and reordering.

use std::collections::HashSet;
use std::time::Duration;

use super::machine::{Config, Phase};
use super::sim::{Link, Sim};
use crate::wire::packet::{Body, Repr};
use crate::wire::Error;

fn cfg(n: u16, m: u32) -> impl Fn(u16) -> Config {
    move |id| {
        let mut c = Config::new(id, n, m);
        c.seed = 42;
        c.nonce = 1000 + u64::from(id);
        c
    }
}

fn assert_complete(sim: &Sim, n: usize, m: usize) {
    for (id, peer) in sim.machines.iter().enumerate() {
        assert_eq!(peer.phase(), Phase::Done, "peer {id}");
        let recs = peer.records();
        assert_eq!(recs.len(), n * m, "peer {id} deliveries");
        let distinct: HashSet<(u16, u32)> = recs.iter().map(|r| (r.sender, r.seq)).collect();
        assert_eq!(distinct.len(), n * m, "peer {id} distinct");
        assert_eq!(peer.counters().data_sent as usize, m);
    }
}

#[test]
fn four_peers_complete_and_agree_on_the_run_id() {
    let mut sim = Sim::new(4, Link::default(), 1, cfg(4, 20));
    assert!(sim.run(100_000));
    assert_complete(&sim, 4, 20);
    let ids: HashSet<_> = sim.machines.iter().map(|m| m.run_id()).collect();
    assert_eq!(
        ids,
        HashSet::from([Some(1000)]),
        "everyone takes peer 0's nonce"
    );
    for m in &sim.machines {
        assert!(m.setup_time().unwrap() < Duration::from_millis(5));
    }
}

#[test]
fn a_given_run_id_is_used() {
    let mut sim = Sim::new(3, Link::default(), 1, |id| {
        let mut c = cfg(3, 5)(id);
        c.run_id = Some(77);
        c
    });
    assert!(sim.run(100_000));
    assert!(sim.machines.iter().all(|m| m.run_id() == Some(77)));
}

#[test]
fn handshake_survives_heavy_loss_by_retransmitting() {
    // 30 % loss everywhere: the handshake retries; DATA losses are reported, not fatal.
    let link = Link {
        loss: 0.3,
        ..Link::default()
    };
    let mut sim = Sim::new(4, link, 7, cfg(4, 10));
    assert!(sim.run(1_000_000));
    for m in &sim.machines {
        assert_eq!(m.phase(), Phase::Done);
        assert!(m.counters().hellos_sent > 1, "HELLO was retransmitted");
        assert!(m.records().len() < 40, "some DATA was lost");
    }
}

#[test]
fn lost_stops_end_by_the_quiet_period() {
    let mut sim = Sim::new(3, Link::default(), 3, cfg(3, 5));
    sim.drop_if = Some(Box::new(|_, _, b: &[u8]| {
        matches!(
            Repr::decode(b),
            Ok(Repr {
                body: Body::Stop { .. },
                ..
            })
        )
    }));
    let t0 = sim.now.at;
    assert!(sim.run(100_000));
    for m in &sim.machines {
        assert_eq!(m.phase(), Phase::Done);
        assert_eq!(m.records().len(), 15);
        assert_eq!(m.incomplete(), vec![0, 1, 2], "no STOP arrived");
    }
    assert!(
        sim.now.at - t0 >= Duration::from_secs(2),
        "waited the drain period"
    );
    assert!(sim.now.at - t0 < Duration::from_secs(5), "but not forever");
}

#[test]
fn a_peer_that_never_shows_up_is_named() {
    let mut sim = Sim::new(4, Link::default(), 1, |id| {
        let mut c = cfg(4, 5)(id);
        c.handshake_timeout = Duration::from_secs(3);
        c
    });
    sim.down[2] = true;
    assert!(sim.run(100_000));
    for (id, m) in sim.machines.iter().enumerate() {
        if id != 2 {
            assert_eq!(m.phase(), Phase::Failed);
            assert_eq!(m.missing(), vec![2]);
            assert_eq!(m.counters().data_sent, 0, "nothing sent before the barrier");
        }
    }
}

#[test]
fn early_data_is_kept_not_misread() {
    // Peer 2 loses peer 0's first HELLOs, so it learns the run id last, after others may
    // already be sending. Everything must still be delivered.
    let mut dropped = 0;
    let mut sim = Sim::new(3, Link::default(), 9, cfg(3, 10));
    sim.drop_if = Some(Box::new(move |from, to, b: &[u8]| {
        let hello = matches!(
            Repr::decode(b),
            Ok(Repr {
                body: Body::Hello { .. },
                ..
            })
        );
        if from == 0 && to == 2 && hello && dropped < 3 {
            dropped += 1;
            return true;
        }
        false
    }));
    assert!(sim.run(100_000));
    assert_complete(&sim, 3, 10);
}

#[test]
fn garbage_is_counted_and_the_run_completes() {
    let mut sim = Sim::new(3, Link::default(), 5, cfg(3, 10));
    let mut garbage = vec![
        vec![],
        b"MP".to_vec(),
        vec![0xff; 100],
        b"MP\x02\x63xxxxxxxxxxxxxx".to_vec(),
    ];
    // A well-formed DATA of another run, and one with a sender out of range.
    let mut buf = [0u8; 64];
    let foreign = Repr {
        run_id: 999,
        sender: 1,
        body: Body::plain_data(0, 1),
    };
    let n = foreign.emit(&mut buf);
    garbage.push(buf[..n].to_vec());
    let bad_sender = Repr {
        run_id: 1000,
        sender: 9,
        body: Body::plain_data(0, 1),
    };
    let n = bad_sender.emit(&mut buf);
    garbage.push(buf[..n].to_vec());
    for _ in 0..50 {
        sim.step();
        for g in &garbage {
            sim.inject(0, g.clone());
        }
    }
    assert!(sim.run(100_000));
    assert_complete(&sim, 3, 10);
    let c = sim.machines[0].counters();
    assert_eq!(c.malformed[Error::Truncated as usize], 100);
    assert_eq!(c.malformed[Error::BadMagic as usize], 50);
    assert_eq!(c.malformed[Error::UnknownKind as usize], 50);
    assert_eq!(c.malformed[Error::BadValue as usize], 50);
    assert!(c.foreign >= 1);
}

#[test]
fn jitter_reorders_but_loses_nothing() {
    let link = Link {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(30),
        ..Link::default()
    };
    let mut sim = Sim::new(4, link, 11, cfg(4, 30));
    assert!(sim.run(1_000_000));
    assert_complete(&sim, 4, 30);
    let orders: HashSet<Vec<(u16, u32)>> = sim
        .machines
        .iter()
        .map(|m| m.records().iter().map(|r| (r.sender, r.seq)).collect())
        .collect();
    assert!(orders.len() > 1, "with 30 ms jitter the peers disagree");
}

#[test]
fn the_schedule_is_reproducible_by_seed() {
    let run = |seed| {
        let mut sim = Sim::new(3, Link::default(), 1, move |id| {
            let mut c = cfg(3, 10)(id);
            c.seed = seed;
            c
        });
        assert!(sim.run(100_000));
        sim.machines[0]
            .records()
            .iter()
            .map(|r| r.send_ns)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn back_to_back_sending_with_zero_interval() {
    let mut sim = Sim::new(2, Link::default(), 1, |id| {
        let mut c = cfg(2, 200)(id);
        c.interval = (Duration::ZERO, Duration::ZERO);
        c
    });
    assert!(sim.run(100_000));
    assert_complete(&sim, 2, 200);
}

/// Nothing is delivered after a peer's own end: it has exited by then.
fn assert_no_delivery_after_end(sim: &Sim) {
    for (id, m) in sim.machines.iter().enumerate() {
        let end = m.start().unix_ns + m.duration().unwrap().as_nanos() as u64;
        assert!(
            m.records().iter().all(|r| r.deliver_ns <= end),
            "peer {id} delivered after its end"
        );
    }
}

#[test]
fn long_send_gaps_do_not_end_the_run_early() {
    // Gaps of up to 4 s, longer than the 2 s drain: the quiet period stretches to cover them.
    let mut sim = Sim::new(3, Link::default(), 5, |id| {
        let mut c = cfg(3, 8)(id);
        c.interval = (Duration::from_millis(500), Duration::from_millis(4000));
        c
    });
    assert!(sim.run(1_000_000));
    assert_complete(&sim, 3, 8);
    assert_no_delivery_after_end(&sim);
}

fn is_hello(b: &[u8]) -> bool {
    matches!(
        Repr::decode(b),
        Ok(Repr {
            body: Body::Hello { .. },
            ..
        })
    )
}

/// `n` peers × 5 messages; `lossy`'s first HELLOs to `deaf` are lost, then peer `restarted`
/// restarts with nonce 9999. Runs to the end.
fn lose_hellos_then_restart(n: u16, lossy: usize, deaf: usize, restarted: u16) -> Sim {
    let mut sim = Sim::new(n, Link::default(), 3, cfg(n, 5));
    sim.drop_if = Some(Box::new(move |from, to, b: &[u8]| {
        from == lossy && to == deaf && is_hello(b)
    }));
    for _ in 0..3 {
        sim.step();
    }
    sim.drop_if = None;
    let mut c = cfg(n, 5)(restarted);
    c.nonce = 9999;
    sim.machines[usize::from(restarted)] = super::machine::Machine::new(c, sim.now, None);
    assert!(sim.run(100_000));
    sim
}

#[test]
fn a_peer_restarted_during_the_handshake_is_handshaken_again() {
    // Peer 1's HELLOs to peer 0 are lost at first; then peer 1 restarts with a new nonce.
    let sim = lose_hellos_then_restart(2, 1, 0, 1);
    assert_complete(&sim, 2, 5);
    assert_eq!(sim.machines[0].run_id(), sim.machines[1].run_id());
}

#[test]
fn a_restarted_peer_0_cannot_split_the_run() {
    // Peer 2 misses peer 0's first HELLOs; peer 0 restarts with a new nonce meanwhile. Peers
    // 1 and 2 must still end up in one run with one run id.
    let sim = lose_hellos_then_restart(3, 0, 2, 0);
    let ids: HashSet<_> = sim.machines.iter().map(|m| m.run_id()).collect();
    assert_eq!(ids, HashSet::from([Some(9999)]));
    assert_complete(&sim, 3, 5);
}

/// A fixed emulated delay.
struct Fixed(Duration);

impl super::machine::DelayModel for Fixed {
    fn delay(&mut self, _: u16, _: u16) -> Option<Duration> {
        Some(self.0)
    }
    fn max_delay(&self) -> Duration {
        self.0
    }
}

#[test]
fn a_send_time_in_the_future_cannot_pin_the_hold_back_queue() {
    let d = Duration::from_millis(30);
    let mut sim = Sim::with_delay(
        2,
        Link::default(),
        1,
        |id| {
            let mut c = cfg(2, 10)(id);
            c.run_id = Some(0x77);
            c
        },
        |_| Some(Box::new(Fixed(d)) as Box<dyn super::machine::DelayModel>),
    );
    for _ in 0..20 {
        sim.step();
    }
    // A DATA of this run whose send time is a year ahead.
    let year = 365 * 24 * 3600 * 1_000_000_000u64;
    let forged = Repr {
        run_id: 0x77,
        sender: 1,
        body: Body::plain_data(9, sim.now.unix_ns + year),
    };
    let mut buf = [0u8; 64];
    let n = forged.emit(&mut buf);
    sim.inject(0, buf[..n].to_vec());
    let t0 = sim.now.at;
    assert!(sim.run(100_000));
    assert!(
        sim.now.at - t0 < Duration::from_secs(10),
        "the run ended in time"
    );
    assert!(sim.machines.iter().all(|m| m.phase() == Phase::Done));
    assert_no_delivery_after_end(&sim);
}

/// Forged STOPs with a count below what already arrived from that sender (issue: they ended
/// a peer's run early, reported `ok`): counted as malformed and ignored; the run is complete.
#[test]
fn a_stop_below_what_arrived_is_counted_and_ignored() {
    let mut sim = Sim::new(2, Link::default(), 1, |id| {
        let mut c = cfg(2, 20)(id);
        c.run_id = Some(0x51);
        c
    });
    for _ in 0..100_000 {
        sim.step();
        if sim.machines[0]
            .records()
            .iter()
            .filter(|r| r.sender == 1)
            .count()
            >= 5
        {
            break;
        }
    }
    let forged = Repr {
        run_id: 0x51,
        sender: 1,
        body: Body::Stop(crate::wire::packet::Announce {
            sent: 2,
            ..Default::default()
        }),
    };
    let mut buf = [0u8; 64];
    let n = forged.emit(&mut buf);
    for _ in 0..3 {
        sim.inject(0, buf[..n].to_vec());
    }
    assert!(sim.run(100_000));
    assert_complete(&sim, 2, 20);
    assert_eq!(
        sim.machines[0].counters().malformed[Error::BadValue as usize],
        3
    );
}

/// Without dedup (`--order none --repair off`), duplicates are delivered as the original
/// experiment does, but only as many are stored as the log reserved room for; the rest are
/// counted, and none of them is news that keeps the run alive.
#[test]
fn a_duplicate_flood_is_bounded_and_counted() {
    let mut sim = Sim::new(2, Link::default(), 1, |id| {
        let mut c = cfg(2, 10)(id);
        c.run_id = Some(0x52);
        c
    });
    for _ in 0..20 {
        sim.step();
    }
    let dup = Repr {
        run_id: 0x52,
        sender: 1,
        body: Body::plain_data(0, sim.now.unix_ns),
    };
    let mut buf = [0u8; 64];
    let n = dup.emit(&mut buf);
    for _ in 0..5_000 {
        sim.inject(0, buf[..n].to_vec());
    }
    assert!(sim.run(200_000));
    let p = &sim.machines[0];
    assert_eq!(p.phase(), Phase::Done);
    assert!(p.records().len() < 100, "{} stored", p.records().len());
    assert!(p.cost().duplicates_dropped > 4_900);
}

#[test]
fn fanout_hello_retries_go_only_to_the_peers_still_missing() {
    // Peer 7 is down for 3 s: the other seven agree among themselves at once, and their
    // retries go to peer 7 alone, not to all eight (N² datagrams per round at N = 256).
    use std::cell::RefCell;
    use std::rc::Rc;
    let n = 8;
    let mut sim = Sim::new(n, Link::default(), 5, |id| {
        let mut c = cfg(n, 3)(id);
        c.handshake_timeout = Duration::from_secs(10);
        c
    });
    sim.down[7] = true;
    let hellos = Rc::new(RefCell::new(vec![vec![0u32; 8]; 8]));
    let count = hellos.clone();
    sim.drop_if = Some(Box::new(move |from, to, b: &[u8]| {
        if is_hello(b) {
            count.borrow_mut()[from][to] += 1;
        }
        false
    }));
    let t0 = sim.now.at;
    while sim.now.at - t0 < Duration::from_secs(3) {
        assert!(sim.step());
    }
    for (from, row) in hellos.borrow().iter().enumerate().take(7) {
        assert!(
            row[7] >= 6,
            "peer {from} retried to the missing peer: {row:?}"
        );
        for (to, &k) in row.iter().enumerate().take(7) {
            assert!(
                k <= 2,
                "peer {from} sent {k} HELLOs to peer {to}, who had agreed"
            );
        }
    }
    sim.down[7] = false;
    assert!(sim.run(100_000));
    assert_complete(&sim, 8, 3);
}
