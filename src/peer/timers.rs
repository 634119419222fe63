//! The peer's timers as a table (quinn-proto's `TimerTable` idea): each is an optional deadline,
//! the next wake-up is the minimum, and firing early does no harm. The repair stage and the
//! emulated WAN keep their own deadlines; the machine's `poll_timeout` is the earliest of all.

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
    /// Quiet period after sending: no news for this long ends the run.
    Drain = 4,
    /// `lamport`: tell the others our clock passed what we last sent.
    Heartbeat = 5,
    /// The sequencer sends the positions assigned since its last ORDER.
    OrderFlush = 6,
    /// While draining with repair: announce our streams' ends again (a lost tail is found).
    DrainHeartbeat = 7,
    /// Repeat the "I have everything" heartbeat.
    CompleteRetry = 8,
    /// `sequencer`: messages waited this long for a position: the sequencer is gone.
    SequencerStall = 9,
    /// The drain's hard bound: the run ends then whatever is outstanding.
    HardBound = 10,
    /// While the handshake waits: time to tell the user who has not answered yet.
    WaitNote = 11,
}

const COUNT: usize = 12;

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
    pub fn is_set(&self, t: Timer) -> bool {
        self.at[t as usize].is_some()
    }
    pub fn get(&self, t: Timer) -> Option<Instant> {
        self.at[t as usize]
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
