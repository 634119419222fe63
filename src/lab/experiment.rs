//! One run of the lab: start N peers, wait for them, fetch the comparator's report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::children::{Group, PidList, Readiness};
use super::hosts::Hosts;
use super::runkey::RunKeyFile;
use super::LabConfig;
use crate::compare::Report;
use crate::peer::PeerSpec;
use crate::wire::child::Repr as Told;
use crate::wire::{Order, Repair, Transport};
use std::os::unix::ffi::OsStrExt;

/// One configuration to run once.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub peers: u16,
    pub msgs: u32,
    pub transport: Transport,
    pub order: Order,
    /// Resolved: the mode's default when `--repair` was not given.
    pub repair: Repair,
    pub interval: (Duration, Duration),
    pub size: usize,
    pub seed: u64,
    pub wan: Option<String>,
    pub wan_loss: f64,
    pub time_scale: f64,
    pub drain: Duration,
    pub handshake_timeout: Duration,
    /// The longest emulated delay of one datagram, scaled (set by [`Experiment::check`]).
    pub wan_delay: Duration,
    /// `--ssm`: source-specific joins (multicast runs).
    pub ssm: bool,
}

pub type Outcome = anyhow::Result<Ran>;

/// A run that completed.
#[derive(Debug)]
pub struct Ran {
    pub report: Report,
    /// From the first peer's spawn until the last one had exec'd (part of `setup_ms`).
    pub spawned: Duration,
}

/// A run some peers failed: the report of the logs the others wrote, and why.
#[derive(Debug)]
pub struct PartialRun {
    pub report: Report,
    pub why: String,
}

impl std::fmt::Display for PartialRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl std::error::Error for PartialRun {}

/// The analysis of the logs of `run_id`, with the failed peers named; `None` when there is
/// none to analyse. The logs are those the peers `told` they wrote; if none did (a peer
/// without the readiness socket), those of the run in `dir`.
fn partial_report(
    dir: &Path,
    run_id: u64,
    told: &[PathBuf],
    failed: &[(usize, String)],
) -> Option<Report> {
    let tag = format!("mpcomm-{run_id:016x}-");
    let paths: Vec<PathBuf> = if told.is_empty() {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "mplog")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&tag))
            })
            .collect()
    } else {
        told.to_vec()
    };
    let logs: Vec<crate::compare::PeerLog> = paths
        .iter()
        .filter_map(|p| crate::compare::PeerLog::from_file(p).ok())
        .collect();
    if logs.is_empty() {
        return None;
    }
    let mut report = crate::compare::analyse(&logs, &crate::compare::AnalyseOptions::default());
    for (peer, status) in failed {
        report.warnings.push(format!(
            "incomplete run: peer {peer} failed ({status}); a partial report of the other logs"
        ));
    }
    Some(report)
}

/// How a peer that failed ended: its exit status, and what it told (its reason).
fn describe(status: std::process::ExitStatus, told: Option<&Told>) -> String {
    match told {
        Some(Told::Outcome { reason, .. }) => format!("{status} ({})", reason.describe()),
        _ => status.to_string(),
    }
}

/// Peers bind their sockets within this long of the first spawn (256 of them on two busy
/// cores: a few seconds); after it the gate opens whether they said so or not.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The original study's grid.
const GRID_PEERS: [u16; 5] = [2, 3, 4, 6, 8];
const GRID_MSGS: [u32; 3] = [10, 50, 100];

pub fn plan(args: &LabConfig, base_seed: u64) -> Vec<Experiment> {
    let (sizes, runs): (Vec<(u16, u32)>, u32) = if args.grid {
        let cells = GRID_PEERS
            .iter()
            .flat_map(|&n| GRID_MSGS.iter().map(move |&m| (n, m)))
            .collect();
        (cells, args.runs.unwrap_or(10))
    } else {
        (vec![(args.peers, args.msgs)], args.runs.unwrap_or(1))
    };
    let mut out = Vec::new();
    for &(peers, msgs) in &sizes {
        for k in 0..runs {
            for order in args.order.list() {
                for transport in args.transport.list() {
                    out.push(Experiment {
                        peers,
                        msgs,
                        transport,
                        order,
                        repair: args.repair.unwrap_or(order.default_repair()),
                        interval: args.interval,
                        size: args.size,
                        // The same seed for every mode and transport of a sample: the same
                        // schedule, another path or another protocol.
                        seed: base_seed.wrapping_add(u64::from(k)),
                        wan: args.wan.clone(),
                        wan_loss: args.wan_loss,
                        time_scale: args.time_scale,
                        drain: args.drain,
                        handshake_timeout: args.handshake_timeout,
                        wan_delay: Duration::ZERO,
                        ssm: args.ssm,
                    });
                }
            }
        }
    }
    out
}

pub struct Context<'a> {
    pub exe: PathBuf,
    pub comparator: SocketAddr,
    pub log_dir: PathBuf,
    /// The lab's private directory, for the runs' key files.
    pub key_dir: PathBuf,
    pub hosts: &'a Hosts,
    pub pids: PidList,
    pub verbose: bool,
    /// Set by the signal handler: stop starting peers, stop the ones running.
    pub interrupted: Arc<AtomicBool>,
}

impl Experiment {
    /// Refuse, before anything starts, what its peers would refuse (in their words); note the
    /// longest emulated delay for the watchdog.
    pub fn check(&mut self) -> Result<(), crate::peer::args::RunValueError> {
        let profile = crate::peer::args::RunValues {
            peers: self.peers,
            msgs: self.msgs,
            size: self.size,
            interval: self.interval,
            handshake_timeout: self.handshake_timeout,
            time_scale: self.time_scale,
            wan: self.wan.as_deref(),
            wan_loss: self.wan_loss,
        }
        .check()?;
        self.wan_delay =
            profile.map_or(Duration::ZERO, |p| p.max_one_way().mul_f64(self.time_scale));
        Ok(())
    }

    /// An upper bound on how long the peers can take, for the watchdog.
    fn deadline(&self) -> Duration {
        let sending = self.interval.1.mul_f64(self.time_scale) * self.msgs;
        // Every exchange after the handshake (data, STOP, repair rounds) waits for the WAN.
        let wan = Duration::from_secs(1).mul_f64(self.time_scale) + self.wan_delay * 10;
        self.handshake_timeout + sending + wan + self.drain * 2 + Duration::from_secs(20)
    }

    /// Peer `id`'s command line (after the program name), as one typed spec.
    fn peer_spec(
        &self,
        id: u16,
        run_id: u64,
        peers: &[SocketAddr],
        group: SocketAddr,
        ctx: &Context,
        key: &Path,
    ) -> PeerSpec {
        PeerSpec {
            id: Some(id),
            msgs: self.msgs,
            transport: self.transport,
            order: self.order,
            // Always explicit: a log read later need not know the defaults.
            repair: Some(self.repair),
            group: Some(group),
            ssm: self.ssm,
            iface: ctx.hosts.iface(usize::from(id)),
            interval: self.interval,
            size: self.size,
            seed: Some(self.seed),
            run_id: Some(run_id),
            handshake_timeout: self.handshake_timeout,
            drain: self.drain,
            log_dir: Some(ctx.log_dir.clone()),
            comparator: Some(ctx.comparator.to_string()),
            time_scale: self.time_scale,
            wan: self.wan.clone(),
            wan_loss: self.wan_loss,
            run_key_file: Some(key.to_path_buf()),
            // Released together once all are up (see run_one).
            start_gate: true,
            ..PeerSpec::new(peers.iter().map(ToString::to_string).collect())
        }
    }

    /// How progress lines and failures name this run.
    pub fn label(&self) -> String {
        format!(
            "{} {}+{} N={} M={}",
            self.transport, self.order, self.repair, self.peers, self.msgs
        )
    }
}

pub fn run_one(exp: &Experiment, ctx: &Context, reports: &Receiver<Report>) -> Outcome {
    let run_id = loop {
        let v: u64 = rand::random::<u64>() >> 1; // below 2^63: exact in every JSON reader that uses i64
        if v != 0 {
            break v;
        }
    };
    let peers = ctx.hosts.peer_addrs(usize::from(exp.peers));
    let group = ctx.hosts.group(exp.ssm);
    // Every run authenticates its datagrams with a key of its own.
    let key =
        RunKeyFile::create(&ctx.key_dir, run_id).context("cannot write the run's key file")?;
    let started = Instant::now();
    // The peers tell their readiness and outcome to a socket of ours; without one (a path too
    // long for a unix socket) the gate opens once all have started, as it did before.
    let notify_name = format!("notify-{run_id:016x}.sock");
    let mut group_of = Group::with_notify(ctx.pids.clone(), &ctx.key_dir, &notify_name)
        .unwrap_or_else(|e| {
            say!("mpcomm lab: note: no readiness socket ({e}); peers start when all have started");
            Group::new(ctx.pids.clone())
        });
    if ctx.interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    let notify = group_of.notify_path().map(Path::to_path_buf);
    let cmds = (0..exp.peers)
        .map(|id| {
            let mut cmd = ctx.hosts.command(usize::from(id), &ctx.exe);
            let spec = PeerSpec {
                notify: notify.clone(),
                ..exp.peer_spec(id, run_id, &peers, group, ctx, key.path())
            };
            cmd.args(spec.to_args());
            cmd
        })
        .collect();
    // All at once, each blocked on its gate once its sockets are bound.
    group_of
        .spawn_all(cmds, ctx.verbose)
        .context("cannot start a peer process")?;
    let spawned = started.elapsed();
    // Released when every peer said Ready (sockets bound): the first HELLO reaches them all.
    // A peer that exits first, or silence, releases the rest all the same: their exits tell.
    let readiness = group_of.wait_ready(started + READY_WITHIN);
    group_of.release();
    if ctx.verbose && readiness != Readiness::All {
        say!("mpcomm lab: not every peer said it was ready ({readiness:?})");
    }
    let deadline = started + exp.deadline();
    let mut failed = Vec::new();
    for _ in 0..exp.peers {
        if ctx.interrupted.load(Ordering::SeqCst) {
            // Peers started after the handler ran were not signalled by it.
            group_of.kill_all();
            bail!("interrupted");
        }
        match group_of.next_exit(deadline) {
            Some(exit) => match exit.status {
                Ok(s) if s.success() => {}
                Ok(s) => failed.push((exit.index, describe(s, group_of.outcome(exit.index)))),
                Err(e) => failed.push((exit.index, e.to_string())),
            },
            None => {
                group_of.kill_all();
                bail!(
                    "peers did not finish within {:.0} s; stopped them",
                    exp.deadline().as_secs_f64()
                );
            }
        }
    }
    if let Some((index, status)) = failed.first() {
        let tail = group_of.stderr_of(*index);
        let detail = tail
            .iter()
            .rev()
            .take(3)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n    ");
        let why = format!(
            "{} of {} peers failed; peer {index} {status}:\n    {detail}",
            failed.len(),
            exp.peers
        );
        // What the others delivered is still worth a report: analyse the logs they wrote.
        let told: Vec<PathBuf> = (0..usize::from(exp.peers))
            .filter_map(|i| match group_of.outcome(i) {
                Some(Told::Outcome { log, .. }) if !log.is_empty() => {
                    Some(PathBuf::from(std::ffi::OsStr::from_bytes(log)))
                }
                _ => None,
            })
            .collect();
        return Err(match partial_report(&ctx.log_dir, run_id, &told, &failed) {
            Some(report) => anyhow::Error::new(PartialRun { report, why }),
            None => anyhow::anyhow!(why),
        });
    }
    // Every peer uploaded and got its acknowledgement, so the report is on its way or sent.
    let wait_until = Instant::now() + Duration::from_secs(30);
    loop {
        match reports.recv_timeout(wait_until.saturating_duration_since(Instant::now())) {
            Ok(report) if report.run_id == run_id => return Ok(Ran { report, spawned }),
            Ok(_) => continue, // a late report of an earlier, failed run
            Err(RecvTimeoutError::Timeout) => {
                bail!("the comparator did not report run {run_id:016x} in time")
            }
            Err(RecvTimeoutError::Disconnected) => bail!("the comparator stopped"),
        }
    }
}
