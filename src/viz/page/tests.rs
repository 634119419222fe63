use super::strips::disagreeing_positions;
use super::*;

#[test]
fn a_message_differs_when_its_position_does_or_a_receiver_lacks_it() {
    use crate::wire::log::{encode, LogHeader, Record};
    let log = |peer: u16, order: &[(u16, u32)]| {
        let header = LogHeader {
            peer_id: peer,
            peers: 2,
            msgs: 2,
            ..LogHeader::default()
        };
        let recs: Vec<Record> = order
            .iter()
            .map(|&(sender, seq)| Record {
                sender,
                seq,
                ..Record::default()
            })
            .collect();
        PeerLog::from_bytes(&encode(&header, &recs)).unwrap()
    };
    let logs = [
        log(0, &[(0, 0), (1, 0), (0, 1), (1, 1)]),
        log(1, &[(0, 0), (0, 1), (1, 0)]),
    ];
    let d = differing_messages(&logs);
    // Indices: (0,0)=0, (0,1)=1, (1,0)=2, (1,1)=3.
    assert_eq!(d.get(0), Some(false));
    assert_eq!(d.get(1), Some(true));
    assert_eq!(d.get(2), Some(true));
    assert_eq!(d.get(3), Some(true), "receiver 1 lacks it");
    assert_eq!(d.get(4), None);
}

#[test]
fn coordinates_are_short() {
    assert_eq!(P(3.0).to_string(), "3");
    assert_eq!(P(3.04).to_string(), "3");
    assert_eq!(P(3.06).to_string(), "3.1");
    assert_eq!(P(-1.25).to_string(), "-1.3");
}

#[test]
fn positions_disagree_where_any_order_differs_or_ends() {
    let a: &[u32] = &[0, 1, 2, 3];
    let b: &[u32] = &[0, 2, 1];
    assert_eq!(disagreeing_positions(&[a, b], 4), [false, true, true, true]);
    assert_eq!(disagreeing_positions(&[a, a], 3), [false; 3]);
}
