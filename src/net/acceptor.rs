//! A listener accepted from in bounded rounds. Two things the kernel will not do for us under
//! edge-triggered readiness:
//!
//! * a round that stopped at its bound leaves connections queued and raises no new edge, so
//!   [`Acceptor::has_more`] tells the loop to poll without sleeping and come back;
//! * an `accept` that failed (out of descriptors, most often) leaves the connection queued
//!   and raises no new edge either, so the acceptor asks to be tried again after
//!   [`RETRY_AFTER`] ([`Acceptor::retry_at`]) instead of waiting for an event that never comes.
//!   The descriptors come back when connections close; the listener is never given up.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Accepts per round: a flood of connects cannot starve the connections already in.
pub const ACCEPTS_PER_ROUND: usize = 256;
/// After a failed accept, try again this soon even without an event.
pub const RETRY_AFTER: Duration = Duration::from_millis(20);

pub struct Acceptor {
    listener: TcpListener,
    left: usize,
    /// This round ended before its bound (queue dry or an error).
    ended: bool,
    more: bool,
    retry_at: Option<Instant>,
    /// Failed accepts in a row (0 once one succeeds or the queue runs dry).
    failing: u64,
    errors: u64,
}

impl Acceptor {
    /// Register `listener` (non-blocking) under `token`, readable.
    pub fn new(
        listener: std::net::TcpListener,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Acceptor> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(Acceptor {
            listener,
            left: 0,
            ended: true,
            more: false,
            retry_at: None,
            failing: 0,
            errors: 0,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Start a round of at most [`ACCEPTS_PER_ROUND`] accepts (on a readiness event, when
    /// [`has_more`](Self::has_more), or at [`retry_at`](Self::retry_at)).
    pub fn start_round(&mut self) {
        self.left = ACCEPTS_PER_ROUND;
        self.ended = false;
        self.more = false;
        self.retry_at = None;
    }

    /// The next connection of this round; `None` when the round is over. `Some(Err(_))` ends
    /// the round too (a retry is scheduled): log it when [`failures_in_a_row`] is 1, so a
    /// long exhaustion costs one line, not fifty a second.
    ///
    /// [`failures_in_a_row`]: Self::failures_in_a_row
    pub fn next(&mut self, now: Instant) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        loop {
            if self.ended {
                return None;
            }
            if self.left == 0 {
                self.ended = true;
                self.more = true;
                return None;
            }
            match self.listener.accept() {
                Ok(conn) => {
                    self.left -= 1;
                    self.failing = 0;
                    return Some(Ok(conn));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ended = true;
                    self.failing = 0;
                    return None;
                }
                // The client gave up while queued: nothing to do for it.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors or memory (or something we cannot tell apart from
                    // it): keep the listener, come back to the queued connection soon.
                    self.ended = true;
                    self.failing += 1;
                    self.errors += 1;
                    self.retry_at = Some(now + RETRY_AFTER);
                    return Some(Err(e));
                }
            }
        }
    }

    /// The last round stopped at its bound: poll without sleeping and start another.
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// When to start a round without an event (after a failed accept).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// True when a round is due without an event at `now`.
    pub fn wants_round(&self, now: Instant) -> bool {
        self.more || self.retry_at.is_some_and(|t| t <= now)
    }

    pub fn failures_in_a_row(&self) -> u64 {
        self.failing
    }

    /// Failed accepts since the start.
    pub fn errors(&self) -> u64 {
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    #[test]
    fn a_round_stops_at_its_bound_and_says_more_is_queued() {
        let poll = Poll::new().unwrap();
        // Our backlog (1024): with std's 128 the connects past it would wait for a SYN retry.
        let l = crate::net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let mut a = Acceptor::new(l, poll.registry(), Token(0)).unwrap();
        let n = ACCEPTS_PER_ROUND + 5;
        let clients: Vec<_> = (0..n)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let now = Instant::now();
        let mut got = Vec::new();
        // Connects complete in the kernel before accept sees them; rounds are bounded in
        // count, and each ends at the bound or when the queue is dry.
        for _ in 0..50 {
            a.start_round();
            let mut this_round = 0;
            while let Some(r) = a.next(now) {
                got.push(r.unwrap());
                this_round += 1;
            }
            assert!(this_round <= ACCEPTS_PER_ROUND);
            if got.len() == n {
                break;
            }
            if !a.has_more() {
                std::thread::yield_now();
            }
        }
        assert_eq!(got.len(), n);
        assert!(a.retry_at().is_none());
        assert_eq!(a.errors(), 0);
        drop(clients);
    }
}
