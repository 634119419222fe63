//! `peer --notify`: real peer processes, started from a `PeerSpec`'s argument vector, tell a
//! socket the test bound that they are ready (with the address they bound) and how their run
//! ended (with the log they wrote), as `wire::child` messages.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mpcomm::peer::child::{ParentSocket, RECV_BUF};
use mpcomm::peer::PeerSpec;
use mpcomm::wire::child::{Reason, Repr};
use support::{loopback_peers, mpcomm, Proc, TempDir};

/// At most `count` messages, each within what is left of `within`.
fn collect(parent: &ParentSocket, count: usize, within: Duration) -> Vec<Repr> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; RECV_BUF];
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {got:?} within {within:?}");
        parent.socket().set_read_timeout(Some(left)).unwrap();
        match parent.recv(&mut buf) {
            Ok(Ok(m)) => got.push(m),
            Ok(Err(e)) => panic!("a peer sent a message that does not parse: {e}"),
            Err(e) => panic!("only {got:?} within {within:?}: {e}"),
        }
    }
    got
}

fn spec(peers: &[std::net::SocketAddr], id: u16, dir: &TempDir, notify: PathBuf) -> PeerSpec {
    PeerSpec {
        id: Some(id),
        msgs: 5,
        interval: (Duration::ZERO, Duration::from_millis(2)),
        drain: Duration::from_millis(300),
        log_dir: Some(dir.path().to_owned()),
        notify: Some(notify),
        ..PeerSpec::new(peers.iter().map(ToString::to_string).collect())
    }
}

#[test]
fn peers_tell_their_bound_address_then_their_outcome_and_log() {
    let dir = TempDir::new("notify");
    let parent = ParentSocket::bind(dir.path(), "n.sock").unwrap();
    let (peers, _) = loopback_peers(2);
    let procs: Vec<Proc> = (0..2)
        .map(|id| {
            let mut cmd = mpcomm();
            cmd.args(spec(&peers, id, &dir, parent.path().to_owned()).to_args());
            Proc::spawn(cmd)
        })
        .collect();
    let pids: Vec<u32> = procs.iter().map(|p| p.child.id()).collect();
    let msgs = collect(&parent, 4, Duration::from_secs(20));
    let mut run_ids = Vec::new();
    for id in 0..2u16 {
        let i = usize::from(id);
        let ready = msgs
            .iter()
            .find(|m| matches!(m, Repr::Ready { peer, .. } if *peer == id));
        match ready {
            Some(Repr::Ready {
                pid, bound, rcvbuf, ..
            }) => {
                assert_eq!((*pid, *bound), (pids[i], peers[i]));
                assert!(*rcvbuf > 0);
            }
            other => panic!("peer {id}: no Ready in {msgs:?}: {other:?}"),
        }
        let outcome = msgs
            .iter()
            .find(|m| matches!(m, Repr::Outcome { peer, .. } if *peer == id));
        let Some(Repr::Outcome {
            ok,
            reason,
            run_id,
            log,
            ..
        }) = outcome
        else {
            panic!("peer {id}: no Outcome in {msgs:?}");
        };
        assert!(*ok && *reason == Reason::Done, "{outcome:?}");
        let log = std::path::Path::new(std::ffi::OsStr::from_bytes(log));
        assert!(log.starts_with(dir.path()) && log.is_file(), "{log:?}");
        run_ids.push(run_id.expect("an agreed run id"));
    }
    assert_eq!(run_ids[0], run_ids[1], "one run");
    // Ready comes before the Outcome of the same peer.
    for id in 0..2u16 {
        let at = |ready: bool| {
            msgs.iter().position(|m| match m {
                Repr::Ready { peer, .. } => ready && *peer == id,
                Repr::Outcome { peer, .. } => !ready && *peer == id,
            })
        };
        assert!(at(true) < at(false), "{msgs:?}");
    }
    for p in procs {
        let (status, _) = p.finish(Duration::from_secs(10));
        assert!(status.success());
    }
}

#[test]
fn a_peer_whose_handshake_fails_says_why_and_that_it_wrote_no_log() {
    let dir = TempDir::new("notify-fail");
    let parent = ParentSocket::bind(dir.path(), "n.sock").unwrap();
    let (peers, _) = loopback_peers(2);
    let mut s = spec(&peers, 0, &dir, parent.path().to_owned());
    s.handshake_timeout = Duration::from_millis(300);
    let mut cmd = mpcomm();
    cmd.args(s.to_args());
    let p = Proc::spawn(cmd);
    let msgs = collect(&parent, 2, Duration::from_secs(10));
    assert!(matches!(msgs[0], Repr::Ready { peer: 0, .. }), "{msgs:?}");
    // (Its run id is peer 0's proposal, or none: not asserted.)
    assert!(
        matches!(
            &msgs[1],
            Repr::Outcome { peer: 0, ok: false, reason: Reason::Handshake, log, .. } if log.is_empty()
        ),
        "{msgs:?}"
    );
    let (status, _) = p.finish(Duration::from_secs(10));
    assert_eq!(status.code(), Some(u8::from(Reason::Handshake).into()));
}
