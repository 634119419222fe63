//! An agent is busy while its peer runs, whatever the controller went through: a controller
//! restarted in the middle of a run learns it from Register, a busy refusal keeps the agent
//! busy, and a failed or reported run frees only agents that said their peer ended.

mod c2_common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use c2_common::{
    client_session, private_port_and_group, run_to_end, write_key, Proc, Sealed, TempDir, EXE,
};
use mpcomm::c2::proto::{Msg, RefusalCode, Role};

/// `c2 serve` on loopback with a private peer port and group; (process, control, comparator).
fn serve(
    key: &std::path::Path,
    listen: &str,
    compare: &str,
    peer_port: u16,
    group: &str,
    results: &std::path::Path,
) -> (Proc, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(EXE);
    cmd.args([
        "c2",
        "serve",
        "--no-prompt",
        "--listen",
        listen,
        "--compare-listen",
        compare,
        "--peer-port",
        &peer_port.to_string(),
        "--group",
        group,
    ])
    .arg("--key-file")
    .arg(key)
    .arg("--results")
    .arg(results);
    let mut p = Proc::spawn(cmd, "serve");
    let line = p.wait_for("listening on ", Duration::from_secs(10));
    let rest = line.split("listening on ").nth(1).unwrap();
    let ctl = rest.split(',').next().unwrap().parse().unwrap();
    let cmp = rest
        .split("comparator on ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (p, ctl, cmp)
}

fn c2(args: &[&str], ctl: SocketAddr, key: &std::path::Path) -> Command {
    let mut cmd = Command::new(EXE);
    cmd.arg("c2")
        .args(args)
        .args(["--controller", &ctl.to_string()])
        .arg("--key-file")
        .arg(key);
    cmd
}

/// `c2 status --json`: (advertised address, live, busy) per agent.
fn status(ctl: SocketAddr, key: &std::path::Path) -> Vec<(String, bool, bool)> {
    let (st, out, _) = run_to_end(c2(&["status", "--json"], ctl, key), Duration::from_secs(30));
    assert!(st.success(), "c2 status failed");
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["advertise"].as_str().unwrap().to_string(),
                v["live"].as_bool().unwrap(),
                v["busy"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn controller_restarted_mid_run_sees_both_agents_busy_until_their_peers_end() {
    let dir = TempDir::new("c2-busy");
    let key = write_key(&dir, "key");
    let results = dir.path("results.jsonl");
    let (peer_port, group) = private_port_and_group();
    let (mut serve1, ctl, cmp) = serve(
        &key,
        "127.0.0.1:0",
        "127.0.0.1:0",
        peer_port,
        &group,
        &results,
    );
    let mut agents: Vec<Proc> = [21, 22]
        .iter()
        .map(|i| {
            let mut cmd = c2(&["agent"], ctl, &key);
            cmd.args(["--advertise", &format!("127.0.0.{i}")])
                .arg("--log-dir")
                .arg(dir.path(&format!("logs-{i}")));
            Proc::spawn(cmd, &format!("agent{i}"))
        })
        .collect();
    for a in &mut agents {
        a.wait_for("registered with controller", Duration::from_secs(10));
    }

    // A 20 s run (100 messages, 200 ms apart); kill the controller once both peers are up.
    let run = Proc::spawn(
        c2(
            &[
                "run",
                "--peers",
                "2",
                "--msgs",
                "100",
                "--interval",
                "200..200",
            ],
            ctl,
            &key,
        ),
        "run",
    );
    for a in &mut agents {
        a.wait_for("mpcomm peer: ready", Duration::from_secs(30));
    }
    serve1.child.kill().unwrap();
    serve1.wait_exit(Duration::from_secs(5));
    drop(run);

    // Same addresses again (the peers' uploads then reach the new comparator).
    let (mut serve2, _, _) = serve(
        &key,
        &ctl.to_string(),
        &cmp.to_string(),
        peer_port,
        &group,
        &results,
    );
    for _ in 0..2 {
        let l = serve2.wait_for("registered as", Duration::from_secs(5));
        assert!(
            l.contains("busy with run"),
            "an agent with a running peer registered as idle: {l}"
        );
    }
    let st = status(ctl, &key);
    eprintln!("status after the restart: {st:?}");
    assert_eq!(st.len(), 2);
    assert!(
        st.iter().all(|(_, live, busy)| *live && *busy),
        "both agents still run their peer: {st:?}"
    );

    // A run now is refused up front with a clear error; nothing starts.
    let (code, _, err) = run_to_end(
        c2(&["run", "--peers", "2", "--msgs", "5"], ctl, &key),
        Duration::from_secs(30),
    );
    assert!(!code.success());
    assert!(
        err.contains("only 0 of 2 live agents are idle"),
        "expected a refusal naming the busy agents, got: {err}"
    );
    assert!(
        !serve2.drain().iter().any(|l| l.contains(" peers x ")),
        "a run started on busy agents"
    );

    // The peers end on their own; each agent says so and becomes idle; a run then works.
    for _ in 0..2 {
        let l = serve2.wait_for("; idle", Duration::from_secs(60));
        assert!(
            l.contains(" finished; idle") || l.contains(" failed: "),
            "{l}"
        );
    }
    let st = status(ctl, &key);
    assert!(st.iter().all(|(_, live, busy)| *live && !*busy), "{st:?}");
    let (code, out, _) = run_to_end(
        c2(
            &[
                "run",
                "--peers",
                "2",
                "--msgs",
                "5",
                "--interval",
                "0..5",
                "--json",
            ],
            ctl,
            &key,
        ),
        Duration::from_secs(60),
    );
    assert!(
        code.success(),
        "the run after the agents became idle failed"
    );
    assert_eq!(out.lines().count(), 1);

    let (code, _, _) = run_to_end(c2(&["exit"], ctl, &key), Duration::from_secs(30));
    assert!(code.success());
    for a in &mut agents {
        assert!(a.wait_exit(Duration::from_secs(10)).success());
    }
    assert!(serve2.wait_exit(Duration::from_secs(10)).success());
}

/// An agent played by the test: the library's handshake on a plain socket.
type FakeAgent = Sealed;

impl FakeAgent {
    fn connect(ctl: SocketAddr, key: &std::path::Path, advertise: &str) -> FakeAgent {
        let (stream, session) = client_session(ctl, key, Role::Agent);
        let mut a = Sealed { stream, session };
        a.send(&Msg::Register {
            instance: rand::random(),
            advertise: Some(advertise.parse().unwrap()),
            zone: String::new(),
            running: None,
        });
        a
    }
}

#[test]
fn a_busy_refusal_keeps_the_agent_busy_after_the_run_failed() {
    let dir = TempDir::new("c2-busy-refusal");
    let key = write_key(&dir, "key");
    let (peer_port, group) = private_port_and_group();
    let (mut serve, ctl, _) = serve(
        &key,
        "127.0.0.1:0",
        "127.0.0.1:0",
        peer_port,
        &group,
        &dir.path("results.jsonl"),
    );
    let mut busy = FakeAgent::connect(ctl, &key, "127.0.0.41");
    serve.wait_for("registered as 127.0.0.41", Duration::from_secs(5));
    let mut idle = FakeAgent::connect(ctl, &key, "127.0.0.42");
    serve.wait_for("registered as 127.0.0.42", Duration::from_secs(5));
    let st = status(ctl, &key);
    assert!(st.iter().all(|(_, live, busy)| *live && !*busy), "{st:?}");

    let mut run = Proc::spawn(
        c2(&["run", "--peers", "2", "--msgs", "5"], ctl, &key),
        "run",
    );
    // One answers that it still runs run 77 (unknown to this controller), the other refuses
    // the spec while idle: the run fails on every peer.
    let Msg::Run(spec) = busy.recv() else {
        panic!("expected a Run")
    };
    busy.send(&Msg::RunFinished {
        run_id: spec.run_id,
        ok: false,
        detail: "agent busy with run 77: one run at a time".into(),
        running: Some(77),
        refused: Some(RefusalCode::Busy),
    });
    let Msg::Run(spec) = idle.recv() else {
        panic!("expected a Run")
    };
    idle.send(&Msg::RunFinished {
        run_id: spec.run_id,
        ok: false,
        detail: "run refused: test".into(),
        running: None,
        refused: Some(RefusalCode::OutOfBounds),
    });
    assert!(!run.wait_exit(Duration::from_secs(30)).success());
    assert!(
        run.seen.iter().any(|l| l.contains("failed on every peer")),
        "{:?}",
        run.seen
    );
    serve.wait_for("run refused: test; idle", Duration::from_secs(5));
    serve.wait_for("done", Duration::from_secs(5));

    let st = status(ctl, &key);
    eprintln!("status after the failed run: {st:?}");
    let state = |ip: &str| st.iter().find(|a| a.0 == ip).map(|a| a.2).unwrap();
    assert!(
        state("127.0.0.41"),
        "the agent that refused because it is busy shows as idle"
    );
    assert!(!state("127.0.0.42"));

    // Its own run ends: now it is idle.
    busy.send(&Msg::RunFinished {
        run_id: 77,
        ok: true,
        detail: String::new(),
        running: None,
        refused: None,
    });
    serve.wait_for(
        "run 000000000000004d finished; idle",
        Duration::from_secs(5),
    );
    let st = status(ctl, &key);
    assert!(st.iter().all(|(_, live, busy)| *live && !*busy), "{st:?}");
}
