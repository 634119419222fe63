use super::*;
use crate::wire::log::{encode, Record};

#[test]
fn codes_are_the_histogram_buckets() {
    let mut values: Vec<u64> = (0..5000).collect();
    let mut v = 1u64;
    while v < MAX_LATENCY_NS * 2 {
        values.extend([v - 1, v, v + 1, v * 3 / 2, v * 1001 / 1000]);
        v *= 2;
    }
    values.push(MAX_LATENCY_NS);
    values.push(u64::MAX);
    let h = new_hist();
    for &v in &values {
        let c = latency_code(v);
        assert_ne!(c, NEGATIVE);
        assert!(usize::from(c) < CODES, "{v}: {c}");
        let clamped = v.min(MAX_LATENCY_NS);
        assert_eq!(code_value(c), h.lowest_equivalent(clamped), "{v}");
        assert!(h.equivalent(code_value(c), clamped), "{v}");
    }
}

fn log(n: u16, m: u32, recs: &[(u16, u32, u64)]) -> Vec<u8> {
    let h = LogHeader {
        run_id: 1,
        peer_id: 0,
        peers: n,
        msgs: m,
        ..LogHeader::default()
    };
    let recs: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, &(sender, seq, lat))| Record {
            sender,
            seq,
            send_ns: 1_000,
            recv_ns: 1_000 + lat,
            deliver_ns: 1_000 + lat,
            kernel_stamp: false,
            arrive_ns: 1_000 + lat,
            arrival: i as u32,
            retransmitted: false,
            ttl: 0,
        })
        .collect();
    encode(&h, &recs)
}

#[test]
fn arrival_order_and_delays_are_kept_only_when_ordering_changed_them() {
    // Arrival = delivery order, no delay, deliver_ns increasing: 6 bytes a delivery.
    let recs: Vec<(u16, u32, u64)> = (0..100).map(|i| (1, i, u64::from(i))).collect();
    let plain = PeerLog::from_bytes(&log(2, 100, &recs)).unwrap();
    assert_eq!(plain.arrival_order(), &plain.order[..]);
    assert!(plain.heap_bytes() < 100 * 6 + 512, "{}", plain.heap_bytes());
    let h = plain.ordering_delay();
    assert_eq!((h.len(), h.max()), (100, 0));
    // Arrivals 2, 0, 1 and a delay of 5 µs for the first delivery.
    let h = LogHeader {
        run_id: 1,
        peers: 1,
        msgs: 3,
        ..LogHeader::default()
    };
    let rec = |seq: u32, arrival: u32, held: u64| Record {
        seq,
        send_ns: 10,
        deliver_ns: 10_000,
        arrive_ns: 10_000 - held,
        arrival,
        ..Record::default()
    };
    let recs = [rec(0, 2, 5_000), rec(1, 0, 0), rec(2, 1, 0)];
    let l = PeerLog::from_bytes(&encode(&h, &recs)).unwrap();
    assert_eq!(l.arrival_order(), &[1, 2, 0]);
    assert_eq!(fifo_violations(l.arrival_order(), 1, 3), 1);
    let h = l.ordering_delay();
    assert_eq!(h.len(), 3);
    assert!(h.equivalent(h.max(), 5_000));
    // Own messages, all sent before any delivery.
    assert_eq!(l.sends.before(2), Some(0));
}

#[test]
fn an_unexpected_seq_does_not_make_fifo_violations() {
    // seq 5 ≥ M = 3 arrives first; 0, 1, 2 after it are in order.
    let l = PeerLog::from_bytes(&log(1, 3, &[(0, 5, 1), (0, 0, 1), (0, 1, 1), (0, 2, 1)])).unwrap();
    assert_eq!(l.fifo_violations, 0);
    assert_eq!(l.order[0], NOT_EXPECTED);
    let l = PeerLog::from_bytes(&log(1, 3, &[(0, 1, 1), (0, 0, 1)])).unwrap();
    assert_eq!(l.fifo_violations, 1);
}

#[test]
fn extreme_latencies_cost_what_the_deliveries_hold() {
    // 64 senders, latencies of 1 ns and an hour: histograms would be ~270 KB each.
    let recs: Vec<(u16, u32, u64)> = (0..128u32)
        .map(|i| {
            (
                (i % 64) as u16,
                i / 64,
                if i % 2 == 0 { 1 } else { MAX_LATENCY_NS },
            )
        })
        .collect();
    let l = PeerLog::from_bytes(&log(64, 2, &recs)).unwrap();
    // 6 bytes a delivery, 4 more for deliver_ns out of order (latencies alternate); the
    // fixed part, the struct itself, has the (here empty) per-sender TTL table too.
    let fixed = 512 + std::mem::size_of::<Vec<[u8; 2]>>();
    assert!(l.heap_bytes() < 128 * 10 + fixed, "{}", l.heap_bytes());
    let total = l.latency.total();
    assert_eq!(total.len(), 128);
    assert!(total.equivalent(total.max(), MAX_LATENCY_NS));
    let mut pairs = 0;
    l.for_each_pair_hist(|s, h| {
        assert_eq!(h.len(), 2, "sender {s}");
        pairs += 1;
    });
    assert_eq!(pairs, 64);
}
