//! One run of the lab: start N peers, wait for them, fetch the comparator's report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::children::{Group, PidList};
use super::hosts::Hosts;
use super::runkey::RunKeyFile;
use super::LabArgs;
use crate::compare::Report;
use crate::peer::args::PeerCommand;
use crate::wire::{Order, Repair, Transport};

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

/// The analysis of the logs of `run_id` in `dir`, with the failed peers named; `None` when
/// there is none to analyse.
fn partial_report(dir: &Path, run_id: u64, failed: &[(usize, String)]) -> Option<Report> {
    let tag = format!("mpcomm-{run_id:016x}-");
    let logs: Vec<crate::compare::PeerLog> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "mplog")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&tag))
        })
        .filter_map(|p| crate::compare::PeerLog::from_file(&p).ok())
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

/// The original study's grid.
const GRID_PEERS: [u16; 5] = [2, 3, 4, 6, 8];
const GRID_MSGS: [u32; 3] = [10, 50, 100];

pub fn plan(args: &LabArgs, base_seed: u64) -> Vec<Experiment> {
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
    pub fn check(&mut self) -> anyhow::Result<()> {
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

    fn peer_command(
        &self,
        id: u16,
        run_id: u64,
        peers: &[SocketAddr],
        group: SocketAddr,
        ctx: &Context,
        key: &Path,
    ) -> PeerCommand {
        PeerCommand {
            peers: peers.to_vec(),
            id,
            msgs: self.msgs,
            transport: self.transport,
            order: self.order,
            repair: self.repair,
            group: Some(group),
            iface: ctx.hosts.iface(usize::from(id)),
            interval: self.interval,
            size: Some(self.size),
            seed: self.seed,
            run_id,
            handshake_timeout: Some(self.handshake_timeout),
            drain: Some(self.drain),
            log_dir: ctx.log_dir.clone(),
            comparator: ctx.comparator,
            time_scale: Some(self.time_scale),
            wan: self.wan.clone(),
            wan_loss: Some(self.wan_loss),
            zones: Vec::new(),
            run_key_file: Some(key.to_path_buf()),
            // Released together once all are up (see run_one).
            start_gate: true,
            ssm: self.ssm,
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
    let mut group_of = Group::new(ctx.pids.clone());
    if ctx.interrupted.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    let cmds = (0..exp.peers)
        .map(|id| {
            let mut cmd = ctx.hosts.command(usize::from(id), &ctx.exe);
            cmd.args(
                exp.peer_command(id, run_id, &peers, group, ctx, key.path())
                    .args(),
            );
            cmd
        })
        .collect();
    // All at once: the first peers retransmit HELLO to the rest until the last one is up.
    group_of
        .spawn_all(cmds, ctx.verbose)
        .context("cannot start a peer process")?;
    let spawned = started.elapsed();
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
                Ok(s) => failed.push((exit.index, s.to_string())),
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
        return Err(match partial_report(&ctx.log_dir, run_id, &failed) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Lab {
        #[command(flatten)]
        args: LabArgs,
    }

    fn planned(extra: &[&str]) -> Vec<Experiment> {
        use clap::Parser;
        let args = Lab::try_parse_from(["lab"].iter().chain(extra))
            .unwrap()
            .args;
        plan(&args, 100)
    }

    #[test]
    fn order_all_runs_every_mode_and_transport_on_the_same_seeds() {
        let e = planned(&["--order", "all", "--runs", "2"]);
        assert_eq!(e.len(), 2 * Order::ALL.len() * 2);
        for (i, x) in e.iter().enumerate() {
            let (k, rest) = (i / 10, i % 10);
            assert_eq!(x.seed, 100 + k as u64);
            assert_eq!(x.order, Order::ALL[rest / 2]);
            assert_eq!(
                x.transport,
                [Transport::Fanout, Transport::Multicast][rest % 2]
            );
            assert_eq!(x.repair, x.order.default_repair());
        }
        let e = planned(&[
            "--order",
            "sequencer",
            "--repair",
            "off",
            "--transport",
            "fanout",
        ]);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].order, e[0].repair), (Order::Sequencer, Repair::Off));
        assert_eq!(planned(&[])[0].order, Order::None);
    }
}
