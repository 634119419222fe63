//! The preflight's C2 bodies (`mpcomm c2 check`, version 5), after the kind byte:
//!
//! ```text
//!   CHECK_REQUEST  peers u16 (0 = every live idle agent)  port u16 (0 = the controller's
//!                  peer port)  fanout bool  multicast bool  group opt-sock  duration ms u32
//!   CHECK          check u64  id u16  peers list(sock)  fanout bool  multicast bool
//!                  group sock  duration ms u32  wait ms u32
//!   CHECK_DONE     check u64  report str(MAX_CHECK_REPORT) (empty: it did not run)
//!                  error str4096
//!   CHECK_RESULT   host u16  hosts u16  advertise ip  report str(MAX_CHECK_REPORT)
//!                  error str4096
//! ```
//!
//! Syntax only, as for the rest: a request for neither transport, or a duration of 0, parses;
//! the controller refuses it.

use std::net::{IpAddr, SocketAddr};

use super::cursor::{Reader, Writer, MIN_SOCK_LEN};
use super::{MAX_CHECK_REPORT, MAX_TEXT};
use crate::wire::Result;

/// Peers of one CHECK: what a u16 count can say (the controller sends at most its agents).
const MAX_LIST: usize = u16::MAX as usize;

/// What a control client asks: a preflight across the live idle agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    /// How many agents (the first N live idle ones); 0 = all of them.
    pub peers: u16,
    /// UDP port every agent probes on; 0 = the controller's peer port (what runs use).
    pub port: u16,
    pub fanout: bool,
    pub multicast: bool,
    /// `None`: the controller's group (what its multicast runs use).
    pub group: Option<SocketAddr>,
    pub duration_ms: u32,
}

/// What one agent runs: `mpcomm check` with this peer list, as host `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub check_id: u64,
    pub id: u16,
    pub peers: Vec<SocketAddr>,
    pub fanout: bool,
    pub multicast: bool,
    pub group: SocketAddr,
    pub duration_ms: u32,
    /// How long to wait for the other hosts to appear.
    pub wait_ms: u32,
}

/// One host's outcome, controller → control client: its report as JSON (a
/// `check::CheckReport`), or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The host's id in the check (its place in every peer list) and how many hosts there are.
    pub host: u16,
    pub hosts: u16,
    pub advertise: IpAddr,
    /// Empty when the check did not run there (then `error` says why).
    pub report: String,
    pub error: String,
}

impl CheckRequest {
    pub(super) fn parse(r: &mut Reader) -> Result<CheckRequest> {
        Ok(CheckRequest {
            peers: r.u16()?,
            port: r.u16()?,
            fanout: r.bool()?,
            multicast: r.bool()?,
            group: r.opt_sock()?,
            duration_ms: r.u32()?,
        })
    }

    pub(super) fn emit(&self, w: &mut Writer) {
        w.u16(self.peers);
        w.u16(self.port);
        w.u8(self.fanout.into());
        w.u8(self.multicast.into());
        w.opt_sock(self.group);
        w.u32(self.duration_ms);
    }
}

impl CheckSpec {
    pub(super) fn parse(r: &mut Reader) -> Result<CheckSpec> {
        Ok(CheckSpec {
            check_id: r.u64()?,
            id: r.u16()?,
            peers: r.list(MIN_SOCK_LEN, MAX_LIST, Reader::sock)?,
            fanout: r.bool()?,
            multicast: r.bool()?,
            group: r.sock()?,
            duration_ms: r.u32()?,
            wait_ms: r.u32()?,
        })
    }

    pub(super) fn emit(&self, w: &mut Writer) {
        w.u64(self.check_id);
        w.u16(self.id);
        w.list(&self.peers, MAX_LIST, |w, p| w.sock(*p));
        w.u8(self.fanout.into());
        w.u8(self.multicast.into());
        w.sock(self.group);
        w.u32(self.duration_ms);
        w.u32(self.wait_ms);
    }
}

impl CheckResult {
    pub(super) fn parse(r: &mut Reader) -> Result<CheckResult> {
        Ok(CheckResult {
            host: r.u16()?,
            hosts: r.u16()?,
            advertise: r.ip()?,
            report: r.str(MAX_CHECK_REPORT)?,
            error: r.str(MAX_TEXT)?,
        })
    }

    pub(super) fn emit(&self, w: &mut Writer) {
        w.u16(self.host);
        w.u16(self.hosts);
        w.ip(self.advertise);
        w.str(&self.report, MAX_CHECK_REPORT);
        w.str(&self.error, MAX_TEXT);
    }
}

/// CHECK_DONE's fields (the agent's report, or its error).
pub(super) fn parse_done(r: &mut Reader) -> Result<(u64, String, String)> {
    Ok((r.u64()?, r.str(MAX_CHECK_REPORT)?, r.str(MAX_TEXT)?))
}

pub(super) fn emit_done(w: &mut Writer, check_id: u64, report: &str, error: &str) {
    w.u64(check_id);
    w.str(report, MAX_CHECK_REPORT);
    w.str(error, MAX_TEXT);
}
