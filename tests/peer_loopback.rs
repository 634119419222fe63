//! Real peer processes on loopback, both transports: the logs they write, garbage they survive,
//! uploads that fail and succeed later.

mod support;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use mpcomm::wire::log::LogView;
use mpcomm::wire::packet::{Body, Repr};
use support::{join, loopback_peers, mpcomm, Proc, TempDir};

/// A peer command; `extra` flags replace the defaults given here (clap refuses repeats).
fn peer_cmd_with(
    peers: &[SocketAddr],
    group: SocketAddr,
    id: usize,
    msgs: u32,
    transport: &str,
    dir: &TempDir,
    extra: &[&str],
) -> std::process::Command {
    let mut c = mpcomm();
    c.args([
        "peer",
        "--peers",
        &join(peers),
        "--id",
        &id.to_string(),
        "--msgs",
        &msgs.to_string(),
    ]);
    c.args([
        "--transport",
        transport,
        "--group",
        &group.to_string(),
        "--drain",
        "500ms",
        "--json",
        "--log-dir",
    ]);
    c.arg(dir.path());
    for (flag, default) in [("--interval", "1..4"), ("--handshake-timeout", "10s")] {
        if !extra.contains(&flag) {
            c.args([flag, default]);
        }
    }
    c.args(extra);
    c
}

fn peer_cmd(
    peers: &[SocketAddr],
    group: SocketAddr,
    id: usize,
    msgs: u32,
    transport: &str,
    dir: &TempDir,
) -> std::process::Command {
    peer_cmd_with(peers, group, id, msgs, transport, dir, &[])
}

fn logs_in(dir: &TempDir) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mplog"))
        .collect();
    v.sort();
    v
}

fn run_peers(transport: &str, n: usize, msgs: u32) {
    let dir = TempDir::new(transport);
    let (peers, group) = loopback_peers(n);
    let procs: Vec<Proc> = (0..n)
        .map(|i| Proc::spawn(peer_cmd(&peers, group, i, msgs, transport, &dir)))
        .collect();
    for p in procs {
        let (status, stdout) = p.finish(Duration::from_secs(30));
        assert!(status.success(), "peer failed: {status}");
        let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(summary["ok"], true);
        assert_eq!(summary["deliveries"], n as u64 * u64::from(msgs));
    }
    let logs = logs_in(&dir);
    assert_eq!(logs.len(), n);
    let mut run_ids = HashSet::new();
    for path in logs {
        let bytes = std::fs::read(&path).unwrap();
        let log = LogView::parse(&bytes).unwrap();
        run_ids.insert(log.header.run_id);
        assert_eq!(log.header.transport.unwrap().as_str(), transport);
        let distinct: HashSet<(u16, u32)> = log.records().map(|r| (r.sender, r.seq)).collect();
        assert_eq!(distinct.len(), n * msgs as usize, "{}", path.display());
        assert_eq!(log.len(), n * msgs as usize, "no duplicates on loopback");
        for r in log.records() {
            assert!(r.deliver_ns >= r.send_ns, "one clock: delivery after send");
        }
    }
    assert_eq!(run_ids.len(), 1, "all peers agreed on one run id");
}

#[test]
fn fanout_peers_deliver_everything() {
    run_peers("fanout", 4, 40);
}

#[test]
fn multicast_peers_deliver_everything() {
    run_peers("multicast", 4, 40);
}

/// 500 datagrams that are not ours or not valid, sent to a peer during its run.
fn garbage(run_id: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    let data = Repr {
        run_id,
        sender: 1,
        body: Body::plain_data(0, 1),
    };
    let n = data.emit(&mut buf);
    let valid = buf[..n].to_vec();
    for i in 0..500u32 {
        let mut g = match i % 5 {
            0 => {
                // Random bytes that do not start with the magic.
                let len = 1 + (i as usize * 7919) % 200;
                let mut v: Vec<u8> = (0..len).map(|_| rand::random()).collect();
                v[0] = b'X';
                v
            }
            1 => valid[..(i as usize % 14)].to_vec(), // a truncated header
            2 => {
                let mut v = valid.clone();
                v[2] = 9; // an unknown version
                v
            }
            3 => {
                let mut v = valid.clone();
                v[3] = 200; // an unknown kind
                v
            }
            _ => {
                let mut v = valid[..20].to_vec(); // DATA cut inside its body
                v[19] ^= 0xff;
                v
            }
        };
        if g.is_empty() {
            g.push(0);
        }
        out.push(g);
    }
    out
}

#[test]
fn garbage_during_a_run_is_counted_as_malformed() {
    let dir = TempDir::new("garbage");
    let (peers, group) = loopback_peers(3);
    let run_id = 4242;
    let procs: Vec<Proc> = (0..3)
        .map(|i| {
            let rid = run_id.to_string();
            Proc::spawn(peer_cmd_with(
                &peers,
                group,
                i,
                60,
                "fanout",
                &dir,
                &["--run-id", &rid, "--interval", "5..10"],
            ))
        })
        .collect();
    let mut procs = procs;
    procs[0].wait_for_line("ready", Duration::from_secs(10));
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for g in garbage(run_id) {
        attacker.send_to(&g, peers[0]).unwrap();
    }
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(30));
        assert!(status.success());
    }
    let p0 = logs_in(&dir)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-p0.mplog"))
        .unwrap();
    let bytes = std::fs::read(p0).unwrap();
    let log = LogView::parse(&bytes).unwrap();
    assert_eq!(log.header.malformed, 500, "every garbage datagram counted");
    let distinct: HashSet<(u16, u32)> = log.records().map(|r| (r.sender, r.seq)).collect();
    assert_eq!(distinct.len(), 180, "and the run's counts are still right");
    assert_eq!(log.len(), 180);
}

#[test]
fn a_missing_peer_is_named_and_the_exit_code_says_so() {
    let dir = TempDir::new("missing");
    let (peers, group) = loopback_peers(3);
    let mut p = Proc::spawn(peer_cmd_with(
        &peers,
        group,
        0,
        5,
        "fanout",
        &dir,
        &["--handshake-timeout", "700ms"],
    ));
    let line = p.wait_for_line("handshake timed out", Duration::from_secs(10));
    // Peer 0 names the others, never itself.
    assert!(line.contains("peer(s) 1, 2 ("), "{line}");
    let (status, _) = p.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
}

#[test]
fn a_waiting_peer_says_whom_it_waits_for_and_names_another_runs_hello() {
    let dir = TempDir::new("waiting");
    let (peers, group) = loopback_peers(3);
    // Peer 1 runs with another --msgs: peer 0 must say so, not just "timed out".
    // Killed when dropped, at the end of the test.
    let _other = Proc::spawn(peer_cmd_with(
        &peers,
        group,
        1,
        9,
        "fanout",
        &dir,
        &["--handshake-timeout", "7s"],
    ));
    let mut p = Proc::spawn(peer_cmd_with(
        &peers,
        group,
        0,
        5,
        "fanout",
        &dir,
        &["--handshake-timeout", "6s"],
    ));
    let waiting = p.wait_for_line("waiting for peer(s)", Duration::from_secs(8));
    assert!(waiting.contains("peer(s) 1, 2 "), "{waiting}");
    let why = p.wait_for_line("another run", Duration::from_secs(8));
    assert!(
        why.contains("peer 1 sent a HELLO for another run: 3 peers x 9 msgs")
            && why.contains("(this peer: 3 x 5"),
        "{why}"
    );
    let (status, _) = p.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
}

#[test]
fn a_comparator_without_a_port_is_refused_and_an_unreachable_one_is_said_at_once() {
    let dir = TempDir::new("cmp-addr");
    let (peers, group) = loopback_peers(1);
    let out = peer_cmd_with(
        &peers,
        group,
        0,
        1,
        "fanout",
        &dir,
        &["--comparator", "127.0.0.1"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no port"));
    // A port nobody listens on (bound, then closed): the warning comes before the run ends.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut p = Proc::spawn(peer_cmd_with(
        &peers,
        group,
        0,
        50,
        "fanout",
        &dir,
        &[
            "--comparator",
            &closed.to_string(),
            "--interval",
            "20..20",
            "--upload-attempts",
            "1",
        ],
    ));
    p.wait_for_line("cannot be reached now", Duration::from_secs(3));
    assert!(
        !p.seen.iter().any(|l| l.contains("retry with")),
        "the warning came only after the run: {:?}",
        p.seen
    );
    let (status, _) = p.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "log kept, not uploaded");
}

#[test]
fn a_failed_upload_keeps_the_log_and_the_exit_code_says_so() {
    let dir = TempDir::new("upload");
    let (peers, group) = loopback_peers(1);
    // A port with nobody listening: connection refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = peer_cmd(&peers, group, 0, 5, "fanout", &dir);
    c.args([
        "--comparator",
        &closed.to_string(),
        "--upload-attempts",
        "2",
    ]);
    let mut p = Proc::spawn(c);
    p.wait_for_line("log is kept", Duration::from_secs(20));
    let (status, _) = p.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(3));
    let logs = logs_in(&dir);
    assert_eq!(logs.len(), 1, "the log stays for a retry");
    assert_eq!(
        LogView::parse(&std::fs::read(&logs[0]).unwrap())
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn log_dump_prints_the_documented_csv() {
    let dir = TempDir::new("dump");
    let (peers, group) = loopback_peers(2);
    let procs: Vec<Proc> = (0..2)
        .map(|i| Proc::spawn(peer_cmd(&peers, group, i, 7, "fanout", &dir)))
        .collect();
    for p in procs {
        assert!(p.finish(Duration::from_secs(30)).0.success());
    }
    let log = &logs_in(&dir)[1];
    let out = mpcomm()
        .args(["log", "dump", "--csv"])
        .arg(log)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("receiver,position,sender,seq,send_ns,recv_ns,deliver_ns,arrive_ns,arrival,retransmitted")
    );
    let rows: Vec<Vec<u64>> = lines
        .map(|l| l.split(',').map(|f| f.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 14);
    for (pos, r) in rows.iter().enumerate() {
        assert_eq!(r[0], 1, "receiver");
        assert_eq!(r[1], pos as u64, "position");
        assert!(
            r[4] <= r[5] && r[5] <= r[6],
            "send ≤ recv ≤ deliver on one clock"
        );
    }
    // A file that is not a log gets a clear error and a non-zero exit.
    let bogus = dir.path().join("bogus.mplog");
    std::fs::write(&bogus, b"not a log").unwrap();
    let out = mpcomm().args(["log", "dump"]).arg(&bogus).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid delivery log"));
}

#[test]
fn an_upload_the_comparator_refuses_is_not_retried() {
    use mpcomm::compare::{Server, ServerConfig};
    let dir = TempDir::new("refused");
    let (peers, group) = loopback_peers(1);
    assert!(Proc::spawn(peer_cmd(&peers, group, 0, 400, "fanout", &dir))
        .finish(Duration::from_secs(30))
        .0
        .success());
    let log = logs_in(&dir).remove(0);
    assert!(std::fs::metadata(&log).unwrap().len() > 4096);

    // A comparator whose cap is below the log's size refuses it from the frame header.
    let mut cfg = ServerConfig::local("127.0.0.1:0".parse().unwrap());
    cfg.max_upload_bytes = 4096;
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let stop = server.stopper();
    let thread = std::thread::spawn(move || server.run(|_| {}));
    let out = mpcomm()
        .args([
            "upload",
            "--attempts",
            "3",
            "--comparator",
            &addr.to_string(),
        ])
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refused the log"), "{stderr}");
    assert!(
        !stderr.contains("attempt 2/3"),
        "a refusal is final, not retried: {stderr}"
    );
    stop.stop();
    thread.join().unwrap().unwrap();
}

/// With `--run-key-file`, forged datagrams of every kind with the right run id (unsigned, or
/// signed with another key) are counted as `forged` and change nothing else; a key file that
/// others may read is refused up front.
#[test]
fn with_a_run_key_forged_datagrams_are_counted_and_change_nothing() {
    use mpcomm::wire::auth::RunKey;
    use mpcomm::wire::packet::{Announce, Stream};
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("runkey");
    let key_file = dir.path().join("run.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (peers, group) = loopback_peers(3);
    let key = key_file.to_string_lossy().to_string();
    let refused = peer_cmd_with(
        &peers,
        group,
        0,
        5,
        "fanout",
        &dir,
        &["--run-key-file", &key],
    )
    .output()
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let run_id = 4343u64;
    let rid = run_id.to_string();
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            Proc::spawn(peer_cmd_with(
                &peers,
                group,
                i,
                60,
                "fanout",
                &dir,
                &[
                    "--run-id",
                    &rid,
                    "--interval",
                    "5..10",
                    "--order",
                    "lamport",
                    "--run-key-file",
                    &key,
                ],
            ))
        })
        .collect();
    procs[0].wait_for_line("ready", Duration::from_secs(10));
    let bodies = [
        Body::Hello {
            nonce: 9,
            peers: 3,
            msgs: 60,
            order: 4,
            repair: 1,
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
            sent: 60,
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
    let other = RunKey::new([0xcd; 32]);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0;
    for _ in 0..20 {
        for body in bodies {
            let mut buf = [0u8; 256];
            let n = Repr {
                run_id,
                sender: 1,
                body,
            }
            .emit(&mut buf);
            attacker.send_to(&buf[..n], peers[0]).unwrap();
            let n = other.sign(&mut buf, n);
            attacker.send_to(&buf[..n], peers[0]).unwrap();
            sent += 2;
        }
    }
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(30));
        assert!(status.success());
    }
    for path in logs_in(&dir) {
        let bytes = std::fs::read(&path).unwrap();
        let log = LogView::parse(&bytes).unwrap();
        let mine = path.to_string_lossy().ends_with("-p0.mplog");
        assert_eq!(
            log.header.forged,
            if mine { sent } else { 0 },
            "{}",
            path.display()
        );
        assert_eq!(log.header.malformed, 0);
        let distinct: HashSet<(u16, u32)> = log.records().map(|r| (r.sender, r.seq)).collect();
        assert_eq!((distinct.len(), log.len()), (180, 180), "the run is exact");
    }
}

/// Without `--log-dir` the log goes to `$XDG_STATE_HOME/mpcomm/<run id>/`, never the current
/// directory.
#[test]
fn without_log_dir_the_log_goes_to_the_state_directory_named_after_the_run() {
    let state = TempDir::new("state-home");
    let cwd = TempDir::new("cwd");
    let (peers, _) = loopback_peers(1);
    let out = mpcomm()
        .args(["peer", "--peers", &join(&peers), "--id", "0", "--msgs", "3"])
        .args(["--interval", "1..2", "--drain", "200ms", "--json"])
        .env("XDG_STATE_HOME", state.path())
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = summary["run_id"].as_str().unwrap();
    let want = state
        .path()
        .join("mpcomm")
        .join(run)
        .join(format!("mpcomm-{run}-p0.mplog"));
    assert!(want.exists(), "no {}", want.display());
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "wrote into the cwd"
    );
}
