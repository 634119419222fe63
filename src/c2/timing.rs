//! Timers of a C2 link, as plain values over `Instant`: reconnect backoff and heartbeat/liveness.
//! The drivers ask them for deadlines; the tests drive them with virtual time.

use std::time::{Duration, Instant};

/// How often each side sends a heartbeat on an idle link.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(1000);
/// Silence after which a link (or a registered agent) counts as lost: 3 missed heartbeats.
pub const LINK_DEAD_AFTER: Duration = Duration::from_millis(3500);
/// A connection must finish the handshake (and an agent register) within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client sends its Hello as soon as it connects; a connection silent this long is closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// Reconnect delays: 100 ms doubling to a 2 s cap, each scaled by a jitter factor in
/// [0.75, 1.25) so a fleet does not reconnect in lock-step. The cap keeps "every agent is back
/// within 5 s of a controller restart" true however long the controller was gone.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    rng: rand_chacha::ChaCha8Rng,
}

pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub const BACKOFF_CAP: Duration = Duration::from_millis(2000);

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        use rand::SeedableRng;
        Backoff {
            attempt: 0,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt after a failure.
    pub fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let base = BACKOFF_FIRST
            .saturating_mul(1 << self.attempt.min(8))
            .min(BACKOFF_CAP);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(self.rng.gen_range(0.75..1.25))
    }

    /// A link came up and registered: start from the first delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Heartbeats out, liveness in, for one established link.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    last_rx: Instant,
    last_tx: Instant,
}

impl Liveness {
    pub fn new(now: Instant) -> Liveness {
        Liveness {
            last_rx: now,
            last_tx: now,
        }
    }
    pub fn received(&mut self, now: Instant) {
        self.last_rx = now;
    }
    pub fn sent(&mut self, now: Instant) {
        self.last_tx = now;
    }
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }
    pub fn heartbeat_due(&self, now: Instant) -> bool {
        now >= self.last_tx + HEARTBEAT_EVERY
    }
    pub fn is_dead(&self, now: Instant) -> bool {
        now >= self.last_rx + LINK_DEAD_AFTER
    }
    /// The next moment something may need doing.
    pub fn next_deadline(&self) -> Instant {
        (self.last_tx + HEARTBEAT_EVERY).min(self.last_rx + LINK_DEAD_AFTER)
    }
}

pub use crate::util::loglimit::LogLimiter;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::new(1);
        let d: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(
            d[0] >= Duration::from_millis(75) && d[0] < Duration::from_millis(125),
            "{d:?}"
        );
        assert!(d[3] >= Duration::from_millis(600), "{d:?}");
        for x in &d {
            assert!(*x < BACKOFF_CAP.mul_f64(1.25), "{x:?}");
        }
        assert!(d[11] >= BACKOFF_CAP.mul_f64(0.75));
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(125));
    }

    /// A controller restart after a long outage: the agent is back within 5 s of the restart
    /// because no single wait exceeds the jittered cap.
    #[test]
    fn reconnect_after_long_outage_is_prompt_in_virtual_time() {
        let t0 = Instant::now();
        let mut b = Backoff::new(7);
        let restart = t0 + Duration::from_secs(600);
        let mut t = t0;
        let mut attempts = 0;
        while t < restart {
            t += b.next_delay();
            attempts += 1;
            assert!(attempts < 10_000);
        }
        // First attempt at or after the restart succeeds.
        assert!(
            t - restart < Duration::from_millis(2500),
            "{:?}",
            t - restart
        );
    }

    #[test]
    fn heartbeats_and_death_in_virtual_time() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert!(!l.heartbeat_due(t0));
        assert_eq!(l.next_deadline(), t0 + HEARTBEAT_EVERY);
        let t1 = t0 + HEARTBEAT_EVERY;
        assert!(l.heartbeat_due(t1));
        l.sent(t1);
        l.received(t1);
        assert!(!l.is_dead(t1 + Duration::from_millis(3400)));
        assert!(l.is_dead(t1 + LINK_DEAD_AFTER));
    }
}
