//! The measures `analyse` combines: per-order peer stats, latency and delay summaries,
//! positional agreement, pairwise rank distances, the consensus order and hop distances.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

use hdrhistogram::Histogram;

use super::MAX_MATRIX_PEERS;
use crate::compare::kendall::{self, RankIndex};
use crate::compare::peerlog::{PeerLog, NOT_EXPECTED};
use crate::compare::report::*;

/// What one present peer's log gives after sorting its deliveries by message.
pub(super) struct PeerStats {
    pub(super) index: RankIndex,
    pub(super) lost_from: Vec<u64>,
    pub(super) dups_from: Vec<u64>,
    pub(super) unexpected: u64,
}

/// The stats of one order of a log (its delivery or its arrival order).
pub(super) fn peer_stats(order: &[u32], n: u16, m: u32) -> PeerStats {
    let key_bound = u64::from(n) * u64::from(m);
    let mut v: Vec<u64> = Vec::with_capacity(order.len());
    let mut unexpected = 0;
    for (pos, &msg) in order.iter().enumerate() {
        if msg == NOT_EXPECTED {
            unexpected += 1;
        } else {
            v.push((u64::from(msg) << 32) | pos as u64);
        }
    }
    kendall::radix_sort_by_key(&mut v, key_bound);
    let mut distinct_from = vec![0u64; usize::from(n)];
    let mut dups_from = vec![0u64; usize::from(n)];
    // Keep the first delivery of each message (the sort is stable: it comes first).
    let mut prev = u64::MAX;
    v.retain(|&x| {
        let msg = x >> 32;
        let sender = (msg / u64::from(m)) as usize;
        if msg == prev {
            dups_from[sender] += 1;
            false
        } else {
            prev = msg;
            distinct_from[sender] += 1;
            true
        }
    });
    let lost_from = distinct_from.iter().map(|&d| u64::from(m) - d).collect();
    PeerStats {
        index: RankIndex::from_sorted(v, order.len(), key_bound),
        lost_from,
        dups_from,
        unexpected,
    }
}

pub(super) fn summary(h: &Histogram<u64>, negative: u64) -> LatencySummary {
    let us = |ns: u64| Some(ns as f64 / 1e3);
    if h.is_empty() {
        return LatencySummary {
            negative,
            ..LatencySummary::default()
        };
    }
    LatencySummary {
        p50: us(h.value_at_quantile(0.5)),
        p90: us(h.value_at_quantile(0.9)),
        p99: us(h.value_at_quantile(0.99)),
        p999: us(h.value_at_quantile(0.999)),
        max: us(h.max()),
        mean: Some(h.mean() / 1e3),
        count: h.len(),
        negative,
    }
}

pub(super) fn delay_summary(h: &Histogram<u64>) -> DelaySummary {
    let us = |ns: u64| Some(ns as f64 / 1e3);
    if h.is_empty() {
        return DelaySummary::default();
    }
    DelaySummary {
        p50: us(h.value_at_quantile(0.5)),
        p90: us(h.value_at_quantile(0.9)),
        p99: us(h.value_at_quantile(0.99)),
        max: us(h.max()),
        count: h.len(),
    }
}

/// Positional comparison over the N expected peers' orders (a missing log is empty):
/// `(out_of_order_rounds, first_divergence)`.
pub(super) fn positional(by_peer: &[Option<&[u32]>], rounds: u64) -> (u64, Option<u64>) {
    let orders: Option<Vec<&[u32]>> = by_peer.iter().copied().collect();
    let orders = orders.unwrap_or_default();
    let common = orders
        .iter()
        .map(|o| o.len())
        .min()
        .unwrap_or(0)
        .min(rounds as usize);
    let mut agree = 0u64;
    let mut first = None;
    if let Some((head, rest)) = orders.split_first() {
        for k in 0..common {
            let msg = head[k];
            if msg != NOT_EXPECTED && rest.iter().all(|o| o[k] == msg) {
                agree += 1;
            } else if first.is_none() {
                first = Some(k as u64);
            }
        }
    }
    if first.is_none() && (common as u64) < rounds {
        first = Some(common as u64);
    }
    (rounds - agree, first)
}

/// Kendall distances for the given pairs of `indexes`, on up to `threads` threads.
pub(super) fn distances(
    indexes: &[&RankIndex],
    pairs: &[(usize, usize)],
    threads: usize,
) -> Vec<(u64, u64)> {
    let next = AtomicUsize::new(0);
    let mut out = vec![(0u64, 0u64); pairs.len()];
    let threads = threads.clamp(1, pairs.len().max(1));
    let results: Vec<Vec<(usize, (u64, u64))>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut scratch = kendall::Scratch::default();
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(a, b)) = pairs.get(i) else { break };
                        mine.push((i, kendall::distance(indexes[a], indexes[b], &mut scratch)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("distance worker does not panic"))
            .collect()
    });
    for (i, d) in results.into_iter().flatten() {
        out[i] = d;
    }
    out
}

/// Mean and max of the normalised distances `dist` of `pairs` (indexes into `ids`).
pub(super) fn disagreement(ids: &[usize], pairs: &[(usize, usize)], dist: &[f64]) -> Disagreement {
    let mut d = Disagreement {
        pairs: pairs.len() as u64,
        ..Disagreement::default()
    };
    for (&(a, b), &x) in pairs.iter().zip(dist) {
        if x > d.max {
            d.max = x;
            d.max_pair = Some([ids[a] as u16, ids[b] as u16]);
        }
    }
    if !dist.is_empty() {
        d.mean = dist.iter().sum::<f64>() / dist.len() as f64;
    }
    d
}

/// One warning when present logs disagree on a header setting; `what` of the first present
/// log (by peer id) is used.
pub(super) fn setting<'a>(
    present: &[&'a PeerLog],
    name: &str,
    what: impl Fn(&'a PeerLog) -> &'static str,
    warnings: &mut Vec<String>,
) -> String {
    let Some(first) = present.first() else {
        return String::new();
    };
    let used = what(first);
    let differ: Vec<&&PeerLog> = present.iter().filter(|l| what(l) != used).collect();
    if let Some(d) = differ.first() {
        warnings.push(format!(
            "logs disagree on the {name}: {} peers (first peer {}: {}) differ from peer {}'s {used}, which is used",
            differ.len(),
            d.header.peer_id,
            what(d),
            first.header.peer_id
        ));
    }
    used.to_owned()
}

/// Messages ordered by their mean first-delivery position over the peers that delivered them
/// (ties by message index): a Borda-style consensus.
pub(super) fn mean_position_order(indexes: &[&RankIndex]) -> Vec<u32> {
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::with_capacity(indexes.len());
    let mut cursor: Vec<_> = indexes.iter().map(|ix| ix.iter()).collect();
    let key = |(m, p): (u32, u32)| (u64::from(m) << 32) | u64::from(p);
    for (p, it) in cursor.iter_mut().enumerate() {
        if let Some(x) = it.next() {
            heap.push(Reverse((key(x), p)));
        }
    }
    // (mean position × 2^16 as integer, message)
    let mut keyed: Vec<(u64, u32)> = Vec::new();
    let (mut cur, mut sum, mut count) = (u64::MAX, 0u64, 0u64);
    let flush = |cur: u64, sum: u64, count: u64, keyed: &mut Vec<(u64, u32)>| {
        if let Some(mean) = (sum << 16).checked_div(count) {
            keyed.push((mean, cur as u32));
        }
    };
    while let Some(Reverse((x, p))) = heap.pop() {
        let msg = x >> 32;
        if msg != cur {
            flush(cur, sum, count, &mut keyed);
            (cur, sum, count) = (msg, 0, 0);
        }
        sum += x & 0xffff_ffff;
        count += 1;
        if let Some(y) = cursor[p].next() {
            heap.push(Reverse((key(y), p)));
        }
    }
    flush(cur, sum, count, &mut keyed);
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, m)| m).collect()
}

/// Hop distance per sender → receiver pair: the TTL the sender's DATA left with (its log's
/// header; the receiver's own when the sender's log is missing, every peer of a run sets the
/// same) minus the TTL it arrived with. Only up to `MAX_MATRIX_PEERS` peers (N² pairs).
pub(super) fn pair_hops(by_peer: &[Option<&PeerLog>]) -> Vec<PairHops> {
    let mut out = Vec::new();
    if by_peer.len() > MAX_MATRIX_PEERS {
        return out;
    }
    for (receiver, log) in by_peer.iter().enumerate() {
        let Some(log) = log else { continue };
        for (sender, &[lo, hi]) in log.ttl_from.iter().enumerate() {
            let sent = by_peer
                .get(sender)
                .copied()
                .flatten()
                .map_or(0, |s| s.header.data_ttl);
            let initial = if sent != 0 { sent } else { log.header.data_ttl };
            if lo == 0 || initial == 0 {
                continue;
            }
            out.push(PairHops {
                sender: sender as u16,
                receiver: receiver as u16,
                min: initial.saturating_sub(hi),
                max: initial.saturating_sub(lo),
            });
        }
    }
    out
}
