//! One controller connection as the core sees it: where it came from, how far its handshake
//! got, whether an agent registered on it, and its heartbeat/silence clock. Its next deadline
//! and what is due then come from the same comparisons, so a timer that fires always finds
//! something to do (a mismatch would wake the loop again at once).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::c2::proto::Role;
use crate::c2::timing::{Liveness, HANDSHAKE_TIMEOUT, HELLO_TIMEOUT, LINK_DEAD_AFTER};

/// Why the core closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("no hello within 1 s")]
    NoHello,
    #[error("no authentication within 5 s")]
    NoAuthentication,
    #[error("agent did not register within 5 s")]
    NotRegistered,
    #[error("silent: heartbeats missed")]
    Silent,
}

/// What a link's timer finds due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Close(CloseReason),
    Heartbeat,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub addr: SocketAddr,
    /// Our address on this connection: where this agent reaches the comparator when it listens
    /// on the unspecified address.
    pub local_ip: Option<IpAddr>,
    pub since: Instant,
    pub role: Option<Role>,
    pub established: bool,
    pub live: Liveness,
    /// Set once an authenticated agent registered.
    pub agent: Option<u64>,
}

impl Link {
    pub fn new(now: Instant, addr: SocketAddr, local_ip: Option<IpAddr>) -> Link {
        Link {
            addr,
            local_ip,
            since: now,
            role: None,
            established: false,
            live: Liveness::new(now),
            agent: None,
        }
    }

    fn unregistered_agent(&self) -> bool {
        self.agent.is_none() && self.role == Some(Role::Agent)
    }

    /// The next moment this link needs a look. `quiet`: send it no heartbeats (the exit's
    /// requester only waits for ExitDone, and an answer crossing our close would reset the
    /// connection before it read it).
    pub fn deadline(&self, quiet: bool) -> Instant {
        if !self.established {
            return self.since
                + if self.role.is_none() {
                    HELLO_TIMEOUT
                } else {
                    HANDSHAKE_TIMEOUT
                };
        }
        let mut at = if quiet {
            self.live.last_rx() + LINK_DEAD_AFTER
        } else {
            self.live.next_deadline()
        };
        if self.unregistered_agent() {
            at = at.min(self.since + HANDSHAKE_TIMEOUT);
        }
        at
    }

    pub fn due(&self, now: Instant, quiet: bool) -> Option<Due> {
        if !self.established {
            if self.role.is_none() && now >= self.since + HELLO_TIMEOUT {
                return Some(Due::Close(CloseReason::NoHello));
            }
            if now >= self.since + HANDSHAKE_TIMEOUT {
                return Some(Due::Close(CloseReason::NoAuthentication));
            }
            return None;
        }
        if self.unregistered_agent() && now >= self.since + HANDSHAKE_TIMEOUT {
            return Some(Due::Close(CloseReason::NotRegistered));
        }
        if self.live.is_dead(now) {
            return Some(Due::Close(CloseReason::Silent));
        }
        (!quiet && self.live.heartbeat_due(now)).then_some(Due::Heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every state's deadline finds its action due, and nothing is due a moment before.
    #[test]
    fn something_is_due_at_every_deadline() {
        let t0 = Instant::now();
        let fresh = Link::new(t0, "127.0.0.1:1".parse().unwrap(), None);
        let mut hello = fresh.clone();
        hello.role = Some(Role::Agent);
        let mut agent = hello.clone();
        agent.established = true;
        let mut registered = agent.clone();
        registered.agent = Some(1);
        let mut control = fresh.clone();
        control.role = Some(Role::Control);
        control.established = true;
        for (l, quiet) in [
            (&fresh, false),
            (&hello, false),
            (&agent, false),
            (&registered, false),
            (&registered, true),
            (&control, true),
        ] {
            let d = l.deadline(quiet);
            assert!(l.due(d, quiet).is_some(), "{l:?} quiet={quiet}");
            assert_eq!(l.due(d - Duration::from_millis(1), quiet), None, "{l:?}");
        }
        assert_eq!(
            fresh.due(fresh.deadline(false), false),
            Some(Due::Close(CloseReason::NoHello))
        );
        assert_eq!(
            registered.due(registered.deadline(true), true),
            Some(Due::Close(CloseReason::Silent)),
            "a quiet link gets no heartbeat, only its silence limit"
        );
    }
}
