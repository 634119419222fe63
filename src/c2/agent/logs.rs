//! What the agent keeps on disk: its instance id, and the delivery logs of failed uploads
//! (at most `--keep-failed`, the oldest removed first).

use anyhow::Context;
use std::path::PathBuf;

use super::{log, Agent, Running};
use crate::c2::auth::fresh32;

/// This agent's identity, kept in its state directory (`agent-instance`, 16 hex digits): a
/// restarted agent is the same agent to the controller and keeps its place in the peer order.
pub(super) fn instance_id(dir: &std::path::Path) -> anyhow::Result<u64> {
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
    /// The peer's delivery log stays only when its upload failed (exit code 3, or any ending
    /// that does not say "uploaded"), and then at most --keep-failed of them.
    pub(super) fn tidy_log(&self, r: &Running, status: std::process::ExitStatus) {
        use crate::peer::exit;
        let path = self
            .cfg
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
        match prune_logs(&self.cfg.log_dir, self.cfg.keep_failed) {
            Ok(gone) => {
                for g in gone {
                    log(format_args!(
                        "removed {} (more than --keep-failed {} logs)",
                        g.display(),
                        self.cfg.keep_failed
                    ));
                }
            }
            Err(e) => log(format_args!(
                "cannot prune {}: {e}",
                self.cfg.log_dir.display()
            )),
        }
    }
}
