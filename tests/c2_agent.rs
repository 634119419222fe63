//! The agent against a controller played by this test (the library's handshake on a plain
//! socket): registration, a RUN while busy refused with a clear error, and a shutdown order
//! that ends the running peer and the agent with exit code 0; an agent killed with SIGKILL
//! takes its running peer with it.

mod c2_common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use c2_common::{write_key, Proc, Sealed, TempDir, EXE};
use mpcomm::c2::proto::{Msg, RefusalCode, RunSpec};
use mpcomm::wire::{Order, Repair, Transport};

/// An agent registered with this test's controller and running peer 0 of run 11, which waits
/// in its handshake (peer 1 never exists): (agent, controller, a RunSpec for other run ids).
fn agent_running_a_peer(dir: &TempDir) -> (Proc, Sealed, impl Fn(u64) -> RunSpec) {
    let key_path = write_key(dir, "key");
    let key = mpcomm::c2::key::load(&key_path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ctl = listener.local_addr().unwrap();

    let mut cmd = Command::new(EXE);
    cmd.args([
        "c2",
        "agent",
        "--controller",
        &ctl.to_string(),
        "--advertise",
        "127.0.0.1",
        "--zone",
        "z1",
    ]);
    cmd.arg("--key-file")
        .arg(&key_path)
        .arg("--log-dir")
        .arg(dir.path("logs"));
    let agent = Proc::spawn(cmd, "agent");
    let mut c = Sealed::accept_agent(&listener, key);
    let Msg::Register {
        advertise, zone, ..
    } = c.recv()
    else {
        panic!("expected Register")
    };
    assert_eq!(
        (advertise, zone.as_str()),
        (Some("127.0.0.1".parse().unwrap()), "z1")
    );

    // Peer 1 never exists, so peer 0 waits in its handshake: the agent stays busy.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let spec = move |run_id| RunSpec {
        run_id,
        peer_id: 0,
        transport: Transport::Fanout,
        // Not none: a peer that did not take --order/--repair would exit on its command line.
        order: Order::Fifo,
        repair: Repair::Nack,
        msgs: 5,
        interval_ms: (0, 1),
        size: 0,
        seed: 1,
        group: None,
        comparator: peer(9),
        peers: vec![peer(port), peer(port.wrapping_add(1).max(1024))],
        wan: String::new(),
        zones: Vec::new(),
        time_scale: 1.0,
        wan_loss: 0.0,
        run_key: [3; 32],
        ssm: false,
    };
    c.send(&Msg::Run(Box::new(spec(11))));
    assert_eq!(c.recv(), Msg::RunReady { run_id: 11 });
    (agent, c, spec)
}

#[test]
fn busy_agent_refuses_a_second_run_and_shutdown_ends_peer_and_agent() {
    let dir = TempDir::new("c2-agent");
    let (mut agent, mut c, spec) = agent_running_a_peer(&dir);
    c.send(&Msg::Run(Box::new(spec(12))));
    match c.recv() {
        Msg::RunFinished {
            run_id: 12,
            ok: false,
            detail,
            running,
            refused: Some(RefusalCode::Busy),
        } => {
            assert!(
                detail.contains("busy with run 000000000000000b"),
                "{detail}"
            );
            assert_eq!(
                running,
                Some(11),
                "a busy refusal says which run is running"
            );
        }
        other => panic!("expected a busy refusal, got {other:?}"),
    }

    c.send(&Msg::Shutdown);
    let status = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "agent exit {status}");
    assert!(
        agent
            .seen
            .iter()
            .any(|l| l.contains("run 000000000000000b: stopping the peer")),
        "{:?}",
        agent.seen
    );
}

#[test]
fn an_agent_killed_with_sigkill_takes_its_peer_with_it() {
    let dir = TempDir::new("c2-agent-kill");
    let (mut agent, _c, _) = agent_running_a_peer(&dir);
    let line = agent.wait_for("started peer 0 of 2 (pid ", Duration::from_secs(10));
    let pid: u32 = line
        .rsplit("(pid ")
        .next()
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
            .unwrap_or(false)
    };
    assert!(running(), "the peer runs before the agent is killed");
    agent.child.kill().unwrap(); // SIGKILL: the agent runs no code of its own
    agent.child.wait().unwrap();
    let killed = Instant::now();
    while running() && killed.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !running(),
        "peer {pid} still running 1 s after its agent was killed"
    );
    eprintln!(
        "MEASURED: agent SIGKILLed: its peer gone within {:?}",
        killed.elapsed()
    );
}

/// Delivery logs with real processes: the agent's peer (the real one, through a wrapper that
/// makes its upload fail at once: the comparator's port is closed, one attempt) exits with 3
/// and keeps its log; with `--keep-failed 2` three such runs leave the newest two.
#[test]
fn failed_uploads_keep_at_most_keep_failed_logs_the_oldest_removed_first() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("c2-agent-keep");
    let key_path = write_key(&dir, "key");
    let key = mpcomm::c2::key::load(&key_path).unwrap();
    let wrapper = dir.path("peer.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{EXE}' \"$@\" --upload-attempts 1\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    let logs = dir.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // A log left by an older agent that kept everything: the oldest, so pruned first.
    std::fs::write(logs.join("mpcomm-00000000000000aa-p0.mplog"), b"old").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ctl = listener.local_addr().unwrap();
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "agent", "--controller", &ctl.to_string()])
        .args(["--advertise", "127.0.0.1", "--keep-failed", "2"])
        .arg("--key-file")
        .arg(&key_path)
        .arg("--log-dir")
        .arg(&logs)
        .arg("--peer-exe")
        .arg(&wrapper);
    let mut agent = Proc::spawn(cmd, "agent");
    let mut c = Sealed::accept_agent(&listener, key);
    assert!(matches!(c.recv(), Msg::Register { .. }));
    // A port nothing listens on: the upload is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for run_id in [0x21u64, 0x22, 0x23] {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = RunSpec {
            run_id,
            peer_id: 0,
            transport: Transport::Fanout,
            order: Order::None,
            repair: Repair::Off,
            msgs: 3,
            interval_ms: (0, 1),
            size: 0,
            seed: run_id,
            group: None,
            comparator: closed,
            peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            wan: String::new(),
            zones: Vec::new(),
            time_scale: 1.0,
            wan_loss: 0.0,
            run_key: [4; 32],
            ssm: false,
        };
        c.send(&Msg::Run(Box::new(spec)));
        let finished = loop {
            match c.recv() {
                Msg::RunReady { .. } => continue,
                m @ Msg::RunFinished { .. } => break m,
                other => panic!("unexpected {other:?}"),
            }
        };
        let Msg::RunFinished {
            run_id: id,
            ok,
            detail,
            ..
        } = finished
        else {
            unreachable!()
        };
        assert_eq!(id, run_id);
        assert!(!ok && detail.contains("exit status: 3"), "{detail}");
        // The reason the peer told the agent's socket (wire::child's Outcome).
        assert!(detail.contains("(log kept but not uploaded)"), "{detail}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mplog"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "mpcomm-0000000000000022-p0.mplog",
            "mpcomm-0000000000000023-p0.mplog"
        ]
    );
    assert!(agent
        .drain()
        .iter()
        .any(|l| l.contains("delivery log kept (not uploaded)")));
    c.send(&Msg::Shutdown);
    assert!(agent.wait_exit(Duration::from_secs(10)).success());
}
