//! `mpcomm lab`: a whole experiment on this machine — N real `mpcomm peer` processes, an
//! in-process comparator, the report. Peers live on loopback (each its own 127.x.y.z address)
//! or, with `--netns`, on separate network stacks joined by a bridge.

mod children;
mod comparator;
mod experiment;
mod hosts;
mod progress;
mod runkey;
mod session;
pub mod table;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub use experiment::{Experiment, Outcome, Ran};
pub use session::{Session, SessionOptions};

use comparator::{Comparator, Sizing};

/// The most peers one lab runs (C2 allows as many). What bounds it on one machine is in the
/// README ("Limits of `lab`"): above all two cores shared by N event loops and N² HELLOs.
pub const MAX_PEERS: u16 = 256;
/// With `--netns`: the testbed's hosts are one /24 (see `netns::Testbed`).
pub const NETNS_MAX_PEERS: u16 = 250;

use crate::wire::{Order, Repair, Transport};

/// What `mpcomm lab` runs (its flags, in `cli::lab`, map one to one into this).
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Number of peers (N).
    pub peers: u16,
    /// Messages each peer sends (M).
    pub msgs: u32,
    /// fanout, multicast, or both (one run each).
    pub transport: TransportChoice,
    /// Delivery order of every peer, or all (each mode on the same seeds, then a table).
    pub order: OrderChoice,
    /// Gap repair of every peer (default: off with --order none, nack for the other modes).
    pub repair: Option<Repair>,
    /// Gap between a peer's messages, uniform in MIN..MAX ms; 0 = back to back.
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes.
    pub size: usize,
    /// Base seed; run k uses seed + k (default: random, printed).
    pub seed: Option<u64>,
    /// Runs per configuration and transport (samples); default 1, or 10 with --grid.
    pub runs: Option<u32>,
    /// Run the original study's grid: N ∈ {2,3,4,6,8} × M ∈ {10,50,100} × --runs (default 10)
    /// samples × both transports, then print the aggregated table.
    pub grid: bool,
    /// Emulated WAN profile: lan, gcp8, or a profile file.
    pub wan: Option<String>,
    /// Extra random loss of the emulated WAN, 0..1.
    pub wan_loss: f64,
    /// Multiply every interval and emulated delay (0.1 = ten times faster).
    pub time_scale: f64,
    /// Put every peer in its own network namespace on a Linux bridge (root, or a user namespace).
    pub netns: bool,
    /// First run `mpcomm check` on every host (one process each) and stop with its verdict
    /// when unicast or multicast does not get through.
    pub check: bool,
    /// Run over IPv6: peers on [::1] with distinct ports (the comparator on [::1] too), or with
    /// --netns on unique-local fd6d:7063:…::/64 addresses of the bridge; multicast to an
    /// ff12:: group (link-local scope: one bridge). Multicast on ::1: Linux's loopback cannot
    /// carry it, so the lab then runs in a private network namespace whose loopback can (a
    /// local ff00::/8 route on its lo; root, or a user namespace) and says so on stderr.
    pub ipv6: bool,
    /// Source-specific multicast: every peer joins (S,G) for each peer's address (IGMPv3 /
    /// MLDv2), on a group in 232/8 or ff32::/96; other sources never reach the peers.
    pub ssm: bool,
    /// One JSON object per run per line on stdout instead of tables.
    pub json: bool,
    /// Append every run's JSON line to this file.
    pub results: Option<PathBuf>,
    /// Keep the peers' delivery logs in this directory (default: a temporary one, removed).
    pub log_dir: Option<PathBuf>,
    /// Also write latency histograms (.hgrm, .hlog) per run into this directory.
    pub hist_dir: Option<PathBuf>,
    /// Write each run's page (space-time diagram, order strips, latency) to FILE; with several
    /// runs, to FILE-1.html, FILE-2.html, … in the order the runs ran.
    pub html: Option<PathBuf>,
    /// SVG chart of the aggregated results (with --grid or --runs > 1).
    pub svg: Option<PathBuf>,
    /// Peers' quiet period after sending.
    pub drain: Duration,
    /// Give up on a run whose peers have not all shaken hands by then.
    pub handshake_timeout: Duration,
    /// Include receiver × sender and peer × peer matrices (loss, latency p50, disagreement).
    pub matrix: bool,
    /// Show the peers' own log lines.
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportChoice {
    One(Transport),
    Both,
}

/// One mode, or every mode in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderChoice {
    One(Order),
    All,
}

impl OrderChoice {
    pub fn list(self) -> Vec<Order> {
        match self {
            OrderChoice::One(o) => vec![o],
            OrderChoice::All => Order::ALL.to_vec(),
        }
    }
}

impl TransportChoice {
    pub fn list(self) -> Vec<Transport> {
        match self {
            TransportChoice::One(t) => vec![t],
            TransportChoice::Both => vec![Transport::Fanout, Transport::Multicast],
        }
    }
}

/// A value of a [`LabConfig`] the lab refuses before it starts anything; all name the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--peers must be 1..={MAX_PEERS} on one machine")]
    Peers,
    #[error("--netns takes at most {NETNS_MAX_PEERS} peers: its hosts share one /24 on the bridge \
         (10.X.Y.1-{NETNS_MAX_PEERS}, the bridge at .254); use loopback (no --netns) for up to {MAX_PEERS}")]
    NetnsPeers,
    #[error("--runs must be at least 1")]
    Runs,
    /// What a child peer would refuse, in its words.
    #[error(transparent)]
    Run(#[from] crate::peer::args::RunValueError),
}

impl LabConfig {
    /// The runs of this configuration from `base_seed`, each checked as its peers would.
    pub fn experiments(&self, base_seed: u64) -> Result<Vec<Experiment>, ConfigError> {
        if !(1..=MAX_PEERS).contains(&self.peers) {
            return Err(ConfigError::Peers);
        }
        if self.netns && self.peers > NETNS_MAX_PEERS {
            return Err(ConfigError::NetnsPeers);
        }
        if self.runs == Some(0) {
            return Err(ConfigError::Runs);
        }
        let mut experiments = experiment::plan(self, base_seed);
        for e in &mut experiments {
            e.check()?;
        }
        Ok(experiments)
    }
}

pub fn run(args: LabConfig) -> anyhow::Result<ExitCode> {
    let base_seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    // Before any child starts: every value a peer would refuse.
    let experiments = args.experiments(base_seed)?;
    let total = experiments.len();
    // Every output path now, not after a two-minute grid.
    let writable = crate::util::out::check_writable;
    if let Some(svg) = &args.svg {
        writable(svg, "--svg")?;
    }
    if let Some(html) = &args.html {
        writable(&crate::viz::page_path(html, 0, total), "--html")?;
    }
    if let Some(results) = &args.results {
        writable(results, "--results")?;
    }
    if let Some(dir) = &args.hist_dir {
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "--hist-dir {}: cannot create the histogram directory",
                dir.display()
            )
        })?;
    }
    say!(
        "mpcomm lab: {total} run(s){}, seed {base_seed}{}",
        if args.netns {
            " in network namespaces"
        } else {
            " on loopback"
        },
        args.wan.as_ref().map_or(String::new(), |w| format!(
            ", emulated WAN {w} × {}",
            args.time_scale
        ))
    );

    // The comparator, in this process, on one mio loop of its own thread.
    let host_count = if args.grid {
        8
    } else {
        usize::from(args.peers)
    };
    let multicast = experiments
        .iter()
        .any(|e| e.transport == Transport::Multicast);
    // No thread may run yet: `prepare` may move this process into a user namespace, which the
    // kernel allows only single-threaded. The comparator thread and the ctrlc handler's come
    // below; keep them after it.
    let (listener, hosts) = hosts::prepare(args.netns, args.ipv6, args.ssm, multicast, host_count)?;
    if args.check {
        // One `mpcomm check` per host, over the transports the runs will use.
        let exe = std::env::current_exe().context("cannot find the mpcomm binary")?;
        let (peers, transports) = (hosts.peer_addrs(host_count), args.transport.list());
        let check = |i: usize| {
            crate::check::CheckCommand::new(
                &peers,
                i as u16,
                hosts.group(args.ssm),
                hosts.iface(i),
                &transports,
            )
        };
        let checks: Vec<_> = (0..host_count).map(check).collect();
        let cmds = (0..host_count).map(|i| {
            let mut c = hosts.command(i, &exe);
            c.args(checks[i].args());
            c
        });
        if !crate::check::preflight(cmds.collect(), &checks)? {
            say!("mpcomm lab: the preflight failed (lines above): no run started");
            return Ok(ExitCode::FAILURE);
        }
    }
    // A run is reported once every peer uploaded; the timeout only covers a peer that died.
    // The last peer finishes up to a quiet period (≥ the longest send gap) and the longest
    // emulated delay after the first.
    let longest_gap = experiments
        .iter()
        .map(|e| e.interval.1.mul_f64(e.time_scale).max(e.drain) + e.wan_delay)
        .max()
        .unwrap_or_default();
    let log_of = |e: &Experiment| Sizing::log_bytes(u64::from(e.peers) * u64::from(e.msgs));
    let sizing = Sizing {
        run_timeout: Duration::from_secs(5) + longest_gap * 2,
        largest_log: experiments.iter().map(log_of).max().unwrap_or(0),
        largest_run: experiments
            .iter()
            .map(|e| u64::from(e.peers) * log_of(e))
            .max()
            .unwrap_or(0),
        most_peers: experiments
            .iter()
            .map(|e| usize::from(e.peers))
            .max()
            .unwrap_or(1),
    };
    // The lab prints one progress line per run; per-upload lines only with --verbose.
    let (hist_dir, matrix) = (args.hist_dir.clone(), args.matrix);
    let Comparator {
        addr: comparator,
        stopper,
        thread: server_thread,
        reports,
    } = Comparator::start(listener, sizing, !args.verbose, |cfg| {
        cfg.hist_dir = hist_dir;
        cfg.analyse.matrix = matrix;
    })?;
    let pids = children::PidList::default();
    let interrupted = comparator::stop_peers_on_ctrlc(&pids);

    // Ours alone: the runs' key files, and the logs unless --log-dir keeps them elsewhere.
    let private = TempDir::new()?;
    if let Some(d) = &args.log_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let log_dir = args.log_dir.clone().unwrap_or_else(|| private.0.clone());
    // A grid is long: its runs always go to a file, and it always ends with a chart.
    let mut args = args;
    if args.grid {
        args.results
            .get_or_insert_with(|| PathBuf::from("grid-results.jsonl"));
        args.svg.get_or_insert_with(|| PathBuf::from("grid.svg"));
        say!(
            "mpcomm lab: grid results go to {}, the chart to {}",
            args.results.as_ref().expect("set").display(),
            args.svg.as_ref().expect("set").display()
        );
    }
    let mut results = match &args.results {
        Some(p) => Some(crate::compare::open_results(p)?),
        None => None,
    };

    let stdout = crate::util::out::stdout();
    // Resolved once: a binary replaced during a long grid would otherwise read "(deleted)".
    let exe = std::env::current_exe().context("cannot find the mpcomm binary")?;
    let mut all = Vec::new();
    // The same reports as JSON values, for the mode table.
    let mut values = Vec::new();
    let modes = args.order == OrderChoice::All
        || experiments.iter().any(|e| e.order != experiments[0].order);
    let mut failures = 0;
    let mut progress = progress::Progress::new(&experiments);
    for (k, exp) in experiments.iter().enumerate() {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        let ctx = experiment::Context {
            exe: exe.clone(),
            comparator,
            log_dir: log_dir.clone(),
            key_dir: private.0.clone(),
            hosts: &hosts,
            pids: pids.clone(),
            verbose: args.verbose,
            interrupted: interrupted.clone(),
        };
        let outcome = experiment::run_one(exp, &ctx, &reports);
        let mut out = stdout.lock();
        match outcome {
            Ok(Ran { report, spawned }) => {
                progress.ran(
                    k,
                    &format!(
                        "{}: {} of {} rounds out of order, {} lost, {} kernel drops, setup {:.1} ms (peers started in {} ms)",
                        exp.label(),
                        report.out_of_order_rounds,
                        report.rounds,
                        report.lost,
                        report.kernel_drops,
                        report.setup_ms,
                        spawned.as_millis()
                    ),
                );
                if let Some(f) = results.as_mut() {
                    crate::compare::append_result(f, &report)?;
                }
                progress.around(|| -> anyhow::Result<()> {
                    if args.json {
                        writeln!(out, "{}", report.to_json_line())?;
                    } else if total <= 4 {
                        report.write_human(&mut out)?;
                        writeln!(out)?;
                    }
                    Ok(out.flush()?)
                })?;
                if let Some(file) = &args.html {
                    // A page that cannot be written fails the lab, not the runs still to come.
                    let page = crate::viz::page_path(file, k, total);
                    match crate::viz::write_page_from_dir(&page, &log_dir, report.run_id, &report) {
                        Ok(()) => progress.note(&format!("page written to {}", page.display())),
                        Err(e) => {
                            failures += 1;
                            progress.note(&format!("run {}/{total}: no page: {e:#}", k + 1));
                        }
                    }
                }
                let v = serde_json::to_value(&report)?;
                values.push(table::with_asked(v, exp.order, exp.repair, exp.transport));
                all.push(report);
            }
            Err(e) => {
                failures += 1;
                progress.note(&format!(
                    "run {}/{total} ({}) failed: {e:#}",
                    k + 1,
                    exp.label()
                ));
                progress.ran(k, "failed");
                // A partial report still says what the others delivered (and who is missing).
                if let Some(p) = e.downcast_ref::<experiment::PartialRun>() {
                    progress.around(|| -> anyhow::Result<()> {
                        if args.json {
                            writeln!(out, "{}", p.report.to_json_line())?;
                        } else {
                            writeln!(out, "partial report (the run failed):")?;
                            p.report.write_human(&mut out)?;
                            writeln!(out)?;
                        }
                        Ok(out.flush()?)
                    })?;
                }
            }
        }
        out.flush()?;
    }
    stopper.stop();
    match server_thread.join() {
        Ok(r) => r.context("comparator failed")?,
        Err(_) => anyhow::bail!("comparator thread panicked"),
    }
    if modes && !values.is_empty() {
        let rows = table::rows(&values);
        let mut out = stdout.lock();
        if args.json {
            writeln!(out, "{}", table::summary_json(&rows))?;
        } else {
            writeln!(out)?;
            table::write_human(&rows, &mut out)?;
        }
    } else if !args.json && (all.len() > 1) {
        // One mode: the study's table (it does not tell modes apart, so not with several).
        let mut out = stdout.lock();
        crate::compare::aggregate::write_table(&all, &mut out)?;
    }
    if let Some(svg) = &args.svg {
        crate::compare::aggregate::write_svg(&all, svg)?;
        say!("mpcomm lab: chart written to {}", svg.display());
    }
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        say!("mpcomm lab: interrupted; peers stopped");
        return Ok(ExitCode::from(130));
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Temporary directories of labs: `mpcomm-lab-<owning pid>-<random>`.
const TEMP_PREFIX: &str = "mpcomm-lab-";

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        // A lab killed with SIGKILL never ran its Drop: its directory is ours to remove.
        remove_stale(&std::env::temp_dir());
        let p = std::env::temp_dir().join(format!(
            "{TEMP_PREFIX}{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Remove the lab temporary directories in `tmp` whose owning process is gone. A directory of a
/// live lab, or of another user (no permission to signal it), is left alone.
fn remove_stale(tmp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH);
        if pid > 0 && gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
