//! The fuzz harness, on stable Rust inside `cargo test`: every decoder in `wire` gets seeded
//! random byte strings, truncations and bit flips of valid fixtures, and must return a value or
//! an error — never panic. Round trips are property-tested.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use mpcomm::wire::frame::{FrameHeader, Kind as FrameKind};
use mpcomm::wire::log::{self, LogHeader, LogView, Record};
use mpcomm::wire::packet::{Announce, Body, Repr, Stream};
use mpcomm::wire::Transport;

/// Decode with every decoder; the point is that none of these calls panics.
fn decode_all(bytes: &[u8]) {
    let _ = Repr::decode(bytes);
    if let Ok(view) = LogView::parse(bytes) {
        // A view that parsed must be fully readable.
        assert_eq!(view.records().count() as u64, view.header.record_count);
    }
    let _ = LogHeader::parse(bytes);
    let _ = FrameHeader::parse(bytes, 1 << 20);
}

fn valid_inputs() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    let reprs = [
        Repr {
            run_id: 1,
            sender: 0,
            body: Body::Hello {
                nonce: 5,
                peers: 8,
                msgs: 100,
                order: 2,
                repair: 1,
            },
        },
        Repr {
            run_id: 0,
            sender: 3,
            body: Body::HelloAck {
                to: 2,
                nonce: 5,
                from_nonce: 6,
                run_nonce: 5,
            },
        },
        Repr {
            run_id: 9,
            sender: 7,
            body: Body::Data {
                seq: 41,
                send_ns: 1 << 60,
                retransmit: true,
                lamport: 12,
                vector: 8,
                pad: 100,
            },
        },
        Repr {
            run_id: 9,
            sender: 7,
            body: Body::Stop(Announce {
                sent: 100,
                lamport: 7,
                ordered: 3,
                complete: true,
            }),
        },
        Repr {
            run_id: 9,
            sender: 7,
            body: Body::Heartbeat(Announce {
                sent: 10,
                ..Announce::default()
            }),
        },
        Repr {
            run_id: 9,
            sender: 2,
            body: Body::Nack {
                to: 1,
                stream: Stream::Order,
                ranges: 3,
            },
        },
        Repr {
            run_id: 9,
            sender: 0,
            body: Body::Order {
                first: 77,
                entries: 5,
            },
        },
    ];
    for r in reprs {
        let n = r.emit(&mut buf);
        out.push(buf[..n].to_vec());
    }
    let header = LogHeader {
        run_id: 9,
        peer_id: 1,
        peers: 3,
        msgs: 4,
        transport: Some(Transport::Fanout),
        wan: "gcp8".into(),
        zone: "SA".into(),
        kernel_drops: 5,
        data_datagrams_sent: 12,
        data_bytes_sent: 768,
        send_syscalls: 20,
        recv_syscalls: 30,
        cpu_ns: 1_000_000,
        send_drops: 1,
        data_ttl: 64,
        ..LogHeader::default()
    };
    let recs: Vec<Record> = (0..6)
        .map(|i| Record {
            sender: i % 3,
            seq: u32::from(i),
            ttl: 60 + i as u8,
            ..Record::default()
        })
        .collect();
    let v3 = log::encode(&header, &recs);
    // The same log as version 3 wrote it (no sending TTL), still read.
    let mut v3_old = v3.clone();
    v3_old.drain(log::HEADER_FIXED_LEN_V3..log::HEADER_FIXED_LEN);
    let hl = header.buffer_len() - (log::HEADER_FIXED_LEN - log::HEADER_FIXED_LEN_V3);
    v3_old[8..10].copy_from_slice(&log::VERSION_3.to_be_bytes());
    v3_old[10..12].copy_from_slice(&(hl as u16).to_be_bytes());
    let old = LogView::parse(&v3_old).expect("a version 3 log parses");
    assert_eq!((old.header.data_ttl, old.header.send_drops), (0, 1));
    out.push(v3_old);
    // The same log as version 2 wrote it (no counters after `forged`), still read.
    let mut v2 = v3.clone();
    v2.drain(log::HEADER_FIXED_LEN_V2..log::HEADER_FIXED_LEN);
    let hl = header.buffer_len() - (log::HEADER_FIXED_LEN - log::HEADER_FIXED_LEN_V2);
    v2[8..10].copy_from_slice(&log::VERSION_2.to_be_bytes());
    v2[10..12].copy_from_slice(&(hl as u16).to_be_bytes());
    let old = LogView::parse(&v2).expect("a version 2 log parses");
    assert_eq!((old.header.kernel_drops, old.header.cpu_ns), (0, 0));
    assert_eq!(old.len(), recs.len());
    out.push(v3);
    out.push(v2);
    let mut frame = Vec::new();
    mpcomm::wire::frame::write_frame(&mut frame, FrameKind::Upload, b"payload").unwrap();
    out.push(frame);
    out
}

#[test]
fn seeded_random_bytes_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6d70_636f_6d6d);
    for _ in 0..20_000 {
        let len = rng.gen_range(0..300);
        let mut v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Half of them start like ours, so the deeper checks are reached too.
        if rng.gen_bool(0.5) && !v.is_empty() {
            let prefixes: [&[u8]; 3] = [b"MP\x01", b"MPCOMLOG\x00\x01", b"MPCF\x01"];
            let p = prefixes[rng.gen_range(0..3)];
            let n = p.len().min(v.len());
            v[..n].copy_from_slice(&p[..n]);
        }
        decode_all(&v);
    }
}

#[test]
fn truncations_and_bit_flips_of_valid_inputs_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for valid in valid_inputs() {
        for cut in 0..=valid.len() {
            decode_all(&valid[..cut]);
        }
        for _ in 0..2_000 {
            let mut v = valid.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            decode_all(&v);
        }
    }
}

fn any_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (1u64.., 1u16.., any::<u32>(), any::<u8>(), any::<u8>()).prop_map(
            |(nonce, peers, msgs, order, repair)| Body::Hello {
                nonce,
                peers,
                msgs,
                order,
                repair
            }
        ),
        (any::<u16>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(to, nonce, from_nonce, run_nonce)| {
                Body::HelloAck {
                    to,
                    nonce,
                    from_nonce,
                    run_nonce,
                }
            }
        ),
        (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            0u16..300,
            0u16..2000
        )
            .prop_map(
                |(seq, send_ns, retransmit, lamport, vector, pad)| Body::Data {
                    seq,
                    send_ns,
                    retransmit,
                    lamport,
                    vector,
                    pad
                }
            ),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(sent, lamport, ordered, complete, stop)| {
                let a = Announce {
                    sent,
                    lamport,
                    ordered,
                    complete,
                };
                if stop {
                    Body::Stop(a)
                } else {
                    Body::Heartbeat(a)
                }
            }),
        (any::<u16>(), any::<bool>(), 1u8..=32).prop_map(|(to, order, ranges)| Body::Nack {
            to,
            stream: if order { Stream::Order } else { Stream::Data },
            ranges
        }),
        (any::<u32>(), 1u16..=240).prop_map(|(first, entries)| Body::Order { first, entries }),
    ]
}

proptest! {
    #[test]
    fn datagram_round_trip(run_id in any::<u64>(), sender in any::<u16>(), body in any_body()) {
        let r = Repr { run_id, sender, body };
        let mut buf = vec![0xa5u8; r.buffer_len()];
        prop_assert_eq!(r.emit(&mut buf), buf.len());
        prop_assert_eq!(Repr::decode(&buf), Ok(r));
    }

    #[test]
    fn log_round_trip(
        peers in 1u16..50,
        msgs in any::<u32>(),
        clock in proptest::option::of(0u64..u64::MAX),
        wan in "[a-z0-9]{0,20}",
        zone in "[A-Z0-9]{0,5}",
        recs in proptest::collection::vec((any::<u16>(), any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()), 0..50),
    ) {
        let header = LogHeader { run_id: 3, peer_id: peers - 1, peers, msgs, transport: Some(Transport::Multicast), clock_error_ns: clock, wan, zone, record_count: recs.len() as u64, streams: (0..peers).map(|p| (p % 3 != 0).then_some(log::StreamEnd { known: u32::from(p), stop: (p % 2 == 0).then_some(msgs % 1000) })).collect(), kernel_drops: u64::from(msgs), data_datagrams_sent: u64::from(msgs) << 3, data_bytes_sent: u64::from(msgs) << 9, send_syscalls: u64::from(peers), recv_syscalls: u64::from(msgs.rotate_left(7)), cpu_ns: u64::from(msgs) * 1000, send_drops: u64::from(peers) * 3, data_ttl: peers as u8, ..LogHeader::default() };
        let records: Vec<Record> = recs.iter().map(|&(s, seq, a, b, c, k)| Record { sender: s % peers, seq, send_ns: a, recv_ns: b, deliver_ns: c, kernel_stamp: k, arrive_ns: b ^ c, arrival: seq.rotate_left(3), retransmitted: !k, ttl: seq as u8 }).collect();
        let bytes = log::encode(&header, &records);
        let view = LogView::parse(&bytes).unwrap();
        prop_assert_eq!(&view.header, &header);
        prop_assert_eq!(view.records().collect::<Vec<_>>(), records);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        decode_all(&bytes);
    }
}
