//! One peer: the protocol ([`machine`]), its mio driver ([`driver`]) over real sockets
//! ([`socket`]), the delivery log it writes and the upload that follows ([`upload`]).

pub mod args;
pub mod batch;
pub mod child;
pub mod driver;
mod filecmd;
pub mod logcmd;
pub mod machine;
pub mod netem;
pub mod order;
#[cfg(test)]
mod order_tests;
pub mod outbox;
pub mod repair;
pub mod sim;
pub mod socket;
pub mod spec;
#[cfg(test)]
mod tests;
mod timers;
pub mod upload;
pub mod wan_delay;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::util::clock::{self, Now};
use crate::wire::child::Repr as ChildMsg;
use crate::wire::log::{self, LogHeader, SCALE_ONE};
use crate::wire::Transport;
pub use args::{Plan, PlanError};
use driver::{Driver, Route};
pub use filecmd::{run_log_dump, run_log_export, run_upload};
use machine::{Machine, Phase};
pub use spec::PeerSpec;

/// Exit codes a script can tell apart.
pub mod exit {
    /// The run is done, its log written (and uploaded, with a comparator).
    pub const DONE: u8 = 0;
    /// Another error (stderr says which); also what `mpcomm` exits with on any error.
    pub const ERROR: u8 = 1;
    /// The handshake timed out (a peer never showed up).
    pub const HANDSHAKE: u8 = 2;
    /// The run finished and the log is on disk, but the upload failed (retry with `mpcomm upload`).
    pub const UPLOAD: u8 = 3;
    /// A peer asked for another `--order` or `--repair` in the handshake: refused.
    pub const MODE_MISMATCH: u8 = 4;
    /// The run ended without its guarantee (the sequencer fell silent); the log is written
    /// and uploaded all the same.
    pub const ORDER_FAILED: u8 = 5;
    /// The log could not be written to `--log-dir` (full disk, unwritable); it was uploaded
    /// from memory, or, if that failed too, it is lost.
    pub const LOG_WRITE: u8 = 6;
    /// Interrupted by SIGINT/SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

/// What a finished peer reports (stdout with `--json`).
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    #[serde(with = "crate::util::run_id::json_opt")]
    pub run_id: Option<u64>,
    pub id: u16,
    pub peers: u16,
    pub transport: Transport,
    pub order: crate::wire::Order,
    pub repair: crate::wire::Repair,
    pub ok: bool,
    /// Why the run could not keep its guarantee, if it could not.
    pub failure: Option<String>,
    pub sent: u32,
    pub deliveries: usize,
    pub incomplete_senders: Vec<u16>,
    pub missing_peers: Vec<u16>,
    pub malformed: u64,
    pub foreign: u64,
    /// Datagrams whose tag did not verify (with `--run-key-file`).
    pub forged: u64,
    pub send_errors: u64,
    /// Datagrams the kernel dropped on this peer's sockets, their receive buffers full.
    pub kernel_drops: u64,
    /// DATA datagrams handed to the kernel (every fan-out copy, retransmissions included).
    pub data_datagrams_sent: u64,
    pub data_bytes_sent: u64,
    pub send_syscalls: u64,
    pub recv_syscalls: u64,
    /// User + system CPU of this process at the end of the run.
    pub cpu_ns: u64,
    pub cost: crate::wire::log::Cost,
    pub setup_ms: Option<f64>,
    pub duration_ms: Option<f64>,
    pub kernel_stamps: bool,
    pub log: Option<PathBuf>,
    pub uploaded: Option<bool>,
}

/// Run the peer of `plan` ([`PeerSpec::plan`]); the exit code says how it ended ([`exit`]).
pub fn run(plan: Plan) -> anyhow::Result<ExitCode> {
    if let Some(c) = &plan.comparator {
        upload::probe_in_background(c.clone());
    }
    let buffer = socket::buffer_from_env().unwrap_or_else(|| {
        socket::buffer_for(plan.config.peers, plan.config.size, plan.config.interval.0)
    });
    let own = plan.peers[usize::from(plan.id)];
    let opened = match plan.transport {
        Transport::Fanout => socket::open_fanout_sized(own, buffer),
        Transport::Multicast => {
            let sources: Vec<std::net::IpAddr> = plan.peers.iter().map(|p| p.ip()).collect();
            let ssm = plan.ssm.then_some(socket::Ssm {
                sources: &sources,
                own: own.ip(),
            });
            plan.membership.open(plan.ttl, buffer, ssm)
        }
    }?;
    warn_capped(&opened);
    let rcvbuf = opened.rcvbuf;
    let route = match plan.transport {
        Transport::Fanout => Route::Fanout(plan.peers.clone()),
        Transport::Multicast => Route::Multicast(plan.membership.destination()),
    };
    let kernel_stamps = opened.kernel_stamps;
    let mut driver = Driver::new(opened.socket, route, kernel_stamps)?;
    if plan.transport == Transport::Multicast {
        // One-peer messages (ACKs, NACKs, retransmissions to one peer) point to point: N
        // acknowledgements per HELLO instead of N copied to N sockets each.
        match socket::open_fanout_sized(own, buffer) {
            // Same limits as the main socket: warned about once, above.
            Ok(u) => driver = driver.with_unicast(u.socket, &plan.peers)?,
            Err(e) => say!("mpcomm peer: note: one-peer messages go to the group ({e})"),
        }
    }
    // Bound (and joined): what is sent to us from now on is received. A launcher holding
    // its peers at the gate releases them once all have said so.
    child::tell_parent(
        &plan,
        &ChildMsg::Ready {
            peer: plan.id,
            pid: std::process::id(),
            bound: driver.local_addr()?,
            rcvbuf: u32::try_from(rcvbuf).unwrap_or(u32::MAX),
        },
    );
    if plan.start_gate {
        // Sockets are bound, so nothing sent to us from now on is lost. Blocked here, SIGTERM
        // still ends the process (the handler below is not installed yet).
        say!(
            "mpcomm peer: sockets open (groups joined); waiting for stdin to close (--start-gate)"
        );
        wait_for_gate();
    }
    let start = Now::read();
    let shutdown = driver.shutdown_handle();
    // The handler only wakes the loop; shutdown happens there.
    let _ = ctrlc::set_handler(move || shutdown.stop());

    let delay = plan.wan.as_ref().map(|w| w.delay_model(plan.id, plan.seed));
    let mut machine = Machine::new(plan.config.clone(), start, delay);
    say!(
        "mpcomm peer: ready id={} peers={} transport={} addr={} bound={} seed={} rcvbuf={}KiB",
        plan.id,
        plan.peers.len(),
        plan.transport,
        plan.peers[usize::from(plan.id)],
        driver.local_addr()?,
        plan.seed,
        rcvbuf / 1024
    );
    let result = driver.run(&mut machine);
    let interrupted = matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::Interrupted);
    if let Err(e) = &result {
        if !interrupted {
            child::tell_outcome(&plan, false, exit::ERROR, machine.run_id(), None);
            return Err(anyhow::anyhow!("peer event loop failed: {e}"));
        }
    }
    let counters = machine.counters().clone();
    let io = driver.io;
    let mut summary = Summary {
        run_id: machine.run_id(),
        id: plan.id,
        peers: plan.config.peers,
        transport: plan.transport,
        order: plan.config.order,
        repair: plan.config.repair,
        ok: machine.phase() == Phase::Done && machine.failure() == 0,
        failure: (machine.failure() == log::FAILURE_SEQUENCER_LOST).then(|| {
            "the sequencer (peer 0) fell silent: messages waiting for their order were not delivered"
                .to_string()
        }),
        sent: counters.data_sent,
        deliveries: machine.records().len(),
        incomplete_senders: if machine.phase() == Phase::Done {
            machine.incomplete()
        } else {
            vec![]
        },
        missing_peers: if machine.phase() == Phase::Failed {
            machine.missing()
        } else {
            vec![]
        },
        malformed: counters.malformed_total(),
        foreign: counters.foreign,
        forged: counters.forged,
        send_errors: driver.send_errors,
        kernel_drops: driver.kernel_drops(),
        data_datagrams_sent: counters.data_datagrams,
        data_bytes_sent: counters.data_bytes,
        send_syscalls: io.send_calls,
        recv_syscalls: io.recv_calls,
        cpu_ns: cpu_ns(),
        cost: machine.cost(),
        setup_ms: machine.setup_time().map(ms),
        duration_ms: machine.duration().map(ms),
        kernel_stamps,
        log: None,
        uploaded: None,
    };
    let code = if interrupted {
        say!("mpcomm peer: interrupted; no log written");
        exit::INTERRUPTED
    } else if let Some(refusal) = machine.refused() {
        say!(
            "mpcomm peer: refused in the handshake: {} ({})",
            refusal.describe(&plan.config),
            plan.peers[usize::from(refusal.peer)]
        );
        exit::MODE_MISMATCH
    } else if machine.phase() == Phase::Failed {
        let waited = crate::util::duration::human(plan.config.handshake_timeout);
        if let Some(other) = machine.other_run() {
            say!(
                "mpcomm peer: handshake timed out after {waited}: {} ({}); every peer of a run needs the same --peers list, --msgs and --run-id",
                other.describe(&plan.config),
                plan.peers[usize::from(other.peer)]
            );
        }
        if summary.missing_peers.is_empty() {
            say!("mpcomm peer: handshake timed out after {waited}: every other peer answered, but the handshake did not complete (this peer's own HELLO did not come back to it, or the peers did not agree on peer 0's run id: was a peer restarted?)");
        } else {
            say!(
                "mpcomm peer: handshake timed out after {waited}: no HELLO or no acknowledgement from peer(s) {} ({}). \
                 Are they running, with the same --peers, --msgs and --run-id, and is UDP allowed between the hosts?",
                join(&summary.missing_peers),
                summary.missing_peers.iter().map(|&p| plan.peers[usize::from(p)].to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        exit::HANDSHAKE
    } else {
        match finish_run(&plan, &machine, start, &mut summary) {
            Ok(code) => code,
            Err(e) => {
                child::tell_outcome(&plan, false, exit::ERROR, machine.run_id(), None);
                return Err(e);
            }
        }
    };
    child::tell_outcome(
        &plan,
        summary.ok,
        code,
        summary.run_id,
        summary.log.as_deref(),
    );
    if plan.json {
        out!("{}", serde_json::to_string(&summary)?);
    }
    Ok(ExitCode::from(code))
}

/// Write the log, then upload it (from memory, so even when the write failed); the file stays
/// whatever happens to the upload.
fn finish_run(
    plan: &args::Plan,
    machine: &Machine,
    start: Now,
    summary: &mut Summary,
) -> anyhow::Result<u8> {
    let run_id = machine.run_id().expect("a finished run has a run id");
    let header = LogHeader {
        run_id,
        peer_id: plan.id,
        peers: plan.config.peers,
        msgs: plan.config.msgs,
        transport: Some(plan.transport),
        kernel_stamps: summary.kernel_stamps,
        msg_size: plan.config.size as u16,
        start_ns: start.unix_ns,
        clock_error_ns: clock::clock_error_ns(),
        setup_ns: machine.setup_time().map_or(0, |d| d.as_nanos() as u64),
        duration_ns: machine.duration().map_or(0, |d| d.as_nanos() as u64),
        malformed: summary.malformed,
        foreign: summary.foreign,
        record_count: 0,
        sent: summary.sent,
        time_scale_ppm: plan
            .wan
            .as_ref()
            .map_or(SCALE_ONE, |w| (w.time_scale * f64::from(SCALE_ONE)) as u32),
        wan: plan
            .wan
            .as_ref()
            .map_or_else(String::new, |w| w.profile.name.clone()),
        zone: plan
            .wan
            .as_ref()
            .map_or_else(String::new, |w| w.zone_name(plan.id)),
        order: plan.config.order,
        repair: plan.config.repair,
        cost: machine.cost(),
        failure: machine.failure(),
        streams: machine.stream_ends(),
        forged: machine.counters().forged,
        authenticated: plan.config.run_key.is_some(),
        kernel_drops: summary.kernel_drops,
        data_datagrams_sent: summary.data_datagrams_sent,
        data_bytes_sent: summary.data_bytes_sent,
        send_syscalls: summary.send_syscalls,
        recv_syscalls: summary.recv_syscalls,
        cpu_ns: summary.cpu_ns,
        send_drops: summary.send_errors,
        data_ttl: match plan.transport {
            Transport::Multicast => u8::try_from(plan.ttl).unwrap_or(u8::MAX),
            Transport::Fanout => socket::UNICAST_TTL,
        },
    };
    let dir = plan
        .log_dir
        .clone()
        .unwrap_or_else(|| args::default_log_dir(run_id));
    let path = dir.join(format!("mpcomm-{run_id:016x}-p{}.mplog", plan.id));
    // Kept in memory: a full disk or an unwritable --log-dir must not cost the upload.
    let bytes = log::encode(&header, machine.records());
    let written = write_log(&dir, &path, &bytes);
    match &written {
        Ok(()) => summary.log = Some(path.clone()),
        Err(e) => say!("mpcomm peer: {e:#}"),
    }
    let expected = usize::from(plan.config.peers) * plan.config.msgs as usize;
    say!(
        "mpcomm peer: done: sent {}, delivered {} of {} expected, setup {:.1} ms, log {}",
        summary.sent,
        summary.deliveries,
        expected,
        summary.setup_ms.unwrap_or(0.0),
        if written.is_ok() {
            path.display().to_string()
        } else {
            "not written".into()
        }
    );
    let cost = machine.cost();
    if plan.config.order != crate::wire::Order::None || cost.nacks_sent > 0 {
        say!(
            "mpcomm peer: --order {} --repair {}: {} NACKs sent, {} DATA retransmitted, {} given up, {} control datagrams",
            plan.config.order,
            plan.config.repair,
            cost.nacks_sent,
            cost.retransmissions,
            cost.given_up,
            cost.control_datagrams
        );
    }
    if let Some(why) = &summary.failure {
        say!("mpcomm peer: ordering failed: {why}");
    }
    let done = if written.is_err() {
        exit::LOG_WRITE
    } else if summary.failure.is_some() {
        exit::ORDER_FAILED
    } else {
        exit::DONE
    };
    let Some(comparator) = &plan.comparator else {
        if written.is_err() {
            say!("mpcomm peer: the log is lost: not written, and no --comparator to send it to");
        }
        return Ok(done);
    };
    match upload::upload(comparator, &bytes, plan.upload_attempts) {
        Ok(msg) => {
            summary.uploaded = Some(true);
            let from = if written.is_ok() {
                ""
            } else {
                " (from memory; not on disk)"
            };
            say!("mpcomm peer: uploaded to {comparator}{from}: {msg}");
            Ok(done)
        }
        Err(e) if written.is_err() => {
            summary.uploaded = Some(false);
            say!("mpcomm peer: {e}. The log is lost: it could not be written to disk either");
            Ok(done)
        }
        Err(e) => {
            summary.uploaded = Some(false);
            say!(
                "mpcomm peer: {e}. The log is kept: retry with `mpcomm upload {} --comparator {comparator}`",
                path.display()
            );
            Ok(exit::UPLOAD)
        }
    }
}

/// Write the encoded log into `dir` (created if needed).
fn write_log(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    log::write_bytes(path, bytes).with_context(|| format!("cannot write log {}", path.display()))
}

/// Say once, clearly, that the kernel granted a smaller receive buffer than the run needs.
fn warn_capped(opened: &socket::Opened) {
    if opened.capped() {
        say!(
            "mpcomm peer: warning: receive buffer capped at {} KiB by net.core.rmem_max (asked {} KiB); \
             bursts may be dropped by the kernel (counted as kernel_drops). \
             Raise it with `sysctl -w net.core.rmem_max={}` (and net.core.wmem_max), or run as root",
            opened.rcvbuf / 1024,
            opened.asked / 1024,
            opened.asked.div_ceil(2)
        );
    }
}

/// User + system CPU this process used so far (getrusage RUSAGE_SELF), ns; 0 if unknown.
pub fn cpu_ns() -> u64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| {
        (t.tv_sec.max(0) as u64) * 1_000_000_000 + (t.tv_usec.max(0) as u64) * 1_000
    };
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn join(ids: &[u16]) -> String {
    ids.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--start-gate`: read stdin until end of file (the launcher closes it to release us), or
/// until an error (nothing to wait for).
fn wait_for_gate() {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    loop {
        match std::io::Read::read(&mut stdin, &mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}
