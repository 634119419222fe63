//! The lab's machinery for a caller that plans its own runs (`mpcomm bench`): the hosts, the
//! in-process comparator, the signal handler and a private directory, set up once; then any
//! number of [`Experiment`]s, one at a time, each with real `mpcomm peer` processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::children::PidList;
use super::comparator::{stop_peers_on_ctrlc, Comparator, Sizing};
use super::experiment::{self, Experiment, Outcome};
use super::hosts::{self, Hosts};
use super::TempDir;
use crate::compare::{Report, Stopper};

/// What the session must be ready for.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Put every peer in its own network namespace.
    pub netns: bool,
    /// The largest N any run will have (namespace hosts are built once for it).
    pub max_peers: u16,
    /// The largest N × M of any run (sizes the comparator's upload and memory limits).
    pub max_records_per_log: u64,
    /// How long the comparator waits for a run's last log after its first (a run whose peers
    /// all finish is reported as soon as the last log is in; this only covers a dead peer).
    pub run_timeout: Duration,
    pub verbose: bool,
}

pub struct Session {
    hosts: Hosts,
    comparator: SocketAddr,
    stopper: Stopper,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    reports: Receiver<Report>,
    pids: PidList,
    interrupted: Arc<AtomicBool>,
    exe: PathBuf,
    verbose: bool,
    /// Key files and logs; removed on drop.
    private: TempDir,
}

impl Session {
    pub fn start(opts: &SessionOptions) -> anyhow::Result<Session> {
        // IPv4 only: whether runs multicast matters only to `--ipv6` (see `prepare`).
        let (listener, hosts) =
            hosts::prepare(opts.netns, false, false, false, usize::from(opts.max_peers))?;
        let largest_log = Sizing::log_bytes(opts.max_records_per_log);
        let sizing = Sizing {
            run_timeout: opts.run_timeout,
            largest_log,
            largest_run: u64::from(opts.max_peers) * largest_log,
            most_peers: usize::from(opts.max_peers),
        };
        let c = Comparator::start(listener, sizing, !opts.verbose, |_| {})?;
        let pids = PidList::default();
        let interrupted = stop_peers_on_ctrlc(&pids);
        Ok(Session {
            hosts,
            comparator: c.addr,
            stopper: c.stopper,
            server: Some(c.thread),
            reports: c.reports,
            pids,
            interrupted,
            exe: std::env::current_exe().context("cannot find the mpcomm binary")?,
            verbose: opts.verbose,
            private: TempDir::new()?,
        })
    }

    /// Where the runs' delivery logs are written (`mpcomm-<run id>-p<k>.mplog`).
    pub fn log_dir(&self) -> &Path {
        &self.private.0
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// One run: its peers, their exits, the comparator's report.
    pub fn run(&self, exp: &Experiment) -> Outcome {
        let ctx = experiment::Context {
            exe: self.exe.clone(),
            comparator: self.comparator,
            log_dir: self.private.0.clone(),
            key_dir: self.private.0.clone(),
            hosts: &self.hosts,
            pids: self.pids.clone(),
            verbose: self.verbose,
            interrupted: self.interrupted.clone(),
        };
        experiment::run_one(exp, &ctx, &self.reports)
    }

    /// Stop the comparator and wait for it.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        self.stopper.stop();
        match self.server.take().map(JoinHandle::join) {
            Some(Ok(r)) => r.context("comparator failed"),
            Some(Err(_)) => anyhow::bail!("comparator thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
