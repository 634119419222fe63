//! The agent's peer child: its command line (a `PeerSpec`, typed values, never a shell), its
//! run key file, spawning it, relaying its stderr to people, hearing what it tells the agent's
//! socket (`peer --notify`: Ready becomes RUN_READY, the Outcome names why a run failed), and
//! reaping it.

use anyhow::Context;
use mio::unix::SourceFd;
use mio::Interest;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use super::{log, Agent, CHILD_EXIT, CHILD_NOTIFY, CHILD_STDERR};
use crate::c2::proto::{Msg, RunSpec};
use crate::peer::child::{ParentSocket, RECV_BUF};
use crate::peer::PeerSpec;
use crate::wire::child::Repr as Told;

/// A relayed line is cut here (and continued on the next line), so that with its prefix it
/// stays one atomic write on a pipe (`PIPE_BUF`, 4096 bytes).
const MAX_LINE: usize = 4000;
/// Reads of the peer's stderr per call; `stderr_more` brings the loop back when it stops here.
const STDERR_READS: usize = 64;

/// The peer's command line for one run: typed values become separate arguments.
pub fn peer_args(
    spec: &RunSpec,
    log_dir: &std::path::Path,
    key_file: &std::path::Path,
) -> Vec<OsString> {
    peer_spec(spec, log_dir, key_file).to_args()
}

/// The peer of one run, as a [`PeerSpec`]: what the run says, the peer's defaults for the rest.
pub fn peer_spec(
    spec: &RunSpec,
    log_dir: &std::path::Path,
    key_file: &std::path::Path,
) -> PeerSpec {
    let ms = |v: u32| Duration::from_millis(u64::from(v));
    let multicast = spec.transport == crate::wire::Transport::Multicast;
    let base = PeerSpec::new(spec.peers.iter().map(ToString::to_string).collect());
    PeerSpec {
        id: Some(spec.peer_id),
        msgs: spec.msgs,
        transport: spec.transport,
        order: spec.order,
        repair: Some(spec.repair),
        group: spec.group,
        ssm: spec.ssm,
        // Send and join on the interface of our advertised address: hosts without a default
        // route (network namespaces, private VPCs) have no other multicast route.
        iface: multicast.then(|| spec.peers[usize::from(spec.peer_id)].ip().to_string()),
        interval: (ms(spec.interval_ms.0), ms(spec.interval_ms.1)),
        size: if spec.size > 0 {
            spec.size as usize
        } else {
            base.size
        },
        seed: Some(spec.seed),
        run_id: Some(spec.run_id),
        log_dir: Some(log_dir.to_owned()),
        comparator: Some(spec.comparator.to_string()),
        time_scale: spec.time_scale,
        wan: (!spec.wan.is_empty()).then(|| spec.wan.clone()),
        wan_loss: spec.wan_loss,
        // Without zones the peer assigns the profile's zones round-robin.
        zones: spec.zones.clone(),
        run_key_file: Some(key_file.to_owned()),
        ..base
    }
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

pub(super) struct Running {
    pub(super) run_id: u64,
    pub(super) peer_id: u16,
    pub(super) child: Child,
    pub(super) pidfd: Option<OwnedFd>,
    stderr: Option<ChildStderr>,
    partial: Vec<u8>,
    last_line: String,
    ready: bool,
    /// Where the peer tells us it is ready and how its run ended (`None`: the socket could not
    /// be bound; then its stderr's readiness line is the sign, as before).
    notify: Option<ParentSocket>,
    outcome: Option<Told>,
    /// The run's key file, removed when the run is over.
    _key: RemoveOnDrop,
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Agent {
    pub(super) fn spawn_peer(&mut self, spec: &RunSpec) -> anyhow::Result<Running> {
        let exe = match &self.cfg.peer_exe {
            Some(p) => p.clone(),
            None => current_exe()?,
        };
        std::fs::create_dir_all(&self.cfg.log_dir)
            .with_context(|| format!("cannot create {}", self.cfg.log_dir.display()))?;
        let key = write_run_key(spec, &self.cfg.log_dir).context("cannot write the run key")?;
        let notify = self.bind_notify(spec.run_id)?;
        let peer = PeerSpec {
            notify: Some(notify.path().to_owned()),
            ..peer_spec(spec, &self.cfg.log_dir, &key)
        };
        let mut cmd = Command::new(exe);
        cmd.args(peer.to_args())
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
            notify: Some(notify),
            outcome: None,
            _key: RemoveOnDrop(key),
        })
    }

    /// The run's socket in the state directory (or, when that path cannot be bound — too long
    /// for a socket address, for one — in the temporary directory), non-blocking and
    /// registered. Without it the run does not start: readiness comes only from there.
    fn bind_notify(&mut self, run_id: u64) -> anyhow::Result<ParentSocket> {
        let name = format!("peer-{run_id:016x}.sock");
        let tmp_name = format!("mpcomm-agent-{}-{name}", std::process::id());
        let sock = ParentSocket::bind(&self.cfg.log_dir, &name)
            .or_else(|_| ParentSocket::bind(&std::env::temp_dir(), &tmp_name))
            .with_context(|| {
                format!(
                    "cannot bind the peer's readiness socket in {} or {}",
                    self.cfg.log_dir.display(),
                    std::env::temp_dir().display()
                )
            })?;
        sock.socket().set_nonblocking(true)?;
        self.poll.registry().register(
            &mut SourceFd(&sock.socket().as_raw_fd()),
            CHILD_NOTIFY,
            Interest::READABLE,
        )?;
        Ok(sock)
    }

    /// Every message the peer sent us: Ready becomes RunReady, the Outcome is kept for the end.
    pub(super) fn read_child_notify(&mut self) {
        let mut ready_now = None;
        let Some(r) = self.running.as_mut() else {
            return;
        };
        let Some(sock) = &r.notify else {
            return;
        };
        let mut buf = [0u8; RECV_BUF];
        // Two messages per run: a few reads drain it; a stranger's flood is cut off here.
        for _ in 0..STDERR_READS {
            match sock.recv(&mut buf) {
                Ok(Ok(Told::Ready { peer, .. })) if peer == r.peer_id && !r.ready => {
                    r.ready = true;
                    ready_now = Some(r.run_id);
                }
                Ok(Ok(told @ Told::Outcome { peer, .. })) if peer == r.peer_id => {
                    r.outcome = Some(told);
                }
                Ok(_) => {} // another peer's, or not ours at all
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        if let Some(run_id) = ready_now {
            self.send_or_keep(Msg::RunReady { run_id });
        }
    }

    /// Forward the peer's stderr line by line, for people (readiness comes by the socket).
    pub(super) fn read_child_stderr(&mut self) {
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
                if !line.is_empty() {
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
    }

    pub(super) fn reap_child(&mut self) {
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
        self.read_child_notify();
        let mut r = self.running.take().expect("checked above");
        if let Some(n) = &r.notify {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&n.socket().as_raw_fd()));
        }
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
        let detail = match (&r.outcome, ok) {
            (_, true) => String::new(),
            (Some(Told::Outcome { reason, .. }), false) => {
                format!("peer {status} ({}): {}", reason.describe(), r.last_line)
            }
            (_, false) => format!("peer {status}: {}", r.last_line),
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
            refused: None,
        });
    }
}

/// This program's path. After an upgrade replaced the binary, Linux reports the old inode as
/// "PATH (deleted)": new runs then start the new binary at PATH.
pub(super) fn current_exe() -> anyhow::Result<PathBuf> {
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
pub(super) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: the syscall returns a new fd we then own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
