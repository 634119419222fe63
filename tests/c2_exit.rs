//! `c2 exit` reaches an agent that registers only after the exit was asked for (one still
//! connecting, or in its reconnect backoff); `c2 run` refuses bad values before it connects,
//! naming the flag.

mod c2_common;

use std::process::Command;
use std::time::{Duration, Instant};

use c2_common::{listening_addr, run_to_end, write_key, Proc, TempDir, EXE};

#[test]
fn an_agent_registering_during_the_exit_is_stopped_too() {
    let dir = TempDir::new("c2-exit-late");
    let key = write_key(&dir, "key");
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "serve", "--no-prompt", "--listen", "127.0.0.1:0"])
        .args(["--compare-listen", "127.0.0.1:0"])
        .arg("--key-file")
        .arg(&key)
        .arg("--results")
        .arg(dir.path("results.jsonl"));
    let mut serve = Proc::spawn(cmd, "serve");
    let addr = listening_addr(&mut serve);
    let mut exit = Command::new(EXE);
    exit.args(["c2", "exit", "--controller", &addr.to_string()])
        .arg("--key-file")
        .arg(&key);
    let mut exit = Proc::spawn(exit, "exit");
    serve.wait_for("exit requested: stopping 0 agents", Duration::from_secs(10));
    let asked = Instant::now();
    let mut agent = Command::new(EXE);
    agent
        .args(["c2", "agent", "--controller", &addr.to_string()])
        .args(["--advertise", "127.0.0.2"])
        .arg("--key-file")
        .arg(&key)
        .arg("--log-dir")
        .arg(dir.path("agent"));
    let mut agent = Proc::spawn(agent, "agent");
    agent.wait_for(
        "shutdown ordered by the controller",
        Duration::from_secs(10),
    );
    assert!(agent.wait_exit(Duration::from_secs(5)).success());
    assert!(exit.wait_exit(Duration::from_secs(15)).success());
    assert!(serve.wait_exit(Duration::from_secs(5)).success());
    assert!(
        serve
            .seen
            .iter()
            .any(|l| l.contains("exiting: 1 agents stopped")),
        "{:?}",
        serve.seen
    );
    eprintln!(
        "MEASURED: exit with a late agent: over {:?} after the agent started",
        asked.elapsed()
    );
}

#[test]
fn run_refuses_bad_values_before_connecting_naming_the_flag() {
    let dir = TempDir::new("c2-run-check");
    let key = write_key(&dir, "key");
    // Nothing listens there: a value that got past the checks would wait, then fail to connect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (extra, flag) in [
        (&["--time-scale", "0"][..], "--time-scale"),
        (&["--time-scale", "5000"], "--time-scale"),
        (&["--wan-loss", "0.1"], "--wan-loss"),
        (&["--wan", "lan", "--wan-loss", "1.5"], "--wan-loss"),
        (
            &[
                "--wan",
                "gcp8",
                "--time-scale",
                "1000",
                "--interval",
                "0..1",
            ],
            "--time-scale",
        ),
        (
            &["--interval", "10..60000", "--time-scale", "2"],
            "--interval",
        ),
        (&["--wan", "no-such-profile"], "--wan"),
        (&["--size", "20"], "--size"),
        (&["--msgs", "0"], "--msgs"),
        (&["--repeat", "0"], "--repeat"),
    ] {
        let mut cmd = Command::new(EXE);
        cmd.args(["c2", "run", "--controller", &closed.to_string()])
            .arg("--key-file")
            .arg(&key)
            .args(["--peers", "2"])
            .args(extra);
        if !extra.contains(&"--msgs") {
            cmd.args(["--msgs", "5"]);
        }
        let t = Instant::now();
        let (status, _, err) = run_to_end(cmd, Duration::from_secs(10));
        // A usage error, in clap's words and format.
        assert_eq!(status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("Usage: mpcomm c2 run"), "{extra:?}: {err}");
        assert!(err.contains(flag), "{extra:?} should name {flag}: {err}");
        assert!(
            !err.contains("connect"),
            "{extra:?}: refused before connecting: {err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{extra:?} took {:?}",
            t.elapsed()
        );
    }
}
