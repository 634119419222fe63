//! `mpcomm check`: its flags, mapped into [`CheckOptions`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::ValueEnum;

use crate::check::{CheckOptions, Transports};
use crate::util::duration;

/// Which transports to check (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportsArg {
    /// Unicast to every peer (what `--transport fanout` runs use).
    Fanout,
    /// The multicast group (what `--transport multicast` runs use).
    Multicast,
    /// Both.
    Both,
}

impl From<TransportsArg> for Transports {
    fn from(t: TransportsArg) -> Transports {
        match t {
            TransportsArg::Fanout => Transports::Fanout,
            TransportsArg::Multicast => Transports::Multicast,
            TransportsArg::Both => Transports::Both,
        }
    }
}

/// Check that unicast and multicast get through between the hosts, before an experiment.
///
/// Run it on every host at about the same time, with the same --peers list as `mpcomm peer`.
/// Each host probes every peer by unicast and the group by multicast every --interval, answers
/// the others' probes, and prints who heard whom: loss both ways, round-trip time, hop
/// distance (initial TTL − received TTL, as omping). A pair is counted for --duration from
/// when the peer is first heard (hosts started by hand seconds apart are fine), with
/// multicast one second later: the first multicast datagrams are often lost while switches
/// and routers build the tree.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example, the same on each of three hosts:
  mpcomm check --peers 10.0.0.1:4570,10.0.0.2:4570,10.0.0.3:4570

Exit codes: 0 every pair passed over every transport asked for, 1 a pair failed (a FAIL line
names each: peer, address, transport, why), 2 bad arguments, 3 could not run (a socket could
not be opened or the group joined; stderr says which).

What a failure usually means is in the README, \"Is multicast working here?\".")]
pub struct CheckArgs {
    /// Every host's IP:PORT (or HOST:PORT), comma-separated, as for `mpcomm peer`; the
    /// position is the id. The port must be free (stop peers first).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub peers: Vec<String>,
    /// This host's id (index in --peers). May be omitted if exactly one listed address is local.
    #[arg(long)]
    pub id: Option<u16>,
    /// What to check.
    #[arg(long, value_enum, default_value_t = TransportsArg::Both)]
    pub transport: TransportsArg,
    /// Multicast group and port. Default: the peer's, the group a run uses
    /// (239.255.77.77:4577, or [ff15::7777]:4577 for IPv6 peers).
    #[arg(long)]
    pub group: Option<SocketAddr>,
    /// Interface for multicast, as for `mpcomm peer` (its IPv4 address or name).
    #[arg(long)]
    pub iface: Option<String>,
    /// Multicast TTL: give the one your peers will use (1, the peer's default, stays on the
    /// local network: a router in between fails the check, as it would fail the run).
    #[arg(long, default_value_t = 1)]
    pub ttl: u8,
    /// How long each pair is counted.
    #[arg(long, default_value = "3s", value_parser = duration::parse)]
    pub duration: Duration,
    /// Gap between probe rounds (ms unless a unit is given).
    #[arg(long, default_value = "100ms", value_parser = duration::parse_ms)]
    pub interval: Duration,
    /// Give up on peers not heard from by then (they fail as "never heard from").
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub wait: Duration,
    /// A pair fails when more than this share of probes is lost either way (0..1).
    #[arg(long, default_value_t = 0.2)]
    pub max_loss: f64,
    /// Print the report as one JSON object on stdout (FAIL lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

impl From<CheckArgs> for CheckOptions {
    fn from(a: CheckArgs) -> CheckOptions {
        // No `..`: a field added to CheckArgs does not compile until it is mapped here.
        let CheckArgs {
            peers,
            id,
            transport,
            group,
            iface,
            ttl,
            duration,
            interval,
            wait,
            max_loss,
            json,
        } = a;
        CheckOptions {
            peers,
            id,
            transport: transport.into(),
            group,
            iface,
            ttl,
            duration,
            interval,
            wait,
            max_loss,
            json,
        }
    }
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let opts = CheckOptions::from(args);
    // What the options cannot be planned into is the arguments' fault: a usage error.
    let cfg = match opts.config() {
        Ok(cfg) => cfg,
        Err(e) => super::usage(&["check"], format!("{e:#}")).exit(),
    };
    crate::check::run_cli(&opts, cfg)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::check::CheckCommand;
    use crate::wire::Transport;

    /// The lab's preflight command line parses back to the same values.
    #[test]
    fn check_command_parses_back() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            c: Sub,
        }
        #[derive(clap::Subcommand)]
        enum Sub {
            Check(CheckArgs),
        }
        let peers: Vec<SocketAddr> = vec![
            "10.1.2.1:4570".parse().unwrap(),
            "10.1.2.2:4570".parse().unwrap(),
        ];
        let cmd = CheckCommand::new(
            &peers,
            1,
            "239.255.1.2:4577".parse().unwrap(),
            Some(Ipv4Addr::new(10, 1, 2, 2).to_string()),
            &[Transport::Multicast],
        );
        let mut argv: Vec<OsString> = vec!["mpcomm".into()];
        argv.extend(cmd.args());
        let Sub::Check(a) = <Cli as clap::Parser>::try_parse_from(argv).unwrap().c;
        assert_eq!(a.peers, ["10.1.2.1:4570", "10.1.2.2:4570"]);
        assert_eq!((a.id, a.transport), (Some(1), TransportsArg::Multicast));
        assert_eq!(a.group, Some(cmd.group));
        assert_eq!(a.iface.as_deref(), Some("10.1.2.2"));
        assert_eq!((a.duration, a.wait), (cmd.duration, cmd.wait));
        assert!(a.json);
    }
}
