//! The lab's machinery for a caller that plans its own runs (`mpcomm bench`): the hosts, the
//! in-process comparator, the signal handler and a private directory, set up once; then any
//! number of [`Experiment`]s, one at a time, each with real `mpcomm peer` processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::children::PidList;
use super::experiment::{self, Experiment, Outcome};
use super::hosts::{self, Hosts};
use super::TempDir;
use crate::compare::{Report, Server, ServerConfig, Stopper};

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
        let mut cfg = ServerConfig::local(listener.local_addr()?);
        cfg.run_timeout = opts.run_timeout;
        // Every log must fit, duplicates included (as in `lab::run`).
        let largest_log = opts.max_records_per_log * 64 + (1 << 20);
        cfg.max_upload_bytes = cfg
            .max_upload_bytes
            .max(u32::try_from(largest_log).unwrap_or(u32::MAX));
        cfg.max_pending_bytes = cfg
            .max_pending_bytes
            .max(u64::from(opts.max_peers) * largest_log);
        // Every peer of a run uploads at once, all from one source address on loopback.
        let most_peers = usize::from(opts.max_peers);
        cfg.max_conns_per_source = cfg.max_conns_per_source.max(most_peers);
        cfg.max_connections = cfg.max_connections.max(most_peers);
        cfg.quiet = !opts.verbose;
        let server = Server::with_listener(cfg, listener).context("cannot start the comparator")?;
        let comparator = server.local_addr();
        let stopper = server.stopper();
        let (tx, reports) = mpsc::channel::<Report>();
        let server =
            std::thread::spawn(move || server.run(move |r: &Report| drop(tx.send(r.clone()))));
        let pids = PidList::default();
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let (pids, interrupted) = (pids.clone(), interrupted.clone());
            let _ = ctrlc::set_handler(move || {
                interrupted.store(true, Ordering::SeqCst);
                for &pid in pids.lock().expect("pid list").iter() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            });
        }
        Ok(Session {
            hosts,
            comparator,
            stopper,
            server: Some(server),
            reports,
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
