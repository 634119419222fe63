//! The peer's command line both ways: [`PeerSpec::to_args`] parsed back by [`PeerArgs`] gives
//! the same spec, for every flag; and the parsing tests of the flags themselves.

use std::time::Duration;

use clap::Parser;

use super::*;
use crate::wire::{Order, Repair};

#[derive(clap::Parser, Debug)]
struct Peer {
    #[command(flatten)]
    args: PeerArgs,
}

fn parsed(argv: Vec<std::ffi::OsString>) -> PeerSpec {
    match Peer::try_parse_from(&argv) {
        Ok(p) => p.args.into(),
        Err(e) => panic!("{argv:?} does not parse: {e}"),
    }
}

fn parse(extra: &[&str]) -> Result<PeerArgs, clap::Error> {
    let base = [
        "peer",
        "--peers",
        "127.0.0.1:4570,127.0.0.2:4570",
        "--id",
        "1",
    ];
    Peer::try_parse_from(base.iter().chain(extra)).map(|p| p.args)
}

/// Every field away from its default, every option set, every switch on.
fn everything() -> PeerSpec {
    PeerSpec {
        peers: vec![
            "127.0.0.1:4570".into(),
            "[::1]:4571".into(),
            "h.example:9".into(),
        ],
        id: Some(1),
        msgs: 7,
        transport: Transport::Multicast,
        order: Order::Causal,
        repair: Some(Repair::Off),
        group: Some("[ff12::7777]:4577".parse().unwrap()),
        ssm: true,
        iface: Some("lo".into()),
        ttl: 4,
        interval: (Duration::from_nanos(1_500_001), Duration::from_millis(3)),
        size: 64,
        seed: Some(u64::MAX),
        run_id: Some(0x2a),
        handshake_timeout: Duration::from_secs(4),
        drain: Duration::from_nanos(300_000_007),
        log_dir: Some("/tmp/logs dir,with comma".into()),
        comparator: Some("[::1]:4568".into()),
        upload_attempts: 2,
        wan: Some("gcp8".into()),
        zones: vec!["a".into(), "b".into(), "c".into()],
        wan_loss: 0.1 + 0.2,
        time_scale: 0.05,
        run_key_file: Some("/run/k ey".into()),
        start_gate: true,
        notify: Some("/run/n.sock".into()),
        json: true,
    }
}

#[test]
fn the_defaults_of_the_flags_are_the_defaults_of_the_spec() {
    let spec = parsed(vec!["peer".into(), "--peers".into(), "127.0.0.1:1".into()]);
    assert_eq!(spec, PeerSpec::new(vec!["127.0.0.1:1".into()]));
}

#[test]
fn every_spec_parses_back_to_itself() {
    let lab_like = PeerSpec {
        id: Some(0),
        msgs: 5,
        transport: Transport::Fanout,
        order: Order::Sequencer,
        repair: Some(Repair::Nack),
        group: Some("239.1.2.3:4577".parse().unwrap()),
        interval: (Duration::ZERO, Duration::ZERO),
        size: 26,
        seed: Some(9),
        run_id: Some(1),
        handshake_timeout: Duration::from_secs(10),
        drain: Duration::from_secs(1),
        log_dir: Some("/tmp/l".into()),
        comparator: Some("127.0.0.1:4568".into()),
        time_scale: 2.0,
        start_gate: true,
        ..PeerSpec::new(vec!["127.0.0.1:4570".into(), "127.0.0.2:4570".into()])
    };
    let mut v4_group = everything();
    v4_group.group = Some("239.9.9.9:1".parse().unwrap());
    v4_group.transport = Transport::Fanout;
    let specs = [
        PeerSpec::new(vec!["127.0.0.1:1".into()]),
        everything(),
        v4_group,
        lab_like,
    ];
    for spec in specs {
        let argv = spec.to_args();
        assert_eq!(parsed(argv.clone()), spec, "{argv:?}");
    }
}

#[test]
fn order_defaults_to_none_and_repair_to_the_mode_default() {
    let cases: [(&[&str], Order, Repair); 6] = [
        (&[], Order::None, Repair::Off),
        (&["--order", "fifo"], Order::Fifo, Repair::Nack),
        (&["--order", "causal"], Order::Causal, Repair::Nack),
        (&["--order", "sequencer"], Order::Sequencer, Repair::Nack),
        (
            &["--order", "lamport", "--repair", "off"],
            Order::Lamport,
            Repair::Off,
        ),
        (&["--repair", "nack"], Order::None, Repair::Nack),
    ];
    for (extra, order, repair) in cases {
        let plan = PeerSpec::from(parse(extra).unwrap()).plan().unwrap();
        assert_eq!(
            (plan.config.order, plan.config.repair),
            (order, repair),
            "{extra:?}"
        );
    }
    let spec = PeerSpec::from(parse(&["--transport", "multicast", "--repair", "none"]).unwrap());
    assert_eq!(spec.repair, Some(Repair::Off), "`none` is an alias of off");
    assert_eq!(spec.plan().unwrap().config.transport, Transport::Multicast);
}

#[test]
fn bad_modes_are_clap_errors_that_list_the_choices() {
    for (flag, bad) in [("--order", "total"), ("--repair", "maybe")] {
        let e = parse(&[flag, bad]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(bad) && text.contains("possible values"),
            "{text}"
        );
    }
}

/// An error found after parsing is a usage error of the subcommand, as clap's own are.
#[test]
fn a_value_refused_after_parsing_is_a_usage_error_of_its_subcommand() {
    let e = crate::cli::usage(&["c2", "run"], "--msgs must be at least 1");
    assert_eq!(e.exit_code(), 2);
    let text = e.render().to_string();
    assert!(text.contains("--msgs must be at least 1"), "{text}");
    assert!(text.contains("Usage: mpcomm c2 run"), "{text}");
}

#[test]
fn plan_errors_about_arguments_are_usage_errors_and_name_the_flag() {
    let mut spec = PeerSpec::new(vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()]);
    spec.id = Some(5);
    let e = spec.plan().unwrap_err();
    assert!(e.is_usage(), "{e}");
    assert_eq!(
        e.to_string(),
        "--id 5 is out of range: --peers lists 2 peers (ids 0..1)"
    );
    spec.id = Some(1);
    spec.size = 10;
    assert!(matches!(
        spec.plan(),
        Err(crate::peer::PlanError::Values(
            crate::peer::args::RunValueError::Size(10)
        ))
    ));
    spec.size = packet::DATA_MIN_LEN;
    spec.run_key_file = Some("/nonexistent/key".into());
    let e = spec.plan().unwrap_err();
    assert!(
        !e.is_usage() && e.to_string().starts_with("--run-key-file"),
        "{e}"
    );
}
