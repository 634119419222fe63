//! Benchmark of the comparator's analysis on synthetic logs (issue 3's speed and memory bar).
//!
//! ```text
//! cargo run --release --example bench_compare [-- --peers 16 --deliveries 1000000 --shuffle --keep DIR]
//! ```
//!
//! Writes N synthetic `.mplog` files (N × N × M deliveries; by default 16 peers and 1,000,000
//! deliveries per peer), then times, in this process:
//! 1. decoding every file (`PeerLog::from_file`) plus positional metrics, loss, duplicates,
//!    FIFO and latency (`analyse` without the pairwise part);
//! 2. decoding plus the full report with all N(N−1)/2 Kendall distances and the consensus;
//!
//! and prints the peak resident memory of the analysis (VmHWM, reset after the logs are made)
//! per delivery. Orders are realistic by default: every receiver delivers by send time plus a
//! per-link delay and jitter, with 0.1 % loss and 0.05 % duplicates; `--shuffle` gives every
//! receiver an independent random order instead (the worst case for the Kendall distances).

use std::path::{Path, PathBuf};
use std::time::Instant;

use mpcomm::compare::{analyse, AnalyseOptions, PeerLog};
use mpcomm::wire::log::{write_file, LogHeader, Record};
use mpcomm::wire::Transport;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

struct Args {
    peers: u16,
    deliveries: u64,
    shuffle: bool,
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        peers: 16,
        deliveries: 1_000_000,
        shuffle: false,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--peers" => a.peers = value().parse().expect("--peers N"),
            "--deliveries" => a.deliveries = value().parse().expect("--deliveries PER_PEER"),
            "--shuffle" => a.shuffle = true,
            "--keep" => a.keep = Some(PathBuf::from(value())),
            "--bench" => {} // cargo bench passes this
            other => panic!("unknown argument {other}: use --peers N --deliveries PER_PEER --shuffle --keep DIR"),
        }
    }
    a
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reset VmHWM to the current RSS (Linux ≥ 4.0); false if the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn make_logs(dir: &Path, n: u16, m: u32, shuffle: bool) -> Vec<PathBuf> {
    const T0: u64 = 1_700_000_000_000_000_000;
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    // Senders send at random gaps around 50 µs; link delay 0.2–20 ms plus 0–100 µs jitter.
    let mut sends: Vec<Vec<u64>> = Vec::new();
    for _ in 0..n {
        let mut t = T0;
        sends.push(
            (0..m)
                .map(|_| {
                    t += rng.gen_range(10_000..90_000) * u64::from(n) / 16;
                    t
                })
                .collect(),
        );
    }
    let delay: Vec<Vec<u64>> = (0..n)
        .map(|_| (0..n).map(|_| rng.gen_range(200_000..20_000_000)).collect())
        .collect();
    let mut paths = Vec::new();
    let mut recs: Vec<Record> = Vec::with_capacity(usize::from(n) * m as usize);
    for r in 0..n {
        recs.clear();
        for s in 0..n {
            for (q, &send_ns) in sends[usize::from(s)].iter().enumerate() {
                if rng.gen_ratio(1, 1000) {
                    continue; // lost
                }
                let deliver_ns =
                    send_ns + delay[usize::from(s)][usize::from(r)] + rng.gen_range(0..100_000);
                let rec = Record {
                    sender: s,
                    seq: q as u32,
                    send_ns,
                    recv_ns: deliver_ns,
                    deliver_ns,
                    kernel_stamp: false,
                    ..Record::default()
                };
                recs.push(rec);
                if rng.gen_ratio(1, 2000) {
                    recs.push(Record {
                        deliver_ns: deliver_ns + 1_000,
                        ..rec
                    });
                }
            }
        }
        if shuffle {
            recs.shuffle(&mut rng);
        } else {
            recs.sort_by_key(|x| x.deliver_ns);
        }
        let header = LogHeader {
            run_id: 0xbe9c,
            peer_id: r,
            peers: n,
            msgs: m,
            transport: Some(Transport::Multicast),
            time_scale_ppm: 1_000_000,
            ..LogHeader::default()
        };
        let p = dir.join(format!("peer{r}.mplog"));
        write_file(&p, &header, &recs).expect("write a synthetic log");
        paths.push(p);
    }
    paths
}

fn decode(paths: &[PathBuf]) -> Vec<PeerLog> {
    paths
        .iter()
        .map(|p| PeerLog::from_file(p).expect("decode"))
        .collect()
}

fn main() {
    let a = args();
    let n = a.peers;
    let m = (a.deliveries / u64::from(n)) as u32;
    let total = u64::from(n) * u64::from(n) * u64::from(m);
    let tmp = std::env::temp_dir().join(format!("mpcomm-bench-{}", std::process::id()));
    let dir = a.keep.clone().unwrap_or(tmp.clone());
    std::fs::create_dir_all(&dir).expect("create the log directory");
    eprintln!(
        "making {n} logs of {} deliveries ({total} in all) in {} ...",
        u64::from(n) * u64::from(m),
        dir.display()
    );
    let t = Instant::now();
    let paths = make_logs(&dir, n, m, a.shuffle);
    eprintln!("  made in {:.2} s", t.elapsed().as_secs_f64());
    let peak_reset = reset_peak();

    let t = Instant::now();
    let logs = decode(&paths);
    let t_decode = t.elapsed();
    let fast = analyse(
        &logs,
        &AnalyseOptions {
            skip_pairwise: true,
            ..AnalyseOptions::default()
        },
    );
    let t_fast = t.elapsed();
    drop(logs);

    let t = Instant::now();
    let logs = decode(&paths);
    let full = analyse(&logs, &AnalyseOptions::default());
    let t_full = t.elapsed();
    let peak_kib = status_kib("VmHWM:");

    assert_eq!(full.deliveries, fast.deliveries);
    assert_eq!((full.lost, full.duplicates), (fast.lost, fast.duplicates));
    let order = if a.shuffle {
        "random (shuffled)"
    } else {
        "realistic (send time + delay + jitter)"
    };
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "bench_compare: {n} peers x {m} msgs = {total} deliveries, orders {order}, {cpus} CPUs"
    );
    println!(
        "  decode only:                                   {:6.3} s",
        t_decode.as_secs_f64()
    );
    println!(
        "  decode + positional + loss/dups + latency:     {:6.3} s   (bar: < 2 s)",
        t_fast.as_secs_f64()
    );
    println!(
        "  decode + full report incl. {:3} Kendall pairs:  {:6.3} s   (bar: < 10 s)",
        full.pairwise_disagreement.pairs,
        t_full.as_secs_f64()
    );
    match peak_kib {
        Some(kib) => println!(
            "  peak RSS (VmHWM{}): {:.1} MiB = {:.1} bytes/delivery   (bar: < 48)",
            if peak_reset {
                ", reset after making the logs"
            } else {
                ", includes making the logs"
            },
            kib as f64 / 1024.0,
            kib as f64 * 1024.0 / total as f64
        ),
        None => println!("  peak RSS: /proc/self/status not readable"),
    }
    println!(
        "  result: rounds {}, out of order {}, lost {}, duplicates {}, fifo {}, disagreement mean {:.5} max {:.5}, latency p50 {:.0} us p99 {:.0} us",
        full.rounds,
        full.out_of_order_rounds,
        full.lost,
        full.duplicates,
        full.fifo_violations,
        full.pairwise_disagreement.mean,
        full.pairwise_disagreement.max,
        full.latency_us.p50.unwrap_or(0.0),
        full.latency_us.p99.unwrap_or(0.0)
    );
    if a.keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
