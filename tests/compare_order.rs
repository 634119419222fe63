//! The ordering metrics (causal violations, total order, the arrival order's disagreement,
//! overhead, ordering delay) on synthetic v2 logs: hand-computed values for a tiny run, and the
//! CSV dumps of the real binary recomputed by an independent script on random runs.

mod support;

use std::path::PathBuf;
use std::process::Command;

use mpcomm::compare::{analyse, AnalyseOptions, PeerLog, Report};
use mpcomm::wire::log::{encode, Cost, LogHeader, Record, FAILURE_SEQUENCER_LOST};
use mpcomm::wire::{Order, Repair};
use rand::{Rng, SeedableRng};
use support::{synthetic_header, TempDir};

const RUN: u64 = 0x0bde;

/// A record delivered at `deliver_ns`, reaching the ordering stage `held` ns before, as the
/// `arrival`-th.
fn rec(sender: u16, seq: u32, send_ns: u64, deliver_ns: u64, arrival: u32, held: u64) -> Record {
    Record {
        sender,
        seq,
        send_ns,
        recv_ns: deliver_ns - held,
        deliver_ns,
        kernel_stamp: false,
        arrive_ns: deliver_ns - held,
        arrival,
        retransmitted: held > 0,
        ttl: 0,
    }
}

fn header(peer: u16, n: u16, m: u32) -> LogHeader {
    let mut h = synthetic_header(RUN, peer, n, m);
    h.order = Order::Sequencer;
    h.repair = Repair::Nack;
    h
}

/// Send times: (0,0) 10, (2,0) 20, (1,0) 30, (0,1) 60, (1,1) 70, (2,1) 80. Peers 0 and 1
/// deliver 00 20 10 01 11 21; peer 2 delivers 11 before 01, though peer 1 had delivered 01
/// before sending 11: one causal violation and no total order. Peer 1's records arrived as
/// 01 20 10 00 11 21 (one FIFO violation in the arrival order).
fn tiny() -> Vec<(LogHeader, Vec<Record>)> {
    let p0 = vec![
        rec(0, 0, 10, 10, 0, 0),
        rec(2, 0, 20, 25, 1, 0),
        rec(1, 0, 30, 40, 2, 0),
        rec(0, 1, 60, 60, 3, 0),
        rec(1, 1, 70, 75, 4, 0),
        rec(2, 1, 80, 85, 5, 0),
    ];
    let p1 = vec![
        rec(0, 0, 10, 15, 3, 0),
        rec(2, 0, 20, 22, 1, 0),
        rec(1, 0, 30, 30, 2, 0),
        rec(0, 1, 60, 65, 0, 0),
        rec(1, 1, 70, 70, 4, 0),
        rec(2, 1, 80, 88, 5, 0),
    ];
    let p2 = vec![
        rec(0, 0, 10, 12, 0, 0),
        rec(2, 0, 20, 20, 1, 0),
        rec(1, 0, 30, 35, 2, 0),
        rec(1, 1, 70, 75_000, 3, 0),
        rec(0, 1, 60, 78_000, 4, 5_000),
        rec(2, 1, 80, 80_000, 5, 0),
    ];
    let cost = |p: u64| Cost {
        control_datagrams: 10 * (p + 1),
        control_bytes: 100,
        retransmissions: p + 1,
        nacks_sent: u64::from(p == 0),
        given_up: u64::from(p == 2),
        duplicates_dropped: if p == 0 { 2 } else { 0 },
    };
    [p0, p1, p2]
        .into_iter()
        .enumerate()
        .map(|(p, recs)| {
            let mut h = header(p as u16, 3, 2);
            h.cost = cost(p as u64);
            (h, recs)
        })
        .collect()
}

fn analyse_logs(logs: &[(LogHeader, Vec<Record>)]) -> Report {
    let logs: Vec<PeerLog> = logs
        .iter()
        .map(|(h, r)| PeerLog::from_bytes(&encode(h, r)).expect("valid log"))
        .collect();
    analyse(&logs, &AnalyseOptions::default())
}

#[test]
fn tiny_run_by_hand() {
    let mut logs = tiny();
    logs[2].0.failure = FAILURE_SEQUENCER_LOST;
    let r = analyse_logs(&logs);
    assert_eq!((r.order.as_str(), r.repair.as_str()), ("sequencer", "nack"));
    assert_eq!(r.causal_violations, Some(1));
    assert!(!r.total_order);
    assert_eq!((r.out_of_order_rounds, r.first_divergence), (2, Some(3)));
    let a = &r.arrival;
    assert_eq!((a.out_of_order_rounds, a.first_divergence), (3, Some(0)));
    assert_eq!((a.fifo_violations, r.fifo_violations), (1, 0));
    // Arrival orders: peer 1 swapped 00 and 01 three places apart (5 of 15 pairs), peer 2
    // swapped the neighbours 01 and 11 (1), and peers 1 and 2 differ on 6.
    assert!((a.pairwise_disagreement.max - 0.4).abs() < 1e-12);
    assert_eq!(a.pairwise_disagreement.max_pair, Some([1, 2]));
    assert!(
        (a.pairwise_disagreement.mean - 12.0 / 45.0).abs() < 1e-12,
        "{:?}",
        a.pairwise_disagreement
    );
    // Delivery orders: only peer 2 swapped a pair.
    assert!((r.pairwise_disagreement.max - 1.0 / 15.0).abs() < 1e-12);
    let o = &r.overhead;
    assert_eq!(
        (
            o.control_datagrams,
            o.control_bytes,
            o.retransmissions,
            o.nacks
        ),
        (60, 300, 6, 1)
    );
    assert!((o.per_delivery - 66.0 / 18.0).abs() < 1e-12);
    assert_eq!((r.repairs.given_up, r.repairs.duplicates_dropped), (1, 2));
    assert_eq!(
        (
            r.per_peer[1].control_datagrams,
            r.per_peer[1].retransmissions
        ),
        (20, 2)
    );
    assert_eq!((r.per_peer[2].given_up, r.per_peer[2].failure), (1, 1));
    // One delivery was held 5 µs, the other 17 not at all.
    let d = &r.ordering_delay_us;
    assert_eq!((d.count, d.p50), (18, Some(0.0)));
    assert!((d.max.unwrap() - 5.0).abs() < 5e-3, "{d:?}");
    assert_eq!(
        r.warnings,
        ["peer 2: the sequencer (peer 0) fell silent; messages waiting for their order were not delivered"]
    );
    let mut text = Vec::new();
    r.write_human(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    for needle in [
        "order sequencer, repair nack",
        "out-of-order rounds: delivery 2, arrival 3",
        "causal violations 1, total order no",
        "3.667 per delivery",
        "ordering delay us: p50 0.0",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    let line = r.to_json_line();
    assert_eq!(Report::from_json_line(&line).unwrap(), r);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "order",
        "repair",
        "arrival",
        "causal_violations",
        "total_order",
        "overhead",
        "ordering_delay_us",
        "repairs",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {line}");
    }
    for key in [
        "out_of_order_rounds",
        "first_divergence",
        "pairwise_disagreement",
        "fifo_violations",
    ] {
        assert!(v["arrival"].get(key).is_some(), "missing arrival.{key}");
    }
    for key in ["p50", "p90", "p99", "max", "count"] {
        assert!(v["ordering_delay_us"].get(key).is_some());
    }
    for key in [
        "control_datagrams",
        "control_bytes",
        "retransmissions",
        "nacks",
        "per_delivery",
    ] {
        assert!(v["overhead"].get(key).is_some());
    }
}

#[test]
fn a_total_order_and_disagreeing_headers() {
    // Peer 2 delivers like the others: total and causal.
    let mut logs = tiny();
    let (a, b) = (logs[2].1[3], logs[2].1[4]);
    logs[2].1[3] = Record {
        deliver_ns: a.deliver_ns,
        ..b
    };
    logs[2].1[4] = Record {
        deliver_ns: b.deliver_ns,
        ..a
    };
    logs[1].0.order = Order::Lamport;
    let r = analyse_logs(&logs);
    assert!(r.total_order);
    assert_eq!(r.causal_violations, Some(0));
    assert_eq!(r.out_of_order_rounds, 0);
    assert_eq!(r.order, "sequencer");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("disagree on the ordering mode") && w.contains("peer 1: lamport")),
        "{:?}",
        r.warnings
    );
}

/// A forged log whose deliveries precede the sends they depend on: no count, a warning.
#[test]
fn a_cyclic_log_reports_null() {
    let logs = vec![
        (
            header(0, 2, 1),
            vec![rec(1, 0, 20, 5, 0, 0), rec(0, 0, 10, 10, 1, 0)],
        ),
        (
            header(1, 2, 1),
            vec![rec(0, 0, 10, 15, 0, 0), rec(1, 0, 20, 20, 1, 0)],
        ),
    ];
    let r = analyse_logs(&logs);
    assert_eq!(r.causal_violations, None);
    assert!(
        r.warnings.iter().any(|w| w.contains("cyclic")),
        "{:?}",
        r.warnings
    );
    assert!(r.to_json_line().contains("\"causal_violations\":null"));
}

fn python_ok() -> bool {
    let ok = Command::new("python3").arg("--version").output().is_ok();
    if !ok {
        eprintln!("SKIP: python3 is not installed (the independent recomputation needs it)");
    }
    ok
}

/// Dump each log with the real binary and run the script over the CSVs.
fn recompute(dir: &TempDir, tag: &str, logs: &[(LogHeader, Vec<Record>)]) -> serde_json::Value {
    let (n, m) = (logs[0].0.peers, logs[0].0.msgs);
    let files: Vec<PathBuf> = logs
        .iter()
        .map(|(h, recs)| {
            let log = dir.path().join(format!("{tag}-p{}.mplog", h.peer_id));
            std::fs::write(&log, encode(h, recs)).unwrap();
            log
        })
        .collect();
    let csvs = support::csv_dumps(&files);
    let out = support::run_script("recompute_order.py", n.into(), m.into(), &csvs);
    serde_json::from_str(&out).expect("the script prints JSON")
}

fn assert_agree(r: &Report, py: &serde_json::Value, what: &str) {
    assert_eq!(
        py["causal_violations"].as_u64(),
        r.causal_violations,
        "{what}: causal_violations ({:?})",
        r.warnings
    );
    assert_eq!(
        py["total_order"].as_bool(),
        Some(r.total_order),
        "{what}: total_order"
    );
    assert_eq!(
        py["out_of_order_rounds"].as_u64(),
        Some(r.out_of_order_rounds),
        "{what}"
    );
    assert_eq!(
        py["first_divergence"].as_u64(),
        r.first_divergence,
        "{what}"
    );
    let a = &py["arrival"];
    assert_eq!(
        a["out_of_order_rounds"].as_u64(),
        Some(r.arrival.out_of_order_rounds),
        "{what}: arrival"
    );
    assert_eq!(
        a["first_divergence"].as_u64(),
        r.arrival.first_divergence,
        "{what}"
    );
    assert_eq!(
        a["fifo_violations"].as_u64(),
        Some(r.arrival.fifo_violations),
        "{what}: arrival fifo"
    );
}

#[test]
fn the_tiny_run_recomputed_by_the_script() {
    if !python_ok() {
        return;
    }
    let dir = TempDir::new("order-tiny");
    let logs = tiny();
    let r = analyse_logs(&logs);
    let py = recompute(&dir, "tiny", &logs);
    assert_agree(&r, &py, "tiny");
    assert_eq!(py["causal_violations"], 1);
    assert_eq!(py["total_order"], false);
    assert_eq!(py["arrival"]["out_of_order_rounds"], 3);
}

/// A random run: every sender's messages at increasing times on one clock, delivered after a
/// random delay (sometimes lost, duplicated, or with a seq ≥ M), arrival indices shuffled;
/// `forged` also scrambles deliver times, which can make happened-before cyclic.
fn random_run(rng: &mut impl Rng, n: u16, m: u32, forged: bool) -> Vec<(LogHeader, Vec<Record>)> {
    let sends: Vec<Vec<u64>> = (0..n)
        .map(|_| {
            let mut t = rng.gen_range(0..50u64);
            (0..m)
                .map(|_| {
                    t += rng.gen_range(1..40);
                    t
                })
                .collect()
        })
        .collect();
    let mut logs = Vec::new();
    for q in 0..n {
        // Some logs never arrive.
        if rng.gen_bool(0.1) {
            continue;
        }
        logs.push({
            let mut recs: Vec<Record> = Vec::new();
            for p in 0..n {
                for k in 0..m {
                    let send = sends[usize::from(p)][k as usize];
                    let copies = if p == q {
                        1
                    } else {
                        [0, 1, 1, 1, 1, 2][rng.gen_range(0..6)]
                    };
                    for _ in 0..copies {
                        let delay = if p == q { 0 } else { rng.gen_range(1..60) };
                        let deliver = if forged {
                            rng.gen_range(0..200)
                        } else {
                            send + delay
                        };
                        recs.push(rec(p, k, send, deliver, 0, 0));
                    }
                }
            }
            if rng.gen_bool(0.2) {
                recs.push(rec(0, m + rng.gen_range(0..3), 1, 100, 0, 0));
            }
            recs.sort_by_key(|r| r.deliver_ns);
            // Some receivers deliver a few messages out of time order (a reordering stage
            // would not, a forged log may).
            if rng.gen_bool(0.3) && recs.len() > 2 {
                let i = rng.gen_range(0..recs.len() - 1);
                recs.swap(i, i + 1);
            }
            let mut arrival: Vec<u32> = (0..recs.len() as u32).collect();
            for i in (1..arrival.len()).rev() {
                if rng.gen_bool(0.4) {
                    arrival.swap(i, rng.gen_range(0..=i));
                }
            }
            for (r, a) in recs.iter_mut().zip(arrival) {
                r.arrival = a;
            }
            (header(q, n, m), recs)
        });
    }
    logs
}

#[test]
fn random_runs_agree_with_the_script() {
    if !python_ok() {
        return;
    }
    let dir = TempDir::new("order-random");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x6d70_636f);
    let (mut counted, mut cyclic, mut total, mut violating) = (0, 0, 0, 0);
    for case in 0..40 {
        let (n, m) = (rng.gen_range(1..5u16), rng.gen_range(1..5u32));
        let logs = random_run(&mut rng, n, m, case % 5 == 4);
        if logs.is_empty() {
            continue;
        }
        let r = analyse_logs(&logs);
        let py = recompute(&dir, &format!("case{case}"), &logs);
        assert_agree(&r, &py, &format!("case {case} ({n} x {m})"));
        match r.causal_violations {
            Some(v) => {
                counted += 1;
                violating += usize::from(v > 0);
            }
            None => cyclic += 1,
        }
        total += usize::from(r.total_order);
    }
    // The cases cover every outcome, so agreeing means something.
    assert!(
        counted > 10 && cyclic > 0 && violating > 3 && total > 0 && total < counted,
        "counted {counted}, cyclic {cyclic}, violating {violating}, total order {total}"
    );
}
