//! `lab --check`: one `mpcomm check --json` child per host, all at once, and their verdicts.
//! The lab builds the commands (it knows how to enter its hosts); this runs and reads them.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{CheckReport, Transports};
use crate::wire::Transport;

/// The `check` arguments of one host of a lab.
#[derive(Debug, Clone)]
pub struct CheckCommand {
    pub peers: Vec<SocketAddr>,
    pub id: u16,
    pub transports: Transports,
    pub group: SocketAddr,
    /// As for `peer --iface`: an address or a name.
    pub iface: Option<String>,
    pub duration: Duration,
    pub wait: Duration,
}

impl CheckCommand {
    /// The lab's defaults: 2 s counted, 10 s for the hosts to appear (they start together).
    pub fn new(
        peers: &[SocketAddr],
        id: u16,
        group: SocketAddr,
        iface: Option<String>,
        transports: &[Transport],
    ) -> CheckCommand {
        let has = |t| transports.contains(&t);
        let transports = match (has(Transport::Fanout), has(Transport::Multicast)) {
            (true, true) => Transports::Both,
            (false, true) => Transports::Multicast,
            _ => Transports::Fanout,
        };
        CheckCommand {
            peers: peers.to_vec(),
            id,
            transports,
            group,
            iface,
            duration: Duration::from_secs(2),
            wait: Duration::from_secs(10),
        }
    }

    /// `check --peers … --id … --json`: one argument per value, no shell in between.
    pub fn args(&self) -> Vec<OsString> {
        let peers: Vec<String> = self.peers.iter().map(ToString::to_string).collect();
        let mut a: Vec<OsString> = vec!["check".into(), "--json".into()];
        let mut push = |k: &str, v: String| {
            a.push(k.into());
            a.push(v.into());
        };
        push("--peers", peers.join(","));
        push("--id", self.id.to_string());
        push("--transport", self.transports.as_str().into());
        push("--group", self.group.to_string());
        if let Some(i) = &self.iface {
            push("--iface", i.clone());
        }
        push("--duration", format!("{}ms", self.duration.as_millis()));
        push("--wait", format!("{}ms", self.wait.as_millis()));
        a
    }

    /// Longest a child can take: waiting, warm-up, counting, the last replies, and slack.
    fn bound(&self) -> Duration {
        self.wait + self.duration + Duration::from_secs(15)
    }
}

/// Children killed and reaped when dropped (on every way out).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run host i's `check` from `cmds[i]` (built from `checks[i].args()`), all at once; say each
/// host's verdict and every failed pair on stderr. `Ok(true)` when every host passed.
pub fn preflight(cmds: Vec<Command>, checks: &[CheckCommand]) -> anyhow::Result<bool> {
    let bound = checks
        .iter()
        .map(CheckCommand::bound)
        .max()
        .unwrap_or_default();
    let deadline = Instant::now() + bound;
    let mut children = Children(Vec::new());
    let (tx, rx) = mpsc::channel::<(usize, String, Vec<String>)>();
    for (i, mut cmd) in cmds.into_iter().enumerate() {
        cmd.env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start the check on host {i}"))?;
        let (mut out, err) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        children.0.push(child);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let errs = std::thread::spawn(move || {
                BufReader::new(err)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            });
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            let errs = errs.join().unwrap_or_default();
            let _ = tx.send((i, s, errs));
        });
    }
    drop(tx);
    let n = children.0.len();
    let mut pass = true;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((i, stdout, stderr)) = rx.recv_timeout(left) else {
            anyhow::bail!("the preflight did not finish within {bound:?}");
        };
        let status = children.0[i].wait().context("wait for a check")?;
        match serde_json::from_str::<CheckReport>(stdout.trim()) {
            Ok(r) if r.pass && status.success() => {
                say!("mpcomm lab: preflight host {i}: pass");
            }
            Ok(r) => {
                pass = false;
                say!("mpcomm lab: preflight host {i}: FAIL ({status})");
                for f in &r.failures {
                    say!("mpcomm lab:   host {i}: {f}");
                }
            }
            Err(_) => {
                pass = false;
                say!("mpcomm lab: preflight host {i}: could not run ({status})");
                for l in stderr.iter().rev().take(5).rev() {
                    say!("mpcomm lab:   host {i}: {l}");
                }
            }
        }
    }
    Ok(pass)
}
