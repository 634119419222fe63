//! The steady-state datagram path (socket → state machine → log record → socket) allocates
//! nothing per message: two real drivers on loopback sockets, with a counting global allocator.
//!
//! Each driver thread counts its own allocations during `Driver::run` only. A run of 10,000
//! messages per peer must allocate no more than a run of 1,000 (plus a tiny slack for
//! one-off growth), with batching on and off. One allocation per message would add ~36,000.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use mpcomm::peer::driver::{Driver, Route};
use mpcomm::peer::machine::{Config, Machine, Phase};
use mpcomm::peer::socket::open_fanout;
use mpcomm::util::clock::Now;

struct Counting;

thread_local! {
    /// Allocations made by this thread (const-initialised: reading it never allocates).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count();
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

struct PeerRun {
    allocs_in_run: u64,
    records: usize,
    phase: Phase,
}

/// Two fan-out peers, back to back, `msgs` 64-byte messages each.
fn run_pair(msgs: u32, batched: bool) -> Vec<PeerRun> {
    let opened: Vec<_> = (0..2)
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
            std::thread::spawn(move || {
                let mut cfg = Config::new(id as u16, 2, msgs);
                cfg.interval = (Duration::ZERO, Duration::ZERO);
                cfg.size = 64;
                // A fixed run id: no DATA is parked before the handshake agrees on one.
                cfg.run_id = Some(0xa110c);
                cfg.handshake_timeout = Duration::from_secs(10);
                cfg.drain = Duration::from_millis(300);
                let mut machine = Machine::new(cfg, Now::read(), None);
                let mut driver = Driver::with_batching(o.socket, route, o.kernel_stamps, batched)
                    .expect("driver");
                let before = allocs();
                driver.run(&mut machine).expect("driver run");
                PeerRun {
                    allocs_in_run: allocs() - before,
                    records: machine.records().len(),
                    phase: machine.phase(),
                }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn check(batched: bool) {
    let small = run_pair(1_000, batched);
    let large = run_pair(10_000, batched);
    for (s, l) in small.iter().zip(&large) {
        eprintln!(
            "batched={batched}: allocations in run: {} (1,000 msgs, {} records), {} (10,000 msgs, {} records)",
            s.allocs_in_run, s.records, l.allocs_in_run, l.records
        );
        assert_eq!(l.phase, Phase::Done, "the 10,000-message run must finish");
        // Loopback may drop under CPU contention; most must arrive for the count to mean much.
        assert!(
            l.records >= 10_000,
            "only {} of 20,000 datagrams delivered",
            l.records
        );
        assert!(
            l.allocs_in_run <= s.allocs_in_run + 4,
            "allocations grow with messages: {} for 1,000 messages, {} for 10,000 (batched={batched})",
            s.allocs_in_run,
            l.allocs_in_run
        );
    }
}

#[test]
fn the_counter_sees_this_threads_allocations() {
    let before = allocs();
    let v: Vec<Box<u64>> = (0..100).map(Box::new).collect();
    assert!(allocs() - before >= 101, "counted {}", allocs() - before);
    drop(v);
}

#[test]
fn batched_datagram_path_allocates_nothing_per_message() {
    check(true);
}

#[test]
fn unbatched_datagram_path_allocates_nothing_per_message() {
    check(false);
}
