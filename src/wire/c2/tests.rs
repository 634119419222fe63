//! Byte fixtures decoded by hand (one per kind), both directions, one-field-wrong negatives,
//! and the syntax/bounds line: an out-of-bounds RUN parses.

use super::cursor::NO_REPAIR;
use super::*;
use crate::wire::{Order, Repair, Transport};
use rand::{Rng, SeedableRng};

fn spec() -> RunSpec {
    RunSpec {
        run_id: 0x0102030405060708,
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
        ssm: false,
    }
}

fn request() -> RunRequest {
    RunRequest {
        peers: 3,
        msgs: 0x0102,
        transport: Transport::Multicast,
        order: Order::Fifo,
        repair: None,
        interval_ms: (1, 2),
        size: 0,
        wan: "w".into(),
        time_scale: 0.5,
        wan_loss: 0.0,
        seed: Some(0x0102),
        ssm: false,
    }
}

/// A small RUN and its bytes, field by field.
fn run_fixture() -> (Msg, Vec<u8>) {
    let spec = RunSpec {
        run_id: 1,
        peer_id: 0,
        transport: Transport::Fanout,
        order: Order::Fifo,
        repair: Repair::Nack,
        msgs: 5,
        interval_ms: (0, 1),
        size: 0,
        seed: 2,
        group: None,
        comparator: "127.0.0.1:4568".parse().unwrap(),
        peers: vec!["127.0.0.1:4567".parse().unwrap()],
        wan: String::new(),
        zones: Vec::new(),
        time_scale: 1.0,
        wan_loss: 0.0,
        run_key: [0x5a; 32],
        ssm: false,
    };
    #[rustfmt::skip]
    let mut b = vec![
        10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, // RUN, run 1, peer 0
        0, 1, 1, // fanout, fifo, nack
        0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, // 5 msgs, 0..1 ms, size 0
        0, 0, 0, 0, 0, 0, 0, 2, 0, // seed 2, no group
        4, 127, 0, 0, 1, 0x11, 0xd8, // comparator 127.0.0.1:4568
        0, 1, 4, 127, 0, 0, 1, 0x11, 0xd7, // one peer, 127.0.0.1:4567
        0, 0, 0, 0, 0, 0, // no WAN, no zones
    ];
    b.extend_from_slice(&[0x5a; 32]);
    b.extend_from_slice(&[0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    (Msg::Run(Box::new(spec)), b)
}

/// Every kind once, with its bytes.
fn fixtures() -> Vec<(Msg, Vec<u8>)> {
    #[rustfmt::skip]
    let mut v = vec![
        (
            Msg::Register {
                instance: 1,
                advertise: Some("10.0.0.1".parse().unwrap()),
                zone: "z".into(),
                running: None,
            },
            vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 4, 10, 0, 0, 1, 0, 0, 0, 1, b'z', 0],
        ),
        (
            Msg::Register { instance: 1, advertise: None, zone: String::new(), running: Some(0x0102) },
            vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2],
        ),
        (Msg::Heartbeat, vec![2]),
        (Msg::RunReady { run_id: 0x0102 }, vec![3, 0, 0, 0, 0, 0, 0, 1, 2]),
        (
            Msg::RunFinished {
                run_id: 3,
                ok: false,
                detail: "b".into(),
                running: Some(2),
                refused: Some(RefusalCode::Busy),
            },
            vec![
                4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, // run 3, not ok, refused: busy
                0, 0, 0, 1, b'b', 1, 0, 0, 0, 0, 0, 0, 0, 2, // "b", running 2
            ],
        ),
        (
            Msg::RunFinished { run_id: 3, ok: true, detail: String::new(), running: None, refused: None },
            vec![4, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0],
        ),
        run_fixture(),
        (Msg::Shutdown, vec![11]),
        (
            Msg::RunRequest(request()),
            vec![
                20, 0, 3, 0, 0, 1, 2,
                1, 1, 0xff, // transport, order, repair (none: the mode's default)
                0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, b'w',
                0x3f, 0xe0, 0, 0, 0, 0, 0, 0, // time scale 0.5 (IEEE 754 bits)
                0, 0, 0, 0, 0, 0, 0, 0, // WAN loss 0
                1, 0, 0, 0, 0, 0, 0, 1, 2, // seed: some, 0x0102
            ],
        ),
        (Msg::StatusRequest, vec![21]),
        (Msg::ExitRequest, vec![22]),
        (Msg::Progress { text: "hi".into() }, vec![30, 0, 0, 0, 2, b'h', b'i']),
        (
            Msg::RunReport { run_id: 3, json: "{}".into() },
            vec![31, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, b'{', b'}'],
        ),
        (Msg::Refused { text: "no".into() }, vec![32, 0, 0, 0, 2, b'n', b'o']),
        (
            Msg::Status {
                agents: vec![AgentInfo {
                    advertise: "10.0.0.2".parse().unwrap(),
                    zone: "z".into(),
                    live: true,
                    busy: false,
                    seen_ms_ago: 12,
                }],
            },
            vec![33, 0, 1, 4, 10, 0, 0, 2, 0, 0, 0, 1, b'z', 1, 0, 0, 0, 0, 12],
        ),
        (Msg::ExitDone { agents: 4 }, vec![34, 0, 4]),
        (
            Msg::CheckDone { check_id: 3, report: "{}".into(), error: "e".into() },
            vec![5, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, b'{', b'}', 0, 0, 0, 1, b'e'],
        ),
        (
            Msg::Check(Box::new(CheckSpec {
                check_id: 3,
                id: 1,
                peers: vec!["10.0.0.1:4570".parse().unwrap()],
                fanout: true,
                multicast: false,
                group: "239.1.2.3:4577".parse().unwrap(),
                duration_ms: 0x0102,
                wait_ms: 5,
            })),
            vec![
                12, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, // check 3, host 1
                0, 1, 4, 10, 0, 0, 1, 0x11, 0xda, // one peer, 10.0.0.1:4570
                1, 0, // fan-out, no multicast
                4, 239, 1, 2, 3, 0x11, 0xe1, // group 239.1.2.3:4577
                0, 0, 1, 2, 0, 0, 0, 5, // duration 0x0102 ms, wait 5 ms
            ],
        ),
        (
            Msg::CheckRequest(CheckRequest {
                peers: 3,
                port: 0,
                fanout: false,
                multicast: true,
                group: None,
                duration_ms: 2000,
            }),
            vec![23, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0x07, 0xd0],
        ),
        (
            Msg::CheckResult(Box::new(CheckResult {
                host: 1,
                hosts: 3,
                advertise: "10.0.0.2".parse().unwrap(),
                report: String::new(),
                error: "lost".into(),
            })),
            vec![
                35, 0, 1, 0, 3, 4, 10, 0, 0, 2, // host 1 of 3 at 10.0.0.2
                0, 0, 0, 0, 0, 0, 0, 4, b'l', b'o', b's', b't', // no report; the error
            ],
        ),
    ];
    // Larger ones, checked by round trip only.
    for m in [
        Msg::Run(Box::new(spec())),
        Msg::RunFinished {
            run_id: 4,
            ok: false,
            detail: "peer exited with 2: handshake timed out".into(),
            running: None,
            refused: None,
        },
        Msg::RunRequest(RunRequest {
            repair: Some(Repair::Off),
            seed: None,
            ..request()
        }),
        Msg::Status {
            agents: vec![AgentInfo {
                advertise: "::1".parse().unwrap(),
                zone: String::new(),
                live: false,
                busy: true,
                seen_ms_ago: u32::MAX,
            }],
        },
    ] {
        let b = enc(&m);
        v.push((m, b));
    }
    v
}

fn enc(m: &Msg) -> Vec<u8> {
    let mut v = Vec::new();
    m.emit(&mut v);
    v
}

#[test]
fn every_kind_both_ways() {
    for (m, b) in fixtures() {
        assert_eq!(enc(&m), b, "emit {m:?}");
        assert_eq!(Msg::parse(&b), Ok(m.clone()), "parse {m:?}");
        assert_eq!(MsgKind::from(b[0]), m.kind());
    }
    let kinds: std::collections::HashSet<u8> = fixtures().iter().map(|(_, b)| b[0]).collect();
    assert_eq!(kinds.len(), 18, "a fixture for every kind");
}

#[test]
fn hello_both_ways() {
    let h = Hello {
        role: Role::Agent,
        version: VERSION,
        nonce: [0xab; 32],
    };
    let b = h.emit();
    assert_eq!(&b[..4], [1, VERSION, 0, 0]);
    assert_eq!(&b[4..], [0xab; 32]);
    assert_eq!(Hello::parse(&b), Ok(h));
    let p = HelloPacket::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.role(), p.version(), p.nonce()),
        (Role::Agent, VERSION, [0xab; 32])
    );
}

/// Another version is refused before its length is looked at, and its number stays readable.
#[test]
fn hello_of_another_version_is_bad_version_and_names_it() {
    for v in [0, 1, 2, 3, VERSION + 1, 0xff] {
        let mut b = Hello {
            role: Role::Agent,
            version: v,
            nonce: [1; 32],
        }
        .emit()
        .to_vec();
        assert_eq!(Hello::parse(&b), Err(Error::BadVersion), "version {v}");
        assert_eq!(Hello::version_of(&b), Some(v));
        b.extend_from_slice(&[0; 40]); // a future Hello may be longer
        assert_eq!(Hello::parse(&b), Err(Error::BadVersion));
        assert_eq!(Hello::parse(&b[..2]), Err(Error::BadVersion));
    }
    assert_eq!(Hello::version_of(&[1]), None);
    assert_eq!(Hello::parse(&[1]), Err(Error::Truncated));
}

#[test]
fn hello_one_field_wrong() {
    let good = Hello {
        role: Role::Control,
        version: VERSION,
        nonce: [0; 32],
    }
    .emit();
    let mut b = good;
    b[0] = 9;
    assert_eq!(Hello::parse(&b), Err(Error::BadValue), "unknown role");
    let mut b = good;
    b[3] = 1;
    assert_eq!(Hello::parse(&b), Err(Error::BadValue), "reserved byte set");
    for cut in 0..HELLO_LEN {
        assert!(Hello::parse(&good[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(Hello::parse(&good[..HELLO_LEN - 1]), Err(Error::Truncated));
    let mut long = good.to_vec();
    long.push(0);
    assert_eq!(Hello::parse(&long), Err(Error::BadLength));
}

#[test]
fn sealed_view_splits_counter_body_and_tag() {
    let mut b = Vec::new();
    emit_sealed_prefix(0x0102, &[2], &mut b);
    b.extend_from_slice(&[0xee; TAG_LEN]);
    let p = SealedPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.counter(), 0x0102);
    assert_eq!(p.body(), [2]);
    assert_eq!(p.signed(), &b[..9]);
    assert_eq!(p.tag(), [0xee; TAG_LEN]);
    assert!(SealedPacket::new_checked(&b[..SEALED_MIN_LEN]).is_ok());
    for cut in 0..SEALED_MIN_LEN {
        assert_eq!(
            SealedPacket::new_checked(&b[..cut]).err(),
            Some(Error::Truncated)
        );
    }
}

#[test]
fn one_field_wrong_in_a_body() {
    let (_, run) = run_fixture();
    let req = fixtures()[8].1.clone();
    let finished = fixtures()[4].1.clone();
    let set = |b: &[u8], at: usize, v: u8| {
        let mut b = b.to_vec();
        b[at] = v;
        Msg::parse(&b)
    };
    assert_eq!(Msg::parse(&[99]), Err(Error::UnknownKind));
    assert_eq!(Msg::parse(&[]), Err(Error::Truncated));
    // RUN: transport, order, repair, group flag, comparator family.
    assert_eq!(set(&run, 11, 2), Err(Error::BadValue));
    assert_eq!(set(&run, 12, 5), Err(Error::BadValue));
    assert_eq!(set(&run, 13, NO_REPAIR), Err(Error::BadValue));
    assert_eq!(set(&run, 38, 2), Err(Error::BadValue));
    assert_eq!(set(&run, 39, 5), Err(Error::BadValue));
    // RUN: a peer count the bytes that follow cannot hold is refused before allocating.
    assert_eq!(set(&run, 46, 0xff), Err(Error::Truncated));
    // RUN_REQUEST: order, repair.
    assert_eq!(set(&req, 8, 5), Err(Error::BadValue));
    assert_eq!(set(&req, 9, 2), Err(Error::BadValue));
    assert_eq!(set(&req, 9, 0xfe), Err(Error::BadValue));
    // RUN_FINISHED: a bool that is 2; "ok" and "refused" at once; an unknown code is a value.
    assert_eq!(set(&finished, 9, 2), Err(Error::BadValue));
    assert_eq!(set(&finished, 9, 1), Err(Error::BadValue));
    let Ok(Msg::RunFinished { refused, .. }) = set(&finished, 10, 77) else {
        panic!("an unknown refusal code parses")
    };
    assert_eq!(refused, Some(RefusalCode::Unknown(77)));
    // A string longer than its field; bad UTF-8.
    let progress = fixtures()[11].1.clone();
    let mut long = vec![30, 0, 0, 0x10, 1];
    long.resize(5 + MAX_TEXT + 1, b'x');
    assert_eq!(Msg::parse(&long), Err(Error::BadLength));
    assert_eq!(set(&progress, 5, 0xff), Err(Error::BadValue));
}

/// Time scale and loss travel as IEEE 754 bits at the end of a RUN; NaN and infinities do
/// not parse, in a RUN or a request.
#[test]
fn emulation_values_are_finite_doubles_at_the_end() {
    let b = enc(&Msg::Run(Box::new(spec())));
    let n = b.len();
    assert_eq!(b[n - 16..n - 8], 0.1f64.to_bits().to_be_bytes());
    assert_eq!(b[n - 8..], 0.01f64.to_bits().to_be_bytes());
    assert_eq!(b[n - 48..n - 16], [0x5a; 32], "the run key before them");
    let req = enc(&Msg::RunRequest(request()));
    for bits in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY].map(f64::to_bits) {
        let mut bad = b.clone();
        bad[n - 16..n - 8].copy_from_slice(&bits.to_be_bytes());
        assert_eq!(Msg::parse(&bad), Err(Error::BadValue));
        let at = req.len() - 9 - 16;
        let mut bad = req.clone();
        bad[at..at + 8].copy_from_slice(&bits.to_be_bytes());
        assert_eq!(Msg::parse(&bad), Err(Error::BadValue));
    }
}

#[test]
fn truncations_and_trailing_bytes_are_errors() {
    for (m, b) in fixtures() {
        for cut in 0..b.len() {
            assert!(Msg::parse(&b[..cut]).is_err(), "{m:?} cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Msg::parse(&long), Err(Error::BadLength), "{m:?}");
    }
}

/// Decoders check syntax only: a well-formed RUN outside every limit is a value, for the
/// agent to refuse with a reason (see `c2::proto::RunSpec::check`).
#[test]
fn out_of_bounds_runs_parse() {
    let parses = |f: &dyn Fn(&mut RunSpec)| {
        let mut s = spec();
        f(&mut s);
        let m = Msg::Run(Box::new(s));
        assert_eq!(Msg::parse(&enc(&m)), Ok(m));
    };
    parses(&|s| s.msgs = 0);
    parses(&|s| s.msgs = u32::MAX);
    parses(&|s| s.peer_id = 9);
    parses(&|s| s.size = 20);
    parses(&|s| s.interval_ms = (5, 4));
    parses(&|s| s.time_scale = 0.0);
    parses(&|s| s.wan_loss = -0.5);
    parses(&|s| s.zones[0] = "a b".into());
    parses(&|s| s.peers = vec!["10.0.0.1:1".parse().unwrap(); 300]);
    parses(&|s| s.peers.clear());
}

/// Strings longer than their field are cut (at a char boundary) so the other side can read
/// every frame we send.
#[test]
fn emit_cuts_to_the_field_width() {
    let m = Msg::Register {
        instance: 1,
        advertise: None,
        zone: "é".repeat(MAX_LABEL),
        running: None,
    };
    let Ok(Msg::Register { zone, .. }) = Msg::parse(&enc(&m)) else {
        panic!("a cut label parses")
    };
    assert_eq!(zone, "é".repeat(MAX_LABEL / 2));
    let m = Msg::RunFinished {
        run_id: 1,
        ok: true,
        detail: String::new(),
        running: None,
        refused: Some(RefusalCode::Busy),
    };
    assert!(Msg::parse(&enc(&m)).is_ok(), "ok wins over a refusal code");
}

/// Seeded random bytes and bit-flipped fixtures never panic (more in `tests/fuzz_wire.rs`).
#[test]
fn mutations_never_panic() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let encoded: Vec<Vec<u8>> = fixtures().into_iter().map(|(_, b)| b).collect();
    for i in 0..20_000 {
        let mut b = encoded[i % encoded.len()].clone();
        match i % 3 {
            0 => {
                let k = rng.gen_range(0..b.len());
                b[k] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let k = rng.gen_range(0..b.len());
                b[k] = rng.gen();
                b.truncate(rng.gen_range(0..=b.len()));
            }
            _ => b = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        }
        let _ = Msg::parse(&b);
        let _ = Hello::parse(&b);
        let _ = SealedPacket::new_checked(&b[..]).map(|p| Msg::parse(p.body()));
    }
}
