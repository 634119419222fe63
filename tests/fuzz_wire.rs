//! The fuzz harness, on stable Rust inside `cargo test`: every decoder in `wire` gets seeded
//! random byte strings, truncations and bit flips of valid fixtures, and must return a value or
//! an error — never panic. Round trips are property-tested.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use mpcomm::wire::c2::{
    AgentInfo, CheckRequest, CheckResult, CheckSpec, Hello, Msg, RefusalCode, Role, RunRequest,
    RunSpec, SealedPacket,
};
use mpcomm::wire::child::{self, Reason};
use mpcomm::wire::frame::{FrameHeader, Kind as FrameKind};
use mpcomm::wire::log::{self, LogHeader, LogView, Record};
use mpcomm::wire::packet::{Announce, Body, Repr, Stream};
use mpcomm::wire::probe;
use mpcomm::wire::{Order, Repair, Transport};

/// Decode with every decoder; the point is that none of these calls panics.
fn decode_all(bytes: &[u8]) {
    let _ = Repr::decode(bytes);
    if let Ok(r) = probe::Repr::decode(bytes) {
        // What parsed emits back to the very same bytes (the format has no slack).
        let mut again = vec![0u8; r.buffer_len()];
        r.emit(&mut again);
        assert_eq!(again, bytes);
    }
    if let Ok(view) = LogView::parse(bytes) {
        // A view that parsed must be fully readable.
        assert_eq!(view.records().count() as u64, view.header.record_count);
    }
    let _ = LogHeader::parse(bytes);
    let _ = FrameHeader::parse(bytes, 1 << 20);
    if let Ok(m) = child::Repr::parse(bytes) {
        // What parsed emits back to the same bytes.
        assert_eq!(m.to_bytes(), bytes);
    }
    // C2: a message body, a Hello, and a sealed payload's body.
    if let Ok(m) = Msg::parse(bytes) {
        // A body that parsed is re-emitted byte for byte (no two encodings of one value).
        let mut again = Vec::new();
        m.emit(&mut again);
        assert_eq!(again, bytes, "{m:?}");
    }
    let _ = Hello::parse(bytes);
    if let Ok(p) = SealedPacket::new_checked(bytes) {
        let _ = Msg::parse(p.body());
    }
}

fn c2_run_spec() -> RunSpec {
    RunSpec {
        run_id: 0x0102,
        peer_id: 1,
        transport: Transport::Multicast,
        order: Order::Causal,
        repair: Repair::Nack,
        msgs: 50,
        interval_ms: (10, 100),
        size: 0,
        seed: 7,
        group: Some("239.1.2.3:4570".parse().unwrap()),
        comparator: "127.0.0.1:4568".parse().unwrap(),
        peers: vec![
            "127.0.0.2:4567".parse().unwrap(),
            "[::1]:4567".parse().unwrap(),
        ],
        wan: "eu".into(),
        zones: vec!["a".into(), "b".into()],
        time_scale: 0.1,
        wan_loss: 0.01,
        run_key: [0x5a; 32],
        ssm: true,
    }
}

/// One C2 message of every kind, encoded.
fn c2_inputs() -> Vec<Vec<u8>> {
    let msgs = [
        Msg::Register {
            instance: 9,
            advertise: Some("10.0.0.1".parse().unwrap()),
            zone: "eu-west".into(),
            running: Some(3),
        },
        Msg::Heartbeat,
        Msg::RunReady { run_id: 3 },
        Msg::RunFinished {
            run_id: 4,
            ok: false,
            detail: "agent busy with run 3".into(),
            running: Some(3),
            refused: Some(RefusalCode::Busy),
        },
        Msg::Run(Box::new(c2_run_spec())),
        Msg::Shutdown,
        Msg::RunRequest(RunRequest {
            peers: 2,
            msgs: 1,
            transport: Transport::Fanout,
            order: Order::Lamport,
            repair: Some(Repair::Off),
            interval_ms: (1, 1),
            size: 0,
            wan: "gcp8".into(),
            time_scale: 0.25,
            wan_loss: 0.05,
            seed: Some(42),
            ssm: false,
        }),
        Msg::StatusRequest,
        Msg::ExitRequest,
        Msg::Progress {
            text: "run 3: 4/4 peers ready".into(),
        },
        Msg::RunReport {
            run_id: 3,
            json: "{}".into(),
        },
        Msg::Refused {
            text: "only 3 agents are live".into(),
        },
        Msg::Status {
            agents: vec![AgentInfo {
                advertise: "::1".parse().unwrap(),
                zone: "z".into(),
                live: true,
                busy: false,
                seen_ms_ago: 12,
            }],
        },
        Msg::ExitDone { agents: 4 },
        Msg::CheckRequest(CheckRequest {
            peers: 0,
            port: 4570,
            fanout: true,
            multicast: true,
            group: Some("239.255.77.77:4577".parse().unwrap()),
            duration_ms: 2000,
        }),
        Msg::Check(Box::new(CheckSpec {
            check_id: 5,
            id: 1,
            peers: vec![
                "127.0.0.11:4570".parse().unwrap(),
                "[::1]:4570".parse().unwrap(),
            ],
            fanout: true,
            multicast: false,
            group: "[ff12::7777]:4577".parse().unwrap(),
            duration_ms: 2000,
            wait_ms: 10_000,
        })),
        Msg::CheckDone {
            check_id: 5,
            report: "{\"pass\":true}".into(),
            error: String::new(),
        },
        Msg::CheckResult(Box::new(CheckResult {
            host: 2,
            hosts: 3,
            advertise: "::1".parse().unwrap(),
            report: String::new(),
            error: "the agent's link was lost".into(),
        })),
    ];
    let mut out: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            let mut b = Vec::new();
            m.emit(&mut b);
            b
        })
        .collect();
    out.push(
        Hello {
            role: Role::Agent,
            version: mpcomm::wire::c2::VERSION,
            nonce: [7; 32],
        }
        .emit()
        .to_vec(),
    );
    out
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
    for body in [
        probe::Body::Probe {
            seq: 3,
            sent_ns: 1 << 40,
        },
        probe::Body::Reply {
            to: 1,
            seq: 3,
            sent_ns: 1 << 40,
            transport: Transport::Multicast,
            ttl: 63,
        },
    ] {
        let r = probe::Repr {
            list_hash: 0xfeed_beef,
            sender: 2,
            transport: Transport::Fanout,
            ttl: 64,
            body,
        };
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
    for m in [
        child::Repr::Ready {
            peer: 2,
            pid: 77,
            bound: "[fe80::1]:4570".parse().unwrap(),
            rcvbuf: 1 << 21,
        },
        child::Repr::Outcome {
            peer: 1,
            ok: false,
            reason: Reason::Upload,
            run_id: Some(9),
            log: b"/var/lib/mpcomm/mpcomm-0000000000000009-p1.mplog".to_vec(),
        },
    ] {
        out.push(m.to_bytes());
    }
    out.extend(c2_inputs());
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
            // C2 bodies start with their kind: RUN (10), STATUS (33) and CHECK (12) have lists.
            let prefixes: [&[u8]; 9] = [
                b"MP\x01",
                b"MPCOMLOG\x00\x01",
                b"MPCF\x01",
                b"MK\x01",
                b"MQ\x01\x01",
                b"MQ\x01\x02",
                b"\x0a",
                b"\x21\x00",
                b"\x0c",
            ];
            let p = prefixes[rng.gen_range(0..prefixes.len())];
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

fn any_sock() -> impl Strategy<Value = std::net::SocketAddr> {
    (any::<bool>(), any::<u32>(), any::<u128>(), any::<u16>()).prop_map(|(v4, a, b, port)| {
        let ip: std::net::IpAddr = if v4 {
            std::net::Ipv4Addr::from(a).into()
        } else {
            std::net::Ipv6Addr::from(b).into()
        };
        std::net::SocketAddr::new(ip, port)
    })
}

fn any_transport_order_repair() -> impl Strategy<Value = (Transport, Order, Repair)> {
    (any::<bool>(), 0u8..5, any::<bool>()).prop_map(|(t, o, r)| {
        (
            if t {
                Transport::Multicast
            } else {
                Transport::Fanout
            },
            Order::from_u8(o).unwrap(),
            if r { Repair::Nack } else { Repair::Off },
        )
    })
}

/// Any RUN the format can carry, in bounds or not (bounds are the agent's to check).
fn any_run_spec() -> impl Strategy<Value = RunSpec> {
    (
        (
            any::<u64>(),
            any::<u16>(),
            any_transport_order_repair(),
            any::<u32>(),
        ),
        (
            any::<(u32, u32)>(),
            any::<u32>(),
            any::<u64>(),
            proptest::option::of(any_sock()),
        ),
        (any_sock(), proptest::collection::vec(any_sock(), 0..20)),
        (
            "[a-z0-9.-]{0,32}",
            proptest::collection::vec("[a-z0-9]{0,32}", 0..20),
        ),
        (any::<[u8; 32]>(), -1e6f64..1e6, -2f64..2.0),
    )
        .prop_map(
            |(
                (run_id, peer_id, (transport, order, repair), msgs),
                (interval_ms, size, seed, group),
                (comparator, peers),
                (wan, zones),
                (run_key, time_scale, wan_loss),
            )| RunSpec {
                run_id,
                peer_id,
                transport,
                order,
                repair,
                msgs,
                interval_ms,
                size,
                seed,
                group,
                comparator,
                peers,
                wan,
                zones,
                time_scale,
                wan_loss,
                run_key,
                ssm: seed % 2 == 1,
            },
        )
}

fn any_c2_msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::option::of(any_sock().prop_map(|a| a.ip())),
            "[a-z0-9-]{0,32}",
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(instance, advertise, zone, running)| Msg::Register {
                instance,
                advertise,
                zone,
                running
            }),
        (
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(1u8..),
            "\\PC{0,200}",
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(run_id, ok, code, detail, running)| Msg::RunFinished {
                run_id,
                ok,
                detail,
                running,
                refused: code.filter(|_| !ok).map(RefusalCode::from),
            }),
        any_run_spec().prop_map(|s| Msg::Run(Box::new(s))),
        (
            (
                any::<u16>(),
                any::<u32>(),
                any_transport_order_repair(),
                any::<bool>()
            ),
            (any::<(u32, u32)>(), any::<u32>(), "[a-z0-9]{0,32}"),
            (-1e6f64..1e6, -2f64..2.0, proptest::option::of(any::<u64>()))
        )
            .prop_map(
                |(
                    (peers, msgs, (transport, order, repair), default),
                    (interval_ms, size, wan),
                    (time_scale, wan_loss, seed),
                )| {
                    Msg::RunRequest(RunRequest {
                        peers,
                        msgs,
                        transport,
                        order,
                        repair: (!default).then_some(repair),
                        interval_ms,
                        size,
                        wan,
                        time_scale,
                        wan_loss,
                        seed,
                        // The flags byte both ways: present (set) and absent.
                        ssm: default,
                    })
                }
            ),
        proptest::collection::vec(
            (any_sock(), "[a-z]{0,32}", any::<(bool, bool, u32)>()),
            0..30
        )
        .prop_map(|v| Msg::Status {
            agents: v
                .into_iter()
                .map(|(a, zone, (live, busy, seen_ms_ago))| AgentInfo {
                    advertise: a.ip(),
                    zone,
                    live,
                    busy,
                    seen_ms_ago,
                })
                .collect()
        }),
        "\\PC{0,300}".prop_map(|text| Msg::Progress { text }),
        (
            any::<(u64, u16)>(),
            proptest::collection::vec(any_sock(), 0..30),
            any::<(bool, bool)>(),
            (any_sock(), any::<(u32, u32)>())
        )
            .prop_map(
                |((check_id, id), peers, (fanout, multicast), (group, (duration_ms, wait_ms)))| {
                    Msg::Check(Box::new(CheckSpec {
                        check_id,
                        id,
                        peers,
                        fanout,
                        multicast,
                        group,
                        duration_ms,
                        wait_ms,
                    }))
                }
            ),
        (
            any::<(u16, u16, bool, bool)>(),
            proptest::option::of(any_sock()),
            any::<u32>()
        )
            .prop_map(|((peers, port, fanout, multicast), group, duration_ms)| {
                Msg::CheckRequest(CheckRequest {
                    peers,
                    port,
                    fanout,
                    multicast,
                    group,
                    duration_ms,
                })
            }),
        (any::<u64>(), "\\PC{0,300}", "\\PC{0,100}").prop_map(|(check_id, report, error)| {
            Msg::CheckDone {
                check_id,
                report,
                error,
            }
        }),
        (
            any::<(u16, u16)>(),
            any_sock(),
            "\\PC{0,300}",
            "\\PC{0,100}"
        )
            .prop_map(|((host, hosts), a, report, error)| {
                Msg::CheckResult(Box::new(CheckResult {
                    host,
                    hosts,
                    advertise: a.ip(),
                    report,
                    error,
                }))
            }),
    ]
}

proptest! {
    #[test]
    fn child_message_round_trip(
        peer in any::<u16>(),
        pid in any::<u32>(),
        v6 in any::<bool>(),
        ip in any::<[u8; 16]>(),
        port in any::<u16>(),
        ok in any::<bool>(),
        reason in proptest::sample::select(vec![0u8, 1, 2, 3, 4, 5, 6, 130]),
        run_id in proptest::option::of(1u64..),
        log in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let ip: std::net::IpAddr = if v6 {
            std::net::Ipv6Addr::from(ip).into()
        } else {
            std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).into()
        };
        let ready = child::Repr::Ready { peer, pid, bound: (ip, port).into(), rcvbuf: pid.rotate_left(5) };
        let outcome = child::Repr::Outcome { peer, ok, reason: Reason::from(reason), run_id, log };
        for m in [ready, outcome] {
            let mut buf = vec![0xa5u8; m.buffer_len()];
            prop_assert_eq!(m.emit(&mut buf), buf.len());
            prop_assert_eq!(child::Repr::parse(&buf), Ok(m));
        }
    }

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
    fn c2_message_round_trip(m in any_c2_msg()) {
        let mut b = Vec::new();
        m.emit(&mut b);
        prop_assert_eq!(Msg::parse(&b), Ok(m));
    }

    #[test]
    fn probe_round_trip(
        list_hash in any::<u32>(),
        sender in any::<u16>(),
        ttl in any::<u8>(),
        reply in any::<bool>(),
        multicast in any::<bool>(),
        to in any::<u16>(),
        seq in any::<u32>(),
        sent_ns in any::<u64>(),
        seen_ttl in any::<u8>(),
    ) {
        let via = if multicast { Transport::Multicast } else { Transport::Fanout };
        let (transport, body) = if reply {
            (Transport::Fanout, probe::Body::Reply { to, seq, sent_ns, transport: via, ttl: seen_ttl })
        } else {
            (via, probe::Body::Probe { seq, sent_ns })
        };
        let r = probe::Repr { list_hash, sender, transport, ttl, body };
        let mut buf = vec![0xa5u8; r.buffer_len()];
        prop_assert_eq!(r.emit(&mut buf), buf.len());
        prop_assert_eq!(probe::Repr::decode(&buf), Ok(r));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        decode_all(&bytes);
    }
}
