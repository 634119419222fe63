//! `mpcomm check`: the preflight that answers "does multicast (and unicast) get through between
//! these hosts?" before any experiment. Every host runs it with the same `--peers` list; each
//! probes every peer by unicast and the group by multicast, answers the others' probes, and
//! reports who heard whom, with loss, round-trip time and hop distance, and exits 0 only when
//! every pair passed over every transport asked for.
//!
//! * [`machine`]: the sans-IO state machine (probes due, replies, per-pair counts, verdict).
//! * [`driver`]: its mio loop on real sockets; [`run`] is the entry point for other callers
//!   (the C2 agent, later), [`run_cli`] the command's.
//! * [`report`]: [`CheckReport`], serde both ways, and its table.
//! * [`preflight`]: what `lab --check` runs: one `mpcomm check` child per host.

mod driver;
pub mod machine;
mod preflight;
pub mod report;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub use preflight::{preflight, CheckCommand};
pub use report::{CheckReport, PairReport, Rtt};

use crate::peer::socket::Membership;
use crate::util::duration;

/// Unicast probes and replies leave with this TTL, so the hop count is `64 − received`.
pub const UNICAST_TTL: u8 = 64;

/// Which transports to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    /// Unicast to every peer (what `--transport fanout` runs use).
    Fanout,
    /// The multicast group (what `--transport multicast` runs use).
    Multicast,
    /// Both.
    Both,
}

impl Transports {
    pub fn as_str(self) -> &'static str {
        match self {
            Transports::Fanout => "fanout",
            Transports::Multicast => "multicast",
            Transports::Both => "both",
        }
    }
}

/// What `mpcomm check` was asked (its flags, `cli::check`, map into this one to one).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Every host's IP:PORT (or HOST:PORT) as for `mpcomm peer`; the position is the id.
    pub peers: Vec<String>,
    /// This host's id; `None`: the one listed address that is local.
    pub id: Option<u16>,
    pub transport: Transports,
    /// `None`: the peer's default group for the list's family (`peer::args::default_group`),
    /// the one a run uses.
    pub group: Option<SocketAddr>,
    pub iface: Option<String>,
    pub ttl: u8,
    pub duration: Duration,
    pub interval: Duration,
    pub wait: Duration,
    pub max_loss: f64,
    pub json: bool,
}

/// Everything [`run`] needs.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub machine: machine::Config,
    /// Where to join and send (needed when `machine.multicast`).
    pub membership: Option<Membership>,
}

/// Why a check could not run (a failed pair is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot open the unicast socket on {0}: {1}")]
    Unicast(SocketAddr, #[source] std::io::Error),
    #[error("cannot open the multicast socket for {0}: {1}")]
    Multicast(SocketAddr, #[source] std::io::Error),
    #[error("event loop: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the preflight on this host until it is done; the verdict is `report.pass`.
pub fn run(cfg: CheckConfig) -> Result<CheckReport, CheckError> {
    driver::run(cfg)
}

impl CheckOptions {
    pub fn config(&self) -> anyhow::Result<CheckConfig> {
        anyhow::ensure!(
            self.ttl > 0,
            "--ttl must be 1..=255 (1 stays on the local network)"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.max_loss),
            "--max-loss is a share, 0..1 (0.2 = 20 %)"
        );
        anyhow::ensure!(
            !self.interval.is_zero() && self.interval <= Duration::from_secs(10),
            "--interval must be more than 0 and at most 10s"
        );
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be more than 0");
        let rounds = (self.wait + self.duration + Duration::from_secs(1)).as_secs_f64()
            / self.interval.as_secs_f64();
        anyhow::ensure!(
            rounds < machine::MAX_TICKS as f64,
            "--wait + --duration is {rounds:.0} probe rounds at this --interval: at most {}",
            machine::MAX_TICKS
        );
        let (fanout, multicast) = match self.transport {
            Transports::Fanout => (true, false),
            Transports::Multicast => (false, true),
            Transports::Both => (true, true),
        };
        // Family of the list decides the default group: the peer's, so the check tests the
        // group a run without --group will use.
        let first_v6 = self.peers.first().is_some_and(|p| p.starts_with('['));
        let group = self
            .group
            .unwrap_or_else(|| crate::peer::args::default_group(first_v6, false));
        // The peer's own planner: a peer list (and --id, --group, --iface) means the same to
        // both commands. Fan-out makes it refuse a list of mixed families, as it should here.
        let mut spec = crate::peer::PeerSpec::new(self.peers.clone());
        spec.id = self.id;
        spec.iface = self.iface.clone();
        spec.transport = if fanout {
            crate::wire::Transport::Fanout
        } else {
            crate::wire::Transport::Multicast
        };
        spec.group = Some(group);
        let plan = spec.plan()?;
        let own = plan.peers[usize::from(plan.id)];
        if multicast && group.is_ipv6() != own.is_ipv6() {
            anyhow::bail!(
                "--group {group} and this host's address {own} are of different families: give an {} group",
                if own.is_ipv6() { "IPv6 (e.g. [ff15::7777]:4577)" } else { "IPv4 (e.g. 239.255.77.77:4577)" }
            );
        }
        Ok(CheckConfig {
            machine: machine::Config {
                id: plan.id,
                list_hash: machine::list_hash(&plan.peers),
                peers: plan.peers,
                fanout,
                multicast,
                interval: self.interval,
                duration: self.duration,
                warmup: Duration::from_secs(1),
                wait: self.wait,
                reply_timeout: Duration::from_secs(1),
                unicast_ttl: UNICAST_TTL,
                multicast_ttl: self.ttl,
                max_loss: self.max_loss,
            },
            membership: multicast.then_some(plan.membership),
        })
    }
}

/// `mpcomm check …` with the options' [`CheckOptions::config`]: 0 pass, 1 a pair failed, 3
/// could not run.
pub fn run_cli(args: &CheckOptions, cfg: CheckConfig) -> anyhow::Result<ExitCode> {
    let m = &cfg.machine;
    say!(
        "mpcomm check: peer {} ({}) probing {} peer(s) by {}{} every {} for {} counted (waiting up to {} for each)",
        m.id,
        m.peers[usize::from(m.id)],
        m.peers.len() - 1,
        args.transport.as_str(),
        cfg.membership
            .map(|ms| format!(" (group {}, TTL {})", ms.destination(), m.multicast_ttl))
            .unwrap_or_default(),
        duration::human(m.interval),
        duration::human(m.duration),
        duration::human(m.wait),
    );
    let report = match run(cfg) {
        Ok(r) => r,
        Err(e) => {
            say!("mpcomm check: error: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    let stdout = crate::util::out::stdout();
    let mut out = stdout.lock();
    if args.json {
        use std::io::Write;
        let line = serde_json::to_string(&report).context("report as JSON")?;
        writeln!(out, "{line}")?;
        for f in &report.failures {
            say!("mpcomm check: {f}");
        }
    } else {
        report.write_human(&mut out)?;
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
