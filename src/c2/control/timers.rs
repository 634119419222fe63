//! The controller's deadlines as one ordered set: each timer (a connection's next check, the
//! run's, the exit's) is armed at most once, the next wake-up is the first entry, and re-arming
//! replaces the old entry. The loop never scans every connection to find what is due.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::c2::registry::ConnId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerId {
    /// The next check of one connection: hello, handshake or register timeout, heartbeat,
    /// silence.
    Link(ConnId),
    /// The active run's deadline (or the end of its finish grace).
    Run,
    /// The exit's grace period, then its give-up time.
    Exit,
    /// The `c2 check` in flight: when the hosts still missing fail.
    Check,
}

#[derive(Debug, Default)]
pub struct Timers {
    armed: HashMap<TimerId, Instant>,
    queue: BTreeSet<(Instant, TimerId)>,
}

impl Timers {
    /// Arm `id` at `at`, or disarm it with `None`; an earlier setting is replaced.
    pub fn set(&mut self, id: TimerId, at: Option<Instant>) {
        if let Some(old) = self.armed.remove(&id) {
            self.queue.remove(&(old, id));
        }
        if let Some(at) = at {
            self.armed.insert(id, at);
            self.queue.insert((at, id));
        }
    }

    pub fn get(&self, id: TimerId) -> Option<Instant> {
        self.armed.get(&id).copied()
    }

    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Every timer due at `now`, earliest first, each disarmed.
    pub fn take_due(&mut self, now: Instant) -> Vec<TimerId> {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.pop_first();
            self.armed.remove(&id);
            due.push(id);
        }
        due
    }

    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rearming_replaces_and_due_timers_come_out_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.set(TimerId::Link(7), Some(ms(30)));
        t.set(TimerId::Run, Some(ms(20)));
        t.set(TimerId::Link(7), Some(ms(10)));
        t.set(TimerId::Exit, Some(ms(40)));
        assert_eq!(
            (t.len(), t.next()),
            (3, Some(ms(10))),
            "the old 30 ms entry is gone"
        );
        assert!(t.take_due(ms(9)).is_empty());
        assert_eq!(
            t.take_due(ms(25)),
            [TimerId::Link(7), TimerId::Run],
            "earliest first"
        );
        assert_eq!(t.get(TimerId::Run), None, "a due timer is disarmed");
        t.set(TimerId::Exit, None);
        assert!(t.is_empty() && t.next().is_none());
        assert!(t.take_due(ms(1000)).is_empty());
    }
}
