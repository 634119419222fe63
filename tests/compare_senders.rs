//! A crashed sender is told apart from loss: from the stream ends every receiver's log
//! records, the comparator counts what it never sent as `unsent`, names it, and names a
//! receiver that took a STOP below what its sender sent.

use mpcomm::compare::{analyse, AnalyseOptions, PeerLog};
use mpcomm::wire::log::{encode, LogHeader, Record, StreamEnd};
use mpcomm::wire::Transport;

const RUN: u64 = 0x5e9d;

/// Peer `peer`'s log: delivers `(sender, seq)` in order; `ends[s]` = (known, STOP) of sender s.
fn log(peer: u16, m: u32, order: &[(u16, u32)], ends: &[(u32, Option<u32>)]) -> PeerLog {
    let header = LogHeader {
        run_id: RUN,
        peer_id: peer,
        peers: ends.len() as u16,
        msgs: m,
        transport: Some(Transport::Fanout),
        time_scale_ppm: 1_000_000,
        sent: m,
        streams: ends
            .iter()
            .map(|&(known, stop)| Some(StreamEnd { known, stop }))
            .collect(),
        ..LogHeader::default()
    };
    let recs: Vec<Record> = order
        .iter()
        .enumerate()
        .map(|(i, &(sender, seq))| Record {
            sender,
            seq,
            send_ns: 1_000 + i as u64,
            recv_ns: 2_000 + i as u64,
            deliver_ns: 2_000 + i as u64,
            arrive_ns: 2_000 + i as u64,
            arrival: i as u32,
            ..Record::default()
        })
        .collect();
    PeerLog::from_bytes(&encode(&header, &recs)).expect("a valid log")
}

fn all_of(senders: &[(u16, u32)]) -> Vec<(u16, u32)> {
    senders
        .iter()
        .flat_map(|&(s, n)| (0..n).map(move |k| (s, k)))
        .collect()
}

#[test]
fn a_sender_that_crashed_after_seq_k_is_unsent_not_lost() {
    // 3 peers x 10; peer 2 crashed after sending seq 0..=3 (no log, no STOP). Peer 0 saw all
    // four, peer 1 lost seq 3 and knows of 3.
    let m = 10;
    let p0 = log(
        0,
        m,
        &all_of(&[(0, 10), (1, 10), (2, 4)]),
        &[(10, Some(10)), (10, Some(10)), (4, None)],
    );
    let mut o1 = all_of(&[(0, 10), (1, 10), (2, 3)]);
    o1.rotate_left(3);
    let p1 = log(1, m, &o1, &[(10, Some(10)), (10, Some(10)), (3, None)]);
    let r = analyse(&[p0, p1], &AnalyseOptions::default());
    assert_eq!(r.missing_peers, vec![2]);
    assert_eq!(r.unsent, 6, "seq 4..=9 of sender 2 were never sent");
    assert_eq!(r.lost, 1, "only peer 1's seq 3 of sender 2 is lost");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("sender 2 stopped after seq 3")),
        "{:?}",
        r.warnings
    );
    let json = r.to_json_line();
    assert!(json.contains("\"unsent\":6"), "{json}");
    let mut text = Vec::new();
    r.write_human(&mut text).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("unsent 6"));
}

#[test]
fn a_stop_below_what_was_sent_names_the_receiver() {
    // Peer 1 took a (forged) STOP of 2 from sender 0, which sent all 5, and left early.
    let m = 5;
    let p0 = log(
        0,
        m,
        &all_of(&[(0, 5), (1, 5)]),
        &[(5, Some(5)), (5, Some(5))],
    );
    let p1 = log(
        1,
        m,
        &all_of(&[(0, 2), (1, 5)]),
        &[(2, Some(2)), (5, Some(5))],
    );
    let r = analyse(&[p0, p1], &AnalyseOptions::default());
    assert_eq!((r.unsent, r.lost), (0, 3));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("peer 1 took a STOP of 2 from sender 0, which sent 5")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn without_recorded_stream_ends_a_missing_sender_counts_as_before() {
    let m = 4;
    let p0 = log(0, m, &all_of(&[(0, 4)]), &[(4, Some(4)), (0, None)]);
    let mut h = LogHeader {
        run_id: RUN,
        peer_id: 0,
        peers: 2,
        msgs: m,
        ..LogHeader::default()
    };
    h.streams = vec![];
    let bare = PeerLog::from_bytes(&encode(&h, &[])).unwrap();
    assert_eq!(bare.header.streams, vec![None, None], "not recorded");
    // Peer 0 knows peer 1 sent nothing: 4 unsent, nothing lost.
    let r = analyse(&[p0], &AnalyseOptions::default());
    assert_eq!((r.unsent, r.lost), (4, 0));
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("sender 1 sent nothing")));
}

/// Crafted headers cannot make the report's sums wrap: they stop at the maximum, and say so.
#[test]
fn header_counter_sums_saturate_and_say_so() {
    let m = 2;
    let crafted = |peer| {
        let mut h = LogHeader {
            run_id: RUN,
            peer_id: peer,
            peers: 2,
            msgs: m,
            malformed: u64::MAX / 2 + 1,
            ..LogHeader::default()
        };
        h.cost.control_datagrams = u64::MAX;
        PeerLog::from_bytes(&encode(&h, &[])).unwrap()
    };
    let r = analyse(&[crafted(0), crafted(1)], &AnalyseOptions::default());
    assert_eq!(r.malformed, u64::MAX);
    assert_eq!(r.overhead.control_datagrams, u64::MAX);
    assert!(
        r.warnings.iter().any(|w| w.contains("passed 2^64")),
        "{:?}",
        r.warnings
    );
}
