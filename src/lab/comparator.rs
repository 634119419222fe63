//! What `lab::run` and `lab::Session` (the bench) both set up before their first run: the
//! lab's own comparator, sized for the runs it will see, on a thread of its own with its
//! reports handed back over a channel; and the Ctrl-C handler that stops the peers.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use super::children::PidList;
use crate::compare::{Report, Server, ServerConfig, Stopper};

/// The largest runs the comparator must hold.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// How long it waits for a run's last log after its first (only a dead peer's matters: a
    /// run is reported as soon as every log is in).
    pub run_timeout: Duration,
    /// The largest one log can be, duplicates included.
    pub largest_log: u64,
    /// All logs of the largest run, held at once until it is analysed.
    pub largest_run: u64,
    /// The most peers of one run: every one uploads at about the same moment, all from one
    /// source address (this host's loopback, or the bridge).
    pub most_peers: usize,
}

impl Sizing {
    /// A log of `records` deliveries: 32 bytes each, twice over, plus a margin.
    pub fn log_bytes(records: u64) -> u64 {
        records * 64 + (1 << 20)
    }
}

pub struct Comparator {
    pub addr: SocketAddr,
    pub stopper: Stopper,
    pub thread: JoinHandle<anyhow::Result<()>>,
    pub reports: Receiver<Report>,
}

impl Comparator {
    /// A comparator on `listener` for runs of `sizing`; `quiet` leaves out the per-upload
    /// lines; `tune` sets what only one caller needs.
    pub fn start(
        listener: TcpListener,
        sizing: Sizing,
        quiet: bool,
        tune: impl FnOnce(&mut ServerConfig),
    ) -> anyhow::Result<Comparator> {
        let mut cfg = ServerConfig::local(listener.local_addr()?);
        cfg.run_timeout = sizing.run_timeout;
        cfg.max_upload_bytes = cfg
            .max_upload_bytes
            .max(u32::try_from(sizing.largest_log).unwrap_or(u32::MAX));
        cfg.max_pending_bytes = cfg.max_pending_bytes.max(sizing.largest_run);
        cfg.max_conns_per_source = cfg.max_conns_per_source.max(sizing.most_peers);
        cfg.max_connections = cfg.max_connections.max(sizing.most_peers);
        cfg.quiet = quiet;
        tune(&mut cfg);
        let server = Server::with_listener(cfg, listener).context("cannot start the comparator")?;
        let (addr, stopper) = (server.local_addr(), server.stopper());
        let (tx, reports) = mpsc::channel::<Report>();
        let thread =
            std::thread::spawn(move || server.run(move |r: &Report| drop(tx.send(r.clone()))));
        Ok(Comparator {
            addr,
            stopper,
            thread,
            reports,
        })
    }
}

/// On Ctrl-C, SIGTERM every peer in `pids` and raise the returned flag (the runs check it).
pub fn stop_peers_on_ctrlc(pids: &PidList) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let (pids, flag) = (pids.clone(), interrupted.clone());
    let _ = ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        for &pid in pids.lock().expect("pid list").iter() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    });
    interrupted
}
