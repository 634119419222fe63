//! Clocks. Deadlines use `Instant` (monotonic); only timestamps that travel or are logged use
//! the wall clock, in ns since the Unix epoch.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A moment as both clocks see it: the state machines take this as their `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub unix_ns: u64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            at: Instant::now(),
            unix_ns: unix_ns(),
        }
    }

    /// The same moment moved forward by `d` on both clocks (virtual time in tests).
    pub fn plus(self, d: std::time::Duration) -> Now {
        Now {
            at: self.at + d,
            unix_ns: self.unix_ns + d.as_nanos() as u64,
        }
    }
}

/// `Now` at the cost of one clock read: the wall clock is the monotonic clock plus the offset
/// between the two, taken afresh every [`Clock::RESYNC`] (so a step of the wall clock shows
/// within that time; the kernel slews both clocks alike). The datagram path reads the time for
/// every send and every received batch, so this halves its clock reads.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Now,
}

impl Clock {
    pub const RESYNC: Duration = Duration::from_millis(100);

    pub fn new() -> Clock {
        Clock { base: Now::read() }
    }

    pub fn now(&mut self) -> Now {
        let at = Instant::now();
        let since = at.saturating_duration_since(self.base.at);
        if since >= Self::RESYNC {
            self.base = Now::read();
            return self.base;
        }
        Now {
            at,
            unix_ns: self.base.unix_ns + since.as_nanos() as u64,
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Wall clock, ns since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The kernel's bound on this host's clock error (`adjtimex` maxerror), or `None` when the
/// clock is not synchronised or the call fails.
pub fn clock_error_ns() -> Option<u64> {
    // SAFETY: adjtimex with modes = 0 only reads; the struct is plain data, zeroed.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 || state == libc::TIME_ERROR {
        return None;
    }
    u64::try_from(tx.maxerror).ok().map(|us| us * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_read_clock_follows_both_clocks() {
        let mut clock = Clock::new();
        let mut last = clock.now();
        // Bounded: a few thousand reads, crossing at least one resync when the machine is slow.
        for _ in 0..5000 {
            let n = clock.now();
            let wall = unix_ns();
            assert!(n.at >= last.at, "monotonic");
            // The derived wall clock is the real one to within the time between the two reads
            // (plus scheduling): generous, since a loaded machine may pause us.
            assert!(
                n.unix_ns.abs_diff(wall) < 50_000_000,
                "{} vs {wall}",
                n.unix_ns
            );
            last = n;
        }
        let a = clock.now();
        std::thread::sleep(Clock::RESYNC + Duration::from_millis(5));
        let b = clock.now();
        assert_eq!(b, clock.base, "a read after RESYNC takes a fresh base");
        assert!(b.unix_ns > a.unix_ns);
    }
}
