//! A peer's command line as one typed value: [`PeerSpec`]. `mpcomm peer` parses its arguments
//! into one (`cli::peer`), and whoever starts a peer (the lab, the C2 agent) fills one in and
//! turns it into an argument vector with [`PeerSpec::to_args`]. The same struct both ways, so
//! the launchers cannot write a command line the peer reads differently (two hand-written
//! copies had drifted apart); `cli::peer`'s tests parse `to_args` back for every flag.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::wire::{packet, Order, Repair, Transport};

/// The default multicast group and port: administratively scoped (239/8, RFC 2365).
pub const DEFAULT_GROUP: &str = "239.255.77.77:4577";
/// The default group of IPv6 peers: transient, site-local scope (ff15::/16).
pub const DEFAULT_GROUP_V6: &str = "[ff15::7777]:4577";
/// The default groups with --ssm: the source-specific ranges 232/8 and ff3x::/96 (RFC 4607).
pub const DEFAULT_SSM_GROUP: &str = "232.255.77.77:4577";
pub const DEFAULT_SSM_GROUP_V6: &str = "[ff35::4000:7777]:4577";

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
/// `--msgs`, `--ttl`, `--interval`, `--handshake-timeout`, `--drain` when not given: the
/// clap definitions in `cli::peer` take their defaults from here.
pub const DEFAULT_MSGS: u32 = 100;
pub const DEFAULT_TTL: u32 = 1;
pub const DEFAULT_INTERVAL: &str = "10..100";
pub const DEFAULT_HANDSHAKE_TIMEOUT: &str = "30s";
pub const DEFAULT_DRAIN: &str = "2s";

/// Every flag of `mpcomm peer`, typed; `None` and empty lists are flags left out.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSpec {
    /// `--peers`: IP:PORT or HOST:PORT; the position is the peer id.
    pub peers: Vec<String>,
    pub id: Option<u16>,
    pub msgs: u32,
    pub transport: Transport,
    pub order: Order,
    /// `None`: the mode's default ([`Order::default_repair`]).
    pub repair: Option<Repair>,
    /// `None`: [`default_group`] of the peers' family and `ssm`.
    pub group: Option<SocketAddr>,
    /// `--ssm`: join (S,G) for each listed peer instead of the whole group.
    pub ssm: bool,
    pub iface: Option<String>,
    pub ttl: u32,
    pub interval: (Duration, Duration),
    pub size: usize,
    pub seed: Option<u64>,
    pub run_id: Option<u64>,
    pub handshake_timeout: Duration,
    pub drain: Duration,
    pub log_dir: Option<PathBuf>,
    /// HOST:PORT (checked by `args::parse_comparator`).
    pub comparator: Option<String>,
    pub upload_attempts: u32,
    pub wan: Option<String>,
    /// One zone per peer in `peers` order (empty: round-robin over the profile).
    pub zones: Vec<String>,
    pub wan_loss: f64,
    pub time_scale: f64,
    /// The run's key file (the key itself never goes on a command line).
    pub run_key_file: Option<PathBuf>,
    /// Wait for stdin to close before the handshake (a launcher releases its peers together).
    pub start_gate: bool,
    /// A unix datagram socket of the parent's: readiness and outcome go there as
    /// `wire::child` messages (see `peer::report`).
    pub notify: Option<PathBuf>,
    pub json: bool,
}

impl PeerSpec {
    /// The spec of `mpcomm peer --peers …` with nothing else given: every default.
    pub fn new(peers: Vec<String>) -> PeerSpec {
        let (lo, hi) = crate::util::duration::parse_range_ms(DEFAULT_INTERVAL).expect("default");
        let d = |s| crate::util::duration::parse(s).expect("default");
        PeerSpec {
            peers,
            id: None,
            msgs: DEFAULT_MSGS,
            transport: Transport::Fanout,
            order: Order::None,
            repair: None,
            group: None,
            ssm: false,
            iface: None,
            ttl: DEFAULT_TTL,
            interval: (lo, hi),
            size: packet::DATA_MIN_LEN,
            seed: None,
            run_id: None,
            handshake_timeout: d(DEFAULT_HANDSHAKE_TIMEOUT),
            drain: d(DEFAULT_DRAIN),
            log_dir: None,
            comparator: None,
            upload_attempts: super::upload::DEFAULT_ATTEMPTS,
            wan: None,
            zones: Vec::new(),
            wan_loss: 0.0,
            time_scale: 1.0,
            run_key_file: None,
            start_gate: false,
            notify: None,
            json: false,
        }
    }

    /// `peer --peers … --msgs …`: one argument per value, no shell in between. The run's
    /// shape (messages, transport, order, interval) is always written, an option when it is
    /// set, any other flag when it is not the peer's default: the line says what differs.
    pub fn to_args(&self) -> Vec<OsString> {
        let base = PeerSpec::new(Vec::new());
        let mut a: Vec<OsString> = vec!["peer".into()];
        let mut push = |k: &str, v: OsString| {
            a.push(k.into());
            a.push(v);
        };
        push("--peers", self.peers.join(",").into());
        if let Some(id) = self.id {
            push("--id", id.to_string().into());
        }
        push("--msgs", self.msgs.to_string().into());
        push("--transport", self.transport.as_str().into());
        push("--order", self.order.as_str().into());
        if let Some(r) = self.repair {
            push("--repair", r.as_str().into());
        }
        if let Some(g) = self.group {
            push("--group", g.to_string().into());
        }
        if let Some(i) = &self.iface {
            push("--iface", i.into());
        }
        if self.ttl != base.ttl {
            push("--ttl", self.ttl.to_string().into());
        }
        let (lo, hi) = self.interval;
        push("--interval", format!("{}..{}", exact(lo), exact(hi)).into());
        if self.size != base.size {
            push("--size", self.size.to_string().into());
        }
        if let Some(s) = self.seed {
            push("--seed", s.to_string().into());
        }
        if let Some(r) = self.run_id {
            push("--run-id", format!("{r:016x}").into());
        }
        if self.handshake_timeout != base.handshake_timeout {
            push("--handshake-timeout", exact(self.handshake_timeout).into());
        }
        if self.drain != base.drain {
            push("--drain", exact(self.drain).into());
        }
        if let Some(d) = &self.log_dir {
            push("--log-dir", d.into());
        }
        if let Some(c) = &self.comparator {
            push("--comparator", c.into());
        }
        if self.upload_attempts != base.upload_attempts {
            push("--upload-attempts", self.upload_attempts.to_string().into());
        }
        // Rust prints the shortest text that parses back to the same f64.
        if self.time_scale != base.time_scale {
            push("--time-scale", self.time_scale.to_string().into());
        }
        if let Some(w) = &self.wan {
            push("--wan", w.into());
        }
        if self.wan_loss != base.wan_loss {
            push("--wan-loss", self.wan_loss.to_string().into());
        }
        if !self.zones.is_empty() {
            push("--zones", self.zones.join(",").into());
        }
        if let Some(k) = &self.run_key_file {
            push("--run-key-file", k.into());
        }
        if let Some(n) = &self.notify {
            push("--notify", n.into());
        }
        for (on, flag) in [
            (self.ssm, "--ssm"),
            (self.start_gate, "--start-gate"),
            (self.json, "--json"),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }
}

/// A duration as text the peer parses back to the same value (µs when exact, else ns).
fn exact(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns % 1000 == 0 {
        format!("{}us", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}
