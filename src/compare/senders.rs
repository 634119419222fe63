//! How far each sender got, from the logs alone: a sender whose log is missing and that no
//! receiver heard a STOP from has crashed (or was killed) after the last message anyone saw,
//! and what it never sent is `unsent`, not `lost`. A receiver that ended with a STOP count
//! below what its sender sent (forged or broken) or without the whole stream is named.

use super::peerlog::PeerLog;

pub struct SenderEnds {
    /// Messages each sender sent, as far as the logs tell (M when they cannot tell).
    pub sent: Vec<u32>,
    pub warnings: Vec<String>,
}

pub fn sender_ends(by_peer: &[Option<&PeerLog>], m: u32) -> SenderEnds {
    let n = by_peer.len();
    let mut sent = vec![m; n];
    let mut trusted = vec![true; n];
    let mut warnings = Vec::new();
    let ends = |p: usize| {
        by_peer
            .iter()
            .flatten()
            .filter_map(move |l| l.header.streams.get(p).copied().flatten())
    };
    for p in 0..n {
        if by_peer[p].is_some() {
            continue; // It wrote its log, so it finished sending.
        }
        if let Some(stop) = ends(p).filter_map(|e| e.stop).max() {
            sent[p] = stop.min(m);
        } else if let Some(known) = ends(p).map(|e| e.known).max() {
            sent[p] = known.min(m);
            trusted[p] = false;
            let unsent = m - sent[p];
            warnings.push(match sent[p] {
                0 => format!(
                    "sender {p} sent nothing anyone saw (no log, no STOP): its {unsent} messages are counted as unsent, not lost"
                ),
                k => format!(
                    "sender {p} stopped after seq {} (no log, no STOP): {unsent} messages unsent, not counted as lost",
                    k - 1
                ),
            });
        }
    }
    for r in by_peer.iter().flatten() {
        let me = r.header.peer_id;
        for (p, end) in r.header.streams.iter().enumerate() {
            let Some(end) = end else { continue };
            if !trusted[p] {
                continue;
            }
            match end.stop {
                Some(stop) if stop < sent[p] => warnings.push(format!(
                    "peer {me} took a STOP of {stop} from sender {p}, which sent {}: forged or broken",
                    sent[p]
                )),
                None if end.known < sent[p] => warnings.push(format!(
                    "peer {me} ended without sender {p}'s STOP, knowing of {} of its {} messages",
                    end.known, sent[p]
                )),
                _ => {}
            }
        }
    }
    SenderEnds { sent, warnings }
}
