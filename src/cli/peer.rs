//! `mpcomm peer`, `mpcomm log`, `mpcomm upload`: their flags, mapped into
//! [`PeerSpec`](crate::peer::PeerSpec) and plain arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::modes::{OrderArg, RepairArg};
use crate::peer::args::{parse_comparator, parse_run_id};
use crate::peer::spec::{self, PeerSpec};
use crate::util::duration;
use crate::wire::{packet, Transport};

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
    #[arg(long, default_value_t = spec::DEFAULT_MSGS)]
    pub msgs: u32,
    /// fanout: one unicast datagram per peer; multicast: one datagram to --group.
    #[arg(long, default_value = "fanout")]
    pub transport: Transport,
    /// Delivery order; every peer of a run must use the same (checked in the handshake).
    #[arg(long, value_enum, default_value = "none")]
    pub order: OrderArg,
    /// Gap repair. Default: off with --order none (the original experiment), nack otherwise.
    ///
    /// An ordering mode holds back every message behind a missing one, so without repair one
    /// lost datagram stalls the rest of a sender's messages (or, in a total order, everyone's).
    #[arg(long, value_enum)]
    pub repair: Option<RepairArg>,
    /// Multicast group and port (with --transport multicast): IPv4 (239.x.y.z:PORT) or IPv6
    /// ([ff12::7777]:PORT). Default: 239.255.77.77:4577, [ff15::7777]:4577 for IPv6 peers;
    /// with --ssm 232.255.77.77:4577 or [ff35::4000:7777]:4577.
    #[arg(long)]
    pub group: Option<std::net::SocketAddr>,
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
    #[arg(long, default_value_t = spec::DEFAULT_TTL)]
    pub ttl: u32,
    /// Gap between messages, uniform in MIN..MAX (ms unless a unit is given); 0 = back to back.
    #[arg(long, default_value = spec::DEFAULT_INTERVAL, value_parser = duration::parse_range_ms)]
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
    #[arg(long, default_value = spec::DEFAULT_HANDSHAKE_TIMEOUT, value_parser = duration::parse)]
    pub handshake_timeout: Duration,
    /// After sending, stop once nothing arrived for this long (lost STOPs cannot hang a run).
    #[arg(long, default_value = spec::DEFAULT_DRAIN, value_parser = duration::parse)]
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
    #[arg(long, default_value_t = crate::peer::upload::DEFAULT_ATTEMPTS)]
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
    /// For launchers: a unix datagram socket to send readiness and the outcome to (binary
    /// messages, `wire::child`), e.g. the lab's.
    #[arg(long, hide = true, value_name = "SOCKET")]
    pub notify: Option<PathBuf>,
    /// Print a one-line JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

impl From<PeerArgs> for PeerSpec {
    fn from(a: PeerArgs) -> PeerSpec {
        // No `..`: a field added to PeerArgs does not compile until it is mapped here.
        let PeerArgs {
            peers,
            id,
            msgs,
            transport,
            order,
            repair,
            group,
            ssm,
            iface,
            ttl,
            interval,
            size,
            seed,
            run_id,
            handshake_timeout,
            drain,
            log_dir,
            comparator,
            upload_attempts,
            wan,
            zones,
            wan_loss,
            time_scale,
            run_key_file,
            start_gate,
            notify,
            json,
        } = a;
        PeerSpec {
            peers,
            id,
            msgs,
            transport,
            order: order.0,
            repair: repair.map(|r| r.0),
            group,
            ssm,
            iface,
            ttl,
            interval,
            size,
            seed,
            run_id,
            handshake_timeout,
            drain,
            log_dir,
            comparator,
            upload_attempts,
            wan,
            zones,
            wan_loss,
            time_scale,
            run_key_file,
            start_gate,
            notify,
            json,
        }
    }
}

pub fn run(args: PeerArgs) -> anyhow::Result<ExitCode> {
    let plan = match PeerSpec::from(args).plan() {
        Ok(plan) => plan,
        Err(e) if e.is_usage() => super::usage(&["peer"], e).exit(),
        Err(e) => return Err(e.into()),
    };
    crate::peer::run(plan)
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

pub fn run_log(cmd: LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::Dump { file, csv } => crate::peer::run_log_dump(&file, csv),
        LogCommand::Export { shiviz, logs } => crate::peer::run_log_export(&shiviz, &logs),
    }
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
    #[arg(long, default_value_t = crate::peer::upload::DEFAULT_ATTEMPTS)]
    pub attempts: u32,
}

pub fn run_upload(a: UploadArgs) -> anyhow::Result<ExitCode> {
    crate::peer::run_upload(&a.files, &a.comparator, a.attempts)
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
