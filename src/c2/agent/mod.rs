//! `mpcomm c2 agent`: the resident agent. One mio loop: the outbound link to the controller
//! ([`link`]: connect, handshake, register, heartbeat, reconnect with backoff), and at most one
//! peer run as a child process ([`child`]: argument vector, never a shell, watched through a
//! pidfd, its stderr and what it tells the agent's socket). A RUN is admitted or refused by [`admit`], a plain function;
//! [`logs`] keeps the files on disk. The agent runs from an [`AgentConfig`] (`cli::c2` builds
//! one from the flags).

mod admit;
mod check;
mod child;
mod link;
mod logs;
#[cfg(test)]
mod tests;

use anyhow::Context;
use mio::{Events, Poll, Token, Waker};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::Key;
use super::proto::{is_label, Msg, RunSpec, MAX_LABEL};
use super::timing::{Backoff, HANDSHAKE_TIMEOUT};
use child::Running;
use link::Link;

pub use admit::{admit, Refusal};
pub use child::peer_args;
pub use logs::prune_logs;

const LINK: Token = Token(0);
const WAKER: Token = Token(1);
const CHILD_EXIT: Token = Token(2);
const CHILD_STDERR: Token = Token(3);
const CHILD_NOTIFY: Token = Token(4);
const CHECK_EXIT: Token = Token(5);

/// Outcomes kept for the controller while the link is down (one run at a time, so few).
const MAX_PENDING: usize = 8;

/// What the agent runs from: plain values, no parser attached (tests and other front ends
/// build one directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub controller: String,
    pub key_file: PathBuf,
    pub advertise: Option<IpAddr>,
    pub zone: String,
    pub log_dir: PathBuf,
    pub keep_failed: usize,
    pub peer_exe: Option<PathBuf>,
}

/// A configuration the agent cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--zone {0:?}: use at most {MAX_LABEL} letters, digits, '-', '_' or '.'")]
    Zone(String),
}

impl AgentConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.zone.len() > MAX_LABEL || !is_label(&self.zone) {
            return Err(ConfigError::Zone(self.zone.clone()));
        }
        Ok(())
    }
}

struct Agent {
    cfg: AgentConfig,
    key: Key,
    instance: u64,
    poll: Poll,
    link: Link,
    backoff: Backoff,
    running: Option<Running>,
    /// A `c2 check` preflight child, apart from runs (the controller sends neither while the
    /// other is going on; the agent refuses a second of either).
    checking: Option<check::Checking>,
    pending: VecDeque<Msg>,
    notified_ready: bool,
    last_err: String,
    msgs: Vec<Msg>,
    shutdown_ordered: bool,
    /// The stderr read loop stopped at its cap: serve it again without waiting for an event.
    stderr_more: bool,
}

pub fn run_config(cfg: AgentConfig) -> anyhow::Result<ExitCode> {
    let key = super::key::load(&cfg.key_file)?;
    cfg.check()?;
    std::fs::create_dir_all(&cfg.log_dir)
        .with_context(|| format!("cannot create log dir {}", cfg.log_dir.display()))?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let w = waker.clone();
    ctrlc::set_handler(move || {
        let _ = w.wake();
    })
    .context("cannot install the SIGINT/SIGTERM handler")?;
    let instance = logs::instance_id(&cfg.log_dir)?;
    match prune_logs(&cfg.log_dir, cfg.keep_failed) {
        Ok(gone) if !gone.is_empty() => log(format_args!(
            "removed {} old delivery logs beyond --keep-failed {}",
            gone.len(),
            cfg.keep_failed
        )),
        Ok(_) => {}
        Err(e) => log(format_args!(
            "cannot list {} for old delivery logs: {e}",
            cfg.log_dir.display()
        )),
    }
    let mut agent = Agent {
        cfg,
        key,
        instance,
        poll,
        link: Link::Down {
            retry_at: Instant::now(),
        },
        backoff: Backoff::new(instance),
        running: None,
        checking: None,
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

impl Agent {
    fn event_loop(&mut self) -> anyhow::Result<ExitCode> {
        let mut events = Events::with_capacity(64);
        log(format_args!("starting; controller {}", self.cfg.controller));
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
                    CHILD_NOTIFY => self.read_child_notify(),
                    CHECK_EXIT => self.reap_check(Instant::now()),
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
            let now = Instant::now();
            self.on_timers(now);
            // Polled without a pidfd, and killed at its deadline either way.
            if self
                .checking
                .as_ref()
                .is_some_and(|c| c.pidfd.is_none() || now >= c.deadline)
            {
                self.reap_check(now);
            }
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
        let check = self.checking.as_ref().map(|c| match c.pidfd {
            Some(_) => c.deadline,
            None => c.deadline.min(Instant::now() + Duration::from_millis(200)),
        });
        let first = [child, check]
            .into_iter()
            .flatten()
            .fold(link, Instant::min);
        Some(first)
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
                Msg::Check(spec) => self.start_check(spec),
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

    /// The RUN handler: the bounds are checked here, not in the decoder, so that an
    /// out-of-bounds RUN gets a typed refusal and the link stays up.
    fn start_run(&mut self, spec: &RunSpec) {
        let outcome = admit(spec, self.running_id()).and_then(|()| {
            // A controller that restarted during a check thinks this agent idle.
            if let Some(id) = self.checking.as_ref().map(check::Checking::id) {
                return Err(Refusal::CannotStart(format!(
                    "busy with check {id:016x} (its sockets hold the peer port)"
                )));
            }
            self.spawn_peer(spec)
                .map_err(|e| Refusal::CannotStart(format!("{e:#}")))
        });
        match outcome {
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
            Err(refusal) => {
                log(format_args!("run {:016x}: {refusal}", spec.run_id));
                // `running` is filled in when the refusal is sent: the busy run, or none.
                self.send_or_keep(refusal.into_msg(spec.run_id));
            }
        }
    }

    /// Stop cleanly: end a running peer, tell systemd, exit 0 (so `Restart=on-failure` leaves
    /// the unit stopped).
    fn shutdown(&mut self) -> ExitCode {
        let _ = crate::c2::notify::notify("STOPPING=1");
        if let Some(mut r) = self.running.take() {
            log(format_args!(
                "run {:016x}: stopping the peer (pid {})",
                r.run_id,
                r.child.id()
            ));
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        // Its Drop kills and reaps the check child and removes its files.
        self.checking = None;
        if let Link::Up { conn, .. } = &mut self.link {
            let _ = conn.flush();
        }
        log("stopped");
        ExitCode::SUCCESS
    }
}
