//! `mpcomm compare` and `mpcomm report`: their flags, mapped into
//! [`CompareConfig`] and [`ReportConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::compare::{self, CompareConfig, ReportConfig};
use crate::util::duration;

/// `mpcomm compare`: the comparator service, or the same analysis offline on log files.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Address to receive log uploads on.
    #[arg(long, default_value = "0.0.0.0:4568", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Analyse these log files offline instead of listening (grouped into runs by run id).
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub logs: Vec<PathBuf>,
    /// One JSON object per run per line on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Append each run's JSON line to this file (fsynced before the run is acknowledged).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Write latency histograms (.hgrm per pair and overall, one .hlog) per run into DIR.
    #[arg(long, value_name = "DIR")]
    pub hist_dir: Option<PathBuf>,
    /// Report a run this long after its first upload even if logs are missing.
    #[arg(long, default_value = "60s", value_parser = duration::parse, value_name = "DUR")]
    pub run_timeout: Duration,
    /// Drop a connection that sends nothing for this long.
    #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DUR")]
    pub read_timeout: Duration,
    /// Largest accepted upload (bytes; K, M, G suffixes are binary).
    #[arg(long, default_value = "256M", value_parser = compare::parse_bytes, value_name = "BYTES")]
    pub max_upload: u32,
    /// Also show receiver x sender (lost, duplicates, latency) and peer x peer matrices.
    #[arg(long)]
    pub matrix: bool,
    /// Measure every peer against this peer's order instead of the mean-position consensus.
    #[arg(long, value_name = "PEER")]
    pub reference: Option<u16>,
    /// Refuse logs that claim more peers than this.
    #[arg(long, default_value_t = compare::server::DEFAULT_MAX_PEERS, value_name = "N")]
    pub max_peers: u16,
    /// Memory for stored logs of incomplete runs plus uploads in progress; over it, uploads are
    /// refused (K, M, G suffixes are binary).
    #[arg(long, default_value = "2G", value_parser = compare::parse_bytes_u64, value_name = "BYTES")]
    pub max_pending: u64,
    /// Connections at once from one source address.
    #[arg(long, default_value_t = compare::server::DEFAULT_MAX_CONNS_PER_SOURCE, value_name = "N")]
    pub max_conns_per_source: usize,
    /// Incomplete runs one source address may have started.
    #[arg(long, default_value_t = compare::server::DEFAULT_MAX_RUNS_PER_SOURCE, value_name = "N")]
    pub max_runs_per_source: usize,
    /// Exit after the first completed run.
    #[arg(long)]
    pub once: bool,
    /// With --logs: write each run's page (space-time diagram, order strips, latency) to FILE;
    /// with several runs, to FILE-1.html, FILE-2.html, … (runs in order of first appearance).
    #[arg(long, value_name = "FILE", requires = "logs")]
    pub html: Option<PathBuf>,
    /// As a service: write each run's page into DIR as run-<run id in 16 hex digits>.html.
    #[arg(long, value_name = "DIR", conflicts_with = "logs")]
    pub html_dir: Option<PathBuf>,
}

/// `mpcomm report`: aggregate a results file into the table of the original study.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Results file written by `--results` (one JSON object per line).
    #[arg(value_name = "RESULTS.jsonl")]
    pub results: PathBuf,
    /// CSV instead of the table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// One JSON object per group per line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the chart into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also write a self-contained page (table and charts over N, one line per setting).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl From<CompareArgs> for CompareConfig {
    fn from(a: CompareArgs) -> CompareConfig {
        // No `..`: a field added to CompareArgs does not compile until it is mapped here.
        let CompareArgs {
            listen,
            logs,
            json,
            results,
            hist_dir,
            run_timeout,
            read_timeout,
            max_upload,
            matrix,
            reference,
            max_peers,
            max_pending,
            max_conns_per_source,
            max_runs_per_source,
            once,
            html,
            html_dir,
        } = a;
        CompareConfig {
            listen,
            logs,
            json,
            results,
            hist_dir,
            run_timeout,
            read_timeout,
            max_upload,
            matrix,
            reference,
            max_peers,
            max_pending,
            max_conns_per_source,
            max_runs_per_source,
            once,
            html,
            html_dir,
        }
    }
}

impl From<ReportArgs> for ReportConfig {
    fn from(a: ReportArgs) -> ReportConfig {
        // No `..`: a field added to ReportArgs does not compile until it is mapped here.
        let ReportArgs {
            results,
            csv,
            json,
            svg,
            html,
        } = a;
        ReportConfig {
            results,
            csv,
            json,
            svg,
            html,
        }
    }
}

pub fn run_compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    compare::run_compare(args.into())
}

pub fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    compare::run_report(args.into())
}
