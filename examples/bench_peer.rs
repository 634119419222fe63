//! Throughput of mpcomm's real datagram path (socket → driver → machine → log record) on loopback.
//!
//! ```text
//! cargo run --release --example bench_peer -- [--peers 2] [--msgs 200000] [--size 64] [--no-mmsg] [--run-key]
//! ```
//!
//! N peers, one thread each, with the same `Driver` and `Machine` as `mpcomm peer` (fan-out on
//! 127.0.0.1, `--interval 0`, a fixed run id). Every peer sends M datagrams to every peer,
//! itself included. Prints one line in the same shape as `scripts/bench/mmsg_probe.c`:
//! `delivered` counts log records over all peers, `secs` runs from the first DATA send to the
//! last delivery (handshake and drain excluded), `dgrams_per_s = delivered / secs`;
//! `recv_per_call` / `send_per_call`: datagrams per receive / send syscall (batch depth; the
//! receive count includes the final call that finds the queue empty); `cpu_ns_per_dgram`: user +
//! system CPU time of the whole process per delivered datagram (less noisy than the rate on a
//! shared machine).

use std::net::SocketAddr;
use std::time::Duration;

use mpcomm::peer::driver::{Driver, IoStats, Route};
use mpcomm::peer::machine::{Config, Machine};
use mpcomm::peer::socket::open_fanout;
use mpcomm::util::clock::Now;

/// What one peer thread measured.
struct PeerOut {
    delivered: u64,
    first_send: u64,
    last: u64,
    stamped: u64,
    sent: u64,
    errors: u64,
    io: IoStats,
}

struct Args {
    peers: u16,
    msgs: u32,
    size: usize,
    batched: bool,
    /// Authenticate every datagram (as `--run-key-file` does): the cost of the tag.
    keyed: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        peers: 2,
        msgs: 200_000,
        size: 64,
        batched: true,
        keyed: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--peers" => a.peers = value()?.parse().map_err(|e| format!("--peers: {e}"))?,
            "--msgs" => a.msgs = value()?.parse().map_err(|e| format!("--msgs: {e}"))?,
            "--size" => a.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--no-mmsg" => a.batched = false,
            "--run-key" => a.keyed = true,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; see the doc comment of examples/bench_peer.rs"
                ))
            }
        }
    }
    if a.peers == 0 || a.msgs == 0 {
        return Err("--peers and --msgs must be positive".into());
    }
    Ok(a)
}

/// User + system CPU time of this process so far, in ns.
fn cpu_ns() -> u64 {
    // SAFETY: getrusage fills a plain struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

fn main() {
    let args = parse().unwrap_or_else(|e| {
        eprintln!("bench_peer: {e}");
        std::process::exit(2);
    });
    let cpu_start = cpu_ns();
    let opened: Vec<_> = (0..args.peers)
        .map(|_| open_fanout("127.0.0.1:0".parse().unwrap()).expect("bind 127.0.0.1:0"))
        .collect();
    let addrs: Vec<SocketAddr> = opened
        .iter()
        .map(|o| o.socket.local_addr().unwrap())
        .collect();
    let threads: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(id, o)| {
            let route = Route::Fanout(addrs.clone());
            let (peers, msgs, size, batched) = (args.peers, args.msgs, args.size, args.batched);
            let keyed = args.keyed;
            std::thread::spawn(move || {
                let mut cfg = Config::new(id as u16, peers, msgs);
                cfg.interval = (Duration::ZERO, Duration::ZERO);
                cfg.size = size;
                cfg.run_id = Some(0xbe4c);
                cfg.handshake_timeout = Duration::from_secs(10);
                cfg.drain = Duration::from_millis(300);
                if keyed {
                    cfg.run_key = Some(mpcomm::wire::auth::RunKey::new([0x6b; 32]));
                }
                let mut machine = Machine::new(cfg, Now::read(), None);
                let mut driver = Driver::with_batching(o.socket, route, o.kernel_stamps, batched)
                    .expect("driver");
                driver.run(&mut machine).expect("driver run");
                let r = machine.records();
                let first_send = r.iter().map(|r| r.send_ns).min().unwrap_or(0);
                let last = r.iter().map(|r| r.deliver_ns).max().unwrap_or(0);
                let stamped = r.iter().filter(|r| r.kernel_stamp).count();
                let sent = u64::from(machine.counters().data_sent) * u64::from(peers);
                PeerOut {
                    delivered: r.len() as u64,
                    first_send,
                    last,
                    stamped: stamped as u64,
                    sent,
                    errors: driver.send_errors,
                    io: driver.io,
                }
            })
        })
        .collect();
    let (mut delivered, mut first, mut last, mut stamped, mut sent, mut errors) =
        (0, u64::MAX, 0, 0, 0, 0);
    let mut io = IoStats::default();
    for t in threads {
        let p = t.join().expect("peer thread");
        io.recv_calls += p.io.recv_calls;
        io.recv_datagrams += p.io.recv_datagrams;
        io.send_calls += p.io.send_calls;
        io.send_datagrams += p.io.send_datagrams;
        delivered += p.delivered;
        first = first.min(p.first_send);
        last = last.max(p.last);
        stamped += p.stamped;
        sent += p.sent;
        errors += p.errors;
    }
    let cpu = cpu_ns() - cpu_start;
    let secs = last.saturating_sub(first) as f64 / 1e9;
    let expected = u64::from(args.peers).pow(2) * u64::from(args.msgs);
    println!(
        "mpcomm peers={} mode={} size={} msgs={} delivered={delivered} expected={expected} sent={sent} \
         stamped={stamped} send_errors={errors} secs={secs:.4} dgrams_per_s={:.0} \
         recv_per_call={:.2} send_per_call={:.2} cpu_ns_per_dgram={:.0}",
        args.peers,
        if args.batched { "mmsg" } else { "single" },
        args.size,
        args.msgs,
        if secs > 0.0 { delivered as f64 / secs } else { 0.0 },
        io.recv_datagrams as f64 / io.recv_calls.max(1) as f64,
        io.send_datagrams as f64 / io.send_calls.max(1) as f64,
        cpu as f64 / delivered.max(1) as f64,
    );
}
