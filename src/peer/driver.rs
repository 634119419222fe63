//! The mio driver: one `Poll`, one socket, one waker. It reads the clock, feeds the machine,
//! sends what the machine asks for and sleeps until the machine's next deadline. No protocol
//! logic lives here.
//!
//! Deadlines are kept by a timerfd with nanosecond resolution: `epoll_wait` alone rounds its
//! timeout up to whole milliseconds, which would add up to 1 ms to every emulated WAN delay.
//!
//! Per-wake work is bounded (`RECV_BATCH` datagrams), then the loop polls with a zero timeout so
//! timers and sends are not starved by a flood. A send that would block keeps its datagram and
//! waits for WRITABLE instead of failing.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::machine::{Arrival, Dest, Machine, Transmit};
use super::socket::Receiver;
use crate::util::clock::Now;
use crate::wire::packet::MAX_DATAGRAM;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
const TIMER: Token = Token(2);
/// Datagrams read per wake-up before timers and sends get a turn.
const RECV_BATCH: usize = 256;

/// Where `Dest::All` and `Dest::Peer` go.
#[derive(Debug, Clone)]
pub enum Route {
    /// One unicast datagram per peer; index = peer id.
    Fanout(Vec<SocketAddr>),
    /// Everything to the group (ACKs too: every member sees them, the others ignore them).
    Multicast(SocketAddr),
}

impl Route {
    fn targets(&self, dest: Dest) -> &[SocketAddr] {
        match (self, dest) {
            (Route::Fanout(peers), Dest::All) => peers,
            (Route::Fanout(peers), Dest::Peer(p)) => std::slice::from_ref(&peers[usize::from(p)]),
            (Route::Multicast(group), _) => std::slice::from_ref(group),
        }
    }
}

/// Stop requests from other threads (the signal handler): they only set a flag and wake us.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Shutdown {
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

pub struct Driver {
    poll: Poll,
    socket: UdpSocket,
    route: Route,
    shutdown: Shutdown,
    kernel_stamps: bool,
    timer: TimerFd,
    /// The deadline the timerfd is armed for.
    armed_for: Option<Instant>,
    /// Send errors other than WouldBlock (e.g. no route): counted, the run goes on.
    pub send_errors: u64,
}

/// A datagram partly sent: the next target index to send it to.
struct Pending {
    t: Transmit,
    next: usize,
}

impl Driver {
    pub fn new(
        socket: std::net::UdpSocket,
        route: Route,
        kernel_stamps: bool,
    ) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shutdown = Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            waker,
        };
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let timer_fd = timer.as_fd().as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&timer_fd), TIMER, Interest::READABLE)?;
        Ok(Driver {
            poll,
            socket,
            route,
            shutdown,
            kernel_stamps,
            timer,
            armed_for: None,
            send_errors: 0,
        })
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Run the machine until it is finished. `Err(Interrupted)` if a shutdown was requested.
    pub fn run(&mut self, machine: &mut Machine) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut rx = Receiver::default();
        let mut pending: Option<Pending> = None;
        let mut more_to_read = false;
        let mut writable_interest = false;
        loop {
            if self.shutdown.flag.load(Ordering::SeqCst) {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "interrupted by a signal",
                ));
            }
            machine.handle_timeout(Now::read());
            // Send until the machine has nothing or the socket is full.
            loop {
                if let Some(p) = pending.as_mut() {
                    if !self.send_pending(&buf, p)? {
                        break;
                    }
                    pending = None;
                }
                match machine.poll_transmit(Now::read(), &mut buf) {
                    Some(t) => pending = Some(Pending { t, next: 0 }),
                    None => break,
                }
            }
            let want_writable = pending.is_some();
            if want_writable != writable_interest {
                let interest = if want_writable {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                self.poll
                    .registry()
                    .reregister(&mut self.socket, SOCKET, interest)?;
                writable_interest = want_writable;
            }
            if machine.is_finished() && pending.is_none() {
                return Ok(());
            }
            let timeout = if more_to_read || (machine.wants_transmit() && pending.is_none()) {
                Some(Duration::ZERO)
            } else {
                self.arm(machine.poll_timeout())?
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if events.iter().any(|e| e.token() == TIMER) {
                self.disarm();
            }
            let readable = more_to_read
                || events
                    .iter()
                    .any(|e| e.token() == SOCKET && e.is_readable());
            if readable {
                more_to_read = self.recv_batch(machine, &mut rx, &mut buf)?;
            }
        }
    }

    /// Arm the timerfd for `deadline`; returns the (coarse, safety-net) poll timeout.
    fn arm(&mut self, deadline: Option<Instant>) -> io::Result<Option<Duration>> {
        let Some(deadline) = deadline else {
            return Ok(None);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Some(Duration::ZERO));
        }
        if self.armed_for != Some(deadline) {
            // A one-shot relative timer; nanosecond resolution.
            self.timer
                .set(
                    Expiration::OneShot(TimeSpec::from_duration(left)),
                    TimerSetTimeFlags::empty(),
                )
                .map_err(io::Error::from)?;
            self.armed_for = Some(deadline);
        }
        // The timerfd wakes us; the poll timeout only guards against a lost wake-up.
        Ok(Some(left + Duration::from_millis(5)))
    }

    /// Consume the timerfd's expiration so its next one is a new event.
    fn disarm(&mut self) {
        let mut b = [0u8; 8];
        let _ = nix::unistd::read(self.timer.as_fd().as_raw_fd(), &mut b);
        self.armed_for = None;
    }

    /// Read up to `RECV_BATCH` datagrams; true if the socket may hold more.
    fn recv_batch(
        &mut self,
        machine: &mut Machine,
        rx: &mut Receiver,
        buf: &mut [u8],
    ) -> io::Result<bool> {
        for _ in 0..RECV_BATCH {
            match rx.recv(&self.socket, buf) {
                Ok(got) => {
                    let now = Now::read();
                    let arrival = match got.kernel_ns {
                        Some(ns) if self.kernel_stamps => Arrival {
                            recv_ns: ns,
                            kernel_stamp: true,
                        },
                        _ => Arrival {
                            recv_ns: now.unix_ns,
                            kernel_stamp: false,
                        },
                    };
                    machine.handle_datagram(now, &buf[..got.len], arrival);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from a peer that already exited surface as ECONNREFUSED: harmless.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Send `p` to its remaining targets; false if the socket is full (try again when writable).
    fn send_pending(&mut self, buf: &[u8], p: &mut Pending) -> io::Result<bool> {
        let targets = self.route.targets(p.t.dest);
        while p.next < targets.len() {
            match self.socket.send_to(&buf[..p.t.len], targets[p.next]) {
                Ok(_) => p.next += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // An unreachable peer must not stop the others' copies.
                    self.send_errors += 1;
                    p.next += 1;
                }
            }
        }
        Ok(true)
    }
}
