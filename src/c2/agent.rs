//! `mpcomm c2 agent`: the resident agent. One mio loop: the outbound link to the controller
//! (connect, handshake, register, heartbeat, reconnect with backoff), and at most one peer run
//! as a child process (argument vector, never a shell) watched through a pidfd and its stderr.

use anyhow::Context;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::{fresh32, Handshake, Key};
use super::conn::{Conn, ConnError};
use super::proto::{Msg, Role, RunSpec, MAX_LABEL};
use super::timing::{Backoff, Liveness, HANDSHAKE_TIMEOUT};
use crate::peer::args::PeerCommand;

const LINK: Token = Token(0);
const WAKER: Token = Token(1);
const CHILD_EXIT: Token = Token(2);
const CHILD_STDERR: Token = Token(3);

/// Outcomes kept for the controller while the link is down (one run at a time, so few).
const MAX_PENDING: usize = 8;
/// A relayed line is cut here (and continued on the next line), so that with its prefix it
/// stays one atomic write on a pipe (`PIPE_BUF`, 4096 bytes).
const MAX_LINE: usize = 4000;
/// Reads of the peer's stderr per call; `stderr_more` brings the loop back when it stops here.
const STDERR_READS: usize = 64;

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

/// This agent's identity, kept in its state directory (`agent-instance`, 16 hex digits): a
/// restarted agent is the same agent to the controller and keeps its place in the peer order.
fn instance_id(dir: &std::path::Path) -> anyhow::Result<u64> {
    let path = dir.join("agent-instance");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(v) = u64::from_str_radix(text.trim(), 16) {
            if v != 0 {
                return Ok(v);
            }
        }
        say!(
            "mpcomm c2 agent: {} is not an instance id; making a new one",
            path.display()
        );
    }
    let v = loop {
        let v = u64::from_be_bytes(fresh32()[..8].try_into().expect("8 bytes"));
        if v != 0 {
            break v;
        }
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{v:016x}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(v)
}

/// The peer's command line for one run: typed values become separate arguments.
pub fn peer_args(
    spec: &RunSpec,
    log_dir: &std::path::Path,
    key_file: &std::path::Path,
) -> Vec<OsString> {
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    let multicast = spec.transport == crate::wire::Transport::Multicast;
    PeerCommand {
        peers: spec.peers.clone(),
        id: spec.peer_id,
        msgs: spec.msgs,
        transport: spec.transport,
        order: spec.order,
        repair: spec.repair,
        group: spec.group,
        // Send and join on the interface of our advertised address: hosts without a default
        // route (network namespaces, private VPCs) have no other multicast route.
        iface: multicast.then(|| spec.peers[usize::from(spec.peer_id)].ip().to_string()),
        interval: (ms(spec.interval_ms.0), ms(spec.interval_ms.1)),
        size: (spec.size > 0).then_some(spec.size as usize),
        seed: spec.seed,
        run_id: spec.run_id,
        handshake_timeout: None,
        drain: None,
        log_dir: log_dir.to_owned(),
        comparator: spec.comparator,
        time_scale: (spec.time_scale != 1.0).then_some(spec.time_scale),
        wan: (!spec.wan.is_empty()).then(|| spec.wan.clone()),
        wan_loss: (spec.wan_loss != 0.0).then_some(spec.wan_loss),
        // Without zones the peer assigns the profile's zones round-robin.
        zones: spec.zones.clone(),
        run_key_file: Some(key_file.to_owned()),
        start_gate: false,
        ssm: spec.ssm,
    }
    .args()
}

/// The run's key, in a file only we can read, for `--run-key-file`.
fn write_run_key(spec: &RunSpec, dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("run-{:016x}.key", spec.run_id));
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let hex: String = spec.run_key.iter().map(|b| format!("{b:02x}")).collect();
    f.write_all(format!("{hex}\n").as_bytes())?;
    Ok(path)
}

enum Link {
    Down {
        retry_at: Instant,
    },
    Connecting {
        conn: Conn<TcpStream>,
        since: Instant,
        tcp_up: bool,
    },
    Up {
        conn: Conn<TcpStream>,
        live: Liveness,
    },
}

struct Running {
    run_id: u64,
    peer_id: u16,
    child: Child,
    pidfd: Option<OwnedFd>,
    stderr: Option<ChildStderr>,
    partial: Vec<u8>,
    last_line: String,
    ready: bool,
    /// The run's key file, removed when the run is over.
    _key: RemoveOnDrop,
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Agent {
    args: AgentArgs,
    key: Key,
    instance: u64,
    poll: Poll,
    link: Link,
    backoff: Backoff,
    running: Option<Running>,
    pending: VecDeque<Msg>,
    notified_ready: bool,
    last_err: String,
    msgs: Vec<Msg>,
    shutdown_ordered: bool,
    /// The stderr read loop stopped at its cap: serve it again without waiting for an event.
    stderr_more: bool,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let key = super::key::load(&args.key_file)?;
    if args.zone.len() > MAX_LABEL
        || !args
            .zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        anyhow::bail!(
            "--zone {:?}: use at most {MAX_LABEL} letters, digits, '-', '_' or '.'",
            args.zone
        );
    }
    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("cannot create log dir {}", args.log_dir.display()))?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let w = waker.clone();
    ctrlc::set_handler(move || {
        let _ = w.wake();
    })
    .context("cannot install the SIGINT/SIGTERM handler")?;
    let instance = instance_id(&args.log_dir)?;
    match prune_logs(&args.log_dir, args.keep_failed) {
        Ok(gone) if !gone.is_empty() => log(format_args!(
            "removed {} old delivery logs beyond --keep-failed {}",
            gone.len(),
            args.keep_failed
        )),
        Ok(_) => {}
        Err(e) => log(format_args!(
            "cannot list {} for old delivery logs: {e}",
            args.log_dir.display()
        )),
    }
    let mut agent = Agent {
        args,
        key,
        instance,
        poll,
        link: Link::Down {
            retry_at: Instant::now(),
        },
        backoff: Backoff::new(instance),
        running: None,
        pending: VecDeque::new(),
        notified_ready: false,
        last_err: String::new(),
        msgs: Vec::new(),
        shutdown_ordered: false,
        stderr_more: false,
    };
    agent.event_loop()
}

/// The agent's own lines, and its peers' relayed ones: one write per whole line.
fn log(msg: impl std::fmt::Display) {
    crate::util::out::err_whole_line(format!("mpcomm c2 agent: {msg}"));
}

/// The delivery logs a peer leaves in the log dir (`mpcomm-RUN-pID.mplog`).
fn is_delivery_log(name: &str) -> bool {
    name.starts_with("mpcomm-") && name.ends_with(".mplog")
}

/// Keep at most `keep` delivery logs in `dir`: remove the oldest (by modification time, then
/// name) beyond that. Returns the files removed.
pub fn prune_logs(dir: &std::path::Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_delivery_log) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            let at = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            logs.push((at, entry.path()));
        }
    }
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    let mut removed = Vec::with_capacity(excess);
    for (_, path) in logs.into_iter().take(excess) {
        if std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    Ok(removed)
}

impl Agent {
    fn event_loop(&mut self) -> anyhow::Result<ExitCode> {
        let mut events = Events::with_capacity(64);
        log(format_args!(
            "starting; controller {}",
            self.args.controller
        ));
        loop {
            let now = Instant::now();
            // A source that stopped at its per-call cap gets no new edge-triggered event for
            // what it still holds: poll without sleeping and serve it again below.
            let link_again = self.link_read_pending();
            let stderr_again = self.stderr_more;
            let timeout = if link_again || stderr_again {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(now))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for ev in events.iter() {
                match ev.token() {
                    LINK => self.on_link_event(),
                    WAKER => {
                        log("signal received: stopping");
                        return Ok(self.shutdown());
                    }
                    CHILD_EXIT => self.reap_child(),
                    CHILD_STDERR => self.read_child_stderr(),
                    t => log(format_args!("event for unknown token {t:?} ignored")),
                }
            }
            if link_again && self.link_read_pending() {
                self.on_link_event();
            }
            if stderr_again && self.stderr_more {
                self.read_child_stderr();
            }
            if self.take_shutdown_order() {
                log("shutdown ordered by the controller");
                return Ok(self.shutdown());
            }
            self.on_timers(Instant::now());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let link = match &self.link {
            Link::Down { retry_at } => *retry_at,
            Link::Connecting { since, .. } => *since + HANDSHAKE_TIMEOUT,
            Link::Up { live, .. } => live.next_deadline(),
        };
        // Without a pidfd (old kernels) the child is polled.
        let child = self
            .running
            .as_ref()
            .filter(|r| r.pidfd.is_none())
            .map(|_| Instant::now() + Duration::from_millis(200));
        Some(child.map_or(link, |c| c.min(link)))
    }

    fn link_read_pending(&self) -> bool {
        match &self.link {
            Link::Connecting { conn, .. } | Link::Up { conn, .. } => conn.read_pending(),
            Link::Down { .. } => false,
        }
    }

    /// The run our peer is running now, as Register and RunFinished tell the controller.
    fn running_id(&self) -> Option<u64> {
        self.running.as_ref().map(|r| r.run_id)
    }

    /// Outcomes say what the agent runs at the moment they are sent, not when they were made
    /// (one kept while the link was down may be older than the current state).
    fn stamp(&self, mut m: Msg) -> Msg {
        if let Msg::RunFinished { running, .. } = &mut m {
            *running = self.running_id();
        }
        m
    }

    fn fail_link(&mut self, why: impl std::fmt::Display) {
        if let Link::Connecting { conn, .. } | Link::Up { conn, .. } = &mut self.link {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        let why = why.to_string();
        if why != self.last_err {
            log(format_args!(
                "link to controller {}: {why}; reconnecting with backoff",
                self.args.controller
            ));
            self.last_err = why;
        }
        self.link = Link::Down {
            retry_at: Instant::now() + self.backoff.next_delay(),
        };
    }

    fn connect(&mut self, now: Instant) {
        let addr = match self.args.controller.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) => return self.fail_link("controller name resolves to no address"),
            Err(e) => return self.fail_link(format_args!("cannot resolve controller: {e}")),
        };
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return self.fail_link(format_args!("connect: {e}")),
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            LINK,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.fail_link(format_args!("register socket: {e}"));
        }
        let hs = Handshake::client(self.key, Role::Agent, fresh32());
        self.link = Link::Connecting {
            conn: Conn::new(stream, hs),
            since: now,
            tcp_up: false,
        };
    }

    fn on_link_event(&mut self) {
        let now = Instant::now();
        let result: Result<bool, ConnError> = match &mut self.link {
            Link::Down { .. } => return,
            Link::Connecting { conn, tcp_up, .. } => {
                if !*tcp_up {
                    if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
                        return self.fail_link(format_args!("connect: {e}"));
                    }
                    match conn.stream.peer_addr() {
                        Ok(_) => *tcp_up = true,
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                        Err(e) => return self.fail_link(format_args!("connect: {e}")),
                    }
                }
                conn.flush().and_then(|_| conn.on_readable(&mut self.msgs))
            }
            Link::Up { conn, .. } => conn.flush().and_then(|_| conn.on_readable(&mut self.msgs)),
        };
        // Whether the controller's Hello came (before a close, that means: wrong key).
        let heard_hello =
            matches!(&self.link, Link::Connecting { conn, .. } if conn.peer_role().is_some());
        if result.is_err() {
            // Orders that arrived before the failure were authenticated: keep them (a RUN's
            // outcome waits for the next registration); the buffer must not outlive the link.
            self.handle_msgs(now);
        }
        match result {
            Err(ConnError::Auth(e)) => self.fail_link(format_args!("authentication failed: {e}")),
            Err(e) if e.is_closed() && matches!(self.link, Link::Connecting { .. }) && heard_hello => self.fail_link(
                "controller closed the connection during authentication: is the key file the same on both sides?",
            ),
            Err(e) if e.is_closed() && matches!(self.link, Link::Connecting { .. }) => self.fail_link(
                "controller closed the connection before its hello: too many connections are authenticating there (or it is not an mpcomm controller)",
            ),
            Err(e) => self.fail_link(e),
            Ok(established) => {
                if established {
                    self.on_established(now);
                }
                self.handle_msgs(now);
            }
        }
    }

    fn on_established(&mut self, now: Instant) {
        let Link::Connecting { conn, .. } =
            std::mem::replace(&mut self.link, Link::Down { retry_at: now })
        else {
            return;
        };
        let mut conn = conn;
        let advertise = self
            .args
            .advertise
            .or_else(|| conn.stream.local_addr().ok().map(|a| a.ip()));
        let mut r = conn.send(&Msg::Register {
            instance: self.instance,
            advertise,
            zone: self.args.zone.clone(),
            running: self.running_id(),
        });
        let pending: Vec<Msg> = self.pending.drain(..).collect();
        for m in pending {
            let m = self.stamp(m);
            r = r.and_then(|_| conn.send(&m));
        }
        let mut live = Liveness::new(now);
        live.sent(now);
        self.link = Link::Up { conn, live };
        if let Err(e) = r.and_then(|_| self.flush_link()) {
            return self.fail_link(e);
        }
        self.backoff.reset();
        self.last_err.clear();
        log(format_args!(
            "registered with controller {} as {}{}",
            self.args.controller,
            advertise.map_or("?".into(), |a| a.to_string()),
            if self.args.zone.is_empty() {
                String::new()
            } else {
                format!(" in zone {}", self.args.zone)
            }
        ));
        if !self.notified_ready {
            self.notified_ready = true;
            if let Err(e) = super::notify::notify("READY=1") {
                log(format_args!("cannot notify systemd: {e}"));
            }
        }
    }

    fn flush_link(&mut self) -> Result<(), ConnError> {
        if let Link::Up { conn, .. } = &mut self.link {
            conn.flush()?;
        }
        Ok(())
    }

    /// Send now if the link is up, else keep it for the next registration (outcomes only).
    fn send_or_keep(&mut self, m: Msg) {
        let m = self.stamp(m);
        if let Link::Up { conn, live } = &mut self.link {
            live.sent(Instant::now());
            if let Err(e) = conn.send(&m).and_then(|_| conn.flush()) {
                self.pending.push_back(m);
                return self.fail_link(e);
            }
            return;
        }
        if matches!(m, Msg::RunFinished { .. }) {
            if self.pending.len() == MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(m);
        }
    }

    fn handle_msgs(&mut self, now: Instant) {
        let msgs = std::mem::take(&mut self.msgs);
        if !msgs.is_empty() {
            if let Link::Up { live, .. } = &mut self.link {
                live.received(now);
            }
        }
        for m in &msgs {
            match m {
                Msg::Heartbeat => {}
                Msg::Run(spec) => self.start_run(spec),
                Msg::Shutdown => self.shutdown_ordered = true,
                other => log(format_args!(
                    "unexpected message from the controller ignored: {other:?}"
                )),
            }
        }
        self.msgs = msgs;
        self.msgs.clear();
    }

    fn take_shutdown_order(&mut self) -> bool {
        self.shutdown_ordered
    }

    fn on_timers(&mut self, now: Instant) {
        match &mut self.link {
            Link::Down { retry_at } if now >= *retry_at => self.connect(now),
            Link::Connecting { since, .. } if now >= *since + HANDSHAKE_TIMEOUT => self.fail_link(
                format_args!("no authenticated connection within {HANDSHAKE_TIMEOUT:?}"),
            ),
            Link::Up { live, .. } if live.is_dead(now) => {
                self.fail_link("controller silent: heartbeats missed")
            }
            Link::Up { conn, live } if live.heartbeat_due(now) => {
                live.sent(now);
                if let Err(e) = conn.send(&Msg::Heartbeat).and_then(|_| conn.flush()) {
                    self.fail_link(e);
                }
            }
            _ => {}
        }
        if self.running.as_ref().is_some_and(|r| r.pidfd.is_none()) {
            self.reap_child();
        }
    }

    fn start_run(&mut self, spec: &RunSpec) {
        // `running` is filled in when the refusal is sent: the busy run, or none.
        let refuse = |detail: String| Msg::RunFinished {
            run_id: spec.run_id,
            ok: false,
            detail,
            running: None,
        };
        if let Some(r) = &self.running {
            let m = refuse(format!(
                "agent busy with run {:016x}: one run at a time",
                r.run_id
            ));
            return self.send_or_keep(m);
        }
        if let Err(e) = spec.check() {
            return self.send_or_keep(refuse(format!("run refused: {e}")));
        }
        match self.spawn_peer(spec) {
            Ok(r) => {
                log(format_args!(
                    "run {:016x}: started peer {} of {} (pid {})",
                    spec.run_id,
                    spec.peer_id,
                    spec.peers.len(),
                    r.child.id()
                ));
                self.running = Some(r);
            }
            Err(e) => {
                log(format_args!(
                    "run {:016x}: cannot start the peer: {e:#}",
                    spec.run_id
                ));
                self.send_or_keep(refuse(format!("cannot start the peer: {e:#}")));
            }
        }
    }

    fn spawn_peer(&mut self, spec: &RunSpec) -> anyhow::Result<Running> {
        let exe = match &self.args.peer_exe {
            Some(p) => p.clone(),
            None => current_exe()?,
        };
        std::fs::create_dir_all(&self.args.log_dir)
            .with_context(|| format!("cannot create {}", self.args.log_dir.display()))?;
        let key = write_run_key(spec, &self.args.log_dir).context("cannot write the run key")?;
        let mut cmd = Command::new(exe);
        cmd.args(peer_args(spec, &self.args.log_dir, &key))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        // An agent killed with SIGKILL (or stopped by systemd) leaves no peer running.
        crate::util::supervise::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("spawn")?;
        let mut stderr = child.stderr.take();
        if let Some(e) = &stderr {
            set_nonblocking(e.as_raw_fd())?;
        }
        if let Some(e) = &mut stderr {
            self.poll.registry().register(
                &mut SourceFd(&e.as_raw_fd()),
                CHILD_STDERR,
                Interest::READABLE,
            )?;
        }
        let pidfd = pidfd_open(child.id());
        if let Some(fd) = &pidfd {
            self.poll.registry().register(
                &mut SourceFd(&fd.as_raw_fd()),
                CHILD_EXIT,
                Interest::READABLE,
            )?;
        }
        Ok(Running {
            run_id: spec.run_id,
            peer_id: spec.peer_id,
            child,
            pidfd,
            stderr,
            partial: Vec::new(),
            last_line: String::new(),
            ready: false,
            _key: RemoveOnDrop(key),
        })
    }

    /// Forward the peer's stderr line by line; its readiness line becomes RunReady.
    fn read_child_stderr(&mut self) {
        let mut ready_now = None;
        let Some(r) = self.running.as_mut() else {
            self.stderr_more = false;
            return;
        };
        let mut chunk = [0u8; 4096];
        let mut eof = false;
        // Stays true only when the loop ends at its cap with the pipe not yet dry.
        let mut more = true;
        for _ in 0..STDERR_READS {
            let Some(e) = r.stderr.as_mut() else {
                more = false;
                break;
            };
            match e.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    more = false;
                    break;
                }
                Ok(n) => r.partial.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    more = false;
                    break;
                }
            }
            while let Some(pos) = r
                .partial
                .iter()
                .position(|b| *b == b'\n')
                .or((r.partial.len() > MAX_LINE).then_some(MAX_LINE))
            {
                let line: Vec<u8> = r.partial.drain(..=pos.min(r.partial.len() - 1)).collect();
                let mut line = String::from_utf8_lossy(&line).trim_end().to_string();
                // Lossy decoding may grow invalid bytes: cut again, at a char boundary.
                let mut cut = line.len().min(MAX_LINE);
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                log(format_args!("[run {:016x}] {line}", r.run_id));
                if !r.ready && line.contains("mpcomm peer: ready") {
                    r.ready = true;
                    ready_now = Some(r.run_id);
                } else if !line.is_empty() {
                    r.last_line = line.chars().take(512).collect();
                }
            }
        }
        self.stderr_more = more;
        if eof {
            if let Some(mut e) = r.stderr.take() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&e.as_raw_fd()));
                let _ = e.read(&mut []);
            }
        }
        if let Some(run_id) = ready_now {
            self.send_or_keep(Msg::RunReady { run_id });
        }
    }

    fn reap_child(&mut self) {
        let Some(r) = self.running.as_mut() else {
            return;
        };
        let status = match r.child.try_wait() {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                log(format_args!(
                    "run {:016x}: cannot wait for the peer: {e}",
                    r.run_id
                ));
                return;
            }
        };
        self.read_child_stderr();
        let mut r = self.running.take().expect("checked above");
        if let Some(fd) = &r.pidfd {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        if let Some(e) = &r.stderr {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&e.as_raw_fd()));
        }
        r.stderr = None;
        let ok = status.success();
        let detail = if ok {
            String::new()
        } else {
            format!("peer {status}: {}", r.last_line)
        };
        log(format_args!(
            "run {:016x}: peer {}",
            r.run_id,
            if ok { "finished" } else { "failed" }
        ));
        self.stderr_more = false;
        self.tidy_log(&r, status);
        self.send_or_keep(Msg::RunFinished {
            run_id: r.run_id,
            ok,
            detail,
            running: None,
        });
    }

    /// The peer's delivery log stays only when its upload failed (exit code 3, or any ending
    /// that does not say "uploaded"), and then at most --keep-failed of them.
    fn tidy_log(&self, r: &Running, status: std::process::ExitStatus) {
        use crate::peer::exit;
        let path = self
            .args
            .log_dir
            .join(format!("mpcomm-{:016x}-p{}.mplog", r.run_id, r.peer_id));
        let uploaded =
            matches!(status.code(), Some(0)) || status.code() == Some(exit::ORDER_FAILED.into());
        if uploaded {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log(format_args!("cannot remove {}: {e}", path.display())),
            }
            return;
        }
        if !path.exists() {
            return;
        }
        log(format_args!(
            "run {:016x}: delivery log kept (not uploaded): {}",
            r.run_id,
            path.display()
        ));
        match prune_logs(&self.args.log_dir, self.args.keep_failed) {
            Ok(gone) => {
                for g in gone {
                    log(format_args!(
                        "removed {} (more than --keep-failed {} logs)",
                        g.display(),
                        self.args.keep_failed
                    ));
                }
            }
            Err(e) => log(format_args!(
                "cannot prune {}: {e}",
                self.args.log_dir.display()
            )),
        }
    }

    /// Stop cleanly: end a running peer, tell systemd, exit 0 (so `Restart=on-failure` leaves
    /// the unit stopped).
    fn shutdown(&mut self) -> ExitCode {
        let _ = super::notify::notify("STOPPING=1");
        if let Some(mut r) = self.running.take() {
            log(format_args!(
                "run {:016x}: stopping the peer (pid {})",
                r.run_id,
                r.child.id()
            ));
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        if let Link::Up { conn, .. } = &mut self.link {
            let _ = conn.flush();
        }
        log("stopped");
        ExitCode::SUCCESS
    }
}

/// This program's path. After an upgrade replaced the binary, Linux reports the old inode as
/// "PATH (deleted)": new runs then start the new binary at PATH.
fn current_exe() -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe().context("cannot find this program to start the peer")?;
    let s = p.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(live) => PathBuf::from(live),
        None => p,
    })
}

fn set_nonblocking(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own; F_GETFL/F_SETFL only change its status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A pidfd for `pid` (Linux 5.3+): readable when the process exits. `None` on older kernels.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: the syscall returns a new fd we then own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Order, Repair, Transport};

    #[test]
    fn the_instance_id_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("mpcomm-agent-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = instance_id(&dir).unwrap();
        assert_eq!(
            instance_id(&dir).unwrap(),
            first,
            "the same agent after a restart"
        );
        std::fs::write(dir.join("agent-instance"), "not hex\n").unwrap();
        let fresh = instance_id(&dir).unwrap();
        assert_ne!(fresh, 0);
        assert_eq!(instance_id(&dir).unwrap(), fresh);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pruning_keeps_the_newest_delivery_logs_and_nothing_else_is_touched() {
        let dir = std::env::temp_dir().join(format!("mpcomm-agent-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = std::time::SystemTime::now() - Duration::from_secs(100);
        for i in 0..5u64 {
            let p = dir.join(format!("mpcomm-{i:016x}-p0.mplog"));
            std::fs::write(&p, b"x").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(t0 + Duration::from_secs(i)).unwrap();
        }
        std::fs::write(dir.join("agent-instance"), "1\n").unwrap();
        std::fs::write(dir.join("notes.mplog.txt"), "").unwrap();
        let gone = prune_logs(&dir, 3).unwrap();
        let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            gone.iter().map(name).collect::<Vec<_>>(),
            [
                "mpcomm-0000000000000000-p0.mplog",
                "mpcomm-0000000000000001-p0.mplog"
            ],
            "the oldest go first"
        );
        assert!(prune_logs(&dir, 3).unwrap().is_empty());
        assert_eq!(prune_logs(&dir, 0).unwrap().len(), 3);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["agent-instance", "notes.mplog.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn peer_arguments_are_separate_typed_values() {
        let spec = RunSpec {
            run_id: 42,
            peer_id: 1,
            transport: Transport::Multicast,
            order: Order::Sequencer,
            repair: Repair::Off,
            msgs: 50,
            interval_ms: (10, 100),
            size: 0,
            seed: 3,
            group: None,
            comparator: "10.0.0.9:4568".parse().unwrap(),
            peers: vec![
                "10.0.0.1:4567".parse().unwrap(),
                "10.0.0.2:4567".parse().unwrap(),
            ],
            wan: "gcp8".into(),
            zones: vec!["us; rm -rf".into(), "eu".into()],
            time_scale: 0.1,
            wan_loss: 0.02,
            run_key: [1; 32],
            ssm: true,
        };
        let a: Vec<String> = peer_args(
            &spec,
            std::path::Path::new("/var/lib/x"),
            std::path::Path::new("/var/lib/x/run.key"),
        )
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
        let want = [
            "peer",
            "--peers",
            "10.0.0.1:4567,10.0.0.2:4567",
            "--id",
            "1",
            "--msgs",
            "50",
            "--transport",
            "multicast",
            "--order",
            "sequencer",
            "--repair",
            "off",
            "--iface",
            "10.0.0.2",
            "--interval",
            "10000us..100000us",
            "--seed",
            "3",
            "--run-id",
            "000000000000002a",
            "--log-dir",
            "/var/lib/x",
            "--comparator",
            "10.0.0.9:4568",
            "--time-scale",
            "0.1",
            "--wan",
            "gcp8",
            "--wan-loss",
            "0.02",
            "--zones",
            "us; rm -rf,eu",
            "--run-key-file",
            "/var/lib/x/run.key",
            "--ssm",
        ];
        assert_eq!(a, want);
    }
}
