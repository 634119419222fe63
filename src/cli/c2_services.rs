//! `mpcomm c2 agent` and `mpcomm c2 serve`: the two services' flags (each also readable from
//! the environment, as the systemd units set them), mapped into `AgentConfig` and
//! `ServeConfig`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValue;

use crate::c2::agent::AgentConfig;
use crate::c2::control::config::RUN_SLACK;
use crate::c2::control::ServeConfig;
use crate::c2::registry::OrderBy;
use crate::util::duration;

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The controller, HOST:PORT. The agent connects out, so it works behind NAT.
    #[arg(long, env = "MPCOMM_CONTROLLER")]
    pub controller: String,
    /// Pre-shared key file (`mpcomm c2 keygen`); must not be readable by group or others.
    #[arg(long, env = "MPCOMM_KEY_FILE")]
    pub key_file: PathBuf,
    /// Address the other peers reach this host at (default: this host's side of the
    /// connection to the controller).
    #[arg(long, env = "MPCOMM_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// Zone label for WAN emulation (letters, digits, '-', '_', '.'; at most 32 bytes).
    #[arg(long, env = "MPCOMM_ZONE", default_value = "")]
    pub zone: String,
    /// Directory for delivery logs (kept there only when an upload fails: see --keep-failed).
    /// Under systemd this is the unit's StateDirectory.
    #[arg(long, env = "STATE_DIRECTORY", default_value = ".")]
    pub log_dir: PathBuf,
    /// Failed-upload delivery logs kept in --log-dir, the oldest removed first (also at
    /// start). A log whose upload succeeded is removed at once; 0 keeps none.
    #[arg(long, env = "MPCOMM_KEEP_FAILED", default_value_t = 100)]
    pub keep_failed: usize,
    /// Program started for a peer run (default: this binary).
    #[arg(long, hide = true)]
    pub peer_exe: Option<PathBuf>,
}

impl From<AgentArgs> for AgentConfig {
    fn from(a: AgentArgs) -> AgentConfig {
        AgentConfig {
            controller: a.controller,
            key_file: a.key_file,
            advertise: a.advertise,
            zone: a.zone,
            log_dir: a.log_dir,
            keep_failed: a.keep_failed,
            peer_exe: a.peer_exe,
        }
    }
}

/// `mpcomm c2 agent`: a configuration the agent refuses is a usage error.
pub fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let cfg = AgentConfig::from(args);
    if let Err(e) = cfg.check() {
        super::usage(&["c2", "agent"], e).exit();
    }
    crate::c2::agent::run_config(cfg)
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address agents and control clients connect to.
    #[arg(long, env = "MPCOMM_LISTEN", default_value = "0.0.0.0:4569")]
    pub listen: SocketAddr,
    /// Pre-shared key file (`mpcomm c2 keygen`); must not be readable by group or others.
    #[arg(long, env = "MPCOMM_KEY_FILE")]
    pub key_file: PathBuf,
    /// Address of the in-process comparator (default: the --listen address, port 4568).
    #[arg(long, env = "MPCOMM_COMPARE_LISTEN")]
    pub compare_listen: Option<SocketAddr>,
    /// UDP port every peer uses on its host.
    #[arg(long, env = "MPCOMM_PEER_PORT", default_value_t = 4567)]
    pub peer_port: u16,
    /// Multicast group for multicast runs (default: the peer's default group).
    #[arg(long, env = "MPCOMM_GROUP")]
    pub group: Option<SocketAddr>,
    /// How agents get their peer ids.
    #[arg(
        long,
        value_enum,
        env = "MPCOMM_ORDER_BY",
        default_value = "registration"
    )]
    pub order_by: OrderByArg,
    /// Append every report as a JSON line (default under systemd: $STATE_DIRECTORY/results.jsonl).
    #[arg(long, env = "MPCOMM_RESULTS")]
    pub results: Option<PathBuf>,
    /// Write every run's latency histograms here.
    #[arg(long, env = "MPCOMM_HIST_DIR")]
    pub hist_dir: Option<PathBuf>,
    /// The comparator reports a run this long after its first upload even with logs missing.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub run_timeout: Duration,
    /// Never offer the interactive prompt, even when stdin is a terminal.
    #[arg(long)]
    pub no_prompt: bool,
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> ServeConfig {
        ServeConfig {
            listen: a.listen,
            key_file: a.key_file,
            compare_listen: a.compare_listen,
            peer_port: a.peer_port,
            group: a.group,
            order_by: a.order_by.into(),
            results: a.results,
            hist_dir: a.hist_dir,
            run_timeout: a.run_timeout,
            prompt: !a.no_prompt,
            run_slack: RUN_SLACK,
        }
    }
}

pub fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::c2::controller::serve(ServeConfig::from(args))
}

/// `c2 serve --order-by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderByArg(pub OrderBy);

impl From<OrderByArg> for OrderBy {
    fn from(a: OrderByArg) -> OrderBy {
        a.0
    }
}

impl clap::ValueEnum for OrderByArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[OrderByArg(OrderBy::Registration), OrderByArg(OrderBy::Zone)]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self.0 {
            OrderBy::Registration => PossibleValue::new("registration")
                .help("The order in which agents first registered"),
            OrderBy::Zone => PossibleValue::new("zone").help("Zone label, then registration order"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c2::agent::ConfigError;
    use crate::c2::proto::MAX_LABEL;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn the_clap_arguments_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "serve",
            "--listen",
            "127.0.0.1:9",
            "--key-file",
            "/k",
            "--peer-port",
            "5000",
            "--order-by",
            "zone",
            "--run-timeout",
            "2s",
            "--no-prompt",
        ])
        .unwrap();
        let c = ServeConfig::from(cli.serve);
        assert_eq!(c.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!((c.peer_port, c.order_by), (5000, OrderBy::Zone));
        assert_eq!(c.run_timeout, Duration::from_secs(2));
        assert!(!c.prompt, "--no-prompt");
        assert_eq!(c.run_slack, RUN_SLACK);
    }

    #[test]
    fn the_configuration_comes_from_the_flags_and_is_checked() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            agent: AgentArgs,
        }
        let cli = Cli::try_parse_from([
            "agent",
            "--controller",
            "ctl:4600",
            "--key-file",
            "/k",
            "--zone",
            "eu-1",
            "--log-dir",
            "/logs",
            "--keep-failed",
            "3",
        ])
        .unwrap();
        let cfg = AgentConfig::from(cli.agent);
        assert_eq!(
            cfg,
            AgentConfig {
                controller: "ctl:4600".into(),
                key_file: "/k".into(),
                advertise: None,
                zone: "eu-1".into(),
                log_dir: "/logs".into(),
                keep_failed: 3,
                peer_exe: None,
            }
        );
        assert_eq!(cfg.check(), Ok(()));
        for bad in ["a b", "x/y", &"z".repeat(MAX_LABEL + 1)] {
            let c = AgentConfig {
                zone: bad.into(),
                ..cfg.clone()
            };
            assert_eq!(c.check(), Err(ConfigError::Zone(bad.into())));
        }
    }
}
