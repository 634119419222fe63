//! Clocks. Deadlines use `Instant` (monotonic); only timestamps that travel or are logged use
//! the wall clock, in ns since the Unix epoch.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
