//! The guard process that removes a testbed when its creator tears it down or dies.
//!
//! A small `sh` script, so it needs no binary of ours and survives the creator: it runs in its
//! own process group (a terminal's Ctrl-C does not reach it), ignores INT/TERM/HUP, and waits for
//! a line or EOF on its stdin, a pipe whose only writer is the creator.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Mode, NetnsError};

/// `$1` prefix, `$2` path of `ip`, `$3` mode. Prints `ready`, waits, removes, prints `clean`.
const SCRIPT: &str = r#"
P=$1 IP=$2
trap '' INT TERM HUP QUIT PIPE
if [ "$3" = userns ]; then
  mount -t tmpfs -o mode=0755 mpcomm-netns /run || exit 1
fi
echo ready
read -r _ || :
for f in /run/netns/"$P"-*; do
  [ -e "$f" ] || continue
  n=${f##*/}
  pids=$("$IP" netns pids "$n" 2>/dev/null)
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  "$IP" netns del "$n" || echo "mpcomm netns guard: could not delete $n" >&2
done
# The creator may be gone, and its end of our stdout with it.
echo clean 2>/dev/null || :
"#;

/// A running guard. In user-namespace mode it is also the process whose namespaces every
/// command of the testbed joins.
pub(super) struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Guard {
    pub(super) fn spawn(prefix: &str, ip: &Path, mode: Mode) -> Result<Guard, NetnsError> {
        let mut cmd = match mode {
            Mode::Root => Command::new("sh"),
            Mode::UserNamespace => {
                let unshare = super::find_tool("unshare").ok_or_else(|| {
                    NetnsError::Unsupported("`unshare` not found: install util-linux".into())
                })?;
                let mut c = Command::new(unshare);
                // No --fork: unshare execs sh, so the child's pid is the helper's pid.
                c.args(["-rnm", "--propagation", "private", "sh"]);
                c
            }
        };
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("mpcomm-netns-guard")
            .arg(prefix)
            .arg(ip)
            .arg(match mode {
                Mode::Root => "root",
                Mode::UserNamespace => "userns",
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| NetnsError::io("starting the namespace guard (sh)", e))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let mut guard = Guard {
            child,
            stdin,
            stdout,
        };
        match read_line(&guard.stdout, Instant::now() + Duration::from_secs(10)) {
            Ok(l) if l == "ready" => Ok(guard),
            other => {
                let _ = guard.child.kill();
                let _ = guard.child.wait();
                Err(NetnsError::Command {
                    what: format!("starting the {} namespace guard", mode.as_str()),
                    detail: format!("expected `ready`, got {other:?}"),
                })
            }
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ask the guard to remove everything and wait (bounded) until it has.
    pub(super) fn finish(&mut self) -> Result<(), NetnsError> {
        if let Some(mut stdin) = self.stdin.take() {
            // A guard that already exited is fine: its stdout tells.
            let _ = stdin.write_all(b"teardown\n");
        }
        let line = read_line(&self.stdout, Instant::now() + Duration::from_secs(20));
        let status = self.child.wait();
        match line {
            Ok(l) if l == "clean" => Ok(()),
            other => Err(NetnsError::Command {
                what: "namespace guard".into(),
                detail: format!("expected `clean`, got {other:?} (exit: {status:?})"),
            }),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Only reached on error paths before `finish`: closing stdin makes the guard clean up.
        self.stdin.take();
        let _ = read_line(&self.stdout, Instant::now() + Duration::from_secs(20));
        let _ = self.child.wait();
    }
}

/// One line from a child's stdout, without the newline; `Err` on EOF or at the deadline.
/// Reads a byte at a time so nothing after the line is consumed.
pub(super) fn read_line(out: &ChildStdout, deadline: Instant) -> Result<String, String> {
    let fd = out.as_raw_fd();
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out; partial line {:?}",
                String::from_utf8_lossy(&line)
            ));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        if n == 0 {
            continue;
        }
        let mut byte = 0u8;
        // SAFETY: reading one byte into a valid local.
        let r = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        match r {
            1 if byte == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            1 => line.push(byte),
            0 => {
                return Err(format!(
                    "EOF; partial line {:?}",
                    String::from_utf8_lossy(&line)
                ))
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e.to_string());
                }
            }
        }
    }
}
