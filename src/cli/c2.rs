//! `mpcomm c2 …`: the subcommands and the control commands' flags, mapped into
//! `c2::client`'s plain configs. The services' flags are in [`super::c2_services`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::c2_services;
use super::modes::{OrderChoiceArg, RepairArg};
use crate::c2::client::{self, Control, RunConfig, StatusConfig};
use crate::lab::TransportChoice;
use crate::util::duration;
use crate::wire::Transport;

#[derive(clap::Subcommand, Debug)]
pub enum C2Command {
    /// Print a fresh pre-shared key: `mpcomm c2 keygen > key && chmod 600 key`.
    Keygen,
    /// Resident agent (one per host): connects out to the controller, starts peer runs.
    Agent(c2_services::AgentArgs),
    /// The controller: agent registry, runs, and the comparator in the same process.
    Serve(c2_services::ServeArgs),
    /// Start a run (or a series: --repeat, --transport both, --order all) and print the reports.
    Run(RunArgs),
    /// Preflight across the live agents: does unicast and multicast get through between them?
    Check(C2CheckArgs),
    /// List the agents the controller knows, live or lost.
    Status(StatusArgs),
    /// Stop every agent (also those that register within 3 s: still connecting, or in their
    /// reconnect backoff), then the controller.
    Exit(ControlArgs),
}

pub fn run(cmd: C2Command) -> anyhow::Result<ExitCode> {
    match cmd {
        C2Command::Keygen => crate::c2::keygen(),
        C2Command::Agent(a) => c2_services::run_agent(a),
        C2Command::Serve(a) => c2_services::run_serve(a),
        C2Command::Run(a) => {
            let cfg = RunConfig::from(a);
            if let Err(e) = cfg.check() {
                super::usage(&["c2", "run"], e).exit();
            }
            client::run_series(cfg)
        }
        C2Command::Status(a) => client::status(a.into()),
        C2Command::Check(a) => crate::c2::client_check::run(a.into()),
        C2Command::Exit(a) => client::exit(a.into()),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ControlArgs {
    /// The controller, HOST:PORT.
    #[arg(long, env = "MPCOMM_CONTROLLER")]
    pub controller: String,
    /// Pre-shared key file (`mpcomm c2 keygen`); must not be readable by group or others.
    #[arg(long, env = "MPCOMM_KEY_FILE")]
    pub key_file: PathBuf,
}

/// Check, before an experiment, that unicast and multicast get through between the agents:
/// every chosen agent runs `mpcomm check` against the others' advertised addresses at once.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example: every live idle agent, both transports, on the controller's peer port and group:
  mpcomm c2 check --controller ctl:4569 --key-file key

Prints who heard whom over which transport (loss both ways, rtt, hops) per host, then one FAIL
line per failed pair and transport. The agents' peer port must be free: agents busy with a run
are not picked."
)]
pub struct C2CheckArgs {
    #[command(flatten)]
    pub ctl: ControlArgs,
    /// Number of agents (the first N live idle ones; default: all of them).
    #[arg(long)]
    pub peers: Option<u16>,
    /// What to check.
    #[arg(long, value_enum, default_value = "both")]
    pub transport: TransportArg,
    /// Multicast group and port (default: the controller's --group, as runs use).
    #[arg(long)]
    pub group: Option<std::net::SocketAddr>,
    /// UDP port every agent probes on (default: the controller's --peer-port, as runs use).
    #[arg(long)]
    pub port: Option<u16>,
    /// How long each pair is counted (at most 60 s).
    #[arg(long, default_value = "2s", value_parser = duration::parse)]
    pub duration: Duration,
    /// Wait up to this long for the controller to answer and for --peers idle agents.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub wait: Duration,
    /// Print the merged result as one JSON object on stdout (FAIL lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

impl From<C2CheckArgs> for crate::c2::client_check::C2CheckConfig {
    fn from(a: C2CheckArgs) -> Self {
        let (fanout, multicast) = match a.transport {
            TransportArg::Fanout => (true, false),
            TransportArg::Multicast => (false, true),
            TransportArg::Both => (true, true),
        };
        crate::c2::client_check::C2CheckConfig {
            ctl: a.ctl.into(),
            request: crate::c2::proto::CheckRequest {
                peers: a.peers.unwrap_or(0),
                port: a.port.unwrap_or(0),
                fanout,
                multicast,
                group: a.group,
                duration_ms: u32::try_from(a.duration.as_millis()).unwrap_or(u32::MAX),
            },
            wait: a.wait,
            json: a.json,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    Fanout,
    Multicast,
    /// Fan-out, then multicast, per repetition.
    Both,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub ctl: ControlArgs,
    /// Number of peers (the first N live agents; at most 256).
    #[arg(long)]
    pub peers: u16,
    /// Messages per peer (at most 100000).
    #[arg(long)]
    pub msgs: u32,
    #[arg(long, value_enum, default_value = "fanout")]
    pub transport: TransportArg,
    /// Delivery order of every peer, or all (each mode in turn; then one table of the modes).
    #[arg(long, value_enum, default_value = "none")]
    pub order: OrderChoiceArg,
    /// Gap repair of every peer (default: off with --order none, nack for the other modes).
    #[arg(long, value_enum)]
    pub repair: Option<RepairArg>,
    /// Random gap between a peer's messages, MIN..MAX milliseconds (at most 60000).
    #[arg(long, default_value = "10..100", value_parser = duration::parse_range_ms)]
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes (0: the smallest; at most 8192).
    #[arg(long, default_value_t = 0)]
    pub size: u32,
    /// Emulated WAN profile: lan, gcp8 (a name the agents have too, not a path). Agents with a
    /// --zone must all have one of the profile's zones; without zones the peers take the
    /// profile's zones round-robin.
    #[arg(long)]
    pub wan: Option<String>,
    /// Extra random loss of the emulated WAN, 0..1 (needs --wan).
    #[arg(long, default_value_t = 0.0)]
    pub wan_loss: f64,
    /// Multiply every interval and emulated delay (0.1 = ten times faster; 0.001..=1000).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Source-specific multicast: every peer joins (S,G) for each peer's address (IGMPv3 /
    /// MLDv2) instead of the whole group; the group must be in 232/8 or ff3x::/96 (the peers'
    /// default, unless the controller was given another --group).
    #[arg(long)]
    pub ssm: bool,
    /// Base seed: peer i of repetition k uses seed + k + i, the same for every transport and
    /// mode of a repetition (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Wait up to this long for the controller to answer and for --peers live, idle agents
    /// (before every run of a series); then the run is asked for all the same and refused
    /// with the count if they are still missing. 0 = do not wait.
    #[arg(long, default_value = "10s", value_parser = duration::parse)]
    pub wait: Duration,
    /// Runs per configuration (the original study used 10).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// One JSON report per line on stdout (after several modes, then one `{"summary": [...]}`
    /// line: the table of `mpcomm lab --order all`).
    #[arg(long)]
    pub json: bool,
    /// Also append every report as a JSON line to this file (`mpcomm report FILE` aggregates).
    #[arg(long)]
    pub results: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub ctl: ControlArgs,
    #[arg(long)]
    pub json: bool,
    /// Wait up to this long for the controller to answer, then until the agents have settled:
    /// --live N of them live, or (without --live) the number of live agents unchanged for 1 s.
    /// The list is printed either way; a --live count not reached exits 1. 0 = ask once.
    #[arg(long, default_value = "0s", value_parser = duration::parse)]
    pub wait: Duration,
    /// With --wait: the number of live agents to wait for (e.g. the agents just started).
    #[arg(long)]
    pub live: Option<usize>,
}

impl From<ControlArgs> for Control {
    fn from(a: ControlArgs) -> Control {
        // No `..`: a field added to ControlArgs does not compile until it is mapped here.
        let ControlArgs {
            controller,
            key_file,
        } = a;
        Control {
            controller,
            key_file,
        }
    }
}

impl From<RunArgs> for RunConfig {
    fn from(a: RunArgs) -> RunConfig {
        // No `..`: a field added to RunArgs does not compile until it is mapped here.
        let RunArgs {
            ctl,
            peers,
            msgs,
            transport,
            order,
            repair,
            interval,
            size,
            wan,
            wan_loss,
            time_scale,
            ssm,
            seed,
            wait,
            repeat,
            json,
            results,
        } = a;
        RunConfig {
            ctl: ctl.into(),
            peers,
            msgs,
            transport: transport.into(),
            order: order.0,
            repair: repair.map(|r| r.0),
            interval,
            size,
            wan,
            wan_loss,
            time_scale,
            ssm,
            seed,
            wait,
            repeat,
            json,
            results,
        }
    }
}

impl From<StatusArgs> for StatusConfig {
    fn from(a: StatusArgs) -> StatusConfig {
        // No `..`: a field added to StatusArgs does not compile until it is mapped here.
        let StatusArgs {
            ctl,
            json,
            wait,
            live,
        } = a;
        StatusConfig {
            ctl: ctl.into(),
            json,
            wait,
            live,
        }
    }
}

impl From<TransportArg> for TransportChoice {
    fn from(t: TransportArg) -> TransportChoice {
        match t {
            TransportArg::Fanout => TransportChoice::One(Transport::Fanout),
            TransportArg::Multicast => TransportChoice::One(Transport::Multicast),
            TransportArg::Both => TransportChoice::Both,
        }
    }
}
