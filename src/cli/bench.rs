//! `mpcomm bench`: its flags, mapped into [`BenchConfig`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::modes::parse_transport_choice;
use crate::bench::{parse_peers, BenchConfig, HostKind, PeerList};
use crate::lab::TransportChoice;
use crate::util::duration;

const EXAMPLES: &str = "Examples:
  mpcomm bench                              # N = 2, 4, 8, … 128 on loopback, both transports
  mpcomm bench --peers 2,8,32 --json        # one JSON line per transport × N
  mpcomm bench --hosts both --svg bench.svg # loopback and network namespaces, and a chart";

/// Measure both transports side by side over a list of N, with real peer processes.
///
/// For every N and transport: one saturation run (`--interval 0`) for the delivered rate,
/// loss (with the kernel's receive-buffer drops), the senders' datagrams, bytes and syscalls
/// per message and the peers' CPU per delivery; and one paced run (--rate messages/s per peer)
/// for one-way latency p50/p99.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = EXAMPLES)]
pub struct BenchArgs {
    /// Comma-separated list of N, each 2..=256 (250 in namespaces) [default: 2,4,8,16,32,64,128].
    #[arg(long, value_parser = parse_peers)]
    pub peers: Option<PeerList>,
    /// fanout, multicast, or both.
    #[arg(long, default_value = "both", value_parser = parse_transport_choice)]
    pub transport: TransportChoice,
    /// Where the peers live: loopback, netns (own network namespaces on a bridge), or both.
    #[arg(long, value_enum, default_value = "loopback")]
    pub hosts: HostsArg,
    /// The same as --hosts netns.
    #[arg(long, conflicts_with = "hosts")]
    pub netns: bool,
    /// Deliveries a saturation run aims at (N² × M): M = this / N² messages per peer.
    #[arg(long, default_value_t = 200_000)]
    pub deliveries: u64,
    /// Messages per peer of a paced (latency) run, at most --deliveries / N².
    #[arg(long, default_value_t = 1000)]
    pub paced_msgs: u32,
    /// Messages per second each peer sends in the paced run (a fixed gap of 1/rate).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// DATA datagram size in bytes.
    #[arg(long, default_value_t = crate::wire::packet::DATA_MIN_LEN)]
    pub size: usize,
    /// Peers' quiet period after sending.
    #[arg(long, default_value = "500ms", value_parser = duration::parse)]
    pub drain: Duration,
    /// Seed of the runs (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// One JSON object per host kind × transport × N per line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also append every JSON line to this file (with the table on stdout: both from one run).
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Also write a chart (rate and cost against N) to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Show the peers' own log lines.
    #[arg(long, short)]
    pub verbose: bool,
}

/// Where the peers live (`--hosts`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostsArg {
    /// Every peer on its own 127.x.y.z address of this host.
    Loopback,
    /// Every peer in its own network namespace, on a Linux bridge.
    Netns,
    /// Loopback, then network namespaces.
    Both,
}

impl From<HostsArg> for HostKind {
    fn from(h: HostsArg) -> HostKind {
        match h {
            HostsArg::Loopback => HostKind::Loopback,
            HostsArg::Netns => HostKind::Netns,
            HostsArg::Both => HostKind::Both,
        }
    }
}

impl From<BenchArgs> for BenchConfig {
    fn from(a: BenchArgs) -> BenchConfig {
        // No `..`: a field added to BenchArgs does not compile until it is mapped here.
        let BenchArgs {
            peers,
            transport,
            hosts,
            netns,
            deliveries,
            paced_msgs,
            rate,
            size,
            drain,
            seed,
            json,
            results,
            svg,
            verbose,
        } = a;
        BenchConfig {
            peers,
            transport,
            hosts: hosts.into(),
            netns,
            deliveries,
            paced_msgs,
            rate,
            size,
            drain,
            seed,
            json,
            results,
            svg,
            verbose,
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let cfg = BenchConfig::from(args);
    if let Err(e) = crate::bench::plan::Plan::new(&cfg, cfg.host_kind()) {
        super::usage(&["bench"], e).exit();
    }
    crate::bench::run(cfg)
}
