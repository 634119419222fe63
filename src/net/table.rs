//! The connections of one service: a token slab (no search for a free token), the count per
//! source ([`source_key`]), and the connections still to prove themselves ("pending": not
//! authenticated yet, or silent so far), ordered for eviction.
//!
//! A token is a slot index in its low half and the slot's generation in its high half, so a
//! reused slot gets a new token: a readiness event, a timer or a reply address (the
//! controller's requester) left over from the connection before never reaches the newcomer. [`ConnTable::admit`] decides
//! for a newcomer from the same keys in both services; the service carries out the decision.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::Token;

use super::source_key;

/// Caps on what a service holds. `None`: no such cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once; at the cap a newcomer evicts the oldest pending one, or is refused.
    pub max_connections: usize,
    /// Connections at once from one source; a newcomer beyond it is refused (it evicts nobody:
    /// one source must not push others out).
    pub max_per_source: Option<usize>,
    /// Pending connections at once; a newcomer beyond it evicts the oldest pending one.
    pub max_pending: Option<usize>,
    /// Pending connections from one source; a newcomer beyond it evicts that source's oldest.
    pub max_pending_per_source: Option<usize>,
}

/// What to do with a newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Close this pending connection first, then ask again.
    Evict(Token),
    /// The source holds `cap` connections already.
    SourceFull {
        source: IpAddr,
        cap: usize,
    },
    /// The service holds `cap` connections and none is pending.
    Full {
        cap: usize,
    },
}

/// Eviction order: lower `class` first (the service's "least proven"), then oldest.
type PendingKey = (u8, Instant, Token);

/// Where the generation starts in a token.
const GEN_SHIFT: u32 = usize::BITS / 2;
const INDEX_MASK: usize = (1 << GEN_SHIFT) - 1;

struct Entry<T> {
    token: Token,
    value: T,
    peer: SocketAddr,
    source: IpAddr,
    pending: Option<(u8, Instant)>,
}

pub struct ConnTable<T> {
    slots: Vec<Option<Entry<T>>>,
    /// Per slot: bumped when its connection leaves.
    gens: Vec<usize>,
    /// Freed slots, reused oldest first (a token is not handed out again at once, so a stale
    /// readiness event rarely reaches a newcomer; when it does, it is a spurious wake-up).
    free: VecDeque<usize>,
    first: usize,
    len: usize,
    limits: Limits,
    per_source: HashMap<IpAddr, usize>,
    pending: BTreeSet<PendingKey>,
    pending_per_source: HashMap<IpAddr, BTreeSet<PendingKey>>,
}

impl<T> ConnTable<T> {
    /// Tokens start at `first` (those below are the service's listener, waker, …).
    pub fn new(first: usize, limits: Limits) -> ConnTable<T> {
        ConnTable {
            slots: Vec::new(),
            gens: Vec::new(),
            free: VecDeque::new(),
            first,
            len: 0,
            limits,
            per_source: HashMap::new(),
            pending: BTreeSet::new(),
            pending_per_source: HashMap::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Connections from the source of `ip`.
    pub fn from_source(&self, ip: IpAddr) -> usize {
        self.per_source.get(&source_key(ip)).copied().unwrap_or(0)
    }

    /// The decision for a newcomer from `peer`.
    pub fn admit(&self, peer: SocketAddr) -> Admit {
        let source = source_key(peer.ip());
        let l = self.limits;
        if let Some(cap) = l.max_per_source {
            if self.per_source.get(&source).copied().unwrap_or(0) >= cap {
                return Admit::SourceFull { source, cap };
            }
        }
        if let Some(cap) = l.max_pending_per_source {
            let mine = self.pending_per_source.get(&source);
            if mine.map_or(0, BTreeSet::len) >= cap {
                if let Some(&(_, _, t)) = mine.and_then(|s| s.first()) {
                    return Admit::Evict(t);
                }
            }
        }
        let pending_full = l.max_pending.is_some_and(|cap| self.pending.len() >= cap);
        if pending_full || self.len >= l.max_connections {
            return match self.pending.first() {
                Some(&(_, _, t)) => Admit::Evict(t),
                None => Admit::Full {
                    cap: l.max_connections,
                },
            };
        }
        Admit::Yes
    }

    /// Add a connection, pending (class 0, since `now`) until [`ConnTable::settle`].
    pub fn insert(&mut self, peer: SocketAddr, value: T, now: Instant) -> Token {
        let source = source_key(peer.ip());
        let index = match self.free.pop_front() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.gens.push(0);
                self.slots.len() - 1
            }
        };
        let token = Token(self.gens[index] << GEN_SHIFT | (self.first + index));
        self.slots[index] = Some(Entry {
            token,
            value,
            peer,
            source,
            pending: None,
        });
        self.len += 1;
        *self.per_source.entry(source).or_default() += 1;
        self.mark_pending(token, 0, now);
        token
    }

    pub fn remove(&mut self, token: Token) -> Option<(T, SocketAddr)> {
        let index = self.index(token)?;
        self.unmark(token);
        let entry = self.slots[index].take()?;
        // Wraps long before it could reach the top bits (and mio's reserved token).
        self.gens[index] = (self.gens[index] + 1) % (INDEX_MASK >> 1);
        self.free.push_back(index);
        self.len -= 1;
        if let Some(n) = self.per_source.get_mut(&entry.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&entry.source);
            }
        }
        Some((entry.value, entry.peer))
    }

    pub fn get(&self, token: Token) -> Option<&T> {
        let i = self.index(token)?;
        self.slots[i].as_ref().map(|e| &e.value)
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let i = self.index(token)?;
        self.slots[i].as_mut().map(|e| &mut e.value)
    }

    pub fn peer(&self, token: Token) -> Option<SocketAddr> {
        let i = self.index(token)?;
        self.slots[i].as_ref().map(|e| e.peer)
    }

    /// Make `token` evictable in `class` (lower goes first) as of `since`; replaces its place.
    pub fn mark_pending(&mut self, token: Token, class: u8, since: Instant) {
        self.unmark(token);
        let Some(i) = self.index(token) else { return };
        let Some(e) = self.slots[i].as_mut() else {
            return;
        };
        e.pending = Some((class, since));
        let key = (class, since, token);
        self.pending.insert(key);
        self.pending_per_source
            .entry(e.source)
            .or_default()
            .insert(key);
    }

    /// `token` proved itself: no longer pending, never evicted for a newcomer.
    pub fn settle(&mut self, token: Token) {
        self.unmark(token);
    }

    pub fn is_pending(&self, token: Token) -> bool {
        self.index(token)
            .and_then(|i| self.slots[i].as_ref())
            .is_some_and(|e| e.pending.is_some())
    }

    pub fn iter(&self) -> impl Iterator<Item = (Token, &T)> {
        self.slots
            .iter()
            .filter_map(|e| e.as_ref().map(|e| (e.token, &e.value)))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Token, &mut T)> {
        self.slots
            .iter_mut()
            .filter_map(|e| e.as_mut().map(|e| (e.token, &mut e.value)))
    }

    fn unmark(&mut self, token: Token) {
        let Some(i) = self.index(token) else { return };
        let Some(e) = self.slots[i].as_mut() else {
            return;
        };
        if let Some((class, since)) = e.pending.take() {
            let key = (class, since, token);
            self.pending.remove(&key);
            if let Some(set) = self.pending_per_source.get_mut(&e.source) {
                set.remove(&key);
                if set.is_empty() {
                    self.pending_per_source.remove(&e.source);
                }
            }
        }
    }

    /// The slot of `token`, if it still holds that connection (not a later one).
    fn index(&self, token: Token) -> Option<usize> {
        let i = (token.0 & INDEX_MASK).checked_sub(self.first)?;
        let e = self.slots.get(i)?.as_ref()?;
        (e.token == token).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const OPEN: Limits = Limits {
        max_connections: 100,
        max_per_source: None,
        max_pending: None,
        max_pending_per_source: None,
    };

    #[test]
    fn tokens_start_at_first_and_a_reused_slot_gets_a_new_token() {
        let now = Instant::now();
        let mut t = ConnTable::new(2, OPEN);
        let a = t.insert(addr("192.0.2.1:1"), 'a', now);
        let b = t.insert(addr("192.0.2.1:2"), 'b', now);
        assert_eq!((a, b), (Token(2), Token(3)));
        assert_eq!(t.remove(a), Some(('a', addr("192.0.2.1:1"))));
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(Token(0)), None);
        assert_eq!(t.get(Token(99)), None);
        let c = t.insert(addr("192.0.2.2:1"), 'c', now);
        assert_ne!(c, a, "a new generation");
        assert_eq!(c.0 & INDEX_MASK, 2, "the only free slot");
        // The old token reaches nothing, not the newcomer in its slot.
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(c), Some(&'c'));
        let d = t.insert(addr("192.0.2.2:2"), 'd', now);
        assert_eq!(d, Token(4));
        assert_eq!(t.len(), 3);
        assert_eq!(t.from_source("192.0.2.1".parse().unwrap()), 1);
        assert_eq!(t.from_source("192.0.2.2".parse().unwrap()), 2);
        let mut seen: Vec<char> = t.iter().map(|(_, v)| *v).collect();
        seen.sort();
        assert_eq!(seen, ['b', 'c', 'd']);
    }

    #[test]
    fn a_full_source_is_refused_and_evicts_nobody() {
        let now = Instant::now();
        let limits = Limits {
            max_per_source: Some(2),
            ..OPEN
        };
        let mut t = ConnTable::new(0, limits);
        t.insert(addr("[2001:db8:0:1::1]:1"), (), now);
        t.insert(addr("[2001:db8:0:1::2]:1"), (), now);
        // Another address of the same /64 is the same source.
        let newcomer = addr("[2001:db8:0:1::3]:1");
        assert!(matches!(
            t.admit(newcomer),
            Admit::SourceFull { cap: 2, .. }
        ));
        assert_eq!(t.admit(addr("[2001:db8:0:2::1]:1")), Admit::Yes);
    }

    #[test]
    fn at_a_cap_the_least_proven_oldest_is_evicted() {
        let t0 = Instant::now();
        let later = |s| t0 + Duration::from_secs(s);
        let limits = Limits {
            max_connections: 3,
            max_pending_per_source: Some(2),
            ..OPEN
        };
        let mut t = ConnTable::new(0, limits);
        let a = t.insert(addr("192.0.2.1:1"), (), t0);
        let b = t.insert(addr("192.0.2.1:2"), (), later(1));
        // `a` said something: it goes after the silent `b`.
        t.mark_pending(a, 1, t0);
        assert_eq!(t.admit(addr("192.0.2.1:3")), Admit::Evict(b));
        // Another source is under its own cap but the service is not: 2 < 3.
        assert_eq!(t.admit(addr("192.0.2.9:1")), Admit::Yes);
        let c = t.insert(addr("192.0.2.9:1"), (), later(2));
        assert_eq!(t.admit(addr("192.0.2.9:2")), Admit::Evict(b));
        t.settle(b);
        t.settle(a);
        assert_eq!(t.pending(), 1);
        assert_eq!(t.admit(addr("192.0.2.9:2")), Admit::Evict(c));
        t.settle(c);
        assert_eq!(t.admit(addr("192.0.2.9:2")), Admit::Full { cap: 3 });
        t.remove(c);
        assert_eq!(t.admit(addr("192.0.2.9:2")), Admit::Yes);
    }

    #[test]
    fn the_pending_cap_evicts_across_sources() {
        let t0 = Instant::now();
        let limits = Limits {
            max_pending: Some(2),
            ..OPEN
        };
        let mut t = ConnTable::new(0, limits);
        let a = t.insert(addr("192.0.2.1:1"), (), t0);
        let b = t.insert(addr("192.0.2.2:1"), (), t0 + Duration::from_secs(1));
        assert_eq!(t.admit(addr("192.0.2.3:1")), Admit::Evict(a));
        t.remove(a);
        assert_eq!(t.admit(addr("192.0.2.3:1")), Admit::Yes);
        assert!(t.is_pending(b));
        t.settle(b);
        assert!(!t.is_pending(b));
        t.insert(addr("192.0.2.3:1"), (), t0);
        assert_eq!(t.admit(addr("192.0.2.3:1")), Admit::Yes);
    }
}
