//! Causal violations, from the logs alone.
//!
//! (p, k) happened before (q, j) when p = q and k < j, or when q delivered (p, k) at a
//! deliver_ns earlier than send_ns(q, j) (one host, one clock), or transitively. The messages of
//! p that precede a message form a prefix of p's sequence, so a vector clock VC(x)[p] = how many
//! of p's messages precede x says everything. A first delivery of x at receiver r is a violation
//! when, for some p, the prefix of p's messages r had delivered so far (contiguous from seq 0)
//! is shorter than VC(x)[p]. Messages with seq ≥ M are ignored.
//!
//! send_ns(q, j) is compared with q's deliveries only (one clock), so it is taken from the first
//! record of (q, j) in q's own log; a message its sender did not log has no delivery
//! predecessors of its own (only the sender's earlier messages and theirs). Only logged
//! messages get a clock: one nobody delivered precedes others only through its sender's later
//! messages, which the same-sender prefix already covers.

use std::fmt;

use super::kendall::RankIndex;
use super::peerlog::{PeerLog, NOT_EXPECTED};

/// Vector-clock cells (distinct messages × senders, 4 bytes each): 256 MiB at most.
pub const MAX_CAUSAL_CELLS: u64 = 1 << 26;
/// Cell operations, (distinct messages + deliveries) × senders: about a second or two.
pub const MAX_CAUSAL_WORK: u64 = 1 << 30;

/// Why the count was not computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    OverCap {
        messages: u64,
        deliveries: u64,
        senders: u64,
    },
    /// Messages whose clocks depend on themselves: deliveries logged before the sends of
    /// messages they follow (only a wrong clock or a forged log does that).
    Cycle { stuck: u64 },
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skipped::OverCap { messages, deliveries, senders } => write!(
                f,
                "no causal_violations: {messages} messages and {deliveries} deliveries x {senders} senders is over the cap of {MAX_CAUSAL_CELLS} vector-clock cells or {MAX_CAUSAL_WORK} operations"
            ),
            Skipped::Cycle { stuck } => write!(
                f,
                "no causal_violations: happened-before from the logs is cyclic ({stuck} messages follow themselves: deliveries logged before the sends they precede); check the clocks or the logs"
            ),
        }
    }
}

/// Causal violations over the present logs (`by_peer[r]` is receiver r's log and `first[r]`
/// its first deliveries by message, as the analysis indexes them); `m` is M.
pub fn violations(
    by_peer: &[Option<&PeerLog>],
    first: &[Option<&RankIndex>],
    m: u32,
) -> Result<u64, Skipped> {
    violations_capped(by_peer, first, m, MAX_CAUSAL_CELLS, MAX_CAUSAL_WORK)
}

/// The logged messages, sorted, and the senders among them.
struct Messages {
    msg: Vec<u32>,
    /// Distinct senders, sorted; `start[d]..start[d + 1]` are sender d's messages.
    senders: Vec<u16>,
    start: Vec<usize>,
}

impl Messages {
    fn collect(first: &[Option<&RankIndex>], m: u32) -> Messages {
        let mut msg: Vec<u32> = Vec::new();
        // Merged one log at a time: memory follows the distinct messages, not the deliveries.
        for ix in first.iter().flatten() {
            msg.extend(ix.iter().map(|(m, _)| m));
            msg.sort_unstable();
            msg.dedup();
        }
        let mut senders: Vec<u16> = Vec::new();
        let mut start = Vec::new();
        for (i, &x) in msg.iter().enumerate() {
            let s = (x / m) as u16;
            if senders.last() != Some(&s) {
                senders.push(s);
                start.push(i);
            }
        }
        start.push(msg.len());
        Messages {
            msg,
            senders,
            start,
        }
    }

    fn index(&self, msg: u32) -> usize {
        self.msg
            .binary_search(&msg)
            .expect("every delivered message is collected")
    }

    fn dim_of_index(&self, i: usize) -> usize {
        self.start.partition_point(|&s| s <= i) - 1
    }
}

/// Where a receiver first delivered `msg`, if it did.
fn first_pos(ix: &RankIndex, msg: u32) -> Option<usize> {
    ix.position(msg).map(|p| p as usize)
}

/// [`violations`] with the caps as arguments (tests use small ones).
pub fn violations_capped(
    by_peer: &[Option<&PeerLog>],
    first: &[Option<&RankIndex>],
    m: u32,
    max_cells: u64,
    max_work: u64,
) -> Result<u64, Skipped> {
    let deliveries: u64 = by_peer.iter().flatten().map(|l| l.order.len() as u64).sum();
    if m == 0 || deliveries == 0 {
        return Ok(0);
    }
    let ms = Messages::collect(first, m);
    let dims = ms.senders.len();
    let (messages, senders) = (ms.msg.len() as u64, dims as u64);
    let cells = messages.saturating_mul(senders);
    let work = (messages + deliveries).saturating_mul(senders);
    if cells > max_cells || work > max_work {
        return Err(Skipped::OverCap {
            messages,
            deliveries,
            senders,
        });
    }
    // A cell counts messages of one sender (at most M): 2 bytes each when M allows.
    if m <= u32::from(u16::MAX) {
        count_with::<u16>(by_peer, first, m, &ms)
    } else {
        count_with::<u32>(by_peer, first, m, &ms)
    }
}

/// A vector-clock cell: a count of one sender's messages, up to M.
trait Cell: Copy + Ord + Default + Into<u32> {
    /// `v` as a cell (`v` ≤ M, which the cell type holds).
    fn of(v: u32) -> Self;
}

impl Cell for u16 {
    fn of(v: u32) -> u16 {
        u16::try_from(v).unwrap_or(u16::MAX)
    }
}

impl Cell for u32 {
    fn of(v: u32) -> u32 {
        v
    }
}

/// The count of [`violations_capped`] once the caps passed, with cells of type `C`.
fn count_with<C: Cell>(
    by_peer: &[Option<&PeerLog>],
    first: &[Option<&RankIndex>],
    m: u32,
    ms: &Messages,
) -> Result<u64, Skipped> {
    let dims = ms.senders.len();
    let vc = clocks::<C>(by_peer, ms, m)?;
    let mut count = 0;
    let mut prefix = vec![0u32; dims];
    for (log, ix) in by_peer.iter().zip(first) {
        let (Some(log), Some(ix)) = (log, ix) else {
            continue;
        };
        prefix.fill(0);
        for (pos, &msg) in log.order.iter().enumerate() {
            if msg == NOT_EXPECTED || first_pos(ix, msg) != Some(pos) {
                continue;
            }
            let i = ms.index(msg);
            let row = &vc[i * dims..(i + 1) * dims];
            if prefix
                .iter()
                .zip(row)
                .any(|(&have, &need)| have < need.into())
            {
                count += 1;
            }
            // Extend the sender's contiguous prefix over what had already arrived after a gap.
            let d = ms.dim_of_index(i);
            if msg % m == prefix[d] {
                let base = u32::from(ms.senders[d]) * m;
                prefix[d] += 1;
                while prefix[d] < m && first_pos(ix, base + prefix[d]).is_some_and(|p| p < pos) {
                    prefix[d] += 1;
                }
            }
        }
    }
    Ok(count)
}

/// Every logged message's vector clock (row i of `dims` cells for message index i).
///
/// Each sender's messages are computed in seq order; message (q, j) folds in the clocks of
/// q's deliveries before send_ns(q, j), which must be computed first. Instead of recursing, a
/// sender blocked on another's message waits for a later round; a round without progress
/// means a cycle, so at most (messages + deliveries + 1) rounds run.
fn clocks<C: Cell>(by_peer: &[Option<&PeerLog>], ms: &Messages, m: u32) -> Result<Vec<C>, Skipped> {
    let dims = ms.senders.len();
    // Per sender, as a receiver: its log's deliveries in deliver_ns order (empty without a log).
    let logs: Vec<Option<&PeerLog>> = ms
        .senders
        .iter()
        .map(|&q| by_peer.get(usize::from(q)).copied().flatten())
        .collect();
    let by_time: Vec<&[u32]> = logs
        .iter()
        .map(|l| l.map_or(&[][..], |l| l.sends.by_time(&l.order)))
        .collect();
    let mut vc = vec![C::default(); ms.msg.len() * dims];
    let mut computed = vec![0usize; dims];
    let mut cursor = vec![0usize; dims];
    let mut ready = vec![false; dims];
    let mut done = 0;
    while done < ms.msg.len() {
        let mut progress = false;
        for d in 0..dims {
            loop {
                let i = ms.start[d] + computed[d];
                if i == ms.start[d + 1] {
                    break;
                }
                let seq = ms.msg[i] % m;
                if !ready[d] {
                    if computed[d] > 0 {
                        vc.copy_within((i - 1) * dims..i * dims, i * dims);
                    }
                    // (q, 0..j) precede (q, j).
                    let cell = &mut vc[i * dims + d];
                    *cell = (*cell).max(C::of(seq));
                    ready[d] = true;
                }
                // Earlier messages' folds are inherited, so the cursor never goes back.
                let before = logs[d].and_then(|l| l.sends.before(seq)).unwrap_or(0);
                let mut blocked = false;
                while cursor[d] < before {
                    let x = by_time[d][cursor[d]];
                    if x != NOT_EXPECTED {
                        let y = ms.index(x);
                        let dy = ms.dim_of_index(y);
                        if y >= ms.start[dy] + computed[dy] {
                            blocked = true;
                            break;
                        }
                        for c in 0..dims {
                            let v = vc[y * dims + c];
                            let cell = &mut vc[i * dims + c];
                            *cell = (*cell).max(v);
                        }
                        let cell = &mut vc[i * dims + dy];
                        *cell = (*cell).max(C::of(x % m + 1));
                    }
                    cursor[d] += 1;
                    progress = true;
                }
                if blocked {
                    break;
                }
                computed[d] += 1;
                ready[d] = false;
                done += 1;
                progress = true;
            }
        }
        if !progress && done < ms.msg.len() {
            return Err(Skipped::Cycle {
                stuck: (ms.msg.len() - done) as u64,
            });
        }
    }
    Ok(vc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::log::{encode, LogHeader, Record};

    /// Receiver `peer`'s log of `(sender, seq, send_ns, deliver_ns)` in delivery order.
    fn log(peer: u16, n: u16, m: u32, recs: &[(u16, u32, u64, u64)]) -> PeerLog {
        let h = LogHeader {
            run_id: 1,
            peer_id: peer,
            peers: n,
            msgs: m,
            ..LogHeader::default()
        };
        let recs: Vec<Record> = recs
            .iter()
            .map(|&(sender, seq, send_ns, deliver_ns)| Record {
                sender,
                seq,
                send_ns,
                recv_ns: deliver_ns,
                deliver_ns,
                arrive_ns: deliver_ns,
                ..Record::default()
            })
            .collect();
        PeerLog::from_bytes(&encode(&h, &recs)).unwrap()
    }

    /// First delivery position per message, as the analysis indexes it (naively).
    fn first_of(l: &PeerLog) -> RankIndex {
        let mut by_msg: Vec<u64> = Vec::new();
        for (pos, &msg) in l.order.iter().enumerate() {
            if msg != NOT_EXPECTED && !by_msg.iter().any(|&x| (x >> 32) as u32 == msg) {
                by_msg.push((u64::from(msg) << 32) | pos as u64);
            }
        }
        by_msg.sort_unstable();
        RankIndex::from_sorted(by_msg, l.order.len(), u64::MAX)
    }

    fn count(logs: &[PeerLog], m: u32) -> Result<u64, Skipped> {
        count_capped(logs, m, MAX_CAUSAL_CELLS, MAX_CAUSAL_WORK)
    }

    fn count_capped(logs: &[PeerLog], m: u32, cells: u64, work: u64) -> Result<u64, Skipped> {
        let ix: Vec<RankIndex> = logs.iter().map(first_of).collect();
        let by_peer: Vec<Option<&PeerLog>> = logs.iter().map(Some).collect();
        let first: Vec<Option<&RankIndex>> = ix.iter().map(Some).collect();
        violations_capped(&by_peer, &first, m, cells, work)
    }

    /// Peer 1 delivers (0,0), then sends (1,0); peer 2 gets (1,0) first. Each sender has one
    /// message, so FIFO holds everywhere; causality does not at peer 2.
    #[test]
    fn fifo_order_can_violate_causality() {
        let logs = [
            log(0, 3, 1, &[(0, 0, 10, 10), (1, 0, 30, 45)]),
            log(1, 3, 1, &[(0, 0, 10, 20), (1, 0, 30, 30)]),
            log(2, 3, 1, &[(1, 0, 30, 40), (0, 0, 10, 50)]),
        ];
        assert!(logs.iter().all(|l| l.fifo_violations == 0));
        assert_eq!(count(&logs, 1), Ok(1));
    }

    #[test]
    fn causal_order_has_none() {
        let logs = [
            log(0, 3, 1, &[(0, 0, 10, 10), (1, 0, 30, 45)]),
            log(1, 3, 1, &[(0, 0, 10, 20), (1, 0, 30, 30)]),
            log(2, 3, 1, &[(0, 0, 10, 40), (1, 0, 30, 50)]),
        ];
        assert_eq!(count(&logs, 1), Ok(0));
    }

    /// (0,0) → (0,1) → (1,0) though peer 1 never logged (0,0): peers 1 and 2 deliver (0,1) and
    /// (1,0) without (0,0), two violations each; peer 2's late (0,0) itself violates nothing.
    #[test]
    fn predecessors_are_transitive_and_include_unlogged_seqs() {
        let logs = [
            log(0, 3, 2, &[(0, 0, 10, 10), (0, 1, 12, 12)]),
            log(1, 3, 2, &[(0, 1, 12, 20), (1, 0, 30, 30)]),
            log(2, 3, 2, &[(0, 1, 12, 40), (1, 0, 30, 41), (0, 0, 10, 42)]),
        ];
        assert_eq!(count(&logs, 2), Ok(4));
    }

    /// A delivery after a gap extends the prefix only once the gap is filled.
    #[test]
    fn a_filled_gap_extends_the_prefix() {
        let logs = [
            log(0, 2, 2, &[(0, 0, 10, 10), (0, 1, 11, 11)]),
            log(1, 2, 2, &[(0, 1, 11, 20), (0, 0, 10, 21), (1, 0, 30, 30)]),
        ];
        // (0,1) before (0,0) at peer 1: one violation; (1,0) after both: none.
        assert_eq!(count(&logs, 2), Ok(1));
    }

    /// Delivery order and deliver_ns disagree at peer 1: the clock decides what preceded the
    /// send. (0,0) reached peer 1 at 20, before it sent (1,0) at 30, though logged after it.
    #[test]
    fn deliver_times_not_positions_decide_what_preceded_a_send() {
        let logs = [
            log(0, 3, 1, &[(0, 0, 10, 10)]),
            log(1, 3, 1, &[(1, 0, 30, 30), (0, 0, 10, 20)]),
            log(2, 3, 1, &[(1, 0, 30, 40), (0, 0, 10, 50)]),
        ];
        assert_eq!(count(&logs, 1), Ok(2));
    }

    #[test]
    fn duplicates_and_unexpected_seqs_are_ignored() {
        let logs = [log(
            0,
            1,
            2,
            &[
                (0, 0, 10, 10),
                (0, 9, 5, 11),
                (0, 0, 10, 12),
                (0, 1, 13, 13),
            ],
        )];
        assert_eq!(count(&logs, 2), Ok(0));
    }

    /// Each peer logs the other's message before sending its own: a forged cycle terminates.
    #[test]
    fn a_forged_cycle_terminates_with_an_error() {
        let logs = [
            log(0, 2, 1, &[(1, 0, 20, 5), (0, 0, 10, 10)]),
            log(1, 2, 1, &[(0, 0, 10, 15), (1, 0, 20, 20)]),
        ];
        assert_eq!(count(&logs, 1), Err(Skipped::Cycle { stuck: 2 }));
        // A message delivered by its sender before it was sent follows itself.
        let logs = [log(0, 1, 1, &[(0, 0, 10, 5)])];
        assert_eq!(count(&logs, 1), Err(Skipped::Cycle { stuck: 1 }));
    }

    /// A long forged chain of blocked senders still ends within the bound on rounds.
    #[test]
    fn a_long_dependency_chain_is_resolved_iteratively() {
        // Peer p delivered (p+1, 0) before sending (p, 0): the order of computation is the
        // reverse of the sender order, one sender per round. (p, 0) and (p+1, 0) need all of
        // (p+1.., 0) resp. (p+2.., 0), which peer p never has for p < n - 2: 2 violations each.
        let n = 200u16;
        let logs: Vec<PeerLog> = (0..n)
            .map(|p| {
                let mut recs = Vec::new();
                if p + 1 < n {
                    recs.push((p + 1, 0, 1000 - u64::from(p + 1), 1000 - u64::from(p) - 1));
                }
                recs.push((p, 0, 1000 - u64::from(p), 1000 - u64::from(p)));
                log(p, n, 1, &recs)
            })
            .collect();
        assert_eq!(count(&logs, 1), Ok(2 * (u64::from(n) - 2)));
    }

    #[test]
    fn over_the_cap_is_skipped() {
        let logs = [
            log(0, 2, 1, &[(0, 0, 10, 10), (1, 0, 20, 25)]),
            log(1, 2, 1, &[(0, 0, 10, 15), (1, 0, 20, 20)]),
        ];
        // 2 messages × 2 senders = 4 cells; (2 + 4) × 2 = 12 operations.
        assert_eq!(count_capped(&logs, 1, 4, 12), Ok(0));
        assert!(matches!(
            count_capped(&logs, 1, 3, 12),
            Err(Skipped::OverCap {
                messages: 2,
                deliveries: 4,
                senders: 2
            })
        ));
        assert!(count_capped(&logs, 1, 4, 11).is_err());
    }
}
