//! Order distances: Kendall tau distance by inversion counting, O(n log n), and the pieces that
//! feed it (a radix sort of message indices, the common-message join of two delivery orders).
//!
//! Two orders of the same messages disagree on a *pair* of messages when one delivered `a` before
//! `b` and the other `b` before `a`. Over the messages both delivered, the number of such pairs is
//! the Kendall tau distance; divided by C(n, 2) it lies in [0, 1] (0 = same order, 1 = reversed).

/// Number of inversions (i < j with `v[i] > v[j]`) in `v`, by bottom-up merge sort. `v` is
/// sorted on return; `scratch` is reused between calls (no allocation once it is large enough).
///
/// Runs that are already in order are merged by a single comparison, so the nearly sorted
/// sequences of real runs cost close to O(n).
pub fn count_inversions(v: &mut [u32], scratch: &mut Vec<u32>) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    scratch.clear();
    scratch.resize(n, 0);
    let mut inv = 0u64;
    // Insertion sort of small blocks first: cheap and cache-friendly.
    const BLOCK: usize = 16;
    for block in v.chunks_mut(BLOCK) {
        for i in 1..block.len() {
            let x = block[i];
            let mut j = i;
            while j > 0 && block[j - 1] > x {
                block[j] = block[j - 1];
                j -= 1;
            }
            block[j] = x;
            inv += (i - j) as u64;
        }
    }
    let mut width = BLOCK;
    let mut src_is_v = true;
    while width < n {
        {
            let (src, dst): (&[u32], &mut [u32]) = if src_is_v {
                (&*v, &mut scratch[..])
            } else {
                (&scratch[..], &mut *v)
            };
            let mut lo = 0;
            while lo < n {
                let mid = (lo + width).min(n);
                let hi = (lo + 2 * width).min(n);
                inv += merge(&src[lo..mid], &src[mid..hi], &mut dst[lo..hi]);
                lo = hi;
            }
        }
        src_is_v = !src_is_v;
        width *= 2;
    }
    if !src_is_v {
        v.copy_from_slice(&scratch[..n]);
    }
    inv
}

/// Merge two sorted runs into `out`, returning how many (left, right) pairs were out of order.
#[inline]
fn merge(a: &[u32], b: &[u32], out: &mut [u32]) -> u64 {
    if b.is_empty() || a.last() <= b.first() {
        out[..a.len()].copy_from_slice(a);
        out[a.len()..].copy_from_slice(b);
        return 0;
    }
    let (mut i, mut j, mut k) = (0, 0, 0);
    let mut inv = 0u64;
    // Branch-free: which side goes next is data, not control flow (random orders mispredict).
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        let take_b = y < x;
        out[k] = if take_b { y } else { x };
        inv += (a.len() - i) as u64 * u64::from(take_b);
        j += usize::from(take_b);
        i += usize::from(!take_b);
        k += 1;
    }
    out[k..k + a.len() - i].copy_from_slice(&a[i..]);
    k += a.len() - i;
    out[k..].copy_from_slice(&b[j..]);
    inv
}

/// The O(n²) definition, for tests.
pub fn count_inversions_naive(v: &[u32]) -> u64 {
    let mut inv = 0;
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            if v[i] > v[j] {
                inv += 1;
            }
        }
    }
    inv
}

/// Stable LSD radix sort of `(key, value)` pairs packed as `key << 32 | value`, by key only, for
/// keys below `key_bound`. Equal keys keep their input order (so the first delivery of a message
/// stays first).
pub fn radix_sort_by_key(v: &mut Vec<u64>, key_bound: u64) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    let key_bits = 64 - key_bound.saturating_sub(1).leading_zeros();
    if v.len() < 2 || key_bits == 0 {
        return;
    }
    let mut buf = vec![0u64; v.len()];
    let mut shift = 32;
    while shift < 32 + key_bits {
        let mut count = [0usize; BUCKETS];
        for &x in v.iter() {
            count[((x >> shift) as usize) & (BUCKETS - 1)] += 1;
        }
        let mut sum = 0;
        for c in count.iter_mut() {
            let n = *c;
            *c = sum;
            sum += n;
        }
        for &x in v.iter() {
            let b = ((x >> shift) as usize) & (BUCKETS - 1);
            buf[count[b]] = x;
            count[b] += 1;
        }
        std::mem::swap(v, &mut buf);
        shift += BITS;
    }
}

/// A delivery order prepared for distance computations: `(message, position)` of the first
/// delivery of each message, sorted by message. Only the relative order of positions matters, so
/// they need not be dense; `span` bounds them (the log's length).
#[derive(Clone, Debug, Default)]
pub struct RankIndex {
    /// Sparse form: `message << 32 | position`, sorted by message, one entry per distinct
    /// message (empty in the dense form).
    sparse: Vec<u64>,
    /// Dense form, when it is no larger: the position of every message index below the key
    /// bound ([`ABSENT`] for one not delivered); 4 bytes a message instead of 8 a delivery.
    dense: Vec<u32>,
    /// Distinct messages held.
    len: usize,
    /// Every position is below `span`.
    pub span: usize,
}

/// A dense [`RankIndex`] slot of a message not delivered.
const ABSENT: u32 = u32::MAX;

impl RankIndex {
    /// From an order given as distinct message indices below `key_bound` (e.g. a consensus order).
    pub fn from_order(order: &[u32], key_bound: u64) -> RankIndex {
        let mut v: Vec<u64> = order
            .iter()
            .enumerate()
            .map(|(i, &m)| (u64::from(m) << 32) | i as u64)
            .collect();
        radix_sort_by_key(&mut v, key_bound);
        RankIndex::from_sorted(v, order.len(), key_bound)
    }

    /// From `message << 32 | position` entries sorted by message, one per distinct message,
    /// every message below `key_bound`: kept dense when that takes no more memory.
    pub fn from_sorted(mut v: Vec<u64>, span: usize, key_bound: u64) -> RankIndex {
        let len = v.len();
        let dense_ok = key_bound <= 2 * len as u64 && span < ABSENT as usize;
        if !dense_ok || len == 0 {
            v.shrink_to_fit();
            return RankIndex {
                sparse: v,
                dense: Vec::new(),
                len,
                span,
            };
        }
        // `key_bound` ≤ 2 × len: no larger than the sparse form.
        let mut dense = vec![ABSENT; key_bound as usize];
        for &x in &v {
            if let Some(slot) = dense.get_mut((x >> 32) as usize) {
                *slot = x as u32;
            }
        }
        RankIndex {
            sparse: Vec::new(),
            dense,
            len,
            span,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(message, first position)` by message.
    pub fn iter(&self) -> Iter<'_> {
        Iter { ix: self, i: 0 }
    }

    /// Where `msg` was first delivered, if it was.
    pub fn position(&self, msg: u32) -> Option<u32> {
        if self.dense.is_empty() {
            self.sparse
                .binary_search_by_key(&msg, |&x| (x >> 32) as u32)
                .ok()
                .map(|i| self.sparse[i] as u32)
        } else {
            self.dense
                .get(msg as usize)
                .copied()
                .filter(|&p| p != ABSENT)
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.sparse.capacity() * 8 + self.dense.capacity() * 4
    }
}

/// The entries of a [`RankIndex`], by message.
pub struct Iter<'a> {
    ix: &'a RankIndex,
    i: usize,
}

impl Iterator for Iter<'_> {
    type Item = (u32, u32);

    #[inline]
    fn next(&mut self) -> Option<(u32, u32)> {
        if self.ix.dense.is_empty() {
            let x = *self.ix.sparse.get(self.i)?;
            self.i += 1;
            return Some(((x >> 32) as u32, x as u32));
        }
        while let Some(&p) = self.ix.dense.get(self.i) {
            self.i += 1;
            if p != ABSENT {
                return Some(((self.i - 1) as u32, p));
            }
        }
        None
    }
}

/// Reusable buffers for [`distance`].
#[derive(Default)]
pub struct Scratch {
    slots: Vec<u32>,
    seq: Vec<u32>,
    merge: Vec<u32>,
}

/// Kendall tau distance between two orders over the messages both contain:
/// `(discordant pairs, common messages)`.
pub fn distance(a: &RankIndex, b: &RankIndex, s: &mut Scratch) -> (u64, u64) {
    // Join on message; place a's position at b's position, then read in b's order.
    const EMPTY: u32 = u32::MAX;
    s.slots.clear();
    s.slots.resize(b.span, EMPTY);
    let (mut x, mut y) = (a.iter(), b.iter());
    let (mut xa, mut yb) = (x.next(), y.next());
    let mut common = 0u64;
    while let (Some((ka, pa)), Some((kb, pb))) = (xa, yb) {
        if ka < kb {
            xa = x.next();
        } else if kb < ka {
            yb = y.next();
        } else {
            if let Some(slot) = s.slots.get_mut(pb as usize) {
                *slot = pa;
            }
            common += 1;
            xa = x.next();
            yb = y.next();
        }
    }
    s.seq.clear();
    s.seq
        .extend(s.slots.iter().copied().filter(|&r| r != EMPTY));
    let inv = count_inversions(&mut s.seq, &mut s.merge);
    (inv, common)
}

/// Discordant pairs as a fraction of all pairs of `common` messages (0 when fewer than two).
pub fn normalise(discordant: u64, common: u64) -> f64 {
    if common < 2 {
        0.0
    } else {
        discordant as f64 / (common as f64 * (common as f64 - 1.0) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_distance(a: &[u32], b: &[u32]) -> (u64, u64) {
        let pos = |o: &[u32], m: u32| o.iter().position(|&x| x == m);
        let common: Vec<u32> = a.iter().copied().filter(|&m| pos(b, m).is_some()).collect();
        let mut d = 0;
        for i in 0..common.len() {
            for j in i + 1..common.len() {
                // common[i] before common[j] in a; discordant if reversed in b.
                if pos(b, common[i]) > pos(b, common[j]) {
                    d += 1;
                }
            }
        }
        (d, common.len() as u64)
    }

    #[test]
    fn identical_and_reversed() {
        let a: Vec<u32> = (0..100).collect();
        let r: Vec<u32> = (0..100).rev().collect();
        let (ia, ir) = (
            RankIndex::from_order(&a, 100),
            RankIndex::from_order(&r, 100),
        );
        let mut s = Scratch::default();
        assert_eq!(distance(&ia, &ia, &mut s), (0, 100));
        assert_eq!(distance(&ia, &ir, &mut s), (4950, 100));
        assert_eq!(normalise(4950, 100), 1.0);
        assert_eq!(normalise(0, 1), 0.0);
    }

    #[test]
    fn radix_is_stable() {
        let mut v: Vec<u64> = vec![5 << 32, (1 << 32) | 1, (5 << 32) | 2, 3, (1 << 32) | 4];
        radix_sort_by_key(&mut v, 6);
        assert_eq!(
            v,
            vec![3, (1 << 32) | 1, (1 << 32) | 4, 5 << 32, (5 << 32) | 2]
        );
    }

    proptest! {
        #[test]
        fn fast_inversions_match_naive(v in proptest::collection::vec(0u32..50, 0..300)) {
            let want = count_inversions_naive(&v);
            let mut w = v.clone();
            let got = count_inversions(&mut w, &mut Vec::new());
            prop_assert_eq!(got, want);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            prop_assert_eq!(w, sorted);
        }

        #[test]
        fn fast_distance_matches_naive(
            a in Just((0u32..60).collect::<Vec<_>>()).prop_shuffle(),
            b in Just((0u32..60).collect::<Vec<_>>()).prop_shuffle(),
            ka in 0usize..60, kb in 0usize..60,
        ) {
            // Drop a different subset from each, as loss does.
            let a: Vec<u32> = a.into_iter().filter(|m| (*m as usize * 7 + ka) % 5 != 0).collect();
            let b: Vec<u32> = b.into_iter().filter(|m| (*m as usize * 3 + kb) % 4 != 0).collect();
            let (ia, ib) = (RankIndex::from_order(&a, 60), RankIndex::from_order(&b, 60));
            let mut s = Scratch::default();
            prop_assert_eq!(distance(&ia, &ib, &mut s), naive_distance(&a, &b));
            prop_assert_eq!(distance(&ib, &ia, &mut s), naive_distance(&b, &a));
        }

        #[test]
        fn radix_matches_stable_sort(v in proptest::collection::vec((0u64..5000, 0u64..1000), 0..500)) {
            let mut packed: Vec<u64> = v.iter().map(|&(k, x)| (k << 32) | x).collect();
            let mut want = packed.clone();
            want.sort_by_key(|x| x >> 32);
            radix_sort_by_key(&mut packed, 5000);
            prop_assert_eq!(packed, want);
        }
    }
}
