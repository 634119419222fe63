//! The agent's preflight child: `mpcomm check --json …` for one CHECK, as a child process like
//! a peer (its own sockets and exit code; a hung check is killed, never the agent's loop).
//! Its stdout and stderr go to files in the log dir, read once it exited: no pipe to keep
//! drained, and a report of any size. Watched through a pidfd (or polled on old kernels) and
//! killed at the spec's bound; the outcome goes back as CHECK_DONE.

use mio::unix::SourceFd;
use mio::Interest;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::child::{current_exe, pidfd_open};
use super::{log, Agent, CHECK_EXIT};
use crate::c2::proto::{CheckSpec, Msg};
use crate::check::{CheckCommand, CheckReport};
use crate::wire::Transport;

pub(super) struct Checking {
    check_id: u64,
    child: Child,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) deadline: Instant,
    bound: Duration,
    out: PathBuf,
    err: PathBuf,
}

impl Checking {
    pub(super) fn id(&self) -> u64 {
        self.check_id
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

/// The `check` command line of one CHECK: this host is `spec.id`, multicast on the interface
/// of its own advertised address (as its peers do).
pub(super) fn check_args(spec: &CheckSpec) -> Vec<std::ffi::OsString> {
    let own = spec.peers.get(usize::from(spec.id)).map(|a| a.ip());
    // Multicast on the interface of our advertised address (IPv4 or IPv6, as for runs).
    let iface = own.filter(|_| spec.multicast).map(|ip| ip.to_string());
    let mut transports = Vec::new();
    if spec.fanout {
        transports.push(Transport::Fanout);
    }
    if spec.multicast {
        transports.push(Transport::Multicast);
    }
    let mut cmd = CheckCommand::new(&spec.peers, spec.id, spec.group, iface, &transports);
    let ms = |v: u32| std::time::Duration::from_millis(u64::from(v));
    cmd.duration = ms(spec.duration_ms);
    cmd.wait = ms(spec.wait_ms);
    cmd.args()
}

impl Agent {
    /// A CHECK: start the child, or say at once why not.
    pub(super) fn start_check(&mut self, spec: &CheckSpec) {
        let busy = match (&self.running, &self.checking) {
            (Some(r), _) => Some(format!("busy with run {:016x}", r.run_id)),
            (_, Some(c)) => Some(format!("busy with check {:016x}", c.check_id)),
            _ => None,
        };
        let outcome = match busy {
            Some(why) => Err(why),
            None if usize::from(spec.id) >= spec.peers.len() => Err(format!(
                "host {} is not in a list of {}",
                spec.id,
                spec.peers.len()
            )),
            None => self.spawn_check(spec).map_err(|e| format!("{e:#}")),
        };
        match outcome {
            Ok(c) => {
                log(format_args!(
                    "check {:016x}: started as host {} of {} (pid {})",
                    spec.check_id,
                    spec.id,
                    spec.peers.len(),
                    c.child.id()
                ));
                self.checking = Some(c);
            }
            Err(error) => {
                log(format_args!("check {:016x}: {error}", spec.check_id));
                self.send_or_keep(Msg::CheckDone {
                    check_id: spec.check_id,
                    report: String::new(),
                    error,
                });
            }
        }
    }

    fn spawn_check(&mut self, spec: &CheckSpec) -> anyhow::Result<Checking> {
        use anyhow::Context;
        let exe = match &self.cfg.peer_exe {
            Some(p) => p.clone(),
            None => current_exe()?,
        };
        let file = |ext: &str| {
            self.cfg
                .log_dir
                .join(format!("check-{:016x}.{ext}", spec.check_id))
        };
        let (out, err) = (file("json"), file("err"));
        let open = |p: &PathBuf| {
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))
        };
        let mut cmd = Command::new(exe);
        cmd.args(check_args(spec))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(open(&out)?)
            .stderr(open(&err)?);
        crate::util::supervise::die_with_parent(&mut cmd);
        let child = cmd.spawn().context("cannot start the check")?;
        let pidfd = pidfd_open(child.id());
        let c = Checking {
            check_id: spec.check_id,
            child,
            pidfd,
            deadline: Instant::now() + spec.bound(),
            bound: spec.bound(),
            out,
            err,
        };
        if let Some(fd) = &c.pidfd {
            self.poll.registry().register(
                &mut SourceFd(&fd.as_raw_fd()),
                CHECK_EXIT,
                Interest::READABLE,
            )?;
        }
        Ok(c)
    }

    /// The child exited (or its deadline passed: then it is killed): send its outcome.
    pub(super) fn reap_check(&mut self, now: Instant) {
        let Some(c) = self.checking.as_mut() else {
            return;
        };
        let late = now >= c.deadline;
        let status = match c.child.try_wait() {
            Ok(Some(s)) => s,
            Ok(None) if !late => return,
            _ => {
                let _ = c.child.kill();
                match c.child.wait() {
                    Ok(s) => s,
                    Err(_) => return,
                }
            }
        };
        let c = self.checking.take().expect("checked above");
        if let Some(fd) = &c.pidfd {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        let stdout = std::fs::read_to_string(&c.out).unwrap_or_default();
        let stderr = std::fs::read_to_string(&c.err).unwrap_or_default();
        let parsed = serde_json::from_str::<CheckReport>(stdout.trim());
        let (report, error) = match parsed {
            // A report is the verdict (a failed pair exits 1 and is in it).
            Ok(r) if !late => (stdout.trim().to_owned(), {
                log(format_args!(
                    "check {:016x}: {}",
                    c.check_id,
                    if r.pass { "pass" } else { "FAIL" }
                ));
                String::new()
            }),
            _ => {
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
                let why = if late {
                    format!("killed after {:?}: the check did not finish", c.bound)
                } else {
                    format!(
                        "the check exited ({status}) without a report: {}",
                        last.unwrap_or("no output")
                    )
                };
                log(format_args!("check {:016x}: {why}", c.check_id));
                (String::new(), why)
            }
        };
        self.send_or_keep(Msg::CheckDone {
            check_id: c.check_id,
            report,
            error,
        });
    }
}
