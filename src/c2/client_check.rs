//! `mpcomm c2 check`: ask the controller for the preflight across its live idle agents, gather
//! one CHECK_RESULT per host, print the merged matrix (or one JSON object), exit 0 only when
//! every host passed. The clap part is `client::C2CheckArgs`; this takes plain values.

use anyhow::bail;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::client::{wait_for_idle, Client, Control};
use super::preflight::{HostOutcome, MergedCheck};
use super::proto::{CheckRequest, Msg};

/// Everything `c2 check` needs, no parser attached.
#[derive(Debug, Clone)]
pub struct C2CheckConfig {
    pub ctl: Control,
    pub request: CheckRequest,
    /// Wait this long for the controller and for `request.peers` idle agents.
    pub wait: Duration,
    pub json: bool,
}

/// Exit 0: every host passed; 1: a pair failed or a host could not check (one FAIL line each).
pub fn run(cfg: C2CheckConfig) -> anyhow::Result<ExitCode> {
    cfg.request.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = Client::connect_within(&cfg.ctl, cfg.wait)?;
    if cfg.request.peers > 0 {
        wait_for_idle(&mut client, usize::from(cfg.request.peers), cfg.wait)?;
    }
    client.send(&Msg::CheckRequest(cfg.request.clone()))?;
    let mut hosts: Vec<HostOutcome> = Vec::new();
    // One result per host; the controller sends one for every host, at its deadline at last.
    loop {
        match client.recv()? {
            Msg::Progress { text } => say!("mpcomm c2 check: {text}"),
            Msg::Refused { text } => bail!("check refused: {text}"),
            Msg::CheckResult(r) => {
                let h = HostOutcome::from_result(&r);
                say!(
                    "mpcomm c2 check: host {} of {} ({}): {}",
                    h.host,
                    r.hosts,
                    h.advertise,
                    if h.pass { "pass" } else { "FAIL" }
                );
                if !hosts.iter().any(|o| o.host == h.host) {
                    hosts.push(h);
                }
                if hosts.len() >= usize::from(r.hosts) {
                    break;
                }
            }
            other => bail!("unexpected reply from the controller: {other:?}"),
        }
    }
    let merged = MergedCheck::new(hosts);
    let stdout = crate::util::out::stdout();
    let mut out = stdout.lock();
    if cfg.json {
        writeln!(out, "{}", serde_json::to_string(&merged)?)?;
        for line in merged.failure_lines() {
            say!("mpcomm c2 check: {line}");
        }
    } else {
        merged.write_human(&mut out)?;
    }
    out.flush()?;
    Ok(if merged.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
