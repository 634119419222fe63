//! The peer's command line, and the checked plan built from it.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::builder::PossibleValue;

use super::machine::Config;
use super::socket::Membership;
use super::wan_delay::WanPlan;
use crate::util::duration;
use crate::wire::{packet, Order, Repair, Transport};

/// The default multicast group and port: administratively scoped (239/8, RFC 2365).
pub const DEFAULT_GROUP: &str = "239.255.77.77:4577";
/// The default group of IPv6 peers: transient, site-local scope (ff15::/16).
pub const DEFAULT_GROUP_V6: &str = "[ff15::7777]:4577";
/// The default groups with --ssm: the source-specific ranges 232/8 and ff3x::/96 (RFC 4607).
pub const DEFAULT_SSM_GROUP: &str = "232.255.77.77:4577";
pub const DEFAULT_SSM_GROUP_V6: &str = "[ff35::4000:7777]:4577";

/// Run one peer. Every host runs one; all are started with the same --peers list.
///
/// The peer joins the others in a handshake (HELLO, retransmitted until every peer answered),
/// sends --msgs messages at random gaps, delivers them in the --order mode (repairing gaps with
/// --repair), logs every delivery, writes the log to --log-dir and uploads it to --comparator.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "Example, the same on each of three hosts:
  mpcomm peer --peers 10.0.0.1:4570,10.0.0.2:4570,10.0.0.3:4570 --msgs 100 \\
              --comparator 10.0.0.9:4568

Exit codes: 0 done, 2 handshake timed out, 3 log kept but not uploaded, 4 refused: a peer runs
another --order or --repair, 5 ordering failed (the sequencer fell silent; log kept and uploaded),
6 the log could not be written to --log-dir (uploaded from memory; if that failed too, it is lost),
130 interrupted.")]
pub struct PeerArgs {
    /// Every peer's IP:PORT (or HOST:PORT), comma-separated; the position is the peer id.
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub peers: Vec<String>,
    /// This peer's id (index in --peers). May be omitted if exactly one listed address is local.
    #[arg(long)]
    pub id: Option<u16>,
    /// Messages each peer sends.
    #[arg(long, default_value_t = 100)]
    pub msgs: u32,
    /// fanout: one unicast datagram per peer; multicast: one datagram to --group.
    #[arg(long, default_value = "fanout")]
    pub transport: Transport,
    /// Delivery order; every peer of a run must use the same (checked in the handshake).
    #[arg(long, value_enum, default_value_t = Order::None)]
    pub order: Order,
    /// Gap repair. Default: off with --order none (the original experiment), nack otherwise.
    ///
    /// An ordering mode holds back every message behind a missing one, so without repair one
    /// lost datagram stalls the rest of a sender's messages (or, in a total order, everyone's).
    #[arg(long, value_enum)]
    pub repair: Option<Repair>,
    /// Multicast group and port (with --transport multicast): IPv4 (239.x.y.z:PORT) or IPv6
    /// ([ff12::7777]:PORT). Default: 239.255.77.77:4577, [ff15::7777]:4577 for IPv6 peers;
    /// with --ssm 232.255.77.77:4577 or [ff35::4000:7777]:4577.
    #[arg(long)]
    pub group: Option<SocketAddr>,
    /// Source-specific multicast: join (S,G) for each listed peer's address instead of the
    /// whole group (IGMPv3 / MLDv2 reports), so datagrams to the group from any other source
    /// never reach this peer. The group must be in 232.0.0.0/8 or ff3x::/96. Each peer sends
    /// from its listed address: on one host, give every peer its own (127.0.0.x works for
    /// IPv4; IPv6 has only ::1 on the loopback, so all peers share that source there).
    #[arg(long)]
    pub ssm: bool,
    /// Interface for multicast: its IPv4 address or its name (e.g. eth0; IPv6 groups need a
    /// name or the index). Default: the interface of this peer's own listed address.
    #[arg(long)]
    pub iface: Option<String>,
    /// Multicast TTL (1 stays on the local network).
    #[arg(long, default_value_t = 1)]
    pub ttl: u32,
    /// Gap between messages, uniform in MIN..MAX (ms unless a unit is given); 0 = back to back.
    #[arg(long, default_value = "10..100", value_parser = duration::parse_range_ms)]
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes, padding included (minimum 26, maximum 65507).
    #[arg(long, default_value_t = packet::DATA_MIN_LEN)]
    pub size: usize,
    /// Seed of the send schedule and of the emulated WAN (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run id: 16 hex digits as mpcomm prints them (or 0x-hex, or decimal). Default: the peers agree on one during the handshake.
    #[arg(long, value_parser = parse_run_id)]
    pub run_id: Option<u64>,
    /// Give up if not every peer has answered the handshake by then.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub handshake_timeout: Duration,
    /// After sending, stop once nothing arrived for this long (lost STOPs cannot hang a run).
    #[arg(long, default_value = "2s", value_parser = duration::parse)]
    pub drain: Duration,
    /// Directory for the delivery log. Default: `mpcomm/<run id>` under $XDG_STATE_HOME (or
    /// ~/.local/state), or under the temporary directory without a home: never the current
    /// directory, so runs in a checkout leave no logs in it.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Comparator HOST:PORT to upload the log to (none: only write it). Tried once at start:
    /// a warning then says at once when it cannot be reached (the run goes on).
    #[arg(long, value_parser = parse_comparator)]
    pub comparator: Option<String>,
    /// Upload attempts before giving up (the log stays on disk). Waits between them: 250 ms
    /// doubling to 4 s; the default's add up to 15.75 s.
    #[arg(long, default_value_t = super::upload::DEFAULT_ATTEMPTS)]
    pub upload_attempts: u32,
    /// Emulate a WAN: a shipped profile (lan, gcp8) or a profile file.
    #[arg(long)]
    pub wan: Option<String>,
    /// Zone of every peer, comma-separated in --peers order (default: round-robin over the profile).
    #[arg(long, value_delimiter = ',')]
    pub zones: Vec<String>,
    /// Extra random loss of the emulated WAN, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub wan_loss: f64,
    /// Multiply every interval and emulated delay (0.1 = ten times faster).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Authenticate every datagram with this run key (64 hex digits and a newline, the format
    /// of `mpcomm c2 keygen`; mode 600): datagrams whose tag does not verify are counted as
    /// forged and dropped. Every peer of the run needs the same key (lab and C2 make one).
    #[arg(long)]
    pub run_key_file: Option<PathBuf>,
    /// Open the sockets, then wait until stdin is closed before starting the handshake (and
    /// the setup clock): a launcher starting many peers releases them together, so the first
    /// ones do not retransmit HELLOs to the rest while it is still starting them.
    #[arg(long)]
    pub start_gate: bool,
    /// Print a one-line JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `HOST:PORT` (an IPv6 address in brackets): the syntax only; resolving is the run's business.
pub fn parse_comparator(s: &str) -> Result<String, String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| {
        format!(
            "{s:?} has no port: give HOST:PORT, e.g. 10.0.0.9:4568 (the comparator's default port)"
        )
    })?;
    if host.is_empty() || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']'))) {
        return Err(format!(
            "{s:?} is not HOST:PORT (an IPv6 address goes in brackets: [::1]:4568)"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!(
            "{s:?}: the port {port:?} is not a number in 1..=65535"
        )),
    }
}

/// Where a peer without `--log-dir` writes the log of run `run_id`.
pub fn default_log_dir(run_id: u64) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty() && h != "/")
                .map(|h| PathBuf::from(h).join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    state
        .join("mpcomm")
        .join(crate::util::run_id::RunHex(run_id).to_string())
}

fn parse_run_id(s: &str) -> Result<u64, String> {
    crate::util::run_id::parse(s)
}

/// Everything the peer needs, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: u16,
    pub peers: Vec<SocketAddr>,
    pub transport: Transport,
    /// Where the multicast transport joins and sends.
    pub membership: Membership,
    /// `--ssm`: join (S,G) for every peer's address instead of (*,G).
    pub ssm: bool,
    pub ttl: u32,
    pub seed: u64,
    pub config: Config,
    /// `None`: [`default_log_dir`] of the agreed run id.
    pub log_dir: Option<PathBuf>,
    pub comparator: Option<String>,
    pub upload_attempts: u32,
    pub wan: Option<WanPlan>,
    pub json: bool,
}

impl PeerArgs {
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let peers = self
            .peers
            .iter()
            .map(|p| {
                p.to_socket_addrs()
                    .with_context(|| format!("cannot resolve peer address {p:?} (use IP:PORT)"))?
                    .next()
                    .with_context(|| format!("peer address {p:?} has no address"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let n = u16::try_from(peers.len())
            .ok()
            .filter(|&n| n > 0 && n <= 1024)
            .context("--peers lists 1 to 1024 peers")?;
        let id = match self.id {
            Some(id) if id < n => id,
            Some(id) => bail!(
                "--id {id} is out of range: --peers lists {n} peers (ids 0..{})",
                n - 1
            ),
            None => who_am_i(&peers)?,
        };
        let profile = RunValues {
            peers: n,
            msgs: self.msgs,
            size: self.size,
            interval: self.interval,
            handshake_timeout: self.handshake_timeout,
            time_scale: self.time_scale,
            wan: self.wan.as_deref(),
            wan_loss: self.wan_loss,
        }
        .check()?;
        let time_scale = self.time_scale;
        let own_ip = peers[usize::from(id)].ip();
        if let Some(other) = peers.iter().find(|p| p.is_ipv6() != own_ip.is_ipv6()) {
            bail!(
                "--peers mixes IPv4 and IPv6 ({other} and {own_ip}): a run uses one family, \
                 list only IPv4 or only IPv6 addresses"
            );
        }
        let group = match self.group {
            Some(g) => g,
            None => default_group(own_ip.is_ipv6(), self.ssm),
        };
        if self.transport == Transport::Multicast && group.is_ipv6() != own_ip.is_ipv6() {
            bail!("--group {group} and the peers ({own_ip}) are of different families: give an IPv4 group for IPv4 peers, an IPv6 one for IPv6 peers");
        }
        if self.ssm && self.transport == Transport::Multicast {
            if !super::socket::is_ssm_group(group.ip()) {
                bail!("--ssm needs a source-specific group: {} is not in 232.0.0.0/8 or ff3x::/96 (e.g. --group 232.255.77.77:4577 or [ff35::4000:7777]:4577)", group.ip());
            }
            if own_ip.is_loopback() && own_ip.is_ipv6() && peers.len() > 1 {
                say!("mpcomm peer: note: --ssm on ::1: every peer sends from ::1, so (S,G) filtering cannot tell them apart here (it still keeps out other sources)");
            }
        }
        let membership = membership(group, self.iface.as_deref(), own_ip)?;
        let seed = self.seed.unwrap_or_else(rand::random);
        let wan = match profile {
            None => None,
            Some(profile) => Some(WanPlan::new(
                profile,
                usize::from(n),
                &self.zones,
                time_scale,
                self.wan_loss,
            )?),
        };
        let scale = |d: Duration| d.mul_f64(time_scale);
        let mut config = Config::new(id, n, self.msgs);
        config.interval = (scale(self.interval.0), scale(self.interval.1));
        config.size = self.size;
        config.seed = seed;
        config.run_id = self.run_id;
        config.nonce = loop {
            let v: u64 = rand::random();
            if v != 0 {
                break v;
            }
        };
        config.handshake_timeout = self.handshake_timeout;
        config.drain = self.drain;
        config.order = self.order;
        config.repair = self.repair.unwrap_or(self.order.default_repair());
        config.transport = self.transport;
        config.run_key = match &self.run_key_file {
            None => None,
            Some(path) => Some(crate::wire::auth::RunKey::new(
                crate::c2::key::load(path).context("--run-key-file")?,
            )),
        };
        Ok(Plan {
            id,
            peers,
            transport: self.transport,
            membership,
            ssm: self.ssm,
            ttl: self.ttl,
            seed,
            config,
            log_dir: self.log_dir.clone(),
            comparator: self.comparator.clone(),
            upload_attempts: self.upload_attempts,
            wan,
            json: self.json,
        })
    }
}

/// Longest scaled send gap (`--interval` MAX × `--time-scale`), as in C2's limits.
pub const MAX_SCALED_INTERVAL: Duration = Duration::from_secs(60);
/// Longest scaled delay of one emulated datagram (largest RTT / 2 + jitter cap, × time scale):
/// what any valid profile gives at a time scale of 1 or less.
pub const MAX_SCALED_DELAY: Duration = Duration::from_secs(15);

/// The values of a run a peer checks wherever it runs. `mpcomm lab` checks its runs with the
/// same function before it starts any child, so it refuses what a child would, in its words.
pub struct RunValues<'a> {
    pub peers: u16,
    pub msgs: u32,
    pub size: usize,
    pub interval: (Duration, Duration),
    pub handshake_timeout: Duration,
    pub time_scale: f64,
    pub wan: Option<&'a str>,
    pub wan_loss: f64,
}

impl RunValues<'_> {
    /// Refuse what cannot make a sensible run; the emulated WAN's profile when there is one.
    pub fn check(&self) -> anyhow::Result<Option<crate::wan::Profile>> {
        self.check_counts()?;
        let scale = crate::wan::check_time_scale(self.time_scale).map_err(anyhow::Error::msg)?;
        let gap = self.interval.1.mul_f64(scale);
        if gap > MAX_SCALED_INTERVAL {
            bail!(
                "--interval MAX {:?} × time scale {scale} is a gap of {gap:.1?} between messages: at most {MAX_SCALED_INTERVAL:?}",
                self.interval.1
            );
        }
        let Some(name) = self.wan else {
            if self.wan_loss != 0.0 {
                bail!("--wan-loss needs an emulated WAN: add --wan lan (no added delay) or another profile");
            }
            return Ok(None);
        };
        let profile =
            crate::wan::Profile::load(name).map_err(|e| anyhow::anyhow!("--wan {name}: {e}"))?;
        crate::wan::check_loss(self.wan_loss).map_err(anyhow::Error::msg)?;
        let delay = profile.max_one_way().mul_f64(scale);
        if delay > MAX_SCALED_DELAY {
            bail!(
                "--wan {name} × time scale {scale} delays a datagram up to {delay:.1?}: at most {MAX_SCALED_DELAY:?} (use a smaller --time-scale)"
            );
        }
        Ok(Some(profile))
    }

    fn check_counts(&self) -> anyhow::Result<()> {
        if self.msgs == 0 {
            bail!("--msgs must be at least 1");
        }
        let expected = u64::from(self.peers) * u64::from(self.msgs);
        if expected > 50_000_000 {
            bail!(
                "{} peers × {} messages is too many to log (limit 50,000,000 deliveries per peer)",
                self.peers,
                self.msgs
            );
        }
        if !(packet::DATA_MIN_LEN..=packet::MAX_DATAGRAM).contains(&self.size) {
            bail!(
                "--size {} is out of range: {}..={} bytes",
                self.size,
                packet::DATA_MIN_LEN,
                packet::MAX_DATAGRAM
            );
        }
        if self.handshake_timeout.is_zero() {
            bail!("--handshake-timeout must be more than 0 (e.g. 10s)");
        }
        Ok(())
    }
}

// The one-line help of each mode lives here, next to the flag, so `peer`, `lab` and `c2 run`
// explain the modes in the same words.
impl clap::ValueEnum for Order {
    fn value_variants<'a>() -> &'a [Self] {
        &Order::ALL
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Order::None => "deliver on arrival: the original experiment, which shows the problem",
            Order::Fifo => "each sender's messages in the order it sent them (per-sender sequence)",
            Order::Causal => "after every message that causally precedes it (vector clocks)",
            Order::Sequencer => "one total order for all, fixed by peer 0 (the sequencer)",
            Order::Lamport => "one total order for all by (Lamport time, sender), no coordinator",
        };
        Some(PossibleValue::new(self.as_str()).help(help))
    }
}

impl clap::ValueEnum for Repair {
    fn value_variants<'a>() -> &'a [Self] {
        &[Repair::Nack, Repair::Off]
    }
    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Repair::Nack => PossibleValue::new("nack").help(
                "a receiver that sees a gap asks the sender (NACK), which retransmits what it kept",
            ),
            Repair::Off => PossibleValue::new("off")
                .alias("none")
                .help("no retransmission: a lost message stays lost (the comparator counts it)"),
        })
    }
}

/// A peer's command line, written in one place for `mpcomm lab` and the C2 agent (two
/// hand-written copies had drifted apart). `None` leaves a flag to the peer's default.
#[derive(Debug, Clone)]
pub struct PeerCommand {
    pub peers: Vec<SocketAddr>,
    pub id: u16,
    pub msgs: u32,
    pub transport: Transport,
    pub order: Order,
    pub repair: Repair,
    pub group: Option<SocketAddr>,
    pub iface: Option<String>,
    pub interval: (Duration, Duration),
    pub size: Option<usize>,
    pub seed: u64,
    pub run_id: u64,
    pub handshake_timeout: Option<Duration>,
    pub drain: Option<Duration>,
    pub log_dir: PathBuf,
    pub comparator: SocketAddr,
    pub time_scale: Option<f64>,
    /// Emulated WAN profile, its extra loss, and one zone per peer (empty: round-robin).
    pub wan: Option<String>,
    pub wan_loss: Option<f64>,
    pub zones: Vec<String>,
    /// The run's key file (the key itself never goes on a command line).
    pub run_key_file: Option<PathBuf>,
    /// `--start-gate`: wait for stdin to close before the handshake.
    pub start_gate: bool,
    /// `--ssm`: source-specific multicast joins.
    pub ssm: bool,
}

impl PeerCommand {
    /// `peer --peers … --id …`: one argument per value, no shell in between.
    pub fn args(&self) -> Vec<OsString> {
        let us = |d: Duration| format!("{}us", d.as_micros());
        let mut a: Vec<OsString> = vec!["peer".into()];
        let mut push = |k: &str, v: OsString| {
            a.push(k.into());
            a.push(v);
        };
        let peers: Vec<String> = self.peers.iter().map(ToString::to_string).collect();
        push("--peers", peers.join(",").into());
        push("--id", self.id.to_string().into());
        push("--msgs", self.msgs.to_string().into());
        push("--transport", self.transport.as_str().into());
        // The repair is always explicit: a log read later need not know the defaults.
        push("--order", self.order.as_str().into());
        push("--repair", self.repair.as_str().into());
        if let Some(g) = self.group {
            push("--group", g.to_string().into());
        }
        if let Some(i) = &self.iface {
            push("--iface", i.into());
        }
        let (lo, hi) = self.interval;
        push("--interval", format!("{}..{}", us(lo), us(hi)).into());
        if let Some(size) = self.size {
            push("--size", size.to_string().into());
        }
        push("--seed", self.seed.to_string().into());
        push("--run-id", format!("{:016x}", self.run_id).into());
        if let Some(d) = self.handshake_timeout {
            push("--handshake-timeout", us(d).into());
        }
        if let Some(d) = self.drain {
            push("--drain", us(d).into());
        }
        push("--log-dir", self.log_dir.clone().into());
        push("--comparator", self.comparator.to_string().into());
        if let Some(t) = self.time_scale {
            push("--time-scale", t.to_string().into());
        }
        if let Some(w) = &self.wan {
            push("--wan", w.into());
            if let Some(l) = self.wan_loss {
                push("--wan-loss", l.to_string().into());
            }
            if !self.zones.is_empty() {
                push("--zones", self.zones.join(",").into());
            }
        }
        if let Some(k) = &self.run_key_file {
            push("--run-key-file", k.clone().into());
        }
        if self.start_gate {
            a.push("--start-gate".into());
        }
        if self.ssm {
            a.push("--ssm".into());
        }
        a
    }
}

/// The group a peer without `--group` uses.
pub fn default_group(ipv6: bool, ssm: bool) -> SocketAddr {
    let text = match (ipv6, ssm) {
        (false, false) => DEFAULT_GROUP,
        (true, false) => DEFAULT_GROUP_V6,
        (false, true) => DEFAULT_SSM_GROUP,
        (true, true) => DEFAULT_SSM_GROUP_V6,
    };
    text.parse().expect("the default groups parse")
}

/// The multicast group, and the interface to use it on. An interface named by address must
/// carry that address; by default it is the one carrying the peer's own listed address.
fn membership(
    group: SocketAddr,
    iface: Option<&str>,
    own_ip: IpAddr,
) -> anyhow::Result<Membership> {
    match group {
        SocketAddr::V4(group) => {
            let iface = match iface {
                Some(text) => match text.parse::<Ipv4Addr>() {
                    Ok(ip) => ip,
                    Err(_) => interface_v4(text)?,
                },
                // 127.x.y.z other than 127.0.0.1 is not an interface address: use lo's.
                None => match own_ip {
                    IpAddr::V4(ip) if ip.is_loopback() => Ipv4Addr::LOCALHOST,
                    IpAddr::V4(ip) => ip,
                    IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                },
            };
            Ok(Membership::V4 { group, iface })
        }
        SocketAddr::V6(group) => {
            let ifindex = match iface {
                Some(text) => match (text.parse::<u32>(), text.parse::<std::net::Ipv6Addr>()) {
                    (Ok(index), _) => index,
                    // An address (as C2 agents pass their advertised one): its interface.
                    (_, Ok(ip)) => {
                        interface_of(IpAddr::V6(ip)).with_context(|| format!("--iface {text}"))?
                    }
                    _ => nix::net::if_::if_nametoindex(text)
                        .with_context(|| format!("--iface {text}: no such interface"))?,
                },
                None => interface_of(own_ip)?,
            };
            Ok(Membership::V6 { group, ifindex })
        }
    }
}

/// The first IPv4 address of the interface called `name`.
fn interface_v4(name: &str) -> anyhow::Result<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .context("cannot list this host's interfaces")?
        .filter(|i| i.interface_name == name)
        .find_map(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())))
        .with_context(|| format!("--iface {name}: no such interface with an IPv4 address"))
}

/// The index of the interface carrying `ip` (loopback addresses: `lo`).
fn interface_of(ip: IpAddr) -> anyhow::Result<u32> {
    let name = if ip.is_loopback() {
        Some("lo".to_owned())
    } else {
        nix::ifaddrs::getifaddrs()
            .context("cannot list this host's interfaces")?
            .find(|i| i.address.is_some_and(|a| sockaddr_ip(&a) == Some(ip)))
            .map(|i| i.interface_name)
    };
    let name = name.with_context(|| format!("no interface carries {ip}: pass --iface NAME"))?;
    nix::net::if_::if_nametoindex(name.as_str()).with_context(|| format!("no interface {name}"))
}

fn sockaddr_ip(a: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    a.as_sockaddr_in()
        .map(|s| IpAddr::V4(s.ip()))
        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
}

/// The original's "find out who am I": the one listed address that is on this host.
fn who_am_i(peers: &[SocketAddr]) -> anyhow::Result<u16> {
    let local: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .context("cannot list this host's addresses: pass --id")?
        .filter_map(|i| i.address.as_ref().and_then(sockaddr_ip))
        .collect();
    let mine: Vec<usize> = (0..peers.len())
        .filter(|&i| local.contains(&peers[i].ip()) || peers[i].ip().is_loopback())
        .collect();
    match mine.as_slice() {
        [one] => Ok(*one as u16),
        [] => bail!("none of the --peers addresses is on this host: pass --id, or list this host's address"),
        many => bail!(
            "{} of the --peers addresses are on this host ({}): pass --id to say which one is this peer",
            many.len(),
            many.iter().map(|&i| peers[i].to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// `mpcomm log …`
#[derive(clap::Subcommand, Debug)]
pub enum LogCommand {
    /// Print a delivery log: a table, or CSV with the header
    /// `receiver,position,sender,seq,send_ns,recv_ns,deliver_ns,arrive_ns,arrival,retransmitted`.
    Dump {
        /// The log file (mpcomm-RUN-pID.mplog).
        file: PathBuf,
        /// CSV instead of the table.
        #[arg(long)]
        csv: bool,
    },
    /// Write delivery logs in another tool's format. `--shiviz FILE`: a file ShiViz
    /// (https://bestchai.bitbucket.io/shiviz/) loads as is: one execution per run, hosts
    /// peer0, peer1, …, an event for every send and every first delivery, with vector clocks
    /// rebuilt from the logs (GoVector's format: a `HOST {"host":n,…}` line, then an event
    /// line `send pS#Q ns=…` or `deliver pS#Q ns=… arrival=…`). A missing peer's log leaves
    /// its sends out; deliveries of its messages then have no dependency.
    #[command(verbatim_doc_comment)]
    Export {
        /// Write the ShiViz file here (`-`: standard output).
        #[arg(long, value_name = "FILE", required = true)]
        shiviz: PathBuf,
        /// The log files (any runs; each run becomes one execution).
        #[arg(required = true, value_name = "LOG")]
        logs: Vec<PathBuf>,
    },
}

/// Send delivery logs to a comparator (e.g. after a failed upload).
#[derive(clap::Args, Debug)]
pub struct UploadArgs {
    /// Log files to send.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Comparator HOST:PORT.
    #[arg(long, value_parser = parse_comparator)]
    pub comparator: String,
    /// Attempts per file (waits between them: 250 ms doubling to 4 s).
    #[arg(long, default_value_t = super::upload::DEFAULT_ATTEMPTS)]
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn who_am_i_finds_the_one_local_address() {
        // Documentation ranges that are not an address of this host (checked, not assumed:
        // some sandboxes use TEST-NET addresses). Nothing is sent to them.
        let local: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
            .unwrap()
            .filter_map(|i| {
                i.address
                    .and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
            })
            .collect();
        let foreign: Vec<String> = [
            "192.0.2.77",
            "198.51.100.77",
            "203.0.113.77",
            "198.51.100.78",
        ]
        .iter()
        .filter(|ip| !local.contains(&ip.parse().unwrap()))
        .map(|ip| format!("{ip}:5000"))
        .collect();
        assert!(
            foreign.len() >= 2,
            "this host owns the documentation ranges?"
        );
        let (f0, f1) = (foreign[0].as_str(), foreign[1].as_str());
        assert_eq!(who_am_i(&addrs(&[f0, "127.0.0.1:5000", f1])).unwrap(), 1);
        let none = who_am_i(&addrs(&[f0, f1])).unwrap_err();
        assert!(none.to_string().contains("pass --id"), "{none}");
        let many = who_am_i(&addrs(&["127.0.0.1:5000", "127.0.0.1:5001"])).unwrap_err();
        assert!(
            many.to_string()
                .contains("2 of the --peers addresses are on this host"),
            "{many}"
        );
    }

    #[derive(clap::Parser, Debug)]
    struct Peer {
        #[command(flatten)]
        args: PeerArgs,
    }

    fn parse(extra: &[&str]) -> Result<PeerArgs, clap::Error> {
        use clap::Parser;
        let base = [
            "peer",
            "--peers",
            "127.0.0.1:4570,127.0.0.2:4570",
            "--id",
            "1",
        ];
        Peer::try_parse_from(base.iter().chain(extra)).map(|p| p.args)
    }

    #[test]
    fn order_defaults_to_none_and_repair_to_the_mode_default() {
        let cases: [(&[&str], Order, Repair); 6] = [
            (&[], Order::None, Repair::Off),
            (&["--order", "fifo"], Order::Fifo, Repair::Nack),
            (&["--order", "causal"], Order::Causal, Repair::Nack),
            (&["--order", "sequencer"], Order::Sequencer, Repair::Nack),
            (
                &["--order", "lamport", "--repair", "off"],
                Order::Lamport,
                Repair::Off,
            ),
            (&["--repair", "nack"], Order::None, Repair::Nack),
        ];
        for (extra, order, repair) in cases {
            let plan = parse(extra).unwrap().plan().unwrap();
            assert_eq!(
                (plan.config.order, plan.config.repair),
                (order, repair),
                "{extra:?}"
            );
        }
        let plan = parse(&["--transport", "multicast"])
            .unwrap()
            .plan()
            .unwrap();
        assert_eq!(plan.config.transport, Transport::Multicast);
    }

    #[test]
    fn bad_modes_are_clap_errors_that_list_the_choices() {
        for (flag, bad) in [("--order", "total"), ("--repair", "maybe")] {
            let e = parse(&[flag, bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
            let text = e.to_string();
            assert!(
                text.contains(bad) && text.contains("possible values"),
                "{text}"
            );
        }
    }

    /// The builder's output parses back into the same values: lab and the agent cannot write a
    /// command line the peer reads differently.
    #[test]
    fn peer_command_parses_back_to_what_it_says() {
        let mut cmd = PeerCommand {
            peers: addrs(&["127.0.0.1:4570", "[::1]:4571"]),
            id: 1,
            msgs: 7,
            transport: Transport::Multicast,
            order: Order::Causal,
            repair: Repair::Off,
            group: Some("239.1.2.3:4577".parse().unwrap()),
            iface: Some("lo".into()),
            interval: (Duration::from_micros(1500), Duration::from_millis(3)),
            size: Some(64),
            seed: 9,
            run_id: 0x2a,
            handshake_timeout: Some(Duration::from_secs(4)),
            drain: Some(Duration::from_millis(300)),
            log_dir: "/tmp/logs dir".into(),
            comparator: "127.0.0.1:4568".parse().unwrap(),
            time_scale: Some(0.05),
            wan: Some("gcp8".into()),
            wan_loss: Some(0.01),
            zones: vec!["a".into(), "b".into()],
            run_key_file: Some("/run/k ey".into()),
            start_gate: true,
            ssm: true,
        };
        use clap::Parser;
        let a = Peer::try_parse_from(cmd.args()).unwrap().args;
        assert_eq!(a.peers, ["127.0.0.1:4570", "[::1]:4571"]);
        assert_eq!(
            (a.id, a.msgs, a.transport),
            (Some(1), 7, Transport::Multicast)
        );
        assert_eq!((a.order, a.repair), (Order::Causal, Some(Repair::Off)));
        assert_eq!(a.group, cmd.group);
        assert_eq!(a.iface.as_deref(), Some("lo"));
        assert_eq!(a.interval, cmd.interval);
        assert_eq!((a.size, a.seed, a.run_id), (64, Some(9), Some(0x2a)));
        assert_eq!(
            (a.handshake_timeout, a.drain),
            (Duration::from_secs(4), Duration::from_millis(300))
        );
        assert_eq!(a.log_dir, Some(cmd.log_dir.clone()));
        assert_eq!(a.run_key_file, cmd.run_key_file);
        assert!(a.start_gate && a.ssm);
        assert_eq!(a.comparator.as_deref(), Some("127.0.0.1:4568"));
        assert_eq!((a.time_scale, a.wan_loss), (0.05, 0.01));
        assert_eq!(
            (a.wan.as_deref(), a.zones),
            (Some("gcp8"), vec!["a".into(), "b".into()])
        );
        // Left out, a flag keeps the peer's default.
        (cmd.group, cmd.iface, cmd.size, cmd.wan) = (None, None, None, None);
        (cmd.handshake_timeout, cmd.drain, cmd.time_scale) = (None, None, None);
        let a = Peer::try_parse_from(cmd.args()).unwrap().args;
        assert_eq!(a.group, None);
        assert_eq!((a.size, a.time_scale), (packet::DATA_MIN_LEN, 1.0));
        assert!(a.wan.is_none() && a.zones.is_empty() && a.iface.is_none());
    }

    #[test]
    fn comparator_addresses_need_a_port() {
        assert!(parse_comparator("127.0.0.1:4568").is_ok());
        assert!(parse_comparator("cmp.example:4568").is_ok());
        assert!(parse_comparator("[::1]:4568").is_ok());
        assert!(parse_comparator("127.0.0.1")
            .unwrap_err()
            .contains("no port"));
        assert!(parse_comparator("::1").is_err());
        assert!(parse_comparator(":4568").is_err());
        assert!(parse_comparator("h:0").is_err());
        assert!(parse_comparator("h:http").is_err());
    }

    #[test]
    fn run_ids_parse_in_decimal_and_hex_and_zero_is_refused() {
        assert_eq!(parse_run_id("42"), Ok(42));
        assert_eq!(parse_run_id("0x2a"), Ok(42));
        assert!(parse_run_id("0").is_err());
        assert!(parse_run_id("x").is_err());
    }
}
