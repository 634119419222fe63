//! The control CLI (`mpcomm c2 run|status|exit`): a short blocking conversation with the
//! controller over the same authenticated frames the agents use.

use anyhow::{bail, Context};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::auth::{fresh32, AuthError, Handshake, Session};
use super::proto::{Msg, Role, RunRequest, HELLO_LEN, MAX_FRAME};
use crate::compare::Report;
use crate::lab::{table, OrderChoice, TransportChoice};
use crate::wire::frame::{read_frame, write_frame, Kind};
use crate::wire::{Repair, Transport};

/// Whether connecting failed because nothing listens there (yet).
fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// The controller sends a heartbeat every second; this much silence means it is gone.
const SILENCE: Duration = Duration::from_secs(10);
const _: () = assert!(
    super::exit::EXIT_GRACE.as_millis() + super::exit::EXIT_WAIT.as_millis() < SILENCE.as_millis()
);
pub const MAX_REPEAT: u32 = 1000;

/// Where the controller is and the key to prove who we are.
#[derive(Debug, Clone)]
pub struct Control {
    /// The controller, HOST:PORT.
    pub controller: String,
    /// Pre-shared key file (`mpcomm c2 keygen`); must not be readable by group or others.
    pub key_file: PathBuf,
}

/// `c2 run` (its flags, in `cli::c2`, map one to one into this).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub ctl: Control,
    /// Number of peers (the first N live agents; at most 256).
    pub peers: u16,
    /// Messages per peer (at most 100000).
    pub msgs: u32,
    /// fanout, multicast, or both (per repetition).
    pub transport: TransportChoice,
    /// Delivery order of every peer, or all (each mode in turn; then one table of the modes).
    pub order: OrderChoice,
    /// Gap repair of every peer (default: off with --order none, nack for the other modes).
    pub repair: Option<Repair>,
    /// Random gap between a peer's messages, MIN..MAX milliseconds (at most 60000).
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes (0: the smallest; at most 8192).
    pub size: u32,
    /// Emulated WAN profile: lan, gcp8 (a name the agents have too, not a path). Agents with a
    /// --zone must all have one of the profile's zones; without zones the peers take the
    /// profile's zones round-robin.
    pub wan: Option<String>,
    /// Extra random loss of the emulated WAN, 0..1 (needs --wan).
    pub wan_loss: f64,
    /// Multiply every interval and emulated delay (0.1 = ten times faster; 0.001..=1000).
    pub time_scale: f64,
    /// Source-specific multicast (`--ssm`).
    pub ssm: bool,
    /// Base seed: peer i of repetition k uses seed + k + i, the same for every transport and
    /// mode of a repetition (default: random, printed).
    pub seed: Option<u64>,
    /// Wait up to this long for the controller to answer and for --peers live, idle agents
    /// (before every run of a series); then the run is asked for all the same and refused
    /// with the count if they are still missing. 0 = do not wait.
    pub wait: Duration,
    /// Runs per configuration (the original study used 10).
    pub repeat: u32,
    /// One JSON report per line on stdout (after several modes, then one `{"summary": [...]}`
    /// line: the table of `mpcomm lab --order all`).
    pub json: bool,
    /// Also append every report as a JSON line to this file (`mpcomm report FILE` aggregates).
    pub results: Option<PathBuf>,
}

/// `c2 status`.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub ctl: Control,
    pub json: bool,
    /// Wait up to this long for the controller to answer, then until the agents have settled:
    /// --live N of them live, or (without --live) the number of live agents unchanged for 1 s.
    /// The list is printed either way; a --live count not reached exits 1. 0 = ask once.
    pub wait: Duration,
    /// With --wait: the number of live agents to wait for (e.g. the agents just started).
    pub live: Option<usize>,
}

/// Between two looks at the agent list while waiting.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// `c2 status --wait` without `--live`: the live count is settled after this long unchanged
/// (longer than the reconnect backoff's first steps, so a starting fleet is seen whole).
const SETTLED_AFTER: Duration = Duration::from_secs(1);

/// An authenticated connection to the controller.
pub struct Client {
    stream: TcpStream,
    session: Session,
    buf: Vec<u8>,
}

impl Client {
    /// [`Client::connect`], retried every 100 ms while nothing listens at the controller's
    /// address (a controller just started), until `within` has passed.
    pub fn connect_within(ctl: &Control, within: Duration) -> anyhow::Result<Client> {
        let deadline = std::time::Instant::now() + within;
        loop {
            match Client::connect(ctl) {
                Err(e) if std::time::Instant::now() < deadline && refused(&e) => {
                    std::thread::sleep(POLL_EVERY)
                }
                r => return r,
            }
        }
    }

    /// The agents as the controller lists them now.
    pub fn agents(&mut self) -> anyhow::Result<Vec<super::proto::AgentInfo>> {
        self.send(&Msg::StatusRequest)?;
        match self.recv()? {
            Msg::Status { agents } => Ok(agents),
            Msg::Refused { text } => bail!("refused: {text}"),
            other => bail!("unexpected reply from the controller: {other:?}"),
        }
    }

    pub fn connect(ctl: &Control) -> anyhow::Result<Client> {
        let key = super::key::load(&ctl.key_file)?;
        let addr = ctl
            .controller
            .to_socket_addrs()
            .with_context(|| {
                format!(
                    "cannot resolve controller {:?} (use HOST:PORT)",
                    ctl.controller
                )
            })?
            .next()
            .with_context(|| format!("controller {:?} resolves to no address", ctl.controller))?;
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
            format!("cannot connect to the controller at {addr}: is `mpcomm c2 serve` running there?")
        })?;
        stream.set_read_timeout(Some(SILENCE))?;
        stream.set_nodelay(true)?;
        let mut hs = Handshake::client(key, Role::Control, fresh32());
        let mut buf = Vec::new();
        // What a closed connection means depends on how far the handshake got.
        let explain = |e: std::io::Error, heard_hello: bool| {
            let closed = matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            );
            if closed && !heard_hello {
                // The controller answers every Hello before it checks anything: closing
                // before that is no key problem but a full table of connections still
                // authenticating (ours was evicted or refused).
                anyhow::anyhow!("the controller at {addr} closed the connection before answering our hello: too many connections are authenticating there (from this address or in all), or it is not an mpcomm controller; retry in a moment")
            } else if closed {
                anyhow::anyhow!("the controller refused us during authentication: wrong key? (use the same key file as the controller)")
            } else if e.kind() == std::io::ErrorKind::InvalidData && !heard_hello {
                // Something answered, but not with a C2 hello: most often the comparator's
                // port (it replies with a refusal frame of its own).
                anyhow::anyhow!("{addr} did not answer as an mpcomm controller ({e}): is it the comparator's port (4568 by default)? The controller listens where `mpcomm c2 serve --listen` says (4569 by default)")
            } else {
                anyhow::anyhow!("authentication with {addr}: {e}")
            }
        };
        for _ in 0..4 {
            while let Some(kind) = hs.poll_transmit(&mut buf) {
                write_frame(&mut stream, kind, &buf)
                    .map_err(|e| explain(e, hs.peer_role().is_some()))?;
            }
            if let Some(session) = hs.take_session() {
                return Ok(Client {
                    stream,
                    session,
                    buf,
                });
            }
            let (kind, payload) = read_frame(&mut stream, HELLO_LEN as u32)
                .map_err(|e| explain(e, hs.peer_role().is_some()))?;
            hs.handle_frame(kind, &payload)
                .map_err(|e: AuthError| anyhow::anyhow!("authentication with {addr}: {e}"))?;
        }
        bail!("authentication with {addr} did not finish")
    }

    pub fn send(&mut self, m: &Msg) -> anyhow::Result<()> {
        let mut body = Vec::new();
        m.emit(&mut body);
        self.session.seal(&body, &mut self.buf);
        write_frame(&mut self.stream, Kind::C2Message, &self.buf)
            .context("sending to the controller")
    }

    /// The next message that is not a heartbeat (heartbeats are answered).
    pub fn recv(&mut self) -> anyhow::Result<Msg> {
        loop {
            let (kind, payload) =
                read_frame(&mut self.stream, MAX_FRAME).map_err(|e| match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                        anyhow::anyhow!("the controller has been silent for {SILENCE:?}")
                    }
                    std::io::ErrorKind::UnexpectedEof => {
                        anyhow::anyhow!("the controller closed the connection")
                    }
                    _ => anyhow::anyhow!("reading from the controller: {e}"),
                })?;
            if kind != Kind::C2Message {
                bail!("unexpected frame {kind:?} from the controller");
            }
            let body = self.session.open(&payload)?;
            let m = Msg::parse(body)
                .map_err(|e| anyhow::anyhow!("undecodable message from the controller: {e}"))?;
            if m == Msg::Heartbeat {
                // A failed answer is not the end: what the controller sent before closing may
                // still be there to read, and the next read reports a closed connection.
                let _ = self.send(&Msg::Heartbeat);
                continue;
            }
            return Ok(m);
        }
    }
}

/// A `c2 run` refused before anything is sent: its values are wrong (each names its flag).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("--repeat must be 1..={MAX_REPEAT}")]
    Repeat,
    /// The checks the controller and the agents run too.
    #[error("--{0}")]
    Shape(super::proto::BoundsError),
    #[error(transparent)]
    Emulation(super::proto::BoundsError),
    #[error(transparent)]
    Profile(#[from] super::control::refusal::ProfileError),
    #[error(transparent)]
    Values(#[from] crate::peer::args::RunValueError),
}

impl RunConfig {
    /// The request of every run of the series, but for its transport, order and seed.
    fn base_request(&self, seed: u64) -> RunRequest {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        RunRequest {
            peers: self.peers,
            msgs: self.msgs,
            transport: Transport::Fanout,
            order: crate::wire::Order::None,
            repair: self.repair,
            interval_ms: (ms(self.interval.0), ms(self.interval.1)),
            size: self.size,
            wan: self.wan.clone().unwrap_or_default(),
            time_scale: self.time_scale,
            wan_loss: self.wan_loss,
            seed: Some(seed),
            ssm: self.ssm,
        }
    }

    /// Refuse locally, before connecting, what the controller or an agent would refuse.
    pub fn check(&self) -> Result<(), RequestError> {
        if self.repeat == 0 || self.repeat > MAX_REPEAT {
            return Err(RequestError::Repeat);
        }
        check_request(&self.base_request(0))
    }
}

pub fn run_series(args: RunConfig) -> anyhow::Result<ExitCode> {
    // Check locally first for a fast, clear error; the controller and every agent check again.
    args.check()?;
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    let base = args.base_request(seed);
    let transports = args.transport.list();
    let mut results = match &args.results {
        Some(p) => Some(crate::compare::open_results(p)?),
        None => None,
    };
    let mut client = Client::connect_within(&args.ctl, args.wait)?;
    let announce = |total: usize| {
        say!(
            "mpcomm c2 run: {total} run(s), seed {seed}{}",
            if args.time_scale == 1.0 {
                String::new()
            } else {
                format!(", time scale {}", args.time_scale)
            }
        )
    };
    // Per repetition: every mode, each on every transport (as `mpcomm lab` plans them).
    let combos: Vec<_> = args
        .order
        .list()
        .into_iter()
        .flat_map(|o| transports.iter().map(move |&t| (o, t)))
        .collect();
    let modes = args.order == OrderChoice::All;
    let total = args.repeat as usize * combos.len();
    announce(total);
    let mut reports = Vec::with_capacity(total);
    let mut values = Vec::with_capacity(total);
    let stdout = crate::util::out::stdout();
    for i in 0..total {
        let (order, transport) = combos[i % combos.len()];
        let req = RunRequest {
            transport,
            order,
            seed: Some(seed.wrapping_add((i / combos.len()) as u64)),
            ..base.clone()
        };
        let repair = req.repair.unwrap_or(order.default_repair());
        wait_for_idle(&mut client, usize::from(req.peers), args.wait)?;
        client.send(&Msg::RunRequest(req))?;
        let report = loop {
            match client.recv()? {
                Msg::Progress { text } => say!("[{}/{total}] {text}", i + 1),
                Msg::RunReport { json, .. } => {
                    break Report::from_json_line(&json)
                        .context("the controller sent a report that does not parse")?
                }
                Msg::Refused { text } => {
                    bail!(
                        "run {}/{total} ({transport}, {order}) refused: {text}",
                        i + 1
                    )
                }
                other => bail!("unexpected reply from the controller: {other:?}"),
            }
        };
        say!(
            "[{}/{total}] run {:016x} ({transport} {order}+{repair}): {} out-of-order rounds, {} lost",
            i + 1,
            report.run_id,
            report.out_of_order_rounds,
            report.lost
        );
        let mut out = stdout.lock();
        if args.json {
            writeln!(out, "{}", report.to_json_line())?;
        } else if total == 1 {
            report.write_human(&mut out)?;
        }
        out.flush()?;
        if let Some(f) = results.as_mut() {
            crate::compare::append_result(f, &report).context("appending to --results")?;
        }
        let v = serde_json::to_value(&report)?;
        values.push(table::with_asked(v, order, repair, transport));
        reports.push(report);
    }
    if modes {
        let rows = table::rows(&values);
        let mut out = stdout.lock();
        if args.json {
            writeln!(out, "{}", table::summary_json(&rows))?;
        } else {
            table::write_human(&rows, &mut out)?;
        }
    } else if !args.json && total > 1 {
        crate::compare::aggregate::write_table(&reports, &mut stdout.lock())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusConfig) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut client = Client::connect_within(&args.ctl, args.wait)?;
    let deadline = started + args.wait;
    let live = |a: &[super::proto::AgentInfo]| a.iter().filter(|a| a.live).count();
    let mut agents = client.agents()?;
    let (mut count, mut since) = (live(&agents), std::time::Instant::now());
    loop {
        let now = std::time::Instant::now();
        let settled = match args.live {
            Some(n) => count >= n,
            None => now >= since + SETTLED_AFTER,
        };
        if args.wait.is_zero() || settled || now >= deadline {
            break;
        }
        std::thread::sleep(POLL_EVERY.min(deadline.saturating_duration_since(now)));
        agents = client.agents()?;
        if live(&agents) != count {
            (count, since) = (live(&agents), std::time::Instant::now());
        }
    }
    if args.json {
        for a in &agents {
            let v = serde_json::json!({
                "advertise": a.advertise.to_string(), "zone": a.zone, "live": a.live, "busy": a.busy, "seen_ms_ago": a.seen_ms_ago,
            });
            out!("{v}");
        }
    } else {
        super::controller::print_status(&agents);
    }
    if let Some(n) = args.live.filter(|&n| count < n) {
        bail!(
            "{count} of the {n} live agents asked for after {:?} (--wait {:?})",
            started.elapsed(),
            args.wait
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Wait (at most `within`) until `peers` agents are live and idle. Running out of time is no
/// error here: the run request then says how many are missing, in the controller's words.
pub(super) fn wait_for_idle(
    client: &mut Client,
    peers: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let idle = client
            .agents()?
            .iter()
            .filter(|a| a.live && !a.busy)
            .count();
        let now = std::time::Instant::now();
        if idle >= peers || now >= deadline {
            return Ok(());
        }
        std::thread::sleep(POLL_EVERY.min(deadline - now));
    }
}

/// Everything an agent or its peer would refuse, refused before anything is sent, the flag
/// named (the same checks as the controller's, the agent's and the peer's own).
pub fn check_request(q: &RunRequest) -> Result<(), RequestError> {
    super::proto::check_run_shape(q.peers as usize, q.msgs, q.interval_ms, q.size)
        .map_err(RequestError::Shape)?;
    super::proto::check_emulation(q.time_scale, q.interval_ms.1, &q.wan, q.wan_loss)
        .map_err(RequestError::Emulation)?;
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    crate::peer::args::RunValues {
        peers: q.peers,
        msgs: q.msgs,
        size: if q.size == 0 {
            crate::wire::packet::DATA_MIN_LEN
        } else {
            q.size as usize
        },
        interval: (ms(q.interval_ms.0), ms(q.interval_ms.1)),
        // What the agent's peer runs with: its default.
        handshake_timeout: Duration::from_secs(30),
        time_scale: q.time_scale,
        wan: (!q.wan.is_empty()).then_some(q.wan.as_str()),
        wan_loss: q.wan_loss,
    }
    .check()?;
    if !q.wan.is_empty() {
        super::controller::load_profile(&q.wan)?;
    }
    Ok(())
}

pub fn exit(ctl: Control) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&ctl)?;
    say!("mpcomm c2 exit: stopping the agents (and those still connecting: {:?}), then the controller", super::exit::EXIT_GRACE);
    client.send(&Msg::ExitRequest)?;
    loop {
        match client.recv()? {
            Msg::ExitDone { agents } => {
                out!("controller stopped; {agents} agents stopped");
                return Ok(ExitCode::SUCCESS);
            }
            Msg::Progress { text } => say!("{text}"),
            Msg::Refused { text } => say!("{text}"),
            other => bail!("unexpected reply from the controller: {other:?}"),
        }
    }
}
