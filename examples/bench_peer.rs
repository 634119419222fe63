//! Throughput of mpcomm's real datagram path (socket → driver → machine → log record) on loopback.
//!
//! ```text
//! cargo run --release --example bench_peer -- [--peers 2] [--msgs 200000] [--size 64] [--no-mmsg] [--run-key]
//!                                             [--multicast] [--interval-us US]
//! ```
//!
//! `--multicast`: the peers join one group on 127.0.0.1 (as `mpcomm peer --transport
//! multicast`): one `sendmsg` per DATA, the loopback copies it to every member; one-peer
//! messages go point to point on a second socket, as in `mpcomm peer`.
//! `--interval-us US`: paced, one DATA every US µs per peer (the latency mode). It adds
//! `lat_p50_us` / `lat_p99_us`: one-way latency over the cross-peer deliveries (sender ≠
//! receiver) = the receiver's wall clock when the machine delivers the message (`deliver_ns`,
//! one `clock_gettime` after `recvmmsg` returns) − the sender's wall clock written into the
//! DATA just before it is sent (`send_ns`); `klat_*` use the receive socket's `SO_TIMESTAMPNS`
//! stamp instead of the delivery time. The first 10 % of the messages are left out (warm-up).
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

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use mpcomm::peer::driver::{Driver, IoStats, Route};
use mpcomm::peer::machine::{Config, Machine};
use mpcomm::peer::socket::{open_fanout, open_multicast};
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
    /// Cross-peer one-way latencies after the warm-up, ns: delivery − send, kernel stamp − send.
    lat: Vec<u64>,
    klat: Vec<u64>,
}

/// The `q` quantile (0..=1) of sorted `v`, in µs; 0 if empty.
fn quantile_us(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64 / 1e3
}

struct Args {
    peers: u16,
    msgs: u32,
    size: usize,
    batched: bool,
    /// Authenticate every datagram (as `--run-key-file` does): the cost of the tag.
    keyed: bool,
    multicast: bool,
    /// Paced: µs between two DATA sends of one peer (0 = back to back).
    interval_us: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        peers: 2,
        msgs: 200_000,
        size: 64,
        batched: true,
        keyed: false,
        multicast: false,
        interval_us: 0,
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
            "--multicast" => a.multicast = true,
            "--interval-us" => {
                a.interval_us = value()?
                    .parse()
                    .map_err(|e| format!("--interval-us: {e}"))?
            }
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
    // Multicast: the group on a port nobody uses, and a unicast socket per peer for one-peer
    // messages (its address is the peer's listed address).
    let group: SocketAddr = {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let pid = std::process::id();
        SocketAddrV4::new(Ipv4Addr::new(239, 255, (pid >> 8) as u8, pid as u8), port).into()
    };
    let buffer = mpcomm::peer::socket::DEFAULT_BUFFER;
    let opened: Vec<_> = (0..args.peers)
        .map(|_| {
            let unicast = open_fanout("127.0.0.1:0".parse().unwrap()).expect("bind 127.0.0.1:0");
            if !args.multicast {
                return (unicast, None);
            }
            let SocketAddr::V4(g) = group else {
                unreachable!()
            };
            let m = open_multicast(g, Ipv4Addr::LOCALHOST, 1, buffer).expect("join the group");
            (m, Some(unicast))
        })
        .collect();
    let addrs: Vec<SocketAddr> = opened
        .iter()
        .map(|(o, u)| {
            u.as_ref()
                .map_or(&o.socket, |u| &u.socket)
                .local_addr()
                .unwrap()
        })
        .collect();
    let threads: Vec<_> = opened
        .into_iter()
        .enumerate()
        .map(|(id, (o, unicast))| {
            let route = if args.multicast {
                Route::Multicast(group)
            } else {
                Route::Fanout(addrs.clone())
            };
            let addrs = addrs.clone();
            let interval = Duration::from_micros(args.interval_us);
            let (peers, msgs, size, batched) = (args.peers, args.msgs, args.size, args.batched);
            let keyed = args.keyed;
            std::thread::spawn(move || {
                let mut cfg = Config::new(id as u16, peers, msgs);
                cfg.interval = (interval, interval);
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
                if let Some(u) = unicast {
                    driver = driver
                        .with_unicast(u.socket, &addrs)
                        .expect("unicast socket");
                }
                driver.run(&mut machine).expect("driver run");
                let r = machine.records();
                let first_send = r.iter().map(|r| r.send_ns).min().unwrap_or(0);
                let last = r.iter().map(|r| r.deliver_ns).max().unwrap_or(0);
                let stamped = r.iter().filter(|r| r.kernel_stamp).count();
                // Multicast: one datagram per DATA reaches every member.
                let sent = u64::from(machine.counters().data_sent) * u64::from(peers);
                let warm = msgs / 10;
                let cross = || {
                    r.iter()
                        .filter(|r| usize::from(r.sender) != id && r.seq >= warm)
                };
                let lat = cross()
                    .map(|r| r.deliver_ns.saturating_sub(r.send_ns))
                    .collect();
                let klat = cross()
                    .filter(|r| r.kernel_stamp)
                    .map(|r| r.recv_ns.saturating_sub(r.send_ns))
                    .collect();
                PeerOut {
                    delivered: r.len() as u64,
                    first_send,
                    last,
                    stamped: stamped as u64,
                    sent,
                    errors: driver.send_errors,
                    io: driver.io,
                    lat,
                    klat,
                }
            })
        })
        .collect();
    let (mut delivered, mut first, mut last, mut stamped, mut sent, mut errors) =
        (0, u64::MAX, 0, 0, 0, 0);
    let mut io = IoStats::default();
    let (mut lat, mut klat) = (Vec::new(), Vec::new());
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
        lat.extend(p.lat);
        klat.extend(p.klat);
    }
    lat.sort_unstable();
    klat.sort_unstable();
    let cpu = cpu_ns() - cpu_start;
    let secs = last.saturating_sub(first) as f64 / 1e9;
    let expected = u64::from(args.peers).pow(2) * u64::from(args.msgs);
    println!(
        "mpcomm peers={} mode={} size={} msgs={} delivered={delivered} expected={expected} sent={sent} \
         stamped={stamped} send_errors={errors} secs={secs:.4} dgrams_per_s={:.0} \
         recv_per_call={:.2} send_per_call={:.2} cpu_ns_per_dgram={:.0} \
         lat_n={} lat_p50_us={:.1} lat_p99_us={:.1} klat_p50_us={:.1} klat_p99_us={:.1}",
        args.peers,
        match (args.batched, args.multicast) {
            (true, false) => "mmsg",
            (false, false) => "single",
            (true, true) => "mmsg-mcast",
            (false, true) => "single-mcast",
        },
        args.size,
        args.msgs,
        if secs > 0.0 { delivered as f64 / secs } else { 0.0 },
        io.recv_datagrams as f64 / io.recv_calls.max(1) as f64,
        io.send_datagrams as f64 / io.send_calls.max(1) as f64,
        cpu as f64 / delivered.max(1) as f64,
        lat.len(),
        quantile_us(&lat, 0.5),
        quantile_us(&lat, 0.99),
        quantile_us(&klat, 0.5),
        quantile_us(&klat, 0.99),
    );
}
