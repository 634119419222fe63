//! `mpcomm bench`: both transports side by side over a list of N, with the real tool.
//!
//! For every host kind (loopback, network namespaces), N and transport it makes two lab runs of
//! real `mpcomm peer` processes ([`crate::lab::Session`]):
//!
//! * **saturation**: `--interval 0`, M = `--deliveries` / N² messages per peer (so N² × M, the
//!   work of a run, stays bounded), giving the delivered rate, loss and its attribution, the
//!   senders' datagrams, bytes and syscalls per message and the peers' CPU per delivery;
//! * **paced**: a fixed gap of 1 / `--rate` between a peer's messages, giving one-way latency
//!   p50 / p99 at a low rate.
//!
//! Output: a text table (stdout), one JSON line per host kind × transport × N (`--json`), an SVG
//! chart (`--svg`); progress on stderr.

mod measure;
mod output;
pub mod plan;
mod svg;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::lab::{Session, SessionOptions, TransportChoice};

pub use measure::{Latency, Row};
pub use plan::{parse_peers, HostKind, PeerList, PlanError, Point};

/// What `mpcomm bench` measures (its flags, in `cli::bench`, map one to one into this).
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Comma-separated list of N, each 2..=256 (250 in namespaces) [default: 2,4,8,16,32,64,128].
    pub peers: Option<PeerList>,
    /// fanout, multicast, or both.
    pub transport: TransportChoice,
    /// Where the peers live: loopback, netns (own network namespaces on a bridge), or both.
    pub hosts: HostKind,
    /// The same as --hosts netns.
    pub netns: bool,
    /// Deliveries a saturation run aims at (N² × M): M = this / N² messages per peer.
    pub deliveries: u64,
    /// Messages per peer of a paced (latency) run, at most --deliveries / N².
    pub paced_msgs: u32,
    /// Messages per second each peer sends in the paced run (a fixed gap of 1/rate).
    pub rate: u32,
    /// DATA datagram size in bytes.
    pub size: usize,
    /// Peers' quiet period after sending.
    pub drain: Duration,
    /// Seed of the runs (default: random, printed).
    pub seed: Option<u64>,
    /// One JSON object per host kind × transport × N per line instead of the table.
    pub json: bool,
    /// Also append every JSON line to this file (with the table on stdout: both from one run).
    pub results: Option<PathBuf>,
    /// Also write a chart (rate and cost against N) to this SVG file.
    pub svg: Option<PathBuf>,
    /// Show the peers' own log lines.
    pub verbose: bool,
}

impl BenchConfig {
    /// `--hosts`, or netns with `--netns`.
    pub fn host_kind(&self) -> HostKind {
        if self.netns {
            HostKind::Netns
        } else {
            self.hosts
        }
    }
}

pub fn run(args: BenchConfig) -> anyhow::Result<ExitCode> {
    let plan = plan::Plan::new(&args, args.host_kind())?;
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    say!(
        "mpcomm bench: {} points ({} runs), N = {}, seed {seed}; progress below, results on stdout",
        plan.points.len(),
        plan.points.len() * 2,
        plan.peers_label()
    );
    let mut results = match &args.results {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let mut rows = Vec::new();
    let mut failures = 0;
    let mut done = 0;
    let total = plan.points.len() * 2;
    // One session per host kind; in namespaces one per N, so that the bridge has exactly the
    // run's N hosts (a multicast datagram is flooded to every port of the bridge: hosts left
    // over from a larger N would each take a copy and slow the run down).
    let mut groups: Vec<Vec<&Point>> = Vec::new();
    for p in &plan.points {
        match groups.last_mut() {
            Some(g)
                if g[0].hosts == p.hosts
                    && (p.hosts == HostKind::Loopback || g[0].peers == p.peers) =>
            {
                g.push(p)
            }
            _ => groups.push(vec![p]),
        }
    }
    for points in groups {
        let max_peers = points.iter().map(|p| p.peers).max().unwrap_or(2);
        let session = Session::start(&SessionOptions {
            netns: points[0].hosts == HostKind::Netns,
            max_peers,
            max_records_per_log: points
                .iter()
                .map(|p| u64::from(p.peers) * u64::from(p.saturation_msgs.max(p.paced_msgs)))
                .max()
                .unwrap_or(0),
            // Under saturation the peers finish far apart (loss, quiet periods, 2 cores for
            // N processes): wait long for the last log rather than report a run incomplete.
            run_timeout: Duration::from_secs(60),
            verbose: args.verbose,
        })?;
        for p in points {
            if session.interrupted() {
                break;
            }
            let row = measure::point(&session, p, &plan, seed, |what| {
                done += 1;
                say!("mpcomm bench: [{done}/{total}] {what}");
            });
            if row.error.is_some() {
                failures += 1;
            }
            let line = serde_json::to_string(&row)?;
            if let Some(f) = results.as_mut() {
                writeln!(f, "{line}")?;
            }
            if args.json {
                let mut out = crate::util::out::stdout();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            rows.push(row);
        }
        let interrupted = session.interrupted();
        session.finish()?;
        if interrupted {
            say!("mpcomm bench: interrupted; peers stopped");
            return Ok(ExitCode::from(130));
        }
    }
    if !args.json {
        let mut out = crate::util::out::stdout();
        output::write_table(&rows, &plan, &mut out)?;
        out.flush()?;
    }
    if let Some(path) = &args.svg {
        svg::write(&rows, path)?;
        say!("mpcomm bench: chart written to {}", path.display());
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
