//! The text form of a report (`write_human`): summary lines, the per-peer table and the
//! matrices.

use std::io::{self, Write};

use super::*;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
}

impl Report {
    /// The readable form: the original's line, a summary and a per-peer table (+ matrices).
    pub fn write_human(&self, w: &mut dyn Write) -> io::Result<()> {
        let transport = self.transport.as_deref().unwrap_or("?");
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "?".to_owned()
            } else {
                s.to_owned()
            }
        };
        write!(
            w,
            "run {:016x}: {} peers x {} msgs, {transport}, order {}, repair {}",
            self.run_id,
            self.peers,
            self.msgs_per_peer,
            or_unknown(&self.order),
            or_unknown(&self.repair)
        )?;
        if let Some(wan) = &self.wan {
            write!(w, ", wan {wan} (time scale {})", self.time_scale)?;
        }
        writeln!(w)?;
        writeln!(
            w,
            "Found {} unordered message rounds",
            self.out_of_order_rounds
        )?;
        let pct = if self.rounds > 0 {
            100.0 * self.out_of_order_rounds as f64 / self.rounds as f64
        } else {
            0.0
        };
        let first = self
            .first_divergence
            .map_or_else(|| "none".to_owned(), |k| format!("position {k}"));
        writeln!(
            w,
            "  rounds {}, out of order {} ({pct:.1}%), first divergence: {first}",
            self.rounds, self.out_of_order_rounds
        )?;
        let a = &self.arrival;
        let first_arrival = a
            .first_divergence
            .map_or_else(|| "none".to_owned(), |k| format!("position {k}"));
        writeln!(
            w,
            "  out-of-order rounds: delivery {}, arrival {} (first divergence: delivery {first}, arrival {first_arrival})",
            self.out_of_order_rounds, a.out_of_order_rounds
        )?;
        writeln!(
            w,
            "  arrival order: fifo violations {}, pairwise disagreement mean {:.4}, max {:.4}",
            a.fifo_violations, a.pairwise_disagreement.mean, a.pairwise_disagreement.max
        )?;
        let causal = self
            .causal_violations
            .map_or_else(|| "not computed".to_owned(), |c| c.to_string());
        writeln!(
            w,
            "  causal violations {causal}, total order {}",
            if self.total_order { "yes" } else { "no" }
        )?;
        let o = &self.overhead;
        writeln!(
            w,
            "  overhead: {} control datagrams ({} bytes), {} retransmissions, {} nacks; {:.3} per delivery",
            o.control_datagrams, o.control_bytes, o.retransmissions, o.nacks, o.per_delivery
        )?;
        let d = &self.ordering_delay_us;
        writeln!(
            w,
            "  ordering delay us: p50 {} p90 {} p99 {} max {} (n={}); repairs given up {}, duplicates dropped {}",
            opt(d.p50, 1),
            opt(d.p90, 1),
            opt(d.p99, 1),
            opt(d.max, 1),
            d.count,
            self.repairs.given_up,
            self.repairs.duplicates_dropped
        )?;
        writeln!(
            w,
            "  deliveries {}, {}, duplicates {}, fifo violations {}, unexpected {}, malformed {}, other-run {}",
            self.deliveries, self.lost_line(), self.duplicates, self.fifo_violations, self.unexpected, self.malformed, self.foreign
        )?;
        if self.lost == 0 && self.kernel_drops > 0 {
            writeln!(
                w,
                "  kernel drops {} (datagrams this host's full receive buffers dropped; repair or the protocol made up for them)",
                thousands(self.kernel_drops)
            )?;
        }
        if self.forged > 0 {
            writeln!(
                w,
                "  forged {} (datagrams whose tag did not verify: dropped, nothing else changed)",
                self.forged
            )?;
        }
        if self.unsent > 0 {
            writeln!(
                w,
                "  unsent {} (a sender stopped early: see the warnings; not counted as lost)",
                self.unsent
            )?;
        }
        let d = &self.pairwise_disagreement;
        write!(
            w,
            "  pairwise disagreement (Kendall): mean {:.4}, max {:.4}",
            d.mean, d.max
        )?;
        if let Some([a, b]) = d.max_pair {
            write!(w, " (peers {a} and {b})")?;
        }
        writeln!(w, " over {} pairs", d.pairs)?;
        let c = &self.consensus;
        match (c.odd_one_out, c.reference) {
            _ if c.method == "none" => {
                writeln!(w, "  pairwise distances and consensus not computed")?
            }
            (Some(p), Some(r)) => writeln!(
                w,
                "  furthest from reference peer {r}: peer {p} ({:.4})",
                c.max_distance
            )?,
            (Some(p), None) => writeln!(
                w,
                "  odd one out (vs {} consensus): peer {p} ({:.4})",
                c.method, c.max_distance
            )?,
            (None, _) => writeln!(w, "  every peer agrees with the {} consensus", c.method)?,
        }
        let l = &self.latency_us;
        writeln!(
            w,
            "  latency us: p50 {} p90 {} p99 {} p99.9 {} max {} (n={}, negative {})",
            opt(l.p50, 1),
            opt(l.p90, 1),
            opt(l.p99, 1),
            opt(l.p999, 1),
            opt(l.max, 1),
            l.count,
            l.negative
        )?;
        let clock = self
            .clock_error_ms
            .map_or_else(|| "unknown".to_owned(), |c| format!("{c:.3} ms"));
        writeln!(w, "  clock error bound: {clock}; one-way latency across hosts is only as good as their clock sync")?;
        if let Some(line) = self.hops_line() {
            writeln!(w, "  {line}")?;
        }
        if !self.missing_peers.is_empty() {
            writeln!(w, "  missing peers (no log): {:?}", self.missing_peers)?;
        }
        writeln!(
            w,
            "  setup {:.1} ms, duration {:.1} ms",
            self.setup_ms, self.duration_ms
        )?;
        for warning in &self.warnings {
            writeln!(w, "  warning: {warning}")?;
        }
        writeln!(
            w,
            "  {:>4} {:>8} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6}",
            "peer",
            "zone",
            "deliveries",
            "lost",
            "kdrops",
            "dups",
            "fifo",
            "p50 us",
            "p99 us",
            "neg",
            "dist",
            "control",
            "retx"
        )?;
        let shown = self.per_peer_rows();
        for p in self.per_peer.iter().filter(|p| shown.contains(&p.peer)) {
            if !p.present {
                writeln!(
                    w,
                    "  {:>4} {:>8} (no log)",
                    p.peer,
                    p.zone.as_deref().unwrap_or("-")
                )?;
                continue;
            }
            writeln!(
                w,
                "  {:>4} {:>8} {:>10} {:>8} {:>8} {:>6} {:>6} {:>10} {:>10} {:>8} {:>8} {:>8} {:>6}",
                p.peer,
                p.zone.as_deref().unwrap_or("-"),
                p.deliveries,
                p.lost,
                p.kernel_drops,
                p.duplicates,
                p.fifo_violations,
                opt(p.latency_us.p50, 1),
                opt(p.latency_us.p99, 1),
                p.latency_us.negative,
                opt(p.distance_to_consensus, 4),
                p.control_datagrams,
                p.retransmissions
            )?;
        }
        if shown.len() < self.per_peer.len() {
            writeln!(
                w,
                "  ({} more peers with nothing to note: no loss, duplicate, fifo violation or \
                 negative latency, not among the {PER_PEER_WORST} slowest p99; every row: \
                 --matrix or --json)",
                self.per_peer.len() - shown.len()
            )?;
        }
        if let Some(m) = &self.matrix {
            write_matrix(w, "lost (row: receiver, column: sender)", &m.lost, |v| {
                v.to_string()
            })?;
            write_matrix(
                w,
                "duplicates (row: receiver, column: sender)",
                &m.duplicates,
                |v| v.to_string(),
            )?;
            write_matrix(w, "pairwise disagreement", &m.disagreement, |v| opt(*v, 4))?;
            write_matrix(
                w,
                "latency p50 us (row: receiver, column: sender)",
                &m.latency_p50_us,
                |v| opt(*v, 1),
            )?;
            if !m.hops.is_empty() {
                write_matrix(
                    w,
                    "hops (row: receiver, column: sender; sender's TTL - received TTL)",
                    &m.hops,
                    |v| match v {
                        None => "-".into(),
                        Some([lo, hi]) if lo == hi => lo.to_string(),
                        Some([lo, hi]) => format!("{lo}-{hi}"),
                    },
                )?;
            }
        }
        Ok(())
    }
}

impl Report {
    /// `hops 0..2 over 12 sender → receiver pairs (...)`, or `None` without recorded TTLs.
    pub fn hops_line(&self) -> Option<String> {
        let lo = self.hops.iter().map(|h| h.min).min()?;
        let hi = self.hops.iter().map(|h| h.max).max()?;
        Some(format!(
            "hop distance {lo}..{hi} over {} sender -> receiver pairs (sender's TTL - received TTL; per pair: --matrix, --json \"hops\")",
            self.hops.len()
        ))
    }
}

/// Above this many peers the text report's per-peer table shows only the rows worth a look.
pub const PER_PEER_ROWS: usize = 32;
/// With a shortened table: the peers with the largest p99 latency shown anyway.
const PER_PEER_WORST: usize = 5;

impl Report {
    /// The peers whose row the text report prints: every one up to [`PER_PEER_ROWS`] peers or
    /// with `--matrix`; above, the absent ones, those with anything wrong, the odd one out and
    /// the [`PER_PEER_WORST`] slowest by p99 (256 rows per run helped nobody read a report).
    fn per_peer_rows(&self) -> std::collections::BTreeSet<u16> {
        if self.per_peer.len() <= PER_PEER_ROWS || self.matrix.is_some() {
            return self.per_peer.iter().map(|p| p.peer).collect();
        }
        let mut shown: std::collections::BTreeSet<u16> = self
            .per_peer
            .iter()
            .filter(|p| {
                !p.present
                    || p.lost > 0
                    || p.duplicates > 0
                    || p.fifo_violations > 0
                    || p.latency_us.negative > 0
            })
            .map(|p| p.peer)
            .collect();
        if let Some(odd) = self.consensus.odd_one_out {
            shown.insert(odd);
        }
        let mut by_p99: Vec<_> = self
            .per_peer
            .iter()
            .filter_map(|p| p.latency_us.p99.map(|v| (v, p.peer)))
            .collect();
        by_p99.sort_by(|a, b| b.0.total_cmp(&a.0));
        shown.extend(by_p99.iter().take(PER_PEER_WORST).map(|&(_, peer)| peer));
        shown
    }
}

fn write_matrix<T>(
    w: &mut dyn Write,
    title: &str,
    m: &[Vec<T>],
    cell: impl Fn(&T) -> String,
) -> io::Result<()> {
    writeln!(w, "  {title}:")?;
    write!(w, "  {:>4}", "")?;
    for j in 0..m.len() {
        write!(w, " {j:>8}")?;
    }
    writeln!(w)?;
    for (i, row) in m.iter().enumerate() {
        write!(w, "  {i:>4}")?;
        for v in row {
            write!(w, " {:>8}", cell(v))?;
        }
        writeln!(w)?;
    }
    Ok(())
}
