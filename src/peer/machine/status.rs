//! What the driver reads back from a machine: its phase, its counters, and why a handshake
//! failed (a peer of another run, a peer with another mode).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Handshake,
    Sending,
    Draining,
    Done,
    /// The handshake failed: timed out (`missing()` names the peers) or a peer was refused
    /// (`refused()`).
    Failed,
}

/// How often a waiting handshake says whom it waits for.
pub const WAIT_NOTE_EVERY: Duration = Duration::from_secs(5);

/// A listed peer whose HELLO is for another run: other N, M or `--run-id`. Not refused (a
/// stale peer of an earlier run may still be retransmitting), but named if the handshake fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherRun {
    pub peer: u16,
    pub peers: u16,
    pub msgs: u32,
    pub run_id: u64,
}

impl OtherRun {
    pub fn describe(&self, cfg: &Config) -> String {
        let id = |r: u64| {
            if r == 0 {
                "agreed in the handshake".to_string()
            } else {
                crate::util::run_id::RunHex(r).to_string()
            }
        };
        format!(
            "peer {} sent a HELLO for another run: {} peers x {} msgs, run id {} (this peer: {} x {}, run id {})",
            self.peer,
            self.peers,
            self.msgs,
            id(self.run_id),
            cfg.peers,
            cfg.msgs,
            id(cfg.run_id.unwrap_or(0))
        )
    }
}

/// A peer whose HELLO asks for another ordering mode or repair than ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub peer: u16,
    /// Its codes as sent (an unknown code is shown as a number).
    pub order: u8,
    pub repair: u8,
}

impl Refusal {
    pub fn describe(&self, cfg: &Config) -> String {
        let order = Order::from_u8(self.order).map_or_else(
            |_| format!("unknown mode {}", self.order),
            |o| o.to_string(),
        );
        let repair = RepairMode::from_u8(self.repair).map_or_else(
            |_| format!("unknown repair {}", self.repair),
            |r| r.to_string(),
        );
        format!(
            "peer {} runs --order {order} --repair {repair}, this peer --order {} --repair {}: \
             every peer of a run must use the same",
            self.peer, cfg.order, cfg.repair
        )
    }
}

/// What one peer counted besides its deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Undecodable datagrams, by reason (index = `wire::Error as usize`).
    pub malformed: [u64; Error::COUNT],
    /// Well-formed datagrams of another run (or another configuration).
    pub foreign: u64,
    /// Datagrams dropped by the emulated WAN's loss.
    pub wan_dropped: u64,
    pub hellos_sent: u64,
    pub data_sent: u32,
    /// DATA datagrams asked to be sent: every fan-out copy, retransmissions included.
    pub data_datagrams: u64,
    /// UDP payload bytes of those.
    pub data_bytes: u64,
    /// Datagrams whose tag did not verify (authenticated runs only).
    pub forged: u64,
    pub cost: Cost,
}

impl Counters {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}
