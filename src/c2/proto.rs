//! The C2 messages and the documented limits of a run.
//!
//! The bytes are defined in [`crate::wire::c2`] (re-exported here, so `c2::proto::Msg` and the
//! rest keep their names). What stays here is policy, not syntax: the bounds a run must keep
//! (README "C2"), checked by the control client, by the controller before it sends a RUN, and
//! by the agent before it starts anything. The decoder lets an out-of-bounds RUN through as a
//! value so that the agent can answer it with a typed refusal instead of dropping the link.

use std::time::Duration;

pub use crate::wire::c2::{
    AgentInfo, Hello, Msg, MsgKind, RefusalCode, Role, RunRequest, RunSpec, COUNTER_LEN, HELLO_LEN,
    MAX_AGENTS_LISTED, MAX_FRAME, MAX_LABEL, MAX_REPORT, MAX_TEXT, NONCE_LEN, TAG_LEN, VERSION,
};
pub use crate::wire::c2::{CheckRequest, CheckResult, CheckSpec, MAX_CHECK_REPORT};

/// Documented limits of a run (README "C2").
pub const MAX_PEERS: usize = 256;
pub const MAX_MSGS: u32 = 100_000;
pub const MAX_SIZE: u32 = 8_192;
pub const MAX_INTERVAL_MS: u32 = 60_000;

/// A run parameter outside its documented bounds, the flag named (the control client prints
/// it as `--{error}`, the agent sends it as the text of an `OutOfBounds` refusal).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoundsError {
    #[error("peers must be 1..={MAX_PEERS}, got {0}")]
    Peers(usize),
    #[error("msgs must be 1..={MAX_MSGS}, got {0}")]
    Msgs(u32),
    #[error("interval must be MIN..MAX ms with MIN <= MAX <= {MAX_INTERVAL_MS}, got {0}..{1}")]
    Interval(u32, u32),
    #[error("size must be at most {MAX_SIZE} bytes, got {0}")]
    SizeOverMax(u32),
    /// What the peer would refuse, refused first (0 = the peer's default size).
    #[error("size {got} is out of range: {min}..={MAX_SIZE} bytes (0 = the default)")]
    SizeUnderMin { got: u32, min: u32 },
    /// `wan::check_time_scale`'s words.
    #[error("--time-scale: {0}")]
    TimeScale(String),
    /// `wan::check_loss`'s words.
    #[error("--wan-loss: {0}")]
    WanLoss(String),
    #[error("--wan-loss needs an emulated WAN: add --wan lan (no added delay) or another profile")]
    LossWithoutWan,
    #[error("--interval MAX {interval_max_ms} ms × --time-scale {time_scale} is a gap of {gap:.1?} between messages: at most {cap:?}")]
    ScaledGap {
        interval_max_ms: u32,
        time_scale: f64,
        gap: Duration,
        cap: Duration,
    },
    #[error("peer id {id} out of range for {peers} peers")]
    PeerId { id: u16, peers: usize },
    #[error("zone labels need a WAN profile and one label per peer")]
    Zones,
    #[error("WAN profile and zone labels may only use letters, digits, '-', '_' and '.'")]
    Labels,
}

/// For the controller's planning code, whose errors are still text.
impl From<BoundsError> for String {
    fn from(e: BoundsError) -> String {
        e.to_string()
    }
}

/// Bounds every run parameter; the one place that says what "in bounds" means.
pub fn check_run_shape(
    peers: usize,
    msgs: u32,
    interval_ms: (u32, u32),
    size: u32,
) -> Result<(), BoundsError> {
    if peers == 0 || peers > MAX_PEERS {
        return Err(BoundsError::Peers(peers));
    }
    if msgs == 0 || msgs > MAX_MSGS {
        return Err(BoundsError::Msgs(msgs));
    }
    if interval_ms.0 > interval_ms.1 || interval_ms.1 > MAX_INTERVAL_MS {
        return Err(BoundsError::Interval(interval_ms.0, interval_ms.1));
    }
    if size > MAX_SIZE {
        return Err(BoundsError::SizeOverMax(size));
    }
    let min = crate::wire::packet::DATA_MIN_LEN as u32;
    if size != 0 && size < min {
        return Err(BoundsError::SizeUnderMin { got: size, min });
    }
    Ok(())
}

/// Bounds of the emulation values, as the peer checks them (`--time-scale`, `--wan-loss`),
/// with the flag named; the interval and the profile's delays scaled are the peer's own check
/// (`peer::args::RunValues`), which the control command runs too.
pub fn check_emulation(
    time_scale: f64,
    interval_max_ms: u32,
    wan: &str,
    wan_loss: f64,
) -> Result<(), BoundsError> {
    crate::wan::check_time_scale(time_scale).map_err(BoundsError::TimeScale)?;
    crate::wan::check_loss(wan_loss).map_err(BoundsError::WanLoss)?;
    if wan_loss != 0.0 && wan.is_empty() {
        return Err(BoundsError::LossWithoutWan);
    }
    let cap = crate::peer::args::MAX_SCALED_INTERVAL;
    let gap = Duration::from_millis(u64::from(interval_max_ms)).mul_f64(time_scale);
    if gap > cap {
        return Err(BoundsError::ScaledGap {
            interval_max_ms,
            time_scale,
            gap,
            cap,
        });
    }
    Ok(())
}

/// Letters, digits, '-', '_' and '.': safe in a file name and on a command line.
pub fn is_label(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl RunSpec {
    /// Semantic bounds: the agent's handler runs this before it starts anything, and refuses
    /// a RUN that fails it with [`RefusalCode::OutOfBounds`] and this text.
    pub fn check(&self) -> Result<(), BoundsError> {
        check_run_shape(self.peers.len(), self.msgs, self.interval_ms, self.size)?;
        if usize::from(self.peer_id) >= self.peers.len() {
            return Err(BoundsError::PeerId {
                id: self.peer_id,
                peers: self.peers.len(),
            });
        }
        check_emulation(
            self.time_scale,
            self.interval_ms.1,
            &self.wan,
            self.wan_loss,
        )?;
        if !self.zones.is_empty() && (self.wan.is_empty() || self.zones.len() != self.peers.len()) {
            return Err(BoundsError::Zones);
        }
        if !is_label(&self.wan) || !self.zones.iter().all(|z| !z.is_empty() && is_label(z)) {
            return Err(BoundsError::Labels);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Order, Repair, Transport};

    fn spec() -> RunSpec {
        RunSpec {
            run_id: 1,
            peer_id: 1,
            transport: Transport::Multicast,
            order: Order::Causal,
            repair: Repair::Nack,
            msgs: 50,
            interval_ms: (10, 100),
            size: 0,
            seed: 7,
            group: Some("239.1.2.3:4570".parse().unwrap()),
            comparator: "127.0.0.1:4568".parse().unwrap(),
            peers: vec![
                "127.0.0.2:4567".parse().unwrap(),
                "[::1]:4567".parse().unwrap(),
            ],
            wan: "eu".into(),
            zones: vec!["a".into(), "b".into()],
            time_scale: 0.1,
            wan_loss: 0.01,
            run_key: [0x5a; 32],
            ssm: false,
        }
    }

    #[test]
    fn out_of_bounds_run_specs_fail_the_check_with_a_reason() {
        let bad = |f: &dyn Fn(&mut RunSpec)| {
            let mut s = spec();
            f(&mut s);
            s.check()
        };
        assert_eq!(bad(&|_| ()), Ok(()));
        assert_eq!(
            bad(&|s| s.msgs = MAX_MSGS + 1),
            Err(BoundsError::Msgs(MAX_MSGS + 1))
        );
        assert_eq!(bad(&|s| s.msgs = 0), Err(BoundsError::Msgs(0)));
        assert_eq!(
            bad(&|s| s.peer_id = 2),
            Err(BoundsError::PeerId { id: 2, peers: 2 })
        );
        assert_eq!(
            bad(&|s| s.size = MAX_SIZE + 1),
            Err(BoundsError::SizeOverMax(MAX_SIZE + 1))
        );
        let under = bad(&|s| s.size = 20).unwrap_err();
        assert!(under.to_string().contains("38..=8192"), "{under}");
        assert_eq!(
            bad(&|s| s.interval_ms = (5, 4)),
            Err(BoundsError::Interval(5, 4))
        );
        assert_eq!(
            bad(&|s| s.peers = vec![s.peers[0]; MAX_PEERS + 1]),
            Err(BoundsError::Peers(MAX_PEERS + 1))
        );
        assert_eq!(bad(&|s| drop(s.zones.pop())), Err(BoundsError::Zones));
        assert_eq!(
            bad(&|s| s.zones[0] = "a b".into()),
            Err(BoundsError::Labels)
        );
        assert!(matches!(
            bad(&|s| s.time_scale = 0.0),
            Err(BoundsError::TimeScale(_))
        ));
        assert!(matches!(
            bad(&|s| s.time_scale = 1e4),
            Err(BoundsError::TimeScale(_))
        ));
        assert!(matches!(
            bad(&|s| s.wan_loss = 1.5),
            Err(BoundsError::WanLoss(_))
        ));
        assert!(matches!(
            bad(&|s| s.wan_loss = -0.1),
            Err(BoundsError::WanLoss(_))
        ));
        assert_eq!(
            bad(&|s| {
                s.wan.clear();
                s.zones.clear();
            }),
            Err(BoundsError::LossWithoutWan),
            "loss without a WAN"
        );
        assert!(
            matches!(
                bad(&|s| {
                    s.interval_ms = (1, 60_000);
                    s.time_scale = 2.0;
                }),
                Err(BoundsError::ScaledGap { .. })
            ),
            "a scaled gap over 60 s"
        );
    }

    /// The words stay those the control client and the tests have always shown.
    #[test]
    fn bounds_errors_name_the_flag() {
        assert!(check_emulation(2.0, 60_000, "", 0.0)
            .unwrap_err()
            .to_string()
            .contains("--time-scale"));
        assert!(check_emulation(1.0, 10, "", 2.0)
            .unwrap_err()
            .to_string()
            .starts_with("--wan-loss"));
        assert_eq!(
            check_run_shape(0, 1, (0, 0), 0).unwrap_err().to_string(),
            "peers must be 1..=256, got 0"
        );
        let s: String = check_run_shape(1, 0, (0, 0), 0).unwrap_err().into();
        assert_eq!(s, "msgs must be 1..=100000, got 0");
    }

    /// The largest RUN within every bound still fits a frame many times over, so a frame cap
    /// can never refuse a RUN the bounds allow.
    #[test]
    fn the_largest_run_in_bounds_fits_a_frame() {
        let mut s = spec();
        s.peers = vec!["[ffff::1]:65535".parse().unwrap(); MAX_PEERS];
        s.wan = "w".repeat(MAX_LABEL);
        s.zones = vec!["z".repeat(MAX_LABEL); MAX_PEERS];
        s.peer_id = (MAX_PEERS - 1) as u16;
        assert_eq!(s.check(), Ok(()));
        let mut b = Vec::new();
        Msg::Run(Box::new(s.clone())).emit(&mut b);
        eprintln!(
            "MEASURED: largest in-bounds RUN = {} bytes (frame cap {MAX_FRAME})",
            b.len()
        );
        assert!(b.len() < MAX_FRAME as usize / 16, "{}", b.len());
        assert_eq!(Msg::parse(&b), Ok(Msg::Run(Box::new(s))));
    }
}
