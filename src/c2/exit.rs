//! How the controller ends after `c2 exit`, as plain state over `Instant`.
//!
//! An exit order must also reach agents that are not registered at that moment: one that was
//! started a moment ago and is still connecting, or one waiting out its reconnect backoff
//! (at most [`BACKOFF_CAP`] × 1.25 = 2.5 s). So the controller keeps listening for
//! [`EXIT_GRACE`] after the request and tells every agent that registers in that time to stop,
//! as it told the registered ones at once; then it waits for the told agents to close their
//! connections, at most [`EXIT_WAIT`] more. An agent never learns of an exit in any other way:
//! a controller that merely restarts (or is gone) keeps its agents reconnecting, as systemd
//! units should.

use std::time::{Duration, Instant};

use super::timing::BACKOFF_CAP;

/// Longer than the longest reconnect wait of an agent (the jittered backoff cap, 2.5 s), plus
/// a connection and a handshake.
pub const EXIT_GRACE: Duration = Duration::from_millis(3000);
/// After the grace period, how long agents told to stop get to close their connections.
pub const EXIT_WAIT: Duration = Duration::from_secs(5);

const _: () = assert!(BACKOFF_CAP.as_millis() * 5 / 4 < EXIT_GRACE.as_millis());

#[derive(Debug, Clone)]
pub struct Exit {
    grace_until: Instant,
    give_up_at: Instant,
    told: u16,
}

/// The end of an exit: how many agents were told to stop and how many still had a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub told: u16,
    pub stragglers: u16,
}

impl Outcome {
    pub fn stopped(&self) -> u16 {
        self.told.saturating_sub(self.stragglers)
    }
}

impl Exit {
    pub fn new(now: Instant) -> Exit {
        Exit {
            grace_until: now + EXIT_GRACE,
            give_up_at: now + EXIT_GRACE + EXIT_WAIT,
            told: 0,
        }
    }

    /// An agent was told to stop (registered at the request, or registered since).
    pub fn told(&mut self) {
        self.told = self.told.saturating_add(1);
    }

    /// Whether an agent that registers now is told to stop (always, while the exit runs).
    pub fn in_grace(&self, now: Instant) -> bool {
        now < self.grace_until
    }

    /// The exit is over once the grace period has passed and no agent is connected any more,
    /// or at the give-up time with stragglers.
    pub fn poll(&self, now: Instant, connected_agents: usize) -> Option<Outcome> {
        if now < self.grace_until || (connected_agents > 0 && now < self.give_up_at) {
            return None;
        }
        Some(Outcome {
            told: self.told,
            stragglers: u16::try_from(connected_agents).unwrap_or(u16::MAX),
        })
    }

    pub fn next_deadline(&self, now: Instant) -> Instant {
        if now < self.grace_until {
            self.grace_until
        } else {
            self.give_up_at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_agents_are_told_and_the_exit_ends_in_virtual_time() {
        let t0 = Instant::now();
        let mut e = Exit::new(t0);
        e.told();
        e.told();
        // Both registered agents closed at once: still in the grace period.
        assert_eq!(e.poll(t0 + Duration::from_millis(10), 0), None);
        assert_eq!(e.next_deadline(t0), t0 + EXIT_GRACE);
        // An agent waiting out a 2.5 s backoff registers, is told, and closes.
        let late = t0 + Duration::from_millis(2600);
        assert!(e.in_grace(late));
        e.told();
        assert_eq!(
            e.poll(t0 + EXIT_GRACE, 1),
            None,
            "the late one still connected"
        );
        assert_eq!(
            e.poll(t0 + EXIT_GRACE + Duration::from_millis(5), 0),
            Some(Outcome {
                told: 3,
                stragglers: 0
            })
        );
        // One that never closes is given up on, and counted.
        let end = e.poll(t0 + EXIT_GRACE + EXIT_WAIT, 1).unwrap();
        assert_eq!((end.stopped(), end.stragglers), (2, 1));
        assert!(!e.in_grace(t0 + EXIT_GRACE));
    }
}
