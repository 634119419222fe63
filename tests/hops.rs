//! Hop distance: the comparator's per-pair figures on hand-built logs with known answers, and
//! the TTLs real peers record (the received TTL per delivery, the sending TTL in the header).

mod support;

use std::time::Duration;

use mpcomm::compare::{analyse, AnalyseOptions, PeerLog};
use mpcomm::wire::log::{encode, LogHeader, LogView, Record};
use mpcomm::wire::Transport;
use support::{mpcomm, Proc, TempDir};

const RUN: u64 = 0x4045;

/// Peer `peer`'s log of a 3-peer, 2-message run: it sent with `data_ttl` and received
/// `(sender, seq, ttl, retransmitted)`.
fn log(peer: u16, data_ttl: u8, recs: &[(u16, u32, u8, bool)]) -> PeerLog {
    let h = LogHeader {
        run_id: RUN,
        peer_id: peer,
        peers: 3,
        msgs: 2,
        transport: Some(Transport::Multicast),
        time_scale_ppm: 1_000_000,
        data_ttl,
        ..LogHeader::default()
    };
    let recs: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, &(sender, seq, ttl, retransmitted))| Record {
            sender,
            seq,
            send_ns: 1_000,
            recv_ns: 2_000,
            deliver_ns: 2_000,
            arrive_ns: 2_000,
            arrival: i as u32,
            retransmitted,
            ttl,
            ..Record::default()
        })
        .collect();
    PeerLog::from_bytes(&encode(&h, &recs)).unwrap()
}

fn hops_of(r: &mpcomm::compare::Report) -> Vec<(u16, u16, u8, u8)> {
    r.hops
        .iter()
        .map(|h| (h.sender, h.receiver, h.min, h.max))
        .collect()
}

#[test]
fn hops_are_the_senders_ttl_minus_the_received_one_per_pair() {
    let logs = [
        // Peer 0 sent with TTL 8; it hears itself at 8 and peer 1 at 6 or 5. Peer 1's
        // retransmission came by another path (TTL 64 unicast): not a hop count.
        log(
            0,
            8,
            &[
                (0, 0, 8, false),
                (1, 0, 6, false),
                (1, 1, 5, false),
                (1, 1, 64, true),
            ],
        ),
        // Peer 1 sent with TTL 8; it heard peer 0 at 7 and peer 2 (whose log is missing) at
        // 4: the receiver's own TTL stands in for the sender's.
        log(
            1,
            8,
            &[(0, 0, 7, false), (2, 0, 4, false), (2, 1, 4, false)],
        ),
    ];
    let r = analyse(&logs, &AnalyseOptions::default());
    assert_eq!(
        hops_of(&r),
        [(0, 0, 0, 0), (1, 0, 2, 3), (0, 1, 1, 1), (2, 1, 4, 4)]
    );
    assert_eq!(
        r.hops_line().unwrap(),
        "hop distance 0..4 over 4 sender -> receiver pairs (sender's TTL - received TTL; per pair: --matrix, --json \"hops\")"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["hops"][1],
        serde_json::json!({"sender": 1, "receiver": 0, "min": 2, "max": 3})
    );
    let with_matrix = analyse(
        &logs,
        &AnalyseOptions {
            matrix: true,
            ..AnalyseOptions::default()
        },
    );
    let m = with_matrix.matrix.as_ref().unwrap();
    assert_eq!(m.hops[0], [Some([0, 0]), Some([2, 3]), None]);
    assert_eq!(m.hops[1], [Some([1, 1]), None, Some([4, 4])]);
    assert_eq!(m.hops[2], [None, None, None], "peer 2's log is missing");
    let mut text = Vec::new();
    with_matrix.write_human(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("hops (row: receiver"), "{text}");
    assert!(text.contains("2-3"), "{text}");
}

#[test]
fn logs_without_ttls_have_no_hops() {
    // Version 3 logs, and kernels that do not report a TTL: every record's TTL is 0.
    let logs = [
        log(0, 64, &[(0, 0, 0, false)]),
        log(1, 0, &[(0, 0, 0, false)]),
    ];
    let r = analyse(&logs, &AnalyseOptions::default());
    assert!(r.hops.is_empty() && r.hops_line().is_none());
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json.get("hops").is_none(),
        "left out of the JSON when empty"
    );
}

/// Two real peers on the loopback: each delivery records the TTL it arrived with and the log
/// header the TTL its DATA left with — 64 for fan-out (unicast), `--ttl` for multicast.
#[test]
fn real_peers_record_the_ttls() {
    for (transport, ttl, want) in [("fanout", "3", 64u8), ("multicast", "3", 3)] {
        let dir = TempDir::new("hops");
        let (peers, _) = support::loopback_peers(2);
        let list = support::join(&peers);
        let group = format!(
            "239.255.{}.{}:4599",
            rand::random::<u8>(),
            rand::random::<u8>()
        );
        let procs: Vec<Proc> = (0..2)
            .map(|i| {
                let mut c = mpcomm();
                c.args(["peer", "--peers", &list, "--id", &i.to_string()])
                    .args(["--msgs", "10", "--interval", "1..3", "--drain", "300ms"])
                    .args(["--transport", transport, "--ttl", ttl, "--group", &group])
                    .arg("--log-dir")
                    .arg(dir.path());
                Proc::spawn(c)
            })
            .collect();
        for p in procs {
            let (status, _) = p.finish(Duration::from_secs(30));
            assert!(status.success(), "{transport}");
        }
        let mut seen = 0;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let view = LogView::parse(&bytes).unwrap();
            assert_eq!(view.header.data_ttl, want, "{transport}");
            assert_eq!(view.len(), 20, "{transport}");
            for r in view.records() {
                assert_eq!(r.ttl, want, "{transport}: {r:?}");
            }
            seen += 1;
        }
        assert_eq!(seen, 2, "{transport}: both logs");
    }
}
