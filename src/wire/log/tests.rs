use super::*;

fn header() -> LogHeader {
    LogHeader {
        run_id: 0x0102_0304_0506_0708,
        peer_id: 1,
        peers: 3,
        msgs: 10,
        transport: Some(Transport::Multicast),
        kernel_stamps: true,
        msg_size: 64,
        start_ns: 1_700_000_000_000_000_000,
        clock_error_ns: Some(250_000),
        setup_ns: 12_345_678,
        duration_ns: 987_654_321,
        malformed: 7,
        foreign: 2,
        record_count: 0,
        sent: 10,
        time_scale_ppm: 100_000,
        wan: "gcp8".into(),
        zone: "SA".into(),
        order: Order::Sequencer,
        repair: Repair::Nack,
        cost: Cost {
            control_datagrams: 11,
            control_bytes: 12,
            retransmissions: 13,
            nacks_sent: 14,
            given_up: 15,
            duplicates_dropped: 16,
        },
        failure: FAILURE_SEQUENCER_LOST,
        forged: 17,
        authenticated: false,
        kernel_drops: 18,
        data_datagrams_sent: 19,
        data_bytes_sent: 20,
        send_syscalls: 21,
        recv_syscalls: 22,
        cpu_ns: 23,
        send_drops: 24,
        data_ttl: 25,
        streams: vec![
            Some(StreamEnd {
                known: 10,
                stop: Some(10),
            }),
            None,
            Some(StreamEnd {
                known: 4,
                stop: None,
            }),
        ],
    }
}

const RECORD_BYTES: [u8; RECORD_LEN] = [
    0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x2a, // sender 2, kernel stamp + retx, seq 42
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8, // send 1000
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0xd0, // recv 2000
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xb8, // deliver 3000
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xc4, // arrive 2500
    0x00, 0x00, 0x01, 0x00, 0x3d, 0x00, 0x00, 0x00, // arrival 256, TTL 61, reserved
];

#[test]
fn record_fixture_both_ways() {
    let r = Record::parse(&RECORD_BYTES);
    let want = Record {
        sender: 2,
        seq: 42,
        send_ns: 1000,
        recv_ns: 2000,
        deliver_ns: 3000,
        kernel_stamp: true,
        arrive_ns: 2500,
        arrival: 256,
        retransmitted: true,
        ttl: 61,
    };
    assert_eq!(r, want);
    let mut buf = [0xa5u8; RECORD_LEN];
    want.emit(&mut buf);
    assert_eq!(buf, RECORD_BYTES);
}

#[test]
fn header_fields_at_their_offsets() {
    let h = header();
    let mut buf = vec![0xa5u8; h.buffer_len()];
    h.emit(&mut buf);
    assert_eq!(&buf[0..8], b"MPCOMLOG");
    assert_eq!(&buf[8..12], &[0, 4, 0, 230]);
    assert_eq!(&buf[12..20], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&buf[20..24], &[0, 1, 0, 3]);
    assert_eq!(buf[28], 1);
    assert_eq!(buf[29], 1);
    assert_eq!(&buf[96..100], &[4, 2, 3, 1]);
    assert_eq!(&buf[100..108], &[0, 0, 0, 0, 0, 0, 0, 11]);
    assert_eq!(&buf[140..148], &[0, 0, 0, 0, 0, 0, 0, 16]);
    assert_eq!(&buf[148..152], &[0, 0, 0, 1]);
    assert_eq!(&buf[152..160], &[0, 0, 0, 0, 0, 0, 0, 17]);
    for (i, at) in (160..216).step_by(8).enumerate() {
        assert_eq!(
            &buf[at..at + 8],
            &[0, 0, 0, 0, 0, 0, 0, 18 + i as u8],
            "at {at}"
        );
    }
    assert_eq!(&buf[216..224], &[25, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&buf[224..], b"gcp8SA");
    let streams = h.streams.clone();
    let header_only = LogHeader {
        streams: vec![],
        ..h.clone()
    };
    assert_eq!(LogHeader::parse(&buf), Ok((header_only, 230)));
    // The trailer, after the (here no) records.
    let bytes = encode(&h, &[]);
    let t = &bytes[230..];
    assert_eq!(
        &t[0..8],
        &[0, 0, 0, 10, 0, 0, 0, 10],
        "sender 0: 10 known, STOP 10"
    );
    assert_eq!(&t[8..16], &[0xff; 8], "sender 1: not recorded");
    assert_eq!(
        &t[16..24],
        &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
        "sender 2: no STOP"
    );
    assert_eq!(LogView::parse(&bytes).unwrap().header.streams, streams);
}

/// A version 2 log, as version 2 wrote it: the strings right after `forged`, no
/// kernel-drop or cost counters.
fn v2_bytes(h: &LogHeader, records: &[Record]) -> Vec<u8> {
    let mut b = encode(h, records);
    b.drain(HEADER_FIXED_LEN_V2..HEADER_FIXED_LEN);
    let hl = h.buffer_len() - (HEADER_FIXED_LEN - HEADER_FIXED_LEN_V2);
    NetworkEndian::write_u16(&mut b[8..10], VERSION_2);
    NetworkEndian::write_u16(&mut b[10..12], hl as u16);
    b
}

#[test]
fn version_2_logs_still_parse_with_zero_counters() {
    let h = header();
    let recs = [Record {
        sender: 2,
        seq: 5,
        ..Record::default()
    }];
    let bytes = v2_bytes(&h, &recs);
    assert_eq!(&bytes[8..12], &[0, 2, 0, 166]);
    assert_eq!(&bytes[160..166], b"gcp8SA");
    let view = LogView::parse(&bytes).unwrap();
    let want = LogHeader {
        record_count: 1,
        kernel_drops: 0,
        data_datagrams_sent: 0,
        data_bytes_sent: 0,
        send_syscalls: 0,
        recv_syscalls: 0,
        cpu_ns: 0,
        send_drops: 0,
        data_ttl: 0,
        ..h
    };
    assert_eq!(view.header, want);
    assert_eq!(view.records().collect::<Vec<_>>(), recs);
    for cut in 0..bytes.len() {
        assert!(LogView::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // A version 3 header length too short for the version 3 fixed part is refused.
    let mut b = encode(&header(), &[]);
    NetworkEndian::write_u16(&mut b[10..12], 166);
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadLength);
}

/// A version 3 log, as version 3 wrote it: the strings right after `send_drops`, records
/// with byte 44 reserved (0).
#[test]
fn version_3_logs_still_parse_without_ttls() {
    let h = header();
    let recs = [Record {
        sender: 1,
        seq: 3,
        ..Record::default()
    }];
    let mut b = encode(&h, &recs);
    b.drain(HEADER_FIXED_LEN_V3..HEADER_FIXED_LEN);
    let hl = h.buffer_len() - (HEADER_FIXED_LEN - HEADER_FIXED_LEN_V3);
    NetworkEndian::write_u16(&mut b[8..10], VERSION_3);
    NetworkEndian::write_u16(&mut b[10..12], hl as u16);
    assert_eq!(&b[216..222], b"gcp8SA");
    let view = LogView::parse(&b).unwrap();
    let want = LogHeader {
        record_count: 1,
        data_ttl: 0,
        ..h
    };
    assert_eq!(view.header, want);
    assert_eq!(view.records().collect::<Vec<_>>(), recs);
    for cut in 0..b.len() {
        assert!(LogView::parse(&b[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn whole_log_round_trip() {
    let recs: Vec<Record> = (0..5)
        .map(|i| Record {
            sender: i % 3,
            seq: u32::from(i),
            send_ns: 1,
            recv_ns: 2,
            deliver_ns: 3,
            kernel_stamp: false,
            arrive_ns: 2,
            arrival: u32::from(4 - i),
            retransmitted: i == 2,
            ttl: 64 - i as u8,
        })
        .collect();
    let bytes = encode(&header(), &recs);
    let view = LogView::parse(&bytes).unwrap();
    assert_eq!(view.header.record_count, 5);
    assert_eq!(view.records().collect::<Vec<_>>(), recs);
    // Every truncation is refused, none panics.
    for cut in 0..bytes.len() {
        assert!(LogView::parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn refuses_nonsense() {
    let bytes = encode(&header(), &[]);
    let mut b = bytes.clone();
    b[0] ^= 1;
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadMagic);
    let mut b = bytes.clone();
    b[9] = 9;
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadVersion);
    let mut b = bytes.clone();
    b[21] = 3; // peer id 3 of 3
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
    let mut b = bytes.clone();
    b[98] = 9; // no such ordering mode
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
    let mut b = bytes.clone();
    b[28] = 7;
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
    let mut b = bytes.clone();
    b[11] = 20; // header length shorter than the fixed part
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadLength);
    let mut b = encode(&header(), &[Record::default()]);
    let at = header().buffer_len();
    b[at + 1] = 3; // sender 3 of 3 peers
    assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
}

#[test]
fn long_strings_are_cut_on_char_boundaries() {
    let mut h = header();
    h.wan = "é".repeat(200);
    let bytes = encode(&h, &[]);
    let view = LogView::parse(&bytes).unwrap();
    assert_eq!(view.header.wan.len(), 254);
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    let dir = std::env::temp_dir().join(format!("mpcomm-log-test-{}", std::process::id()));
    // The log's name is taken by a non-empty directory: the final rename fails.
    let path = dir.join("x.mplog");
    std::fs::create_dir_all(path.join("inside")).unwrap();
    assert!(write_bytes(&path, &encode(&header(), &[])).is_err());
    assert!(!path.with_extension("mplog.tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
