//! The comparator service: one mio loop receiving log uploads for any number of runs.
//!
//! Per connection ([`conn`]): one `Upload` frame in, one `Accepted`/`Rejected`/`Busy` frame
//! out (refusals carry a [`Reason`](crate::wire::frame::Reason) code), close. Every way a
//! client can misbehave ends its own connection with a reason (refusal lines are
//! rate-limited); nothing a client sends makes [`Server::run`] return or panic. Silent
//! connections cannot lock users out: at [`ServerConfig::max_connections`] a newcomer takes the
//! place of the one silent longest. Accepting, the connection table and its per-source caps
//! are the shared [`crate::net`] layer.
//!
//! The runs are a sans-IO state machine ([`store`]). A completed run is analysed on one worker
//! thread ([`worker`]), which also appends the report to the results file (fsynced) and writes
//! the histograms; the loop keeps serving meanwhile, and answers the upload that completed the
//! run only when the worker is done: `Accepted` once the results line is on disk, `Busy` (the
//! log not stored, so it can be sent again) when it could not be written.
//!
//! Memory: stored logs of incomplete runs plus upload buffers stay under
//! [`ServerConfig::max_pending_bytes`]; a source (an IPv4 address or an IPv6 /64) may hold at
//! most [`ServerConfig::max_conns_per_source`] connections and have started at most
//! [`ServerConfig::max_runs_per_source`] incomplete runs; a log may claim at most
//! [`ServerConfig::max_peers`] peers.

mod conn;
mod service;
pub mod store;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::Context;
use mio::{Events, Poll, Token, Waker};

pub use conn::MIN_UPLOAD_RATE;

use super::analyse::AnalyseOptions;
use super::report::Report;
use super::{open_results, DEFAULT_MAX_UPLOAD};
use crate::net::{Acceptor, Limits, StopHandle};
use service::Service;
use store::{RunStore, StoreLimits};
use worker::{report_runs, Job, OutDirs, Outcome};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Default connections at once (each costs a buffer and a descriptor). At the cap a newcomer
/// takes the place of the connection that has sent nothing for the longest, or, when every one
/// is busy uploading, gets a `Busy` reply (which peers retry).
pub const MAX_CONNECTIONS: usize = 1024;
/// Default largest N a log may claim (`--max-peers`).
pub const DEFAULT_MAX_PEERS: u16 = 1024;
/// Default memory for stored logs of incomplete runs plus upload buffers (`--max-pending`).
pub const DEFAULT_MAX_PENDING: u64 = 2 << 30;
/// Default connections at once from one source.
pub const DEFAULT_MAX_CONNS_PER_SOURCE: usize = 256;
/// Default incomplete runs one source may have started.
pub const DEFAULT_MAX_RUNS_PER_SOURCE: usize = 64;

/// Ends [`Server::run`] from any thread (the one stop handle of both services).
pub type Stopper = StopHandle;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// A run is reported this long after its first upload even with logs missing.
    pub run_timeout: Duration,
    /// A connection that makes no progress for this long is dropped.
    pub read_timeout: Duration,
    /// Largest upload payload accepted.
    pub max_upload_bytes: u32,
    /// Append every report as a JSON line here (fsynced before the acknowledgement).
    pub results: Option<PathBuf>,
    /// Write every run's histograms here.
    pub hist_dir: Option<PathBuf>,
    /// Write every run's page here (`run-<16 hex>.html`).
    pub html_dir: Option<PathBuf>,
    pub analyse: AnalyseOptions,
    /// Do not log accepted uploads (refusals and failures are always logged).
    pub quiet: bool,
    /// Largest N a log may claim.
    pub max_peers: u16,
    /// Bytes of stored logs of incomplete runs plus upload buffers; an upload that would go
    /// over is refused.
    pub max_pending_bytes: u64,
    /// Connections at once from one source.
    pub max_conns_per_source: usize,
    /// Connections at once in all.
    pub max_connections: usize,
    /// Incomplete runs whose first log came from one source.
    pub max_runs_per_source: usize,
}

impl ServerConfig {
    /// Defaults of `mpcomm compare`, listening on `listen`, no files.
    pub fn local(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            run_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(10),
            max_upload_bytes: DEFAULT_MAX_UPLOAD,
            results: None,
            hist_dir: None,
            html_dir: None,
            analyse: AnalyseOptions::default(),
            quiet: false,
            max_peers: DEFAULT_MAX_PEERS,
            max_pending_bytes: DEFAULT_MAX_PENDING,
            max_conns_per_source: DEFAULT_MAX_CONNS_PER_SOURCE,
            max_connections: MAX_CONNECTIONS,
            max_runs_per_source: DEFAULT_MAX_RUNS_PER_SOURCE,
        }
    }

    /// The connection caps: per source (a source at its cap evicts nobody else) and in all
    /// (a silent connection makes room); no separate cap on silent ones.
    fn conn_limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_per_source: Some(self.max_conns_per_source),
            max_pending: None,
            max_pending_per_source: None,
        }
    }

    fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            run_timeout: self.run_timeout,
            max_peers: self.max_peers,
            max_runs_per_source: self.max_runs_per_source,
        }
    }
}

/// The service's own accounting, readable from any thread while it runs (updated once per
/// loop iteration).
#[derive(Debug, Default)]
pub struct ServerStats {
    pending_bytes: AtomicU64,
    connections: AtomicU64,
    incomplete_runs: AtomicU64,
    accept_errors: AtomicU64,
    runs_reported: AtomicU64,
}

impl ServerStats {
    /// Bytes held for stored logs of incomplete (or being reported) runs and upload buffers.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn incomplete_runs(&self) -> u64 {
        self.incomplete_runs.load(Ordering::SeqCst)
    }
    /// Failed `accept` calls so far (e.g. out of descriptors).
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::SeqCst)
    }
    pub fn runs_reported(&self) -> u64 {
        self.runs_reported.load(Ordering::SeqCst)
    }
}

pub struct Server {
    cfg: ServerConfig,
    poll: Poll,
    acceptor: Acceptor,
    addr: SocketAddr,
    stop: Stopper,
    results: Option<std::fs::File>,
    stats: Arc<ServerStats>,
}

impl Server {
    /// Bind the listening socket and open the results file; nothing is served until `run`.
    pub fn bind(cfg: ServerConfig) -> anyhow::Result<Server> {
        let listener = crate::net::listen(cfg.listen).with_context(|| {
            format!(
                "cannot listen on {} (port in use? choose another with --listen)",
                cfg.listen
            )
        })?;
        Server::with_listener(cfg, listener)
    }

    /// Serve on a listener made elsewhere (e.g. inside a network namespace by `netns`);
    /// `cfg.listen` is ignored.
    pub fn with_listener(
        cfg: ServerConfig,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Server> {
        let poll = Poll::new().context("cannot create the event loop")?;
        let acceptor = Acceptor::new(listener, poll.registry(), LISTENER)?;
        let addr = acceptor.local_addr()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let results = cfg.results.as_deref().map(open_results).transpose()?;
        if let Some(dir) = &cfg.hist_dir {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "--hist-dir {}: cannot create the histogram directory",
                    dir.display()
                )
            })?;
        }
        if let Some(dir) = &cfg.html_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create page directory {}", dir.display()))?;
        }
        Ok(Server {
            cfg,
            poll,
            acceptor,
            addr,
            stop: StopHandle::new(waker),
            results,
            stats: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// The service's accounting, for monitoring and tests.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serve until stopped; every completed run goes to `on_report` (after its results line is
    /// fsynced, when there is a results file). Runs still incomplete at the stop are dropped
    /// with a note on stderr; runs being reported are finished first.
    pub fn run(self, mut on_report: impl FnMut(&Report)) -> anyhow::Result<()> {
        let Server {
            cfg,
            poll,
            acceptor,
            stop,
            results,
            stats,
            ..
        } = self;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel();
        let worker = {
            let waker = stop.waker().clone();
            let dirs = OutDirs {
                hist: cfg.hist_dir.clone(),
                html: cfg.html_dir.clone(),
            };
            let opts = cfg.analyse.clone();
            std::thread::Builder::new()
                .name("compare-report".into())
                .spawn(move || report_runs(job_rx, done_tx, waker, results, dirs, opts))
                .context("cannot start the report thread")?
        };
        let store = RunStore::new(cfg.store_limits());
        let mut svc = Service::new(cfg, poll, acceptor, store, job_tx, stats);
        let mut events = Events::with_capacity(256);
        let mut result = Ok(());
        while !stop.is_stopped() {
            let now = std::time::Instant::now();
            let timeout = svc
                .next_deadline(now)
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = svc.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                result = Err(e).context("event loop failed");
                break;
            }
            // Reads and an accept round left over from the last round get no new edge.
            let read_again = std::mem::take(&mut svc.read_more);
            let mut accepted = false;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => {
                        svc.accept();
                        accepted = true;
                    }
                    WAKER => {}
                    t => svc.drive(t),
                }
            }
            for t in read_again {
                svc.drive(t);
            }
            while let Ok(done) = done_rx.try_recv() {
                svc.finish(done, &mut on_report);
            }
            if !accepted && svc.acceptor.wants_round(std::time::Instant::now()) {
                svc.accept();
            }
            svc.expire(std::time::Instant::now());
            svc.publish();
        }
        for (id, have, peers) in svc.store.incomplete_runs() {
            say!("compare: stopping with run {id:016x} incomplete ({have} of {peers} logs); not reported");
        }
        // Finish the runs being reported, so what was analysed is on disk and on stdout.
        drop(svc);
        let _ = worker.join();
        while let Ok(done) = done_rx.try_recv() {
            if let Outcome::Reported(report) = done.outcome {
                on_report(&report);
            }
        }
        result
    }
}
