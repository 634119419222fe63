//! At most `burst` log lines per `window`: refusals from a scanner, a flood or a misconfigured
//! fleet must not flood the journal. The count of suppressed lines is reported with the next
//! line allowed, or by [`LogLimiter::take_due`] once the window is over, so nothing is silent.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LogLimiter {
    window: Duration,
    burst: u32,
    start: Option<Instant>,
    used: u32,
    suppressed: u32,
}

impl LogLimiter {
    pub fn new(burst: u32, window: Duration) -> LogLimiter {
        LogLimiter {
            window,
            burst,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed_before)` if a line may be logged now.
    pub fn allow(&mut self, now: Instant) -> Option<u32> {
        if self.start.is_none_or(|s| now >= s + self.window) {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            return Some(std::mem::take(&mut self.suppressed));
        }
        self.suppressed += 1;
        None
    }

    /// When suppressed lines wait to be counted: the end of the current window.
    pub fn due(&self) -> Option<Instant> {
        let start = self.start?;
        (self.suppressed > 0).then(|| start + self.window)
    }

    /// The suppressed count, once its window is over (a flood that stopped is still told).
    pub fn take_due(&mut self, now: Instant) -> Option<u32> {
        if self.due()? > now {
            return None;
        }
        self.start = None;
        self.used = 0;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_bursts_then_counts_suppressed_lines() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(3, Duration::from_secs(10));
        let got: Vec<Option<u32>> = (0..6)
            .map(|i| l.allow(t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(got, [Some(0), Some(0), Some(0), None, None, None]);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), Some(0));
    }

    #[test]
    fn suppressed_lines_are_counted_when_the_window_ends_without_another_line() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(1, Duration::from_secs(1));
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.due(), None);
        assert_eq!(l.allow(t0), None);
        assert_eq!(l.allow(t0), None);
        assert_eq!(l.due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(l.take_due(t0 + Duration::from_millis(999)), None);
        assert_eq!(l.take_due(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(l.due(), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), Some(0));
    }
}
