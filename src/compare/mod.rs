//! The comparator: ordering, loss and latency metrics over the delivery logs of a run, as a
//! long-lived service (`mpcomm compare --listen`) or offline (`mpcomm compare --logs`), and the
//! aggregated report over many runs (`mpcomm report`).
//!
//! * [`peerlog`]: a log decoded into 4 bytes per delivery plus latency histograms.
//! * [`analyse`](mod@analyse): the metrics of one run (pure; no I/O).
//! * [`kendall`]: order distances by inversion counting.
//! * [`causal`]: causal violations by vector clocks rebuilt from the logs.
//! * [`report`]: the report, its JSON line and its readable form.
//! * [`hist`]: `.hgrm` and `.hlog` files.
//! * [`server`]: the upload service on one mio loop.
//! * [`aggregate`]: `mpcomm report` (text, CSV, SVG).
//!
//! The metrics are defined in the README, section "The comparator".

pub mod aggregate;
pub mod analyse;
pub mod causal;
pub mod hist;
pub mod kendall;
pub mod peerlog;
pub mod report;
pub mod senders;
pub mod server;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub use analyse::{analyse, AnalyseOptions};
pub use peerlog::PeerLog;
pub use report::Report;
pub use server::{Server, ServerConfig, ServerStats, Stopper};

/// The original's comparison server port.
pub const DEFAULT_PORT: u16 = 4568;
/// Default cap on one upload: 8 M deliveries.
pub const DEFAULT_MAX_UPLOAD: u32 = 256 << 20;

/// `mpcomm compare`: the comparator service, or the same analysis offline on log files
/// (the flags, in `cli::compare`, map one to one into this).
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Address to receive log uploads on.
    pub listen: SocketAddr,
    /// Analyse these log files offline instead of listening (grouped into runs by run id).
    pub logs: Vec<PathBuf>,
    /// One JSON object per run per line on stdout instead of the table.
    pub json: bool,
    /// Append each run's JSON line to this file (fsynced before the run is acknowledged).
    pub results: Option<PathBuf>,
    /// Write latency histograms (.hgrm per pair and overall, one .hlog) per run into DIR.
    pub hist_dir: Option<PathBuf>,
    /// Report a run this long after its first upload even if logs are missing.
    pub run_timeout: Duration,
    /// Drop a connection that sends nothing for this long.
    pub read_timeout: Duration,
    /// Largest accepted upload (bytes; K, M, G suffixes are binary).
    pub max_upload: u32,
    /// Also show receiver x sender (lost, duplicates, latency) and peer x peer matrices.
    pub matrix: bool,
    /// Measure every peer against this peer's order instead of the mean-position consensus.
    pub reference: Option<u16>,
    /// Refuse logs that claim more peers than this.
    pub max_peers: u16,
    /// Memory for stored logs of incomplete runs plus uploads in progress; over it, uploads are
    /// refused (K, M, G suffixes are binary).
    pub max_pending: u64,
    /// Connections at once from one source address.
    pub max_conns_per_source: usize,
    /// Incomplete runs one source address may have started.
    pub max_runs_per_source: usize,
    /// Exit after the first completed run.
    pub once: bool,
    /// With --logs: write each run's page (space-time diagram, order strips, latency) to FILE;
    /// with several runs, to FILE-1.html, FILE-2.html, … (runs in order of first appearance).
    pub html: Option<PathBuf>,
    /// As a service: write each run's page into DIR as run-<run id in 16 hex digits>.html.
    pub html_dir: Option<PathBuf>,
}

/// `mpcomm report`: aggregate a results file into the table of the original study.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Results file written by `--results` (one JSON object per line).
    pub results: PathBuf,
    /// CSV instead of the table.
    pub csv: bool,
    /// One JSON object per group per line instead of the table.
    pub json: bool,
    /// Also draw the chart into this SVG file.
    pub svg: Option<PathBuf>,
    /// Also write a self-contained page (table and charts over N, one line per setting).
    pub html: Option<PathBuf>,
}

/// `N`, `NK`, `NM`, `NG`, `NT` (binary multiples), any u64.
pub fn parse_bytes_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        Some('T' | 't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size: use e.g. 65536, 64K, 2G"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `N`, `NK`, `NM`, `NG` (binary multiples), at most 4 GiB − 1.
pub fn parse_bytes(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_end_matches(['B', 'b']).trim_end_matches('i');
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size: use e.g. 65536, 64K, 256M"))?;
    n.checked_mul(mult)
        .and_then(|b| u32::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is too large: at most 4G - 1 bytes"))
}

/// Append one report as a JSON line and fsync, so an acknowledged run is on disk. On failure
/// the file is cut back to its previous length (best effort), so no partial line stays.
pub fn append_result(file: &mut File, report: &Report) -> io::Result<()> {
    let mut line = report.to_json_line();
    line.push('\n');
    let before = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let written = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_data());
    if written.is_err() {
        if let Some(len) = before {
            if file.set_len(len).is_ok() {
                let _ = file.sync_data();
            }
        }
    }
    written
}

/// Open a results file for appending (created if absent).
pub fn open_results(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open results file {} for appending", path.display()))
}

fn print_report(report: &Report, json: bool) -> io::Result<()> {
    let stdout = crate::util::out::stdout();
    let mut out = stdout.lock();
    if json {
        writeln!(out, "{}", report.to_json_line())?;
    } else {
        report.write_human(&mut out)?;
        writeln!(out)?;
    }
    out.flush()
}

pub fn run_compare(args: CompareConfig) -> anyhow::Result<ExitCode> {
    let opts = AnalyseOptions {
        matrix: args.matrix,
        reference: args.reference,
        ..AnalyseOptions::default()
    };
    if !args.logs.is_empty() {
        return compare_files(&args, &opts);
    }
    let cfg = ServerConfig {
        listen: args.listen,
        run_timeout: args.run_timeout,
        read_timeout: args.read_timeout,
        max_upload_bytes: args.max_upload,
        results: args.results.clone(),
        hist_dir: args.hist_dir.clone(),
        html_dir: args.html_dir.clone(),
        analyse: opts,
        quiet: false,
        max_peers: args.max_peers,
        max_pending_bytes: args.max_pending,
        max_conns_per_source: args.max_conns_per_source,
        max_connections: server::MAX_CONNECTIONS,
        max_runs_per_source: args.max_runs_per_source,
    };
    let server = Server::bind(cfg)?;
    let stopper = server.stopper();
    let on_signal = stopper.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.stop()) {
        say!("compare: cannot catch Ctrl-C/SIGTERM ({e}); stop with SIGKILL");
    }
    say!("compare: listening on {}", server.local_addr());
    let (json, once) = (args.json, args.once);
    let mut print_error = None;
    server.run(|report| {
        if let Err(e) = print_report(report, json) {
            print_error.get_or_insert(e);
            stopper.stop();
        }
        if once {
            stopper.stop();
        }
    })?;
    if let Some(e) = print_error {
        return Err(e).context("cannot write the report to stdout");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--logs`: every file, grouped into runs by run id (in order of first appearance).
fn compare_files(args: &CompareConfig, opts: &AnalyseOptions) -> anyhow::Result<ExitCode> {
    // Per run: its logs and their files (the page reads the files again for send times).
    let mut runs: Vec<(u64, Vec<PeerLog>, Vec<PathBuf>)> = Vec::new();
    for path in &args.logs {
        let log = PeerLog::from_file(path)?;
        let id = log.header.run_id;
        match runs.iter_mut().find(|(r, _, _)| *r == id) {
            Some((_, logs, files)) => {
                logs.push(log);
                files.push(path.clone());
            }
            None => runs.push((id, vec![log], vec![path.clone()])),
        }
    }
    let mut results = args.results.as_deref().map(open_results).transpose()?;
    for (k, (_, logs, files)) in runs.iter().enumerate() {
        // The page shows matrices: compute them in this one analysis (a second one would need
        // the order indexes again), but print and store the report as asked.
        let page_matrix = args.html.is_some()
            && !opts.matrix
            && logs
                .first()
                .is_some_and(|l| usize::from(l.header.peers) <= analyse::MAX_MATRIX_PEERS);
        let mut report = if page_matrix {
            analyse(
                logs,
                &AnalyseOptions {
                    matrix: true,
                    ..opts.clone()
                },
            )
        } else {
            analyse(logs, opts)
        };
        let matrix = if page_matrix {
            report.matrix.take()
        } else {
            None
        };
        print_report(&report, args.json).context("cannot write the report to stdout")?;
        if let (Some(f), Some(p)) = (results.as_mut(), args.results.as_deref()) {
            append_result(f, &report)
                .with_context(|| format!("cannot append to {}", p.display()))?;
        }
        if let Some(dir) = &args.hist_dir {
            hist::write_run(dir, logs, &report)
                .with_context(|| format!("cannot write histograms into {}", dir.display()))?;
        }
        if let Some(file) = &args.html {
            let out = crate::viz::page_path(file, k, runs.len());
            crate::viz::write_run_page_with(&out, logs, files, &report, matrix.as_ref())?;
            say!("compare: page written to {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_report(args: ReportConfig) -> anyhow::Result<ExitCode> {
    aggregate::run(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64K"), Ok(64 << 10));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert!(parse_bytes("4G").is_err());
        assert!(parse_bytes("lots").is_err());
    }
}
