use super::*;

static HELLO_BYTES: [u8; HELLO_LEN] = [
    b'M', b'P', 2, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, // header: run 7, sender 2
    0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 8, 0, 0, 0, 100, // nonce, 8 peers, 100 msgs
    4, 1, // lamport, nack
];
static ACK_BYTES: [u8; HELLO_ACK_LEN] = [
    b'M', b'P', 2, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 5, // header: run 7, sender 5
    0, 2, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, // to 2, nonce
    0, 0, 0, 0, 0, 0, 0x50, 0x05, // its own nonce 0x5005
    0, 0, 0, 0, 0, 0, 0x10, 0x01, // peer 0's nonce 0x1001
];
static DATA_BYTES: [u8; data_len(2) + 2] = [
    b'M', b'P', 2, 3, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x01,
    0x00, // sender 256
    0, 0, 0, 42, 0x17, 0x9a, 0x3f, 0x1c, 0x00, 0x00, 0x00, 0x01, // seq 42, time
    1, 0, // a retransmission, reserved
    0, 0, 0, 0, 0, 0, 0x01, 0x02, // Lamport 258
    0, 2, 0, 0, 0, 5, 0, 0, 0, 9, // vector [5, 9]
    0, 0, // pad 2
];
static STOP_BYTES: [u8; ANNOUNCE_LEN] = [
    b'M', b'P', 2, 4, 0, 0, 0, 0, 0, 0, 0, 7, 0, 3, 0, 0, 0, 100, // sent 100
    0, 0, 0, 0, 0, 0, 0, 77, 0, 0, 0, 0, 1, // Lamport 77, ordered 0, complete
];
static HEARTBEAT_BYTES: [u8; ANNOUNCE_LEN] = [
    b'M', b'P', 2, 5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 10, // sent 10
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 33, 0, // Lamport 0, ordered 33
];
static NACK_BYTES: [u8; 18 + 16] = [
    b'M', b'P', 2, 6, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, // sender 1
    0, 4, 0, 2, // to 4, DATA, 2 ranges
    0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 4, // [3, +1), [9, +4)
];
static ORDER_BYTES: [u8; 20 + 12] = [
    b'M', b'P', 2, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, // sender 0
    0, 0, 0, 50, 0, 2, // first 50, 2 entries
    0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 9, // (3, 8), (0, 9)
];

fn announce(sent: u32, lamport: u64, ordered: u32, complete: bool) -> Announce {
    Announce {
        sent,
        lamport,
        ordered,
        complete,
    }
}

fn fixtures() -> Vec<(&'static [u8], Repr)> {
    let r = |run_id, sender, body| Repr {
        run_id,
        sender,
        body,
    };
    vec![
        (
            &HELLO_BYTES[..],
            r(
                7,
                2,
                Body::Hello {
                    nonce: 0xdead_beef,
                    peers: 8,
                    msgs: 100,
                    order: 4,
                    repair: 1,
                },
            ),
        ),
        (
            &ACK_BYTES[..],
            r(
                7,
                5,
                Body::HelloAck {
                    to: 2,
                    nonce: 0xdead_beef,
                    from_nonce: 0x5005,
                    run_nonce: 0x1001,
                },
            ),
        ),
        (
            &DATA_BYTES[..],
            r(
                0x1122_3344_5566_7788,
                256,
                Body::Data {
                    seq: 42,
                    send_ns: 0x179a_3f1c_0000_0001,
                    retransmit: true,
                    lamport: 258,
                    vector: 2,
                    pad: 2,
                },
            ),
        ),
        (
            &STOP_BYTES[..],
            r(7, 3, Body::Stop(announce(100, 77, 0, true))),
        ),
        (
            &HEARTBEAT_BYTES[..],
            r(7, 0, Body::Heartbeat(announce(10, 0, 33, false))),
        ),
        (
            &NACK_BYTES[..],
            r(
                7,
                1,
                Body::Nack {
                    to: 4,
                    stream: Stream::Data,
                    ranges: 2,
                },
            ),
        ),
        (
            &ORDER_BYTES[..],
            r(
                7,
                0,
                Body::Order {
                    first: 50,
                    entries: 2,
                },
            ),
        ),
    ]
}

#[test]
fn deconstruct_fixtures() {
    let p = Packet::new_checked(&DATA_BYTES[..]).unwrap();
    assert_eq!(p.version(), 2);
    assert_eq!(p.kind(), Kind::Data);
    assert_eq!(p.run_id(), 0x1122_3344_5566_7788);
    assert_eq!(p.sender(), 256);
    for (bytes, repr) in fixtures() {
        assert_eq!(Repr::decode(bytes), Ok(repr));
    }
    assert_eq!(
        (data_vector(&DATA_BYTES, 0), data_vector(&DATA_BYTES, 1)),
        (5, 9)
    );
    assert_eq!(nack_range(&NACK_BYTES, 0), (3, 1));
    assert_eq!(nack_range(&NACK_BYTES, 1), (9, 4));
    assert_eq!(order_entry(&ORDER_BYTES, 0), (3, 8));
    assert_eq!(order_entry(&ORDER_BYTES, 1), (0, 9));
    assert_eq!(hello_modes(4, 1), Ok((Order::Lamport, Repair::Nack)));
    assert_eq!(hello_modes(5, 1), Err(Error::BadValue));
}

#[test]
fn construct_fixtures_over_garbage() {
    for (bytes, repr) in fixtures() {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut buf), bytes.len());
        match repr.body {
            Body::Data { .. } => put_data_vector(&mut buf, &[5, 9]),
            Body::Nack { .. } => {
                put_nack_range(&mut buf, 0, (3, 1));
                put_nack_range(&mut buf, 1, (9, 4));
            }
            Body::Order { .. } => {
                put_order_entry(&mut buf, 0, (3, 8));
                put_order_entry(&mut buf, 1, (0, 9));
            }
            _ => {}
        }
        assert_eq!(buf, bytes);
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for (bytes, _) in fixtures() {
        let is_data = bytes[3] == 3;
        for cut in 0..bytes.len() {
            let e = Repr::decode(&bytes[..cut]);
            if !(is_data && cut >= data_len(2)) {
                assert!(e.is_err(), "{bytes:?} cut at {cut}");
            }
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        let r = Repr::decode(&longer);
        if is_data {
            assert!(r.is_ok());
        } else {
            assert_eq!(r, Err(Error::BadLength), "{bytes:?}");
        }
    }
}

#[test]
fn one_field_wrong() {
    let mut b = HELLO_BYTES;
    b[0] = b'X';
    assert_eq!(Repr::decode(&b), Err(Error::BadMagic));
    let mut b = HELLO_BYTES;
    b[2] = 1;
    assert_eq!(
        Repr::decode(&b),
        Err(Error::BadVersion),
        "version 1 is refused"
    );
    let mut b = HELLO_BYTES;
    b[3] = 77;
    assert_eq!(Repr::decode(&b), Err(Error::UnknownKind));
    assert_eq!(
        Packet::new_checked(&b[..]).unwrap().kind(),
        Kind::Unknown(77)
    );
    let mut b = HELLO_BYTES;
    b[14..22].fill(0);
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = HELLO_BYTES;
    b[22..24].fill(0);
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    assert_eq!(Repr::decode(b"M"), Err(Error::Truncated));
    assert_eq!(Repr::decode(b"XY"), Err(Error::BadMagic));
    let big = vec![0u8; MAX_DATAGRAM + 1];
    let mut big = big;
    big[..DATA_MIN_LEN].copy_from_slice(&DATA_BYTES[..DATA_MIN_LEN]);
    assert_eq!(Repr::decode(&big), Err(Error::BadLength));
    // DATA: unknown flag, reserved byte, a vector longer than the datagram.
    let mut b = DATA_BYTES;
    b[26] = 2;
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = DATA_BYTES;
    b[27] = 1;
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = DATA_BYTES;
    b[37] = 4;
    assert_eq!(Repr::decode(&b), Err(Error::Truncated));
    // Announce: unknown flag.
    let mut b = STOP_BYTES;
    b[30] = 3;
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    // NACK: unknown stream, zero ranges, too many ranges.
    let mut b = NACK_BYTES;
    b[16] = 2;
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = NACK_BYTES;
    b[17] = 0;
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = NACK_BYTES;
    b[17] = 33;
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = NACK_BYTES;
    b[17] = 3;
    assert_eq!(Repr::decode(&b), Err(Error::Truncated));
    // ORDER: zero entries, more entries than bytes.
    let mut b = ORDER_BYTES;
    b[18..20].fill(0);
    assert_eq!(Repr::decode(&b), Err(Error::BadValue));
    let mut b = ORDER_BYTES;
    b[19] = 3;
    assert_eq!(Repr::decode(&b), Err(Error::Truncated));
}

#[test]
fn restamp_changes_only_seq_and_time() {
    let data = |seq, send_ns| Repr {
        run_id: 9,
        sender: 1,
        body: Body::Data {
            seq,
            send_ns,
            retransmit: false,
            lamport: 0,
            vector: 0,
            pad: 10,
        },
    };
    let repr = data(0, 0);
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut buf);
    restamp_data(&mut buf, 5, 77);
    assert_eq!(Repr::decode(&buf), Ok(data(5, 77)));
}

#[test]
fn wan_view_tells_fresh_data_from_the_rest() {
    assert_eq!(wan_view(&HELLO_BYTES), None);
    assert_eq!(wan_view(&ACK_BYTES), None);
    assert_eq!(wan_view(&DATA_BYTES), Some((256, None)), "a retransmission");
    let mut fresh = DATA_BYTES;
    fresh[26] = 0;
    assert_eq!(wan_view(&fresh), Some((256, Some(0x179a_3f1c_0000_0001))));
    assert_eq!(wan_view(&NACK_BYTES), Some((1, None)));
    assert_eq!(wan_view(b"garbage"), None);
}
