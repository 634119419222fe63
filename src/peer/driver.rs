//! The mio driver: one `Poll`, one socket, one waker. It reads the clock, feeds the machine,
//! sends what the machine asks for and sleeps until the machine's next deadline. No protocol
//! logic lives here.
//!
//! Deadlines are kept by a timerfd with nanosecond resolution: `epoll_wait` alone rounds its
//! timeout up to whole milliseconds, which would add up to 1 ms to every emulated WAN delay.
//!
//! Per-turn work is bounded (`RECV_BATCH` datagrams in, `SEND_BATCH` transmits out) so timers,
//! sends and receives take turns under a flood. While there is more to do than a turn allows
//! the sockets are taken off epoll and read every turn without waiting ("parked", see
//! `Driver::run`): epoll's per-datagram wake-up callback was the largest part of the gap to a C
//! `poll(2)` loop (docs/perf.md). A send that would block keeps its datagram and waits for
//! WRITABLE instead of failing.
//!
//! With multicast, a second socket bound to the peer's listed unicast address carries the
//! one-peer messages (`Dest::Peer`: ACKs, NACKs, retransmissions to one peer) point to point,
//! and receives them; without it (the address cannot be bound) they go to the group, where the
//! others ignore what is not for them.
//!
//! Datagrams move in batches ([`super::batch`]): `recvmmsg` into preallocated slots; a send queue
//! the machine writes up to a turn's 32 datagrams into, sent with every destination of each in
//! one `sendmmsg`. `MPCOMM_NO_MMSG=1` turns batching off.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::machine::{Arrival, Dest, Machine};
use crate::util::clock::{unix_ns, Now};

use super::batch::{self, RecvBatch, SendBatch, Sent};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
const TIMER: Token = Token(2);
/// Multicast only: the peer's own unicast socket, for one-peer messages.
const UNICAST: Token = Token(3);
/// Datagrams read per wake-up before timers and sends get a turn.
const RECV_BATCH: usize = 256;
/// Transmits (each to all its destinations) per wake-up before receiving gets a turn: with
/// `--interval 0` the machine always has one, and an unbounded loop would fill the peers'
/// receive buffers before anyone reads.
const SEND_BATCH: usize = 32;

/// Where `Dest::All` and `Dest::Peer` go.
#[derive(Debug, Clone)]
pub enum Route {
    /// One unicast datagram per peer; index = peer id.
    Fanout(Vec<SocketAddr>),
    /// Everything to the group (ACKs too: every member sees them, the others ignore them).
    Multicast(SocketAddr),
}

impl Route {
    /// Every address a datagram may go to; `range` indexes into it.
    fn addrs(&self) -> &[SocketAddr] {
        match self {
            Route::Fanout(peers) => peers,
            Route::Multicast(group) => std::slice::from_ref(group),
        }
    }

    fn range(&self, dest: Dest) -> Range<usize> {
        match (self, dest) {
            (Route::Fanout(peers), Dest::All) => 0..peers.len(),
            (Route::Fanout(_), Dest::Peer(p)) => usize::from(p)..usize::from(p) + 1,
            (Route::Multicast(_), _) => 0..1,
        }
    }
}

/// Stop requests from other threads (the signal handler): the services' one stop handle.
pub type Shutdown = crate::net::StopHandle;

pub struct Driver {
    poll: Poll,
    socket: UdpSocket,
    route: Route,
    shutdown: Shutdown,
    kernel_stamps: bool,
    timer: TimerFd,
    /// The deadline the timerfd is armed for.
    armed_for: Option<Instant>,
    rx: RecvBatch,
    /// Owns the buffer the machine writes into: separate from `rx`, so a datagram waiting for
    /// WRITABLE is not overwritten by receives meanwhile.
    tx: SendBatch,
    /// Send errors other than WouldBlock (e.g. no route): counted, the run goes on.
    pub send_errors: u64,
    pub io: IoStats,
    /// Per receive socket (main, unicast), the highest SO_RXQ_OVFL count a datagram carried.
    drops_seen: [u32; 2],
    /// Multicast: a socket bound to this peer's listed address, so one-peer messages (ACKs,
    /// NACKs, retransmissions to one peer) go point to point instead of to the whole group.
    /// Its targets are `tx`'s addresses `1..`, after the group.
    unicast: Option<UdpSocket>,
}

/// Receive and send syscalls made and datagrams they moved: how deep the batches are.
#[derive(Debug, Default, Clone, Copy)]
pub struct IoStats {
    pub recv_calls: u64,
    pub recv_datagrams: u64,
    pub send_calls: u64,
    pub send_datagrams: u64,
}

impl Driver {
    /// A driver over `socket`; batching is on unless `MPCOMM_NO_MMSG` says otherwise.
    pub fn new(
        socket: std::net::UdpSocket,
        route: Route,
        kernel_stamps: bool,
    ) -> io::Result<Driver> {
        Driver::with_batching(socket, route, kernel_stamps, batch::mmsg_from_env())
    }

    /// As `new`, with `recvmmsg`/`sendmmsg` on or off (off: one syscall per datagram).
    pub fn with_batching(
        socket: std::net::UdpSocket,
        route: Route,
        kernel_stamps: bool,
        batched: bool,
    ) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let mut socket = UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shutdown = Shutdown::new(waker);
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
            rx: RecvBatch::new(batched),
            tx: SendBatch::new(route.addrs(), batched),
            route,
            shutdown,
            kernel_stamps,
            timer,
            armed_for: None,
            send_errors: 0,
            io: IoStats::default(),
            drops_seen: [0; 2],
            unicast: None,
        })
    }

    /// Multicast only: send one-peer messages point to point from `socket` (bound to this
    /// peer's listed address) to `peers`, and read what arrives on it too.
    pub fn with_unicast(
        mut self,
        socket: std::net::UdpSocket,
        peers: &[SocketAddr],
    ) -> io::Result<Driver> {
        let Route::Multicast(group) = self.route else {
            return Ok(self); // Fan-out is point to point already.
        };
        let mut socket = UdpSocket::from_std(socket);
        self.poll
            .registry()
            .register(&mut socket, UNICAST, Interest::READABLE)?;
        let mut targets = vec![group];
        targets.extend_from_slice(peers);
        self.tx = SendBatch::new(&targets, self.rx.is_batched());
        self.unicast = Some(socket);
        Ok(self)
    }

    /// Where `dest` goes: the route's indices, and whether on the unicast socket.
    fn targets(&self, dest: Dest) -> (Range<usize>, bool) {
        match (dest, &self.unicast) {
            (Dest::Peer(p), Some(_)) => (1 + usize::from(p)..2 + usize::from(p), true),
            _ => (self.route.range(dest), false),
        }
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Datagrams the kernel dropped on this peer's receive sockets, their buffers full, summed
    /// over the sockets. Per socket the larger of the last SO_RXQ_OVFL count a datagram
    /// carried and SO_MEMINFO's count now: the cmsg alone misses drops after the last datagram
    /// read, which SO_MEMINFO (Linux ≥ 4.12) still sees. Call it once the run is over.
    pub fn kernel_drops(&self) -> u64 {
        let now = |fd| super::socket::drops_now(fd).unwrap_or(0);
        let main = self.drops_seen[0].max(now(self.socket.as_raw_fd()));
        let unicast = self
            .unicast
            .as_ref()
            .map_or(0, |u| self.drops_seen[1].max(now(u.as_raw_fd())));
        u64::from(main) + u64::from(unicast)
    }

    /// Run the machine until it is finished. `Err(Interrupted)` if a shutdown was requested.
    ///
    /// While busy (the machine has more to send than a turn allows, or the last read found
    /// datagrams) the sockets are *parked*: off epoll, read in every turn without waiting, as
    /// a `poll(2)` loop would. A registered socket costs the kernel a wake-up callback for every
    /// datagram queued on it and every sent datagram freed, even while nobody waits; a parked
    /// one costs nothing. The first turn with nothing done registers them again (which reports
    /// what is already queued, so no datagram waits for an edge) and sleeps in epoll.
    pub fn run(&mut self, machine: &mut Machine) -> io::Result<()> {
        let mut events = Events::with_capacity(16);
        let mut more_to_read = false;
        let mut more_unicast = false;
        // Which socket has WRITABLE interest: None, the main one (false) or the unicast one.
        let mut writable_on: Option<bool> = None;
        let mut parked = false;
        // A parked turn read something: the next one reads again before any sleep.
        let mut read_any = false;
        loop {
            if self.shutdown.is_stopped() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "interrupted by a signal",
                ));
            }
            let turn = Now::read();
            machine.handle_timeout(turn);
            if let Some(missing) = machine.take_wait_note() {
                crate::say!(
                    "mpcomm peer: waiting for peer(s) {} (no HELLO or acknowledgement yet)",
                    missing
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            // Send until the machine has nothing, a socket is full or this turn is used up,
            // queued datagrams in as few calls as the kernel takes. A datagram is taken from the
            // machine only to be sent in the same turn, so the queue is left holding datagrams
            // only by a full socket (never by the turn's bound).
            let mut blocked = !self.flush_queue()?;
            let mut taken = 0;
            while !blocked && taken < SEND_BATCH {
                while taken < SEND_BATCH && self.tx.has_room() {
                    // A fresh wall clock for every send stamp (one vDSO read); the turn's
                    // monotonic reading does for the machine's deadlines.
                    let now = Now {
                        at: turn.at,
                        unix_ns: unix_ns(),
                    };
                    let Some(t) = machine.poll_transmit(now, self.tx.next_buf()) else {
                        break;
                    };
                    let (left, unicast) = self.targets(t.dest);
                    self.tx.push(t.len, left, unicast);
                    taken += 1;
                }
                if self.tx.is_empty() {
                    break;
                }
                blocked = !self.flush_queue()?;
                if !machine.wants_transmit() {
                    break;
                }
            }
            if machine.is_finished() && self.tx.is_empty() {
                return Ok(());
            }
            let busy = self.tx.is_empty()
                && (more_to_read || more_unicast || read_any || machine.wants_transmit());
            if busy {
                if !parked {
                    self.park()?;
                    (parked, writable_on) = (true, None);
                }
                let (more, got) = self.recv_batch(machine, false)?;
                more_to_read = more;
                read_any = got > 0;
                if self.unicast.is_some() {
                    let (more, got) = self.recv_batch(machine, true)?;
                    more_unicast = more;
                    read_any |= got > 0;
                }
                continue;
            }
            if parked {
                self.unpark()?;
                parked = false;
            }
            let want_writable = self.tx.waiting_on();
            if want_writable != writable_on {
                if let Some(was) = writable_on {
                    self.interest(was, Interest::READABLE)?;
                }
                if let Some(now) = want_writable {
                    self.interest(now, Interest::READABLE | Interest::WRITABLE)?;
                }
                writable_on = want_writable;
            }
            // Registered and edge-triggered: a socket left unread at the turn's bound raises
            // no new edge, so poll without sleeping.
            let timeout = if more_to_read || more_unicast {
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
                more_to_read = self.recv_batch(machine, false)?.0;
            }
            let readable = more_unicast
                || events
                    .iter()
                    .any(|e| e.token() == UNICAST && e.is_readable());
            if readable && self.unicast.is_some() {
                more_unicast = self.recv_batch(machine, true)?.0;
            }
        }
    }

    /// Take the sockets off epoll (see `run`).
    fn park(&mut self) -> io::Result<()> {
        self.poll.registry().deregister(&mut self.socket)?;
        if let Some(u) = self.unicast.as_mut() {
            self.poll.registry().deregister(u)?;
        }
        Ok(())
    }

    /// Put them back, readable only.
    fn unpark(&mut self) -> io::Result<()> {
        let registry = self.poll.registry();
        registry.register(&mut self.socket, SOCKET, Interest::READABLE)?;
        if let Some(u) = self.unicast.as_mut() {
            registry.register(u, UNICAST, Interest::READABLE)?;
        }
        Ok(())
    }

    fn interest(&mut self, unicast: bool, interest: Interest) -> io::Result<()> {
        match (unicast, self.unicast.as_mut()) {
            (true, Some(u)) => self.poll.registry().reregister(u, UNICAST, interest),
            _ => self
                .poll
                .registry()
                .reregister(&mut self.socket, SOCKET, interest),
        }
    }

    fn fd(&self, unicast: bool) -> std::os::fd::RawFd {
        match (unicast, &self.unicast) {
            (true, Some(u)) => u.as_raw_fd(),
            _ => self.socket.as_raw_fd(),
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
        // An earlier armed deadline is kept: it wakes us a little early (harmless), which is
        // cheaper than a timerfd_settime per loop while the drain deadline moves with every
        // datagram.
        if self.armed_for.is_none_or(|armed| armed > deadline) {
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

    /// Read up to `RECV_BATCH` datagrams from one socket: whether it may hold more, and how
    /// many were read.
    fn recv_batch(&mut self, machine: &mut Machine, unicast: bool) -> io::Result<(bool, usize)> {
        let fd = self.fd(unicast);
        let (mut read, mut got) = (0, 0);
        // Each pass reads at least one datagram or returns, so at most RECV_BATCH passes.
        while read < RECV_BATCH {
            let want = self.rx.slots().min(RECV_BATCH - read);
            self.io.recv_calls += 1;
            match self.rx.recv(fd, want) {
                Ok(n) => {
                    self.io.recv_datagrams += n as u64;
                    if let Some(d) = self.rx.drops(n) {
                        let seen = &mut self.drops_seen[usize::from(unicast)];
                        *seen = (*seen).max(d);
                    }
                    got += n;
                    // One `Now` per call: each datagram has its kernel timestamp.
                    let now = Now::read();
                    for i in 0..n {
                        let (bytes, meta) = self.rx.datagram(i);
                        let ttl = meta.ttl.unwrap_or(0);
                        let arrival = match meta.stamp {
                            Some(ns) if self.kernel_stamps => Arrival {
                                recv_ns: ns,
                                kernel_stamp: true,
                                ttl,
                            },
                            _ => Arrival {
                                recv_ns: now.unix_ns,
                                kernel_stamp: false,
                                ttl,
                            },
                        };
                        machine.handle_datagram(now, bytes, arrival);
                    }
                    read += n.max(1);
                    // recvmmsg with MSG_DONTWAIT stops short only at an empty queue; anything
                    // arriving later raises a new edge, so no extra call to see WouldBlock.
                    if n < want && self.rx.is_batched() {
                        return Ok((false, got));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, got)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => read += 1,
                // ICMP errors from a peer that already exited surface as ECONNREFUSED: harmless.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => read += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((true, got))
    }

    /// Send what the queue holds; false if a socket is full (try again when writable).
    fn flush_queue(&mut self) -> io::Result<bool> {
        if self.tx.is_empty() {
            return Ok(true);
        }
        let (main, unicast) = (self.fd(false), self.fd(true));
        let mut sent = Sent::default();
        let done = self.tx.flush(|u| if u { unicast } else { main }, &mut sent);
        self.io.send_calls += sent.calls;
        self.io.send_datagrams += sent.datagrams;
        // An unreachable peer must not stop the others' copies: counted, skipped.
        self.send_errors += sent.errors;
        done
    }
}

#[cfg(test)]
mod tests;
