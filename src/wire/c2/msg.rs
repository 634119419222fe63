//! C2 message bodies: `Msg` is the `Repr`, one variant per [`MsgKind`]. Field by field, after
//! the kind byte (encodings in `cursor`):
//!
//! ```text
//!   REGISTER       instance u64  advertise opt-ip (0 = none)  zone str32  running opt-u64
//!   HEARTBEAT      –
//!   RUN_READY      run u64
//!   RUN_FINISHED   run u64  ok bool  refused u8 (0 = the run ran; else a RefusalCode)
//!                  detail str4096  running opt-u64
//!   RUN            run u64  peer u16  transport u8  order u8  repair u8  msgs u32
//!                  interval min u32  max u32 (ms)  size u32  seed u64  group opt-sock
//!                  comparator sock  peers list(sock)  wan str32  zones list(str32)
//!                  run key [32]  time scale f64  WAN loss f64
//!   SHUTDOWN       –
//!   RUN_REQUEST    peers u16  msgs u32  transport u8  order u8  repair u8 (0xff = default)
//!                  interval min u32  max u32  size u32  wan str32  time scale f64
//!                  WAN loss f64  seed opt-u64
//!   STATUS_REQUEST, EXIT_REQUEST  –
//!   PROGRESS       text str4096
//!   RUN_REPORT     run u64  json str(MAX_REPORT)
//!   REFUSED        text str4096
//!   STATUS         agents list ≤ 1024 (advertise ip  zone str32  live bool  busy bool
//!                  seen-ms u32)
//!   EXIT_DONE      agents u16
//!   CHECK_REQUEST, CHECK, CHECK_DONE, CHECK_RESULT: see [`super::check`]
//! ```
//!
//! Any trailing byte is an error. `parse` checks syntax only (see the module above): a RUN
//! with 0 messages or a peer id past its list parses, and the agent refuses it.

use std::net::{IpAddr, SocketAddr};

pub use super::check::{CheckRequest, CheckResult, CheckSpec};
use super::cursor::{Reader, Writer, MIN_AGENT_LEN, MIN_SOCK_LEN, MIN_STR_LEN, NO_REPAIR};
use super::{MsgKind, RefusalCode, MAX_AGENTS_LISTED, MAX_LABEL, MAX_REPORT, MAX_TEXT};

/// Width of the peer and zone lists of a RUN: what a u16 count can say. (The run limit,
/// `c2::proto::MAX_PEERS`, is far lower and the agent's to check.)
const MAX_LIST: usize = u16::MAX as usize;
use crate::wire::{Error, Order, Repair, Result, Transport};

/// What a run looks like to one agent: everything its peer child needs, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub run_id: u64,
    pub peer_id: u16,
    pub transport: Transport,
    pub order: Order,
    /// Resolved by the controller (the mode's default unless asked), so every peer agrees.
    pub repair: Repair,
    pub msgs: u32,
    pub interval_ms: (u32, u32),
    pub size: u32,
    pub seed: u64,
    pub group: Option<SocketAddr>,
    pub comparator: SocketAddr,
    pub peers: Vec<SocketAddr>,
    /// WAN profile name; empty = none. With a profile, `zones` has one label per peer.
    pub wan: String,
    pub zones: Vec<String>,
    /// Multiplies every interval and emulated delay (`--time-scale`; 1 = real time).
    pub time_scale: f64,
    /// Extra random loss of the emulated WAN, 0..1 (needs `wan`).
    pub wan_loss: f64,
    /// The run's datagram key (one per run, made by the controller; the agent hands it to
    /// its peer in a private file, never on a command line). Travels only inside the
    /// authenticated link.
    pub run_key: [u8; 32],
    /// The peer joins (S,G) per peer instead of the whole group (`peer --ssm`).
    pub ssm: bool,
}

/// Run flags: one byte after the last field of a RUN or RUN_REQUEST, written only when a flag
/// is set (see `Writer::run_flags`).
pub(super) const FLAG_SSM: u8 = 1;

/// What a control client asks for (one run; `--repeat` and `both` are loops in the client).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub peers: u16,
    pub msgs: u32,
    pub transport: Transport,
    pub order: Order,
    /// `None`: the mode's default (`Order::default_repair`).
    pub repair: Option<Repair>,
    pub interval_ms: (u32, u32),
    pub size: u32,
    pub wan: String,
    pub time_scale: f64,
    pub wan_loss: f64,
    /// Base seed (peer i gets seed + i); `None`: the controller draws one.
    pub seed: Option<u64>,
    /// Source-specific multicast (`c2 run --ssm`).
    pub ssm: bool,
}

/// One line of `c2 status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub advertise: IpAddr,
    pub zone: String,
    pub live: bool,
    pub busy: bool,
    pub seen_ms_ago: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    // agent → controller
    /// `running`: the run the agent's peer is still running, if any (after a controller
    /// restart the new controller learns that the agent is busy).
    Register {
        instance: u64,
        advertise: Option<IpAddr>,
        zone: String,
        running: Option<u64>,
    },
    Heartbeat,
    RunReady {
        run_id: u64,
    },
    /// The outcome of `run_id`, or its refusal (`refused` set, `ok` false: the peer never
    /// started); `running` is the run the agent is running when it sends this (set when it
    /// refused `run_id` because it is busy with another).
    RunFinished {
        run_id: u64,
        ok: bool,
        detail: String,
        running: Option<u64>,
        refused: Option<RefusalCode>,
    },
    /// The preflight's outcome on this host: `report` is its JSON (empty when it did not run,
    /// then `error` says why).
    CheckDone {
        check_id: u64,
        report: String,
        error: String,
    },
    // controller → agent
    Run(Box<RunSpec>),
    Shutdown,
    Check(Box<CheckSpec>),
    // control → controller
    RunRequest(RunRequest),
    StatusRequest,
    ExitRequest,
    CheckRequest(CheckRequest),
    // controller → control
    Progress {
        text: String,
    },
    RunReport {
        run_id: u64,
        json: String,
    },
    Refused {
        text: String,
    },
    Status {
        agents: Vec<AgentInfo>,
    },
    ExitDone {
        agents: u16,
    },
    CheckResult(Box<CheckResult>),
}

impl RunSpec {
    fn parse(r: &mut Reader) -> Result<RunSpec> {
        Ok(RunSpec {
            run_id: r.u64()?,
            peer_id: r.u16()?,
            transport: r.transport()?,
            order: r.order()?,
            repair: r.repair()?,
            msgs: r.u32()?,
            interval_ms: (r.u32()?, r.u32()?),
            size: r.u32()?,
            seed: r.u64()?,
            group: r.opt_sock()?,
            comparator: r.sock()?,
            peers: r.list(MIN_SOCK_LEN, MAX_LIST, Reader::sock)?,
            wan: r.str(MAX_LABEL)?,
            zones: r.list(MIN_STR_LEN, MAX_LIST, |r| r.str(MAX_LABEL))?,
            run_key: r.array()?,
            time_scale: r.f64()?,
            wan_loss: r.f64()?,
            ssm: r.run_flags()? & FLAG_SSM != 0,
        })
    }

    fn emit(&self, w: &mut Writer) {
        w.u64(self.run_id);
        w.u16(self.peer_id);
        w.u8(self.transport.as_u8());
        w.u8(self.order.as_u8());
        w.u8(self.repair.as_u8());
        w.u32(self.msgs);
        w.u32(self.interval_ms.0);
        w.u32(self.interval_ms.1);
        w.u32(self.size);
        w.u64(self.seed);
        w.opt_sock(self.group);
        w.sock(self.comparator);
        w.list(&self.peers, MAX_LIST, |w, p| w.sock(*p));
        w.str(&self.wan, MAX_LABEL);
        w.list(&self.zones, MAX_LIST, |w, z| w.str(z, MAX_LABEL));
        w.bytes(&self.run_key);
        w.f64(self.time_scale);
        w.f64(self.wan_loss);
        w.run_flags(self.ssm);
    }
}

impl RunRequest {
    fn parse(r: &mut Reader) -> Result<RunRequest> {
        Ok(RunRequest {
            peers: r.u16()?,
            msgs: r.u32()?,
            transport: r.transport()?,
            order: r.order()?,
            repair: r.opt_repair()?,
            interval_ms: (r.u32()?, r.u32()?),
            size: r.u32()?,
            wan: r.str(MAX_LABEL)?,
            time_scale: r.f64()?,
            wan_loss: r.f64()?,
            seed: r.opt_u64()?,
            ssm: r.run_flags()? & FLAG_SSM != 0,
        })
    }

    fn emit(&self, w: &mut Writer) {
        w.u16(self.peers);
        w.u32(self.msgs);
        w.u8(self.transport.as_u8());
        w.u8(self.order.as_u8());
        w.u8(self.repair.map_or(NO_REPAIR, Repair::as_u8));
        w.u32(self.interval_ms.0);
        w.u32(self.interval_ms.1);
        w.u32(self.size);
        w.str(&self.wan, MAX_LABEL);
        w.f64(self.time_scale);
        w.f64(self.wan_loss);
        w.opt_u64(self.seed);
        w.run_flags(self.ssm);
    }
}

impl AgentInfo {
    fn parse(r: &mut Reader) -> Result<AgentInfo> {
        Ok(AgentInfo {
            advertise: r.ip()?,
            zone: r.str(MAX_LABEL)?,
            live: r.bool()?,
            busy: r.bool()?,
            seen_ms_ago: r.u32()?,
        })
    }

    fn emit(&self, w: &mut Writer) {
        w.ip(self.advertise);
        w.str(&self.zone, MAX_LABEL);
        w.u8(self.live.into());
        w.u8(self.busy.into());
        w.u32(self.seen_ms_ago);
    }
}

/// RUN_FINISHED's `refused` byte: 0 = the run ran.
fn parse_refusal(r: &mut Reader, ok: bool) -> Result<Option<RefusalCode>> {
    match r.u8()? {
        0 => Ok(None),
        // A finished run that was refused makes no sense.
        _ if ok => Err(Error::BadValue),
        v => Ok(Some(RefusalCode::from(v))),
    }
}

impl Msg {
    pub fn kind(&self) -> MsgKind {
        match self {
            Msg::Register { .. } => MsgKind::Register,
            Msg::Heartbeat => MsgKind::Heartbeat,
            Msg::RunReady { .. } => MsgKind::RunReady,
            Msg::RunFinished { .. } => MsgKind::RunFinished,
            Msg::Run(_) => MsgKind::Run,
            Msg::Shutdown => MsgKind::Shutdown,
            Msg::RunRequest(_) => MsgKind::RunRequest,
            Msg::StatusRequest => MsgKind::StatusRequest,
            Msg::ExitRequest => MsgKind::ExitRequest,
            Msg::Progress { .. } => MsgKind::Progress,
            Msg::RunReport { .. } => MsgKind::RunReport,
            Msg::Refused { .. } => MsgKind::Refused,
            Msg::Status { .. } => MsgKind::Status,
            Msg::ExitDone { .. } => MsgKind::ExitDone,
            Msg::CheckDone { .. } => MsgKind::CheckDone,
            Msg::Check(_) => MsgKind::Check,
            Msg::CheckRequest(_) => MsgKind::CheckRequest,
            Msg::CheckResult(_) => MsgKind::CheckResult,
        }
    }

    /// Decode a message body (the part between counter and tag). Total; syntax only.
    pub fn parse(body: &[u8]) -> Result<Msg> {
        let mut r = Reader(body);
        let m = match MsgKind::from(r.u8()?) {
            MsgKind::Register => Msg::Register {
                instance: r.u64()?,
                advertise: r.opt_ip()?,
                zone: r.str(MAX_LABEL)?,
                running: r.opt_u64()?,
            },
            MsgKind::Heartbeat => Msg::Heartbeat,
            MsgKind::RunReady => Msg::RunReady { run_id: r.u64()? },
            MsgKind::RunFinished => {
                let run_id = r.u64()?;
                let ok = r.bool()?;
                Msg::RunFinished {
                    run_id,
                    ok,
                    refused: parse_refusal(&mut r, ok)?,
                    detail: r.str(MAX_TEXT)?,
                    running: r.opt_u64()?,
                }
            }
            MsgKind::Run => Msg::Run(Box::new(RunSpec::parse(&mut r)?)),
            MsgKind::Shutdown => Msg::Shutdown,
            MsgKind::RunRequest => Msg::RunRequest(RunRequest::parse(&mut r)?),
            MsgKind::StatusRequest => Msg::StatusRequest,
            MsgKind::ExitRequest => Msg::ExitRequest,
            MsgKind::Progress => Msg::Progress {
                text: r.str(MAX_TEXT)?,
            },
            MsgKind::RunReport => Msg::RunReport {
                run_id: r.u64()?,
                json: r.str(MAX_REPORT)?,
            },
            MsgKind::Refused => Msg::Refused {
                text: r.str(MAX_TEXT)?,
            },
            MsgKind::Status => Msg::Status {
                agents: r.list(MIN_AGENT_LEN, MAX_AGENTS_LISTED, AgentInfo::parse)?,
            },
            MsgKind::ExitDone => Msg::ExitDone { agents: r.u16()? },
            MsgKind::CheckDone => {
                let (check_id, report, error) = super::check::parse_done(&mut r)?;
                Msg::CheckDone {
                    check_id,
                    report,
                    error,
                }
            }
            MsgKind::Check => Msg::Check(Box::new(CheckSpec::parse(&mut r)?)),
            MsgKind::CheckRequest => Msg::CheckRequest(CheckRequest::parse(&mut r)?),
            MsgKind::CheckResult => Msg::CheckResult(Box::new(CheckResult::parse(&mut r)?)),
            MsgKind::Unknown(_) => return Err(Error::UnknownKind),
        };
        r.end()?;
        Ok(m)
    }

    /// Append the body to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u8(self.kind().into());
        match self {
            Msg::Register {
                instance,
                advertise,
                zone,
                running,
            } => {
                w.u64(*instance);
                w.opt_ip(*advertise);
                w.str(zone, MAX_LABEL);
                w.opt_u64(*running);
            }
            Msg::RunReady { run_id } => w.u64(*run_id),
            Msg::RunFinished {
                run_id,
                ok,
                detail,
                running,
                refused,
            } => {
                w.u64(*run_id);
                w.u8((*ok).into());
                // A refusal is never a success: `ok` wins, so emit never writes what parse
                // refuses.
                w.u8(refused.filter(|_| !ok).map_or(0, u8::from));
                w.str(detail, MAX_TEXT);
                w.opt_u64(*running);
            }
            Msg::Run(spec) => spec.emit(&mut w),
            Msg::RunRequest(q) => q.emit(&mut w),
            Msg::Progress { text } | Msg::Refused { text } => w.str(text, MAX_TEXT),
            Msg::RunReport { run_id, json } => {
                w.u64(*run_id);
                w.str(json, MAX_REPORT);
            }
            Msg::Status { agents } => {
                w.list(agents, MAX_AGENTS_LISTED, |w, a| a.emit(w));
            }
            Msg::ExitDone { agents } => w.u16(*agents),
            Msg::CheckDone {
                check_id,
                report,
                error,
            } => super::check::emit_done(&mut w, *check_id, report, error),
            Msg::Check(spec) => spec.emit(&mut w),
            Msg::CheckRequest(q) => q.emit(&mut w),
            Msg::CheckResult(res) => res.emit(&mut w),
            Msg::Heartbeat | Msg::Shutdown | Msg::StatusRequest | Msg::ExitRequest => {}
        }
    }
}
