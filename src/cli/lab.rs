//! `mpcomm lab`: its flags, mapped into [`LabConfig`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::modes::{parse_transport_choice, OrderChoiceArg, RepairArg};
use crate::lab::{LabConfig, TransportChoice};
use crate::util::duration;

const EXAMPLES: &str = "Examples:
  mpcomm lab                                # 8 peers x 100 messages, fanout and multicast
  mpcomm lab --wan gcp8 --time-scale 0.1    # emulated multi-region WAN, 10x faster
  mpcomm lab --peers 4 --msgs 50 --runs 10 --json --results out.jsonl
  mpcomm lab --netns --transport multicast  # every peer its own host, real IGMP
  mpcomm lab --grid --wan gcp8 --time-scale 0.1   # the original study's whole grid";

/// Run an experiment on this machine and print the comparator's report.
///
/// Starts --peers real peer processes (one mio event loop each) that handshake, send --msgs
/// messages each to all peers at random intervals, log what they receive and upload the logs to
/// a comparator running inside this command. Both transports by default: fan-out unicast and
/// IP multicast. On one host messages arrive within microseconds and the peers mostly agree;
/// add `--wan gcp8` to emulate the original's eight cloud regions and see the ordering problem.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
pub struct LabArgs {
    /// Number of peers (N).
    #[arg(long, default_value_t = 8)]
    pub peers: u16,
    /// Messages each peer sends (M).
    #[arg(long, default_value_t = 100)]
    pub msgs: u32,
    /// fanout, multicast, or both (one run each).
    #[arg(long, default_value = "both", value_parser = parse_transport_choice)]
    pub transport: TransportChoice,
    /// Delivery order of every peer, or all (each mode on the same seeds, then a table).
    #[arg(long, value_enum, default_value = "none")]
    pub order: OrderChoiceArg,
    /// Gap repair of every peer (default: off with --order none, nack for the other modes).
    #[arg(long, value_enum)]
    pub repair: Option<RepairArg>,
    /// Gap between a peer's messages, uniform in MIN..MAX ms; 0 = back to back.
    #[arg(long, default_value = "10..100", value_parser = duration::parse_range_ms)]
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes.
    #[arg(long, default_value_t = crate::wire::packet::DATA_MIN_LEN)]
    pub size: usize,
    /// Base seed; run k uses seed + k (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Runs per configuration and transport (samples); default 1, or 10 with --grid.
    #[arg(long)]
    pub runs: Option<u32>,
    /// Run the original study's grid: N ∈ {2,3,4,6,8} × M ∈ {10,50,100} × --runs (default 10)
    /// samples × both transports, then print the aggregated table.
    #[arg(long)]
    pub grid: bool,
    /// Emulated WAN profile: lan, gcp8, or a profile file.
    #[arg(long)]
    pub wan: Option<String>,
    /// Extra random loss of the emulated WAN, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub wan_loss: f64,
    /// Multiply every interval and emulated delay (0.1 = ten times faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Put every peer in its own network namespace on a Linux bridge (root, or a user namespace).
    #[arg(long)]
    pub netns: bool,
    /// First run `mpcomm check` on every host (one process each) and stop with its verdict
    /// when unicast or multicast does not get through.
    #[arg(long)]
    pub check: bool,
    /// Run over IPv6: peers on [::1] with distinct ports (the comparator on [::1] too), or with
    /// --netns on unique-local fd6d:7063:…::/64 addresses of the bridge; multicast to an
    /// ff12:: group (link-local scope: one bridge). Multicast on ::1: Linux's loopback cannot
    /// carry it, so the lab then runs in a private network namespace whose loopback can (a
    /// local ff00::/8 route on its lo; root, or a user namespace) and says so on stderr.
    #[arg(long)]
    pub ipv6: bool,
    /// Source-specific multicast: every peer joins (S,G) for each peer's address (IGMPv3 /
    /// MLDv2), on a group in 232/8 or ff32::/96; other sources never reach the peers.
    #[arg(long)]
    pub ssm: bool,
    /// One JSON object per run per line on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Append every run's JSON line to this file.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Keep the peers' delivery logs in this directory (default: a temporary one, removed).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Also write latency histograms (.hgrm, .hlog) per run into this directory.
    #[arg(long)]
    pub hist_dir: Option<PathBuf>,
    /// Write each run's page (space-time diagram, order strips, latency) to FILE; with several
    /// runs, to FILE-1.html, FILE-2.html, … in the order the runs ran.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// SVG chart of the aggregated results (with --grid or --runs > 1).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Peers' quiet period after sending.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    pub drain: Duration,
    /// Give up on a run whose peers have not all shaken hands by then.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub handshake_timeout: Duration,
    /// Include receiver × sender and peer × peer matrices (loss, latency p50, disagreement).
    #[arg(long)]
    pub matrix: bool,
    /// Show the peers' own log lines.
    #[arg(long, short)]
    pub verbose: bool,
}

impl From<LabArgs> for LabConfig {
    fn from(a: LabArgs) -> LabConfig {
        // No `..`: a field added to LabArgs does not compile until it is mapped here.
        let LabArgs {
            peers,
            msgs,
            transport,
            order,
            repair,
            interval,
            size,
            seed,
            runs,
            grid,
            wan,
            wan_loss,
            time_scale,
            netns,
            check,
            ipv6,
            ssm,
            json,
            results,
            log_dir,
            hist_dir,
            html,
            svg,
            drain,
            handshake_timeout,
            matrix,
            verbose,
        } = a;
        LabConfig {
            peers,
            msgs,
            transport,
            interval,
            size,
            seed,
            runs,
            grid,
            wan,
            wan_loss,
            time_scale,
            netns,
            check,
            ipv6,
            ssm,
            json,
            results,
            log_dir,
            hist_dir,
            html,
            svg,
            drain,
            handshake_timeout,
            matrix,
            verbose,
            order: order.0,
            repair: repair.map(|r| r.0),
        }
    }
}

pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let cfg = LabConfig::from(args);
    // The values a peer would refuse are the arguments' fault: a usage error, as clap's.
    // (The lab checks them again; the seed does not change what is refused.)
    if let Err(e) = cfg.experiments(0) {
        super::usage(&["lab"], e).exit();
    }
    crate::lab::run(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Experiment;
    use crate::wire::{Order, Repair, Transport};

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
        LabConfig::from(args).experiments(100).unwrap()
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
