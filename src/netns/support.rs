//! Which way of making namespaces works on this machine.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How a [`super::Testbed`] is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// We are root: iproute2 directly, namespaces visible in `ip netns list`.
    Root,
    /// Not root (or forced): inside `unshare -rnm` with a private tmpfs on `/run`.
    UserNamespace,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::UserNamespace => "user namespace",
        }
    }
}

/// A program from PATH, or from the sbin directories a non-root PATH often lacks.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The mode [`super::Testbed::create`] uses: root if we are root and may make network
/// namespaces, else a user namespace; `Err(reason)` if neither works (tests print it and skip).
/// `MPCOMM_NETNS=root|userns` forces one. Probed once per process.
pub fn support() -> Result<Mode, String> {
    static CACHE: OnceLock<Result<Mode, String>> = OnceLock::new();
    CACHE.get_or_init(probe).clone()
}

fn probe() -> Result<Mode, String> {
    match std::env::var("MPCOMM_NETNS").as_deref() {
        Ok("root") => return support_of(Mode::Root).map(|()| Mode::Root),
        Ok("userns") => return support_of(Mode::UserNamespace).map(|()| Mode::UserNamespace),
        Ok(other) if !other.is_empty() => {
            return Err(format!("MPCOMM_NETNS={other:?}: use `root` or `userns`"))
        }
        _ => {}
    }
    let root = support_of(Mode::Root);
    if root.is_ok() {
        return Ok(Mode::Root);
    }
    support_of(Mode::UserNamespace)
        .map(|()| Mode::UserNamespace)
        .map_err(|userns| format!("{} and {userns}", root.unwrap_err()))
}

/// Whether one particular mode works here (not cached); `Err` says why not and what to do.
pub fn support_of(mode: Mode) -> Result<(), String> {
    let ip = find_tool("ip")
        .ok_or("iproute2's `ip` is not installed: install iproute2 (apt-get install iproute2)")?;
    match mode {
        Mode::Root => {
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                return Err("not running as root".into());
            }
            // Root of a user namespace (e.g. inside `unshare -r`) cannot write the host's /run.
            let run = if std::path::Path::new("/run/netns").exists() {
                &b"/run/netns\0"[..]
            } else {
                &b"/run\0"[..]
            };
            let run = std::ffi::CStr::from_bytes_with_nul(run).expect("NUL-terminated");
            // SAFETY: a valid C string.
            if unsafe { libc::access(run.as_ptr(), libc::W_OK) } != 0 {
                return Err(format!(
                    "root, but {} is not writable for `ip netns add`",
                    run.to_string_lossy()
                ));
            }
            // Can we make a network namespace at all (a container may lack CAP_SYS_ADMIN)?
            let mut probe = Command::new(&ip);
            probe.arg("-V").stdout(Stdio::null()).stderr(Stdio::null());
            // SAFETY: unshare is async-signal-safe and touches only the child.
            unsafe {
                probe.pre_exec(|| {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            match probe.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(format!(
                    "`ip -V` in a new network namespace exited with {s}"
                )),
                Err(e) => Err(format!(
                    "root, but cannot create a network namespace ({e}): run with CAP_SYS_ADMIN \
                     (e.g. docker --privileged)"
                )),
            }
        }
        Mode::UserNamespace => {
            let unshare = find_tool("unshare")
                .ok_or("util-linux's `unshare` is not installed: install util-linux")?;
            let out = Command::new(unshare)
                .args(["-rnm", "sh", "-c", "mount -t tmpfs mpcomm-probe /run"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run unshare: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "user namespaces are not usable (`unshare -rnm` + tmpfs on /run: {}): run as \
                     root, or enable them (sysctl kernel.unprivileged_userns_clone=1, \
                     user.max_user_namespaces > 0)",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
}
