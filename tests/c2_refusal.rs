//! The agent's handler, not its decoder, checks a RUN's bounds: a well-formed RUN out of
//! bounds is answered with a typed refusal on the same link (before, it was a decode error and
//! the agent dropped the link). And a controller of another C2 version is named with both
//! versions, not reported as a bad frame. The controller is played by this test.

mod c2_common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use c2_common::{write_key, Proc, Sealed, TempDir, EXE};
use mpcomm::c2::proto::{Hello, Msg, RefusalCode, Role, RunSpec, HELLO_LEN, VERSION};
use mpcomm::wire::frame::{read_frame, write_frame, Kind};
use mpcomm::wire::{Order, Repair, Transport};

fn start_agent(dir: &TempDir) -> (Proc, TcpListener, [u8; 32]) {
    let key_path = write_key(dir, "key");
    let key = mpcomm::c2::key::load(&key_path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(EXE);
    cmd.args(["c2", "agent", "--advertise", "127.0.0.1", "--controller"])
        .arg(listener.local_addr().unwrap().to_string())
        .arg("--key-file")
        .arg(&key_path)
        .arg("--log-dir")
        .arg(dir.path("logs"));
    (Proc::spawn(cmd, "agent"), listener, key)
}

fn spec(run_id: u64) -> RunSpec {
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    RunSpec {
        run_id,
        peer_id: 0,
        transport: Transport::Fanout,
        order: Order::Fifo,
        repair: Repair::Nack,
        msgs: 5,
        interval_ms: (0, 1),
        size: 0,
        seed: 1,
        group: None,
        comparator: at(9),
        peers: vec![at(40_001), at(40_002)],
        wan: String::new(),
        zones: Vec::new(),
        time_scale: 1.0,
        wan_loss: 0.0,
        run_key: [3; 32],
        ssm: false,
    }
}

#[test]
fn an_out_of_bounds_run_is_refused_with_a_code_and_the_link_stays_up() {
    let dir = TempDir::new("c2-refusal");
    let (mut agent, listener, key) = start_agent(&dir);
    let mut c = Sealed::accept_agent(&listener, key);
    assert!(matches!(c.recv(), Msg::Register { .. }));

    type Spoil = fn(&mut RunSpec);
    let out_of_bounds: [(Spoil, &str); 3] = [
        (|s| s.msgs = 0, "msgs must be 1..=100000, got 0"),
        (|s| s.peer_id = 5, "peer id 5 out of range for 2 peers"),
        (|s| s.interval_ms = (9, 2), "interval must be MIN..MAX ms"),
    ];
    for (i, (spoil, words)) in out_of_bounds.into_iter().enumerate() {
        let mut s = spec(20 + i as u64);
        spoil(&mut s);
        let sent = std::time::Instant::now();
        c.send(&Msg::Run(Box::new(s)));
        let answer = c.recv();
        eprintln!("MEASURED: RUN → refusal in {:?}", sent.elapsed());
        match answer {
            Msg::RunFinished {
                run_id,
                ok: false,
                detail,
                running: None,
                refused: Some(RefusalCode::OutOfBounds),
            } => {
                assert_eq!(run_id, 20 + i as u64);
                assert!(detail.starts_with("run refused: "), "{detail}");
                assert!(detail.contains(words), "{detail}");
            }
            other => panic!("expected an out-of-bounds refusal, got {other:?}"),
        }
    }

    // The same link still carries orders: the agent did not drop it.
    c.send(&Msg::Shutdown);
    let status = agent.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "agent exit {status}");
    assert!(
        !agent.seen.iter().any(|l| l.contains("reconnecting")),
        "{:?}",
        agent.seen
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the agent connected only once");
}

#[test]
fn a_controller_of_another_version_is_named_with_both_versions() {
    let dir = TempDir::new("c2-version");
    let (mut agent, listener, _key) = start_agent(&dir);
    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (k, p) = read_frame(&mut stream, HELLO_LEN as u32).unwrap();
    assert_eq!((k, Hello::version_of(&p)), (Kind::C2Hello, Some(VERSION)));
    let older = Hello {
        role: Role::Controller,
        version: VERSION - 1,
        nonce: [1; 32],
    };
    write_frame(&mut stream, Kind::C2Hello, &older.emit()).unwrap();
    let line = agent.wait_for("authentication failed", Duration::from_secs(10));
    assert!(
        line.contains(&format!("speaks C2 protocol version {}", VERSION - 1))
            && line.contains(&format!("this mpcomm version {VERSION}")),
        "{line}"
    );
    assert!(!line.contains("bad frame"), "{line}");
}
