//! The peer's timers as a table (quinn-proto's `TimerTable` idea): each is an optional deadline,
//! the next wake-up is the minimum, and firing early does no harm.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Retransmit HELLO (with backoff) until every peer acknowledged it.
    HelloRetry = 0,
    /// Give up on the handshake and name the missing peers.
    HandshakeTimeout = 1,
    /// Send the next DATA message.
    NextSend = 2,
    /// Repeat STOP a few times, in case one is lost.
    StopRetry = 3,
    /// Quiet period after sending: no datagram for this long ends the run.
    Drain = 4,
    /// The earliest message held back by the emulated WAN is due.
    HoldBack = 5,
}

const COUNT: usize = 6;

#[derive(Debug, Default, Clone)]
pub struct TimerTable {
    at: [Option<Instant>; COUNT],
}

impl TimerTable {
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = Some(at);
    }
    pub fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }
    /// Whether `t` is armed and due at `now`; a due timer is disarmed.
    pub fn expire(&mut self, t: Timer, now: Instant) -> bool {
        match self.at[t as usize] {
            Some(at) if at <= now => {
                self.at[t as usize] = None;
                true
            }
            _ => false,
        }
    }
    pub fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}
