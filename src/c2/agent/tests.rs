//! The agent's plain parts: instance id, log pruning, the peer's argument vector, the RUN
//! handler's refusals and the configuration check.

use super::logs::instance_id;
use super::*;
use crate::c2::proto::{BoundsError, RefusalCode};
use crate::wire::{Order, Repair, Transport};
use std::time::Duration;

#[test]
fn the_instance_id_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("mpcomm-agent-id-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = instance_id(&dir).unwrap();
    assert_eq!(
        instance_id(&dir).unwrap(),
        first,
        "the same agent after a restart"
    );
    std::fs::write(dir.join("agent-instance"), "not hex\n").unwrap();
    let fresh = instance_id(&dir).unwrap();
    assert_ne!(fresh, 0);
    assert_eq!(instance_id(&dir).unwrap(), fresh);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pruning_keeps_the_newest_delivery_logs_and_nothing_else_is_touched() {
    let dir = std::env::temp_dir().join(format!("mpcomm-agent-prune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = std::time::SystemTime::now() - Duration::from_secs(100);
    for i in 0..5u64 {
        let p = dir.join(format!("mpcomm-{i:016x}-p0.mplog"));
        std::fs::write(&p, b"x").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(t0 + Duration::from_secs(i)).unwrap();
    }
    std::fs::write(dir.join("agent-instance"), "1\n").unwrap();
    std::fs::write(dir.join("notes.mplog.txt"), "").unwrap();
    let gone = prune_logs(&dir, 3).unwrap();
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        gone.iter().map(name).collect::<Vec<_>>(),
        [
            "mpcomm-0000000000000000-p0.mplog",
            "mpcomm-0000000000000001-p0.mplog"
        ],
        "the oldest go first"
    );
    assert!(prune_logs(&dir, 3).unwrap().is_empty());
    assert_eq!(prune_logs(&dir, 0).unwrap().len(), 3);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["agent-instance", "notes.mplog.txt"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A RUN that passes every bound.
fn spec() -> RunSpec {
    RunSpec {
        run_id: 42,
        peer_id: 1,
        transport: Transport::Multicast,
        order: Order::Sequencer,
        repair: Repair::Off,
        msgs: 50,
        interval_ms: (10, 100),
        size: 0,
        seed: 3,
        group: None,
        comparator: "10.0.0.9:4568".parse().unwrap(),
        peers: vec![
            "10.0.0.1:4567".parse().unwrap(),
            "10.0.0.2:4567".parse().unwrap(),
        ],
        wan: "gcp8".into(),
        zones: vec!["us-east".into(), "eu".into()],
        time_scale: 0.1,
        wan_loss: 0.02,
        run_key: [1; 32],
        ssm: false,
    }
}

#[test]
fn peer_arguments_are_separate_typed_values() {
    let mut spec = spec();
    // Never through a shell: even a label the agent would refuse stays one argument.
    spec.zones[0] = "us; rm -rf".into();
    let a: Vec<String> = peer_args(
        &spec,
        std::path::Path::new("/var/lib/x"),
        std::path::Path::new("/var/lib/x/run.key"),
    )
    .into_iter()
    .map(|s| s.into_string().unwrap())
    .collect();
    let want = [
        "peer",
        "--peers",
        "10.0.0.1:4567,10.0.0.2:4567",
        "--id",
        "1",
        "--msgs",
        "50",
        "--transport",
        "multicast",
        "--order",
        "sequencer",
        "--repair",
        "off",
        "--iface",
        "10.0.0.2",
        "--interval",
        "10000us..100000us",
        "--seed",
        "3",
        "--run-id",
        "000000000000002a",
        "--log-dir",
        "/var/lib/x",
        "--comparator",
        "10.0.0.9:4568",
        "--time-scale",
        "0.1",
        "--wan",
        "gcp8",
        "--wan-loss",
        "0.02",
        "--zones",
        "us; rm -rf,eu",
        "--run-key-file",
        "/var/lib/x/run.key",
    ];
    assert_eq!(a, want);
}

/// The handler, not the decoder, checks bounds: each refusal has its code, its words, and is
/// answered as RUN_FINISHED (not ok, the peer never started).
#[test]
fn runs_out_of_bounds_or_while_busy_are_refused_with_a_code() {
    assert_eq!(admit(&spec(), None), Ok(()));
    let busy = admit(&spec(), Some(0x0b)).unwrap_err();
    assert_eq!(busy, Refusal::Busy(0x0b));
    assert_eq!(busy.code(), RefusalCode::Busy);
    assert!(busy.to_string().contains("busy with run 000000000000000b"));

    let mut s = spec();
    s.msgs = 0;
    let e = admit(&s, None).unwrap_err();
    assert_eq!(e, Refusal::OutOfBounds(BoundsError::Msgs(0)));
    assert_eq!(e.code(), RefusalCode::OutOfBounds);
    assert_eq!(
        e.clone().into_msg(42),
        Msg::RunFinished {
            run_id: 42,
            ok: false,
            detail: "run refused: msgs must be 1..=100000, got 0".into(),
            running: None,
            refused: Some(RefusalCode::OutOfBounds),
        }
    );
    // Busy wins: the controller learns which run holds the agent.
    assert_eq!(
        admit(&s, Some(7)).map_err(|e| e.code()),
        Err(RefusalCode::Busy)
    );
    let mut s = spec();
    s.zones[0] = "us; rm -rf".into();
    assert_eq!(
        admit(&s, None),
        Err(Refusal::OutOfBounds(BoundsError::Labels))
    );
    let mut s = spec();
    s.peer_id = 2;
    assert_eq!(
        admit(&s, None).map_err(|e| e.code()),
        Err(RefusalCode::OutOfBounds)
    );
    let e = Refusal::CannotStart("spawn: No such file or directory".into());
    assert_eq!(e.code(), RefusalCode::CannotStart);
    assert!(e.to_string().starts_with("cannot start the peer: spawn"));
}
/// A CHECK's command line parses back as `mpcomm check` with the same values: this host's id,
/// multicast on its own advertised address, the spec's duration and wait.
#[test]
fn a_check_becomes_a_check_command_line() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        c: Sub,
    }
    #[derive(clap::Subcommand)]
    enum Sub {
        Check(crate::cli::check::CheckArgs),
    }
    let parse = |spec: &crate::c2::proto::CheckSpec| {
        let mut argv: Vec<std::ffi::OsString> = vec!["mpcomm".into()];
        argv.extend(check::check_args(spec));
        let Sub::Check(a) = <Cli as clap::Parser>::try_parse_from(argv).unwrap().c;
        a
    };
    let mut spec = crate::c2::proto::CheckSpec {
        check_id: 9,
        id: 1,
        peers: vec![
            "10.0.0.1:4570".parse().unwrap(),
            "10.0.0.2:4570".parse().unwrap(),
        ],
        fanout: true,
        multicast: true,
        group: "239.1.2.3:4577".parse().unwrap(),
        duration_ms: 1500,
        wait_ms: 10_000,
    };
    let a = parse(&spec);
    assert_eq!(a.peers, ["10.0.0.1:4570", "10.0.0.2:4570"]);
    assert_eq!(a.id, Some(1));
    assert_eq!(a.transport, crate::cli::check::TransportsArg::Both);
    assert_eq!(a.group, Some(spec.group));
    assert_eq!(
        a.iface.as_deref(),
        Some("10.0.0.2"),
        "its own advertised address"
    );
    assert_eq!(
        (a.duration, a.wait),
        (Duration::from_millis(1500), Duration::from_secs(10))
    );
    assert!(a.json);
    assert_eq!(spec.bound(), Duration::from_millis(26_500));
    spec.multicast = false;
    let a = parse(&spec);
    assert_eq!(a.transport, crate::cli::check::TransportsArg::Fanout);
    assert_eq!(a.iface, None, "no interface without multicast");
}
