//! The analysis of one run: pure, no I/O. Memory is proportional to the deliveries actually
//! logged, never to the N × M a header claims (a hostile upload cannot make it allocate more).

use super::causal;
use super::kendall::{self, RankIndex};
use super::peerlog::{fifo_violations, new_hist, PeerLog, MAX_PAIR_HIST_PEERS, NS_PER_MS};
use super::report::*;
use super::senders;
use crate::wire::log::FAILURE_SEQUENCER_LOST;

/// Choices that change the analysis.
#[derive(Clone, Debug, Default)]
pub struct AnalyseOptions {
    /// Fill `Report::matrix` (receiver × sender and peer × peer).
    pub matrix: bool,
    /// Measure every peer against this peer's order instead of the mean-position consensus.
    pub reference: Option<u16>,
    /// Threads for the pairwise distances (0 = as many as the machine has).
    pub threads: usize,
    /// Leave out the pairwise distances and the consensus (for timing the rest).
    pub skip_pairwise: bool,
}

/// Matrices (`--matrix`) only up to this many peers.
pub const MAX_MATRIX_PEERS: usize = 256;
/// Pairwise distances and the consensus only up to this many logs (~500,000 pairs).
pub const MAX_PAIRWISE_PEERS: usize = 1024;
/// Pairwise distances and the consensus only while (pairs + 1) × (longest log + 1) stays under
/// this (the work is O(pairs × length × log length)): 2^30 is about 10 to 30 s on the 2-core
/// machine of the README; 16 logs × 1,000,000 deliveries is 1.2 × 10^8.
pub const MAX_PAIRWISE_WORK: u64 = 1 << 30;

mod measures;

use measures::*;

/// Analyse the logs of one run (any subset of its peers). N, M, run id and the run's settings
/// come from the first log; a log of another run or shape, or a second log of the same peer, is
/// ignored with a warning.
pub fn analyse(logs: &[PeerLog], opts: &AnalyseOptions) -> Report {
    let mut r = Report::default();
    let Some(first) = logs.first() else {
        r.warnings.push("no logs".into());
        return r;
    };
    let h0 = &first.header;
    let (n, m) = (h0.peers, h0.msgs);
    let nu = usize::from(n);
    let mut by_peer: Vec<Option<&PeerLog>> = vec![None; nu];
    for log in logs {
        let h = &log.header;
        if (h.run_id, h.peers, h.msgs) != (h0.run_id, n, m) {
            r.warnings.push(format!(
                "ignored a log of run {:016x} ({} peers x {} msgs): not run {:016x} ({n} x {m})",
                h.run_id, h.peers, h.msgs, h0.run_id
            ));
        } else if by_peer[usize::from(h.peer_id)].is_some() {
            r.warnings
                .push(format!("ignored a second log of peer {}", h.peer_id));
        } else {
            by_peer[usize::from(h.peer_id)] = Some(log);
        }
    }
    let present: Vec<&PeerLog> = by_peer.iter().flatten().copied().collect();

    r.run_id = h0.run_id;
    r.peers = n;
    r.msgs_per_peer = m;
    r.transport = h0.transport.map(|t| t.as_str().to_owned());
    r.wan = (!h0.wan.is_empty()).then(|| h0.wan.clone());
    r.time_scale = h0.time_scale();
    r.size = h0.msg_size;
    r.rounds = u64::from(n) * u64::from(m);
    r.zones = by_peer
        .iter()
        .map(|l| l.and_then(|l| (!l.header.zone.is_empty()).then(|| l.header.zone.clone())))
        .collect();
    r.missing_peers = (0..n)
        .filter(|&p| by_peer[usize::from(p)].is_none())
        .collect();
    r.deliveries = present.iter().map(|l| l.order.len() as u64).sum();
    r.fifo_violations = present.iter().map(|l| l.fifo_violations).sum();
    // Header counters are the peers' word: a crafted header must not make a sum wrap.
    let mut saturated = false;
    let mut ssum = |it: &mut dyn Iterator<Item = u64>| {
        let mut total = 0u64;
        for v in it {
            total = total.checked_add(v).unwrap_or_else(|| {
                saturated = true;
                u64::MAX
            });
        }
        total
    };
    r.malformed = ssum(&mut present.iter().map(|l| l.header.malformed));
    r.forged = ssum(&mut present.iter().map(|l| l.header.forged));
    r.kernel_drops = ssum(&mut present.iter().map(|l| l.header.kernel_drops));
    r.send_drops = ssum(&mut present.iter().map(|l| l.header.send_drops));
    r.authenticated = !present.is_empty() && present.iter().all(|l| l.header.authenticated);
    r.foreign = ssum(&mut present.iter().map(|l| l.header.foreign));
    r.setup_ms = present.iter().map(|l| l.header.setup_ns).max().unwrap_or(0) as f64 / NS_PER_MS;
    r.duration_ms = present
        .iter()
        .map(|l| l.header.duration_ns)
        .max()
        .unwrap_or(0) as f64
        / NS_PER_MS;
    r.kernel_stamps = !present.is_empty() && present.iter().all(|l| l.header.kernel_stamps);
    let clocks: Option<Vec<u64>> = present.iter().map(|l| l.header.clock_error_ns).collect();
    r.clock_error_ms = clocks
        .and_then(|c| c.into_iter().max())
        .map(|c| c as f64 / NS_PER_MS);

    r.order = setting(
        &present,
        "ordering mode",
        |l| l.header.order.as_str(),
        &mut r.warnings,
    );
    r.repair = setting(
        &present,
        "repair",
        |l| l.header.repair.as_str(),
        &mut r.warnings,
    );
    for l in &present {
        let (p, f) = (l.header.peer_id, l.header.failure);
        match f {
            0 => {}
            FAILURE_SEQUENCER_LOST => r.warnings.push(format!(
                "peer {p}: the sequencer (peer 0) fell silent; messages waiting for their order were not delivered"
            )),
            _ => r.warnings.push(format!("peer {p}: unknown failure code {f}")),
        }
    }
    let mut c = |f: fn(&PeerLog) -> u64| ssum(&mut present.iter().map(|l| f(l)));
    r.overhead = Overhead {
        control_datagrams: c(|l| l.header.cost.control_datagrams),
        control_bytes: c(|l| l.header.cost.control_bytes),
        retransmissions: c(|l| l.header.cost.retransmissions),
        nacks: c(|l| l.header.cost.nacks_sent),
        per_delivery: 0.0,
    };
    if r.deliveries > 0 {
        let extra = r
            .overhead
            .control_datagrams
            .saturating_add(r.overhead.retransmissions);
        r.overhead.per_delivery = extra as f64 / r.deliveries as f64;
    }
    r.repairs = Repairs {
        given_up: c(|l| l.header.cost.given_up),
        duplicates_dropped: c(|l| l.header.cost.duplicates_dropped),
    };
    if saturated {
        r.warnings.push(
            "a sum of the logs' header counters passed 2^64 and is shown as its maximum (crafted or corrupt headers)".into(),
        );
    }
    let mut delay = new_hist();
    for l in &present {
        delay
            .add(l.ordering_delay())
            .expect("auto-resizing histograms add");
    }
    r.ordering_delay_us = delay_summary(&delay);

    let delivery_orders: Vec<Option<&[u32]>> = by_peer
        .iter()
        .map(|l| l.map(|l| l.order.as_slice()))
        .collect();
    let arrival_orders: Vec<Option<&[u32]>> = by_peer
        .iter()
        .map(|l| l.map(|l| l.arrival_order()))
        .collect();
    (r.out_of_order_rounds, r.first_divergence) = positional(&delivery_orders, r.rounds);
    (r.arrival.out_of_order_rounds, r.arrival.first_divergence) =
        positional(&arrival_orders, r.rounds);
    r.arrival.fifo_violations = present
        .iter()
        .map(|l| fifo_violations(l.arrival_order(), n, m))
        .sum();

    // Which pairs get distances (decided from the logs' lengths alone).
    let ids: Vec<usize> = (0..nu).filter(|&p| by_peer[p].is_some()).collect();
    let longest = present
        .iter()
        .map(|l| l.order.len() as u64)
        .max()
        .unwrap_or(0);
    let pair_count = (ids.len() as u64) * (ids.len() as u64).saturating_sub(1) / 2;
    let work = (pair_count + 1).saturating_mul(longest + 1);
    let mut pairwise = !opts.skip_pairwise;
    let mut pairwise_warning = None;
    if ids.len() > MAX_PAIRWISE_PEERS {
        pairwise = false;
        pairwise_warning = Some(format!(
            "no pairwise distances for more than {MAX_PAIRWISE_PEERS} logs"
        ));
    } else if work > MAX_PAIRWISE_WORK {
        pairwise = false;
        pairwise_warning = Some(format!(
            "no pairwise distances or consensus: {pair_count} pairs x {longest} deliveries is over the cap of {MAX_PAIRWISE_WORK} (pairs + 1) x (longest log + 1)"
        ));
    }
    let pairs: Vec<(usize, usize)> = if !pairwise {
        Vec::new()
    } else {
        (0..ids.len())
            .flat_map(|a| (a + 1..ids.len()).map(move |b| (a, b)))
            .collect()
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |t| t.get())
    } else {
        opts.threads
    };
    // The distances on the arrival order first, so that only one order's indexes (8 bytes a
    // delivery) live at a time.
    let arrival_disagreement = {
        let arrival: Vec<RankIndex> = ids
            .iter()
            .map(|&p| peer_stats(by_peer[p].expect("present").arrival_order(), n, m).index)
            .collect();
        let arrival_refs: Vec<&RankIndex> = arrival.iter().collect();
        let arrival_dist: Vec<f64> = distances(&arrival_refs, &pairs, threads)
            .into_iter()
            .map(|(d, c)| kendall::normalise(d, c))
            .collect();
        disagreement(&ids, &pairs, &arrival_dist)
    };

    // Loss, duplicates and the per-peer order indexes.
    let stats: Vec<Option<PeerStats>> = by_peer
        .iter()
        .map(|l| l.map(|l| peer_stats(&l.order, n, m)))
        .collect();
    // What a crashed sender never sent is unsent, not lost.
    let ends = senders::sender_ends(&by_peer, m);
    r.unsent = ends.sent.iter().map(|&s| u64::from(m - s)).sum();
    r.warnings.extend(ends.warnings);
    let mut stats = stats;
    for st in stats.iter_mut().flatten() {
        for (lost, &sent) in st.lost_from.iter_mut().zip(&ends.sent) {
            *lost = lost.saturating_sub(u64::from(m - sent));
        }
    }
    for s in stats.iter().flatten() {
        r.lost += s.lost_from.iter().sum::<u64>();
        r.duplicates += s.dups_from.iter().sum::<u64>();
        r.unexpected += s.unexpected;
    }

    // Pairwise Kendall distances between present peers.
    let indexes: Vec<&RankIndex> = ids
        .iter()
        .map(|&p| &stats[p].as_ref().expect("present").index)
        .collect();
    r.warnings.extend(pairwise_warning);
    let raw = distances(&indexes, &pairs, threads);
    r.total_order = pairwise && raw.iter().all(|&(d, _)| d == 0);
    if !pairwise {
        r.warnings
            .push("total_order not checked (no pairwise distances): reported false".into());
    }
    let dist: Vec<f64> = raw
        .into_iter()
        .map(|(d, c)| kendall::normalise(d, c))
        .collect();
    r.pairwise_disagreement = disagreement(&ids, &pairs, &dist);
    r.arrival.pairwise_disagreement = arrival_disagreement;
    let first: Vec<Option<&RankIndex>> =
        stats.iter().map(|s| s.as_ref().map(|s| &s.index)).collect();
    match causal::violations(&by_peer, &first, m) {
        Ok(v) => r.causal_violations = Some(v),
        Err(why) => r.warnings.push(why.to_string()),
    }
    // N × N only when asked for, and only for an N a person can read (a header may say 65535).
    let matrix = opts.matrix && nu <= MAX_MATRIX_PEERS;
    if opts.matrix && !matrix {
        r.warnings.push(format!(
            "no matrices for more than {MAX_MATRIX_PEERS} peers"
        ));
    }
    let mut pair_matrix = if matrix {
        vec![vec![None; nu]; nu]
    } else {
        Vec::new()
    };
    for (&(a, b), &d) in pairs.iter().zip(&dist).filter(|_| matrix) {
        let (pa, pb) = (ids[a], ids[b]);
        pair_matrix[pa][pb] = Some(d);
        pair_matrix[pb][pa] = Some(d);
    }
    for &p in ids.iter().filter(|_| matrix) {
        pair_matrix[p][p] = Some(0.0);
    }

    // Consensus order and each peer's distance to it.
    let reference = opts
        .reference
        .filter(|&p| usize::from(p) < nu && stats[usize::from(p)].is_some());
    if let Some(p) = opts.reference.filter(|_| reference.is_none()) {
        r.warnings.push(format!(
            "reference peer {p} has no log; using the mean-position consensus"
        ));
    }
    let consensus_index = match reference {
        Some(p) => {
            r.consensus.method = "reference".into();
            r.consensus.reference = Some(p);
            None
        }
        None if !pairwise => {
            r.consensus.method = "none".into();
            Some(RankIndex::default())
        }
        None => {
            r.consensus.method = "mean-position".into();
            Some(RankIndex::from_order(
                &mean_position_order(&indexes),
                r.rounds,
            ))
        }
    };
    let target: &RankIndex = match (&consensus_index, reference) {
        (Some(c), _) => c,
        (None, Some(p)) => {
            &stats[usize::from(p)]
                .as_ref()
                .expect("reference present")
                .index
        }
        (None, None) => unreachable!("either a reference or a consensus"),
    };
    let with_target: Vec<&RankIndex> = std::iter::once(target)
        .chain(indexes.iter().copied())
        .collect();
    let target_pairs: Vec<(usize, usize)> = if !pairwise {
        Vec::new()
    } else {
        (1..with_target.len()).map(|i| (0, i)).collect()
    };
    let to_consensus: Vec<f64> = distances(&with_target, &target_pairs, threads)
        .into_iter()
        .map(|(d, c)| kendall::normalise(d, c))
        .collect();
    // The order indexes are done with: free them before the latency.
    drop(consensus_index);
    for st in stats.iter_mut().flatten() {
        st.index = RankIndex::default();
    }
    let mut peer_distance = vec![None; nu];
    for (&p, &d) in ids.iter().zip(&to_consensus) {
        peer_distance[p] = Some(d);
        if d > r.consensus.max_distance {
            r.consensus.max_distance = d;
            r.consensus.odd_one_out = Some(p as u16);
        }
    }

    // Latency: overall, per receiver, per sender → receiver.
    let mut overall = new_hist();
    let mut negative = 0;
    for p in 0..n {
        let i = usize::from(p);
        let mut s = PeerSummary {
            peer: p,
            zone: r.zones[i].clone(),
            ..PeerSummary::default()
        };
        if let (Some(log), Some(st)) = (by_peer[i], &stats[i]) {
            let h = log.latency.total();
            let neg = log.latency.negative_total();
            overall.add(&h).expect("auto-resizing histograms add");
            negative += neg;
            s.present = true;
            s.deliveries = log.order.len() as u64;
            s.lost = st.lost_from.iter().sum();
            s.duplicates = st.dups_from.iter().sum();
            s.fifo_violations = log.fifo_violations;
            s.malformed = log.header.malformed;
            s.forged = log.header.forged;
            s.setup_ms = log.header.setup_ns as f64 / NS_PER_MS;
            s.clock_error_ms = log.header.clock_error_ns.map(|c| c as f64 / NS_PER_MS);
            s.distance_to_consensus = peer_distance[i];
            s.latency_us = summary(&h, neg);
            let cost = &log.header.cost;
            s.control_datagrams = cost.control_datagrams;
            s.control_bytes = cost.control_bytes;
            s.retransmissions = cost.retransmissions;
            s.nacks = cost.nacks_sent;
            s.given_up = cost.given_up;
            s.duplicates_dropped = cost.duplicates_dropped;
            s.failure = log.header.failure;
            let hd = &log.header;
            s.kernel_drops = hd.kernel_drops;
            s.send_drops = hd.send_drops;
            s.data_datagrams_sent = hd.data_datagrams_sent;
            s.data_bytes_sent = hd.data_bytes_sent;
            s.send_syscalls = hd.send_syscalls;
            s.recv_syscalls = hd.recv_syscalls;
            s.cpu_ns = hd.cpu_ns;
        }
        r.per_peer.push(s);
    }
    r.latency_us = summary(&overall, negative);
    r.hops = pair_hops(&by_peer);
    let out_of_range: u64 = present.iter().map(|l| l.latency.out_of_range).sum();
    if out_of_range > 0 {
        r.warnings.push(format!(
            "{out_of_range} deliveries had a one-way latency over {} s (a send time out of range: forged, or a clock far off); they are not in the latency figures",
            super::peerlog::MAX_LATENCY_NS / 1_000_000_000
        ));
    }

    if matrix {
        let row = |p: usize, f: &dyn Fn(&PeerStats) -> &Vec<u64>| {
            stats[p]
                .as_ref()
                .map_or_else(|| vec![0; nu], |s| f(s).clone())
        };
        let p50 = |p: usize| -> Vec<Option<f64>> {
            let mut row = vec![None; nu];
            if let Some(log) = by_peer[p].filter(|_| n <= MAX_PAIR_HIST_PEERS) {
                log.for_each_pair_hist(|s, h| {
                    if let Some(cell) = row.get_mut(usize::from(s)).filter(|_| !h.is_empty()) {
                        *cell = Some(h.value_at_quantile(0.5) as f64 / 1e3);
                    }
                });
            }
            row
        };
        let mut hops_matrix = Vec::new();
        if !r.hops.is_empty() {
            hops_matrix = vec![vec![None; nu]; nu];
            for h in &r.hops {
                hops_matrix[usize::from(h.receiver)][usize::from(h.sender)] = Some([h.min, h.max]);
            }
        }
        r.matrix = Some(Matrices {
            lost: (0..nu).map(|p| row(p, &|s| &s.lost_from)).collect(),
            duplicates: (0..nu).map(|p| row(p, &|s| &s.dups_from)).collect(),
            disagreement: pair_matrix,
            latency_p50_us: (0..nu).map(p50).collect(),
            hops: hops_matrix,
        });
    }
    r
}
