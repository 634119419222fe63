//! The checked plan a peer runs, built from its [`PeerSpec`] (the command line, parsed in
//! `cli::peer`), and the checks of a run's values that the lab and C2 share.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::machine::Config;
use super::socket::Membership;
use super::wan_delay::WanPlan;
use crate::wire::{packet, Transport};

pub use super::spec::{
    default_group, PeerSpec, DEFAULT_GROUP, DEFAULT_GROUP_V6, DEFAULT_SSM_GROUP,
    DEFAULT_SSM_GROUP_V6,
};

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

/// `--run-id`: 16 hex digits as mpcomm prints them, 0x-hex, or decimal; never 0.
pub fn parse_run_id(s: &str) -> Result<u64, String> {
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
    pub start_gate: bool,
    /// The parent's socket for `wire::child` messages.
    pub notify: Option<PathBuf>,
    pub json: bool,
}

/// Why a [`PeerSpec`] cannot run. Most are about the arguments ([`PlanError::is_usage`]);
/// the others are about this host (its interfaces, the key file's contents).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot resolve peer address {peer:?} (use IP:PORT): {source}")]
    Resolve {
        peer: String,
        source: std::io::Error,
    },
    #[error("peer address {0:?} has no address")]
    NoAddress(String),
    #[error("--peers lists 1 to 1024 peers")]
    PeerCount,
    #[error("--id {id} is out of range: --peers lists {n} peers (ids 0..{})", n - 1)]
    IdRange { id: u16, n: u16 },
    #[error(transparent)]
    Values(#[from] RunValueError),
    #[error("--peers mixes IPv4 and IPv6 ({other} and {own}): a run uses one family, list only IPv4 or only IPv6 addresses")]
    MixedFamilies { other: SocketAddr, own: IpAddr },
    #[error("--group {group} and the peers ({own}) are of different families: give an IPv4 group for IPv4 peers, an IPv6 one for IPv6 peers")]
    GroupFamily { group: SocketAddr, own: IpAddr },
    #[error("--ssm needs a source-specific group: {0} is not in 232.0.0.0/8 or ff3x::/96 (e.g. --group 232.255.77.77:4577 or [ff35::4000:7777]:4577)")]
    NotSsmGroup(IpAddr),
    #[error("--iface {0}: no such interface")]
    NoSuchIface(String),
    #[error("--iface {0}: no such interface with an IPv4 address")]
    NoSuchIfaceV4(String),
    #[error("no interface carries {0}: pass --iface NAME")]
    NoIfaceFor(IpAddr),
    #[error(
        "none of the --peers addresses is on this host: pass --id, or list this host's address"
    )]
    NotLocal,
    #[error("{} of the --peers addresses are on this host ({}): pass --id to say which one is this peer", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    ManyLocal(Vec<SocketAddr>),
    #[error("cannot list this host's interfaces: {0}")]
    Interfaces(nix::Error),
    #[error("cannot list this host's addresses: pass --id ({0})")]
    Addresses(nix::Error),
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("--run-key-file: {0:#}")]
    RunKey(anyhow::Error),
}

impl PlanError {
    /// About the command line (a usage error, exit 2), not about this host.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            PlanError::Interfaces(_)
                | PlanError::Addresses(_)
                | PlanError::NoInterface(_)
                | PlanError::RunKey(_)
        )
    }
}

impl PeerSpec {
    pub fn plan(&self) -> Result<Plan, PlanError> {
        let peers = self
            .peers
            .iter()
            .map(|p| {
                p.to_socket_addrs()
                    .map_err(|source| PlanError::Resolve {
                        peer: p.clone(),
                        source,
                    })?
                    .next()
                    .ok_or_else(|| PlanError::NoAddress(p.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = u16::try_from(peers.len())
            .ok()
            .filter(|&n| n > 0 && n <= 1024)
            .ok_or(PlanError::PeerCount)?;
        let id = match self.id {
            Some(id) if id < n => id,
            Some(id) => return Err(PlanError::IdRange { id, n }),
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
        if let Some(&other) = peers.iter().find(|p| p.is_ipv6() != own_ip.is_ipv6()) {
            return Err(PlanError::MixedFamilies { other, own: own_ip });
        }
        let group = self
            .group
            .unwrap_or_else(|| default_group(own_ip.is_ipv6(), self.ssm));
        if self.transport == Transport::Multicast && group.is_ipv6() != own_ip.is_ipv6() {
            return Err(PlanError::GroupFamily { group, own: own_ip });
        }
        if self.ssm && self.transport == Transport::Multicast {
            if !super::socket::is_ssm_group(group.ip()) {
                return Err(PlanError::NotSsmGroup(group.ip()));
            }
            if own_ip.is_loopback() && own_ip.is_ipv6() && peers.len() > 1 {
                say!("mpcomm peer: note: --ssm on ::1: every peer sends from ::1, so (S,G) filtering cannot tell them apart here (it still keeps out other sources)");
            }
        }
        let membership = membership(group, self.iface.as_deref(), own_ip)?;
        let seed = self.seed.unwrap_or_else(rand::random);
        let wan = match profile {
            None => None,
            Some(profile) => Some(
                WanPlan::new(
                    profile,
                    usize::from(n),
                    &self.zones,
                    time_scale,
                    self.wan_loss,
                )
                .map_err(|e| PlanError::Values(RunValueError::Zones(format!("{e:#}"))))?,
            ),
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
                crate::c2::key::load(path).map_err(PlanError::RunKey)?,
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
            start_gate: self.start_gate,
            notify: self.notify.clone(),
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

/// A run value [`RunValues::check`] refuses; every one names its flag.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunValueError {
    #[error("--msgs must be at least 1")]
    NoMessages,
    #[error(
        "{peers} peers × {msgs} messages is too many to log (limit 50,000,000 deliveries per peer)"
    )]
    TooMany { peers: u16, msgs: u32 },
    #[error("--size {0} is out of range: {min}..={max} bytes", min = packet::DATA_MIN_LEN, max = packet::MAX_DATAGRAM)]
    Size(usize),
    #[error("--handshake-timeout must be more than 0 (e.g. 10s)")]
    HandshakeTimeout,
    /// The words of `wan::check_time_scale` / `wan::check_loss`.
    #[error("{0}")]
    TimeScale(String),
    #[error("--interval MAX {max:?} × time scale {scale} is a gap of {gap:.1?} between messages: at most {MAX_SCALED_INTERVAL:?}")]
    Gap {
        max: Duration,
        scale: f64,
        gap: Duration,
    },
    #[error("--wan-loss needs an emulated WAN: add --wan lan (no added delay) or another profile")]
    LossWithoutWan,
    #[error("--wan {name}: {why}")]
    Wan { name: String, why: String },
    #[error("{0}")]
    Loss(String),
    #[error("--wan {name} × time scale {scale} delays a datagram up to {delay:.1?}: at most {MAX_SCALED_DELAY:?} (use a smaller --time-scale)")]
    Delay {
        name: String,
        scale: f64,
        delay: Duration,
    },
    /// `--zones` against the profile (the words of `WanPlan::new`).
    #[error("{0}")]
    Zones(String),
}

impl RunValues<'_> {
    /// Refuse what cannot make a sensible run; the emulated WAN's profile when there is one.
    pub fn check(&self) -> Result<Option<crate::wan::Profile>, RunValueError> {
        self.check_counts()?;
        let scale =
            crate::wan::check_time_scale(self.time_scale).map_err(RunValueError::TimeScale)?;
        let gap = self.interval.1.mul_f64(scale);
        if gap > MAX_SCALED_INTERVAL {
            return Err(RunValueError::Gap {
                max: self.interval.1,
                scale,
                gap,
            });
        }
        let Some(name) = self.wan else {
            if self.wan_loss != 0.0 {
                return Err(RunValueError::LossWithoutWan);
            }
            return Ok(None);
        };
        let profile = crate::wan::Profile::load(name).map_err(|e| RunValueError::Wan {
            name: name.to_owned(),
            why: e.to_string(),
        })?;
        crate::wan::check_loss(self.wan_loss).map_err(RunValueError::Loss)?;
        let delay = profile.max_one_way().mul_f64(scale);
        if delay > MAX_SCALED_DELAY {
            return Err(RunValueError::Delay {
                name: name.to_owned(),
                scale,
                delay,
            });
        }
        Ok(Some(profile))
    }

    fn check_counts(&self) -> Result<(), RunValueError> {
        if self.msgs == 0 {
            return Err(RunValueError::NoMessages);
        }
        let expected = u64::from(self.peers) * u64::from(self.msgs);
        if expected > 50_000_000 {
            return Err(RunValueError::TooMany {
                peers: self.peers,
                msgs: self.msgs,
            });
        }
        if !(packet::DATA_MIN_LEN..=packet::MAX_DATAGRAM).contains(&self.size) {
            return Err(RunValueError::Size(self.size));
        }
        if self.handshake_timeout.is_zero() {
            return Err(RunValueError::HandshakeTimeout);
        }
        Ok(())
    }
}

/// The multicast group, and the interface to use it on. An interface named by address must
/// carry that address; by default it is the one carrying the peer's own listed address.
fn membership(
    group: SocketAddr,
    iface: Option<&str>,
    own_ip: IpAddr,
) -> Result<Membership, PlanError> {
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
                    (_, Ok(ip)) => interface_of(IpAddr::V6(ip))?,
                    _ => nix::net::if_::if_nametoindex(text)
                        .map_err(|_| PlanError::NoSuchIface(text.to_owned()))?,
                },
                None => interface_of(own_ip)?,
            };
            Ok(Membership::V6 { group, ifindex })
        }
    }
}

/// The first IPv4 address of the interface called `name`.
fn interface_v4(name: &str) -> Result<Ipv4Addr, PlanError> {
    nix::ifaddrs::getifaddrs()
        .map_err(PlanError::Interfaces)?
        .filter(|i| i.interface_name == name)
        .find_map(|i| i.address.and_then(|a| a.as_sockaddr_in().map(|s| s.ip())))
        .ok_or_else(|| PlanError::NoSuchIfaceV4(name.to_owned()))
}

/// The index of the interface carrying `ip` (loopback addresses: `lo`).
fn interface_of(ip: IpAddr) -> Result<u32, PlanError> {
    let name = if ip.is_loopback() {
        Some("lo".to_owned())
    } else {
        nix::ifaddrs::getifaddrs()
            .map_err(PlanError::Interfaces)?
            .find(|i| i.address.is_some_and(|a| sockaddr_ip(&a) == Some(ip)))
            .map(|i| i.interface_name)
    };
    let name = name.ok_or(PlanError::NoIfaceFor(ip))?;
    nix::net::if_::if_nametoindex(name.as_str()).map_err(|_| PlanError::NoInterface(name))
}

fn sockaddr_ip(a: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    a.as_sockaddr_in()
        .map(|s| IpAddr::V4(s.ip()))
        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
}

/// The original's "find out who am I": the one listed address that is on this host.
fn who_am_i(peers: &[SocketAddr]) -> Result<u16, PlanError> {
    let local: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(PlanError::Addresses)?
        .filter_map(|i| i.address.as_ref().and_then(sockaddr_ip))
        .collect();
    let mine: Vec<usize> = (0..peers.len())
        .filter(|&i| local.contains(&peers[i].ip()) || peers[i].ip().is_loopback())
        .collect();
    match mine.as_slice() {
        [one] => Ok(*one as u16),
        [] => Err(PlanError::NotLocal),
        many => Err(PlanError::ManyLocal(
            many.iter().map(|&i| peers[i]).collect(),
        )),
    }
}

#[cfg(test)]
mod tests;
