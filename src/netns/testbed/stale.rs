//! Collecting the namespaces of testbeds whose creating process died without removing them.

use std::process::{Command, Stdio};

use super::{list_netns, NetnsError, PREFIX};

/// As root: delete the namespaces (and kill the processes inside them) of testbeds whose
/// creating process no longer exists. Returns the names removed. Namespaces of live creators,
/// and anything not named `mpc-<pid>-<8 hex>-…`, are left alone.
pub fn cleanup_stale() -> Result<Vec<String>, NetnsError> {
    let ip = crate::netns::find_tool("ip")
        .ok_or_else(|| NetnsError::Unsupported("`ip` not found: install iproute2".into()))?;
    let mut removed = Vec::new();
    for name in list_netns() {
        let Some(pid) = creator_pid(&name) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let pids = Command::new(&ip)
            .args(["netns", "pids", &name])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for p in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let out = Command::new(&ip)
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| NetnsError::io("ip netns del", e))?;
        // Another creator may have collected it at the same moment.
        if !out.status.success() && std::path::Path::new("/run/netns").join(&name).exists() {
            return Err(NetnsError::Command {
                what: format!("ip netns del {name}"),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        removed.push(name);
    }
    Ok(removed)
}

/// `mpc-<pid>-<8 hex>-<suffix>` → pid.
pub(super) fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let tag = parts.next()?;
    parts.next()?;
    (tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(pid)
}
