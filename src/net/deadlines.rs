//! One deadline per key in a heap with lazy deletion: `set` and `remove` are cheap, the loop
//! asks for the earliest deadline without scanning every connection or run, and a key whose
//! deadline moved is re-queued only when its old entry comes up.
//!
//! Moving a deadline *later* (every read of an upload does) pushes nothing: the old, earlier
//! entry stays queued and, when it comes due, is re-queued at the key's current deadline.
//! Moving it *earlier* pushes a new entry. So the heap holds at most a few entries per key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
struct Slot {
    /// The key's deadline now.
    at: Instant,
    /// The earliest entry queued for the key (≤ `at`); entries with another time are stale.
    queued: Instant,
}

#[derive(Debug)]
pub struct Deadlines<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    slots: HashMap<K, Slot>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            slots: HashMap::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Deadlines<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Give `key` the deadline `at` (replacing any it had).
    pub fn set(&mut self, key: K, at: Instant) {
        match self.slots.get_mut(&key) {
            Some(slot) if slot.queued <= at => slot.at = at,
            Some(slot) => {
                *slot = Slot { at, queued: at };
                self.heap.push(Reverse((at, key)));
            }
            None => {
                self.slots.insert(key, Slot { at, queued: at });
                self.heap.push(Reverse((at, key)));
            }
        }
    }

    /// Forget `key`'s deadline (its queued entries become stale).
    pub fn remove(&mut self, key: K) {
        self.slots.remove(&key);
    }

    pub fn get(&self, key: K) -> Option<Instant> {
        self.slots.get(&key).map(|s| s.at)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// When the loop must wake next: never later than the earliest deadline, possibly earlier
    /// (a deadline moved later is found at its old time; waking early is harmless).
    pub fn earliest(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// One key whose deadline is at or before `now`, removed; `None` when none is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        loop {
            self.drop_stale();
            let &Reverse((t, key)) = self.heap.peek()?;
            if t > now {
                return None;
            }
            self.heap.pop();
            let slot = self.slots.get_mut(&key).expect("not stale");
            if slot.at > now {
                // Moved later since it was queued: queue it again where it is now.
                slot.queued = slot.at;
                self.heap.push(Reverse((slot.at, key)));
                continue;
            }
            self.slots.remove(&key);
            return Some(key);
        }
    }

    fn drop_stale(&mut self) {
        while let Some(&Reverse((t, key))) = self.heap.peek() {
            match self.slots.get(&key) {
                Some(slot) if slot.queued == t => return,
                _ => {
                    self.heap.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn keys_come_due_in_order_of_their_current_deadline() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        d.set(1u32, ms(t0, 30));
        d.set(2, ms(t0, 10));
        d.set(3, ms(t0, 20));
        d.set(3, ms(t0, 50)); // later: nothing pushed
        d.set(1, ms(t0, 5)); // earlier: pushed
        d.remove(2);
        assert_eq!(d.len(), 2);
        assert_eq!(d.earliest(), Some(ms(t0, 5)));
        assert_eq!(d.pop_due(ms(t0, 4)), None);
        assert_eq!(d.pop_due(ms(t0, 40)), Some(1));
        // 3's old entry at 20 came up and was re-queued at 50.
        assert_eq!(d.pop_due(ms(t0, 40)), None);
        assert_eq!(d.earliest(), Some(ms(t0, 50)));
        assert_eq!(d.pop_due(ms(t0, 50)), Some(3));
        assert!(d.is_empty());
        assert_eq!(d.earliest(), None);
    }

    #[test]
    fn a_deadline_moved_later_many_times_leaves_one_entry() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        for i in 0..10_000 {
            d.set(7u64, ms(t0, 100 + i));
        }
        assert_eq!(d.heap.len(), 1);
        assert_eq!(d.pop_due(ms(t0, 5_000)), None);
        assert_eq!(d.heap.len(), 1);
        assert_eq!(d.get(7), Some(ms(t0, 10_099)));
        assert_eq!(d.pop_due(ms(t0, 10_099)), Some(7));
    }

    #[test]
    fn a_removed_and_reused_key_is_not_fired_by_its_old_entry() {
        let t0 = Instant::now();
        let mut d = Deadlines::new();
        d.set(1u32, ms(t0, 10));
        d.remove(1);
        d.set(1, ms(t0, 30));
        assert_eq!(d.pop_due(ms(t0, 20)), None);
        assert_eq!(d.pop_due(ms(t0, 30)), Some(1));
    }
}
