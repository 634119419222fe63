//! Run plans and run bookkeeping in virtual time.

use super::*;
use crate::wire::Transport;

fn cands(n: usize, zone: &'static str) -> Vec<Candidate<'static>> {
    (0..n)
        .map(|i| Candidate {
            instance: 100 + i as u64,
            advertise: format!("10.0.0.{}", i + 1).parse().unwrap(),
            zone,
            comparator: "10.0.0.254:4568".parse().unwrap(),
        })
        .collect()
}

fn req(peers: u16, msgs: u32) -> RunRequest {
    RunRequest {
        peers,
        msgs,
        transport: Transport::Fanout,
        order: crate::wire::Order::None,
        repair: None,
        interval_ms: (10, 100),
        size: 0,
        wan: String::new(),
        time_scale: 1.0,
        wan_loss: 0.0,
        seed: None,
        ssm: false,
    }
}

const D: RunDefaults = RunDefaults {
    peer_port: 4567,
    group: None,
    slack: Duration::from_secs(60),
};

#[test]
fn every_spec_gets_the_order_and_the_resolved_repair() {
    use crate::wire::{Order, Repair};
    let c = cands(3, "");
    for (order, asked, want) in [
        (Order::None, None, Repair::Off),
        (Order::Causal, None, Repair::Nack),
        (Order::Lamport, Some(Repair::Off), Repair::Off),
    ] {
        let r = RunRequest {
            order,
            repair: asked,
            ..req(3, 5)
        };
        let p = plan(None, &r, &c, 3, &D, 9, 1).unwrap();
        assert!(p
            .specs
            .iter()
            .all(|(_, s)| (s.order, s.repair) == (order, want)));
    }
}

#[test]
fn the_requested_seed_time_scale_and_loss_reach_every_spec() {
    let c = cands(3, "");
    let lan = crate::wan::Profile::load("lan").unwrap();
    let r = RunRequest {
        wan: "lan".into(),
        time_scale: 0.1,
        wan_loss: 0.01,
        seed: Some(1000),
        ..req(3, 5)
    };
    let p = plan(Some(&lan), &r, &c, 3, &D, 9, 77).unwrap();
    for (i, (_, s)) in p.specs.iter().enumerate() {
        assert_eq!(
            (s.seed, s.time_scale, s.wan_loss),
            (1000 + i as u64, 0.1, 0.01)
        );
    }
    assert_eq!(
        p.deadline,
        Duration::from_millis(50) + D.slack,
        "sending time scaled"
    );
    let drawn = plan(None, &req(3, 5), &c, 3, &D, 9, 77).unwrap();
    assert_eq!(drawn.specs[2].1.seed, 79, "no seed asked: the controller's");
    for (bad, flag) in [
        (
            RunRequest {
                time_scale: 0.0,
                ..r.clone()
            },
            "--time-scale",
        ),
        (
            RunRequest {
                wan_loss: 2.0,
                ..r.clone()
            },
            "--wan-loss",
        ),
        (
            RunRequest {
                wan: String::new(),
                ..r.clone()
            },
            "--wan-loss",
        ),
    ] {
        let e = plan(Some(&lan), &bad, &c, 3, &D, 9, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains(flag), "{e}");
    }
    let gcp8 = crate::wan::Profile::load("gcp8").unwrap();
    let slow = RunRequest {
        wan: "gcp8".into(),
        time_scale: 1000.0,
        interval_ms: (0, 1),
        ..r
    };
    let e = plan(Some(&gcp8), &slow, &c, 3, &D, 9, 1).unwrap_err();
    assert!(matches!(e, PlanError::DelayTooLong { .. }), "{e}");
    assert!(e.to_string().contains("--time-scale"), "{e}");
}

#[test]
fn plans_in_order_and_refuses_out_of_bounds() {
    let c = cands(4, "");
    let p = plan(None, &req(3, 50), &c, 4, &D, 9, 1).unwrap();
    assert_eq!(p.specs.len(), 3);
    assert_eq!(p.specs[2].0, 102);
    assert_eq!(p.specs[2].1.peer_id, 2);
    assert_eq!(p.specs[0].1.peers[1], "10.0.0.2:4567".parse().unwrap());
    assert_eq!(p.deadline, Duration::from_millis(5000) + D.slack);
    let few = plan(None, &req(5, 50), &c, 4, &D, 9, 1).unwrap_err();
    assert_eq!(few, PlanError::TooFewLive { n: 5, live: 4 });
    assert!(few.to_string().contains("only 4 agents are live"));
    assert!(plan(None, &req(4, 50), &c[..2], 4, &D, 9, 1)
        .unwrap_err()
        .to_string()
        .contains("idle"));
    assert!(plan(None, &req(0, 50), &c, 4, &D, 9, 1).is_err());
    assert!(plan(None, &req(2, 0), &c, 4, &D, 9, 1).is_err());
    assert!(plan(
        None,
        &req(2, super::super::proto::MAX_MSGS + 1),
        &c,
        4,
        &D,
        9,
        1
    )
    .unwrap_err()
    .to_string()
    .contains("msgs"));
    let lan = crate::wan::Profile::load("lan").unwrap();
    let mut w = req(2, 5);
    w.wan = "lan".into();
    assert!(plan(None, &w, &c, 4, &D, 9, 1)
        .unwrap_err()
        .to_string()
        .contains("unknown WAN profile"));
    assert!(plan(Some(&lan), &w, &c, 4, &D, 9, 1).unwrap().specs[0]
        .1
        .zones
        .is_empty());
    let z = cands(2, "LAN");
    assert_eq!(
        plan(Some(&lan), &w, &z, 2, &D, 9, 1).unwrap().specs[1]
            .1
            .zones,
        ["LAN", "LAN"]
    );
    let bad = cands(2, "eu");
    assert!(plan(Some(&lan), &w, &bad, 2, &D, 9, 1)
        .unwrap_err()
        .to_string()
        .contains("not in the profile"));
    let mut mixed = cands(2, "LAN");
    mixed[1].zone = "";
    assert!(plan(Some(&lan), &w, &mixed, 2, &D, 9, 1)
        .unwrap_err()
        .to_string()
        .contains("has no zone"));
    let mut dup = cands(2, "");
    dup[1].advertise = dup[0].advertise;
    let e = plan(None, &req(2, 5), &dup, 2, &D, 9, 1).unwrap_err();
    assert_eq!(e, PlanError::SameAddress("10.0.0.1:4567".parse().unwrap()));
    assert!(e.to_string().contains("same address"));
}

#[test]
fn one_family_per_run_and_loopback_agents_get_their_own_ports() {
    let mut mixed = cands(2, "");
    mixed[1].advertise = "fd00::2".parse().unwrap();
    let e = plan(None, &req(2, 5), &mixed, 2, &D, 9, 1).unwrap_err();
    assert!(matches!(e, PlanError::MixedFamilies(..)), "{e}");
    let mut v6 = cands(3, "");
    for c in &mut v6 {
        c.advertise = "::1".parse().unwrap();
    }
    let p = plan(None, &req(3, 5), &v6, 3, &D, 9, 1).unwrap();
    let ports: Vec<u16> = p.specs[0].1.peers.iter().map(|a| a.port()).collect();
    assert_eq!(ports, [4567, 4568, 4569]);
    // A v4 group for v6 agents, or a non-SSM group with --ssm: refused before a run.
    let mcast = RunRequest {
        transport: Transport::Multicast,
        ..req(3, 5)
    };
    let v4_group = RunDefaults {
        group: Some("239.1.2.3:4570".parse().unwrap()),
        ..D
    };
    let e = plan(None, &mcast, &v6, 3, &v4_group, 9, 1).unwrap_err();
    assert!(matches!(e, PlanError::GroupFamily { .. }), "{e}");
    let ssm = RunRequest {
        ssm: true,
        ..mcast.clone()
    };
    let c = cands(3, "");
    let e = plan(None, &ssm, &c, 3, &v4_group, 9, 1).unwrap_err();
    assert!(matches!(e, PlanError::NotSsmGroup(_)), "{e}");
    let ssm_group = RunDefaults {
        group: Some("232.1.2.3:4570".parse().unwrap()),
        ..D
    };
    let p = plan(None, &ssm, &c, 3, &ssm_group, 9, 1).unwrap();
    assert!(p.specs.iter().all(|(_, s)| s.ssm));
}

#[test]
fn run_completes_on_report_and_all_finished_or_fails_in_virtual_time() {
    let t0 = Instant::now();
    let c = cands(2, "");
    let p = plan(None, &req(2, 10), &c, 2, &D, 7, 1).unwrap();
    let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
    assert_eq!(
        r.on_ready(100),
        Some(Update::Progress(
            "run 0000000000000007: 1/2 peers ready".into()
        ))
    );
    assert_eq!(r.on_ready(100), None);
    assert_eq!(r.on_ready(555), None);
    r.on_report("{}".into(), t0);
    assert_eq!(r.poll(t0), None);
    r.on_finished(100, true, String::new());
    r.on_finished(101, true, String::new());
    assert_eq!(r.poll(t0), Some(Update::Done("{}".into())));

    let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
    r.on_finished(100, false, "exit 1".into());
    assert_eq!(r.poll(t0), None);
    r.on_finished(101, false, "exit 2".into());
    assert!(matches!(r.poll(t0), Some(Update::Failed(t)) if t.contains("exit 2")));

    let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
    assert_eq!(r.poll(r.next_deadline() - Duration::from_millis(1)), None);
    assert!(
        matches!(r.poll(r.next_deadline()), Some(Update::Failed(t)) if t.contains("timed out"))
    );

    // Report in, one agent never says it finished: the report goes out after the grace.
    let mut r = ActiveRun::new(&p, Transport::Fanout, t0);
    r.on_report("{}".into(), t0);
    r.on_finished(100, true, String::new());
    assert_eq!(r.poll(t0 + Duration::from_secs(1)), None);
    assert_eq!(r.poll(r.next_deadline()), Some(Update::Done("{}".into())));
}
