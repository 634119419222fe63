//! `mpcomm c2 check`'s policy, shared by the controller, the agent and the client: the bounds
//! of a request, how long an agent lets its `mpcomm check` child run, and the merged view of
//! every host's report (the matrix the client prints, its JSON, its FAIL lines).

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::proto::{CheckRequest, CheckResult, CheckSpec, MAX_PEERS};
use crate::check::CheckReport;

/// How long each agent's check waits for the other hosts: they are told at the same moment,
/// so this only covers process start-up and a slow host.
pub const CHECK_WAIT: Duration = Duration::from_secs(10);
/// Longest `--duration` a check may count for.
pub const MAX_CHECK_DURATION_MS: u32 = 60_000;
/// After waiting and counting: warm-up, the last replies, start-up and reaping.
const CHILD_SLACK: Duration = Duration::from_secs(15);
/// The controller gives up on a host this long after its agent's own limit (its CHECK_DONE
/// saying "killed" has to travel too).
pub const CONTROLLER_SLACK: Duration = Duration::from_secs(5);

/// A check request the controller refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckBoundsError {
    #[error("--transport: check fanout, multicast or both")]
    NoTransport,
    #[error("--duration must be 1..={MAX_CHECK_DURATION_MS} ms, got {0}")]
    Duration(u32),
    #[error("--peers must be 2..={MAX_PEERS} (or omitted: every live idle agent), got {0}")]
    Peers(u16),
}

impl CheckRequest {
    pub fn check(&self) -> Result<(), CheckBoundsError> {
        if !self.fanout && !self.multicast {
            return Err(CheckBoundsError::NoTransport);
        }
        if self.duration_ms == 0 || self.duration_ms > MAX_CHECK_DURATION_MS {
            return Err(CheckBoundsError::Duration(self.duration_ms));
        }
        if self.peers == 1 || usize::from(self.peers) > MAX_PEERS {
            return Err(CheckBoundsError::Peers(self.peers));
        }
        Ok(())
    }
}

impl CheckSpec {
    /// How long the agent lets its check child run before it kills it.
    pub fn bound(&self) -> Duration {
        let ms = |v: u32| Duration::from_millis(u64::from(v));
        ms(self.wait_ms) + ms(self.duration_ms) + CHILD_SLACK
    }
}

/// One host of a `c2 check`, as the client prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostOutcome {
    pub host: u16,
    pub advertise: IpAddr,
    pub pass: bool,
    /// The host's own report (`None`: it did not run there, `error` says why).
    pub report: Option<CheckReport>,
    pub error: Option<String>,
}

/// Every host's outcome, in host order: what `c2 check --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedCheck {
    pub pass: bool,
    pub hosts: Vec<HostOutcome>,
}

impl HostOutcome {
    /// A CHECK_RESULT as an outcome: a report that does not parse is this host's failure.
    pub fn from_result(r: &CheckResult) -> HostOutcome {
        let (report, error) = if r.report.is_empty() {
            (None, Some(r.error.clone()))
        } else {
            match serde_json::from_str::<CheckReport>(&r.report) {
                Ok(rep) => (Some(rep), (!r.error.is_empty()).then(|| r.error.clone())),
                Err(e) => (None, Some(format!("its report does not parse: {e}"))),
            }
        };
        HostOutcome {
            host: r.host,
            advertise: r.advertise,
            pass: report.as_ref().is_some_and(|rep| rep.pass) && error.is_none(),
            report,
            error,
        }
    }

    /// `host 1 (10.0.0.2): FAIL peer 2 (10.0.0.3:4570) multicast: …`, one per failed pair
    /// and transport (the lines `mpcomm check` prints), or one line saying why it did not run.
    pub fn failure_lines(&self) -> Vec<String> {
        let who = format!("host {} ({})", self.host, self.advertise);
        let mut v: Vec<String> = match &self.report {
            Some(rep) => rep.failures.iter().map(|f| format!("{who}: {f}")).collect(),
            None => Vec::new(),
        };
        if let Some(e) = &self.error {
            v.push(format!("{who}: FAIL could not check: {e}"));
        }
        v
    }
}

impl MergedCheck {
    pub fn new(mut hosts: Vec<HostOutcome>) -> MergedCheck {
        hosts.sort_by_key(|h| h.host);
        MergedCheck {
            pass: !hosts.is_empty() && hosts.iter().all(|h| h.pass),
            hosts,
        }
    }

    pub fn failure_lines(&self) -> Vec<String> {
        self.hosts
            .iter()
            .flat_map(HostOutcome::failure_lines)
            .collect()
    }

    /// The matrix: one row per host, peer and transport (who heard whom, loss both ways, rtt,
    /// hops), then the FAIL lines and the hints, then the verdict.
    pub fn write_human(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{:>4}  {:>4}  {:<9}  {:>9}  {:>5}  {:>9}  {:>5}  {:>20}  {:>7}  verdict",
            "host",
            "peer",
            "transport",
            "answered",
            "loss",
            "heard",
            "loss",
            "rtt min/avg/max ms",
            "hops"
        )?;
        for h in &self.hosts {
            let Some(rep) = &h.report else {
                writeln!(out, "{:>4}  (no report)", h.host)?;
                continue;
            };
            for p in &rep.pairs {
                writeln!(out, "{:>4}  {:>4}  {}", h.host, p.peer, p.columns())?;
            }
        }
        writeln!(out, "hosts:")?;
        for h in &self.hosts {
            writeln!(
                out,
                "  {:>4}  {:<39}  {}",
                h.host,
                h.advertise,
                if h.pass { "pass" } else { "FAIL" }
            )?;
        }
        writeln!(
            out,
            "(answered: the host's probes the peer answered; heard: the peer's probes the host heard; hops: to it / from it)"
        )?;
        for line in self.failure_lines() {
            writeln!(out, "{line}")?;
        }
        for h in &self.hosts {
            for hint in h.report.iter().flat_map(|r| &r.hints) {
                writeln!(out, "hint: host {}: {hint}", h.host)?;
            }
        }
        let failed = self.hosts.iter().filter(|h| !h.pass).count();
        if self.pass {
            writeln!(out, "PASS: all {} hosts reach each other", self.hosts.len())
        } else {
            writeln!(out, "{failed} of {} host(s) failed", self.hosts.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(host: u16, report: &str, error: &str) -> CheckResult {
        CheckResult {
            host,
            hosts: 3,
            advertise: IpAddr::from([10, 0, 0, 1 + host as u8]),
            report: report.into(),
            error: error.into(),
        }
    }

    fn report(pass: bool, failures: &[&str]) -> String {
        serde_json::json!({
            "pass": pass, "id": 0, "addr": "10.0.0.1:4570", "transports": ["fanout"],
            "duration_ms": 1000.0, "warmup_ms": 1000.0, "probes": 10, "pairs": [],
            "failures": failures, "multicast_ttl": 1, "ignored": 0,
        })
        .to_string()
    }

    #[test]
    fn hosts_pass_only_with_a_passing_report_and_failures_name_their_host() {
        let fail = "FAIL peer 2 (10.0.0.3:4570) multicast: its probes never arrived here";
        let merged = MergedCheck::new(vec![
            HostOutcome::from_result(&result(2, "", "the agent's link was lost")),
            HostOutcome::from_result(&result(0, &report(true, &[]), "")),
            HostOutcome::from_result(&result(1, &report(false, &[fail]), "")),
        ]);
        assert!(!merged.pass);
        let passed: Vec<bool> = merged.hosts.iter().map(|h| h.pass).collect();
        assert_eq!(passed, [true, false, false], "in host order");
        assert_eq!(
            merged.failure_lines(),
            [
                format!("host 1 (10.0.0.2): {fail}"),
                "host 2 (10.0.0.3): FAIL could not check: the agent's link was lost".into(),
            ]
        );
        let bad = HostOutcome::from_result(&result(0, "{not json", ""));
        assert!(!bad.pass && bad.report.is_none());
        assert!(bad.error.unwrap().contains("does not parse"));
        let mut text = Vec::new();
        merged.write_human(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("(no report)") && text.ends_with("2 of 3 host(s) failed\n"),
            "{text}"
        );
        assert!(!MergedCheck::new(Vec::new()).pass, "no host is no pass");
        let all = MergedCheck::new(vec![HostOutcome::from_result(&result(
            0,
            &report(true, &[]),
            "",
        ))]);
        assert!(all.pass);
    }

    #[test]
    fn request_bounds() {
        let ok = CheckRequest {
            peers: 0,
            port: 0,
            fanout: true,
            multicast: false,
            group: None,
            duration_ms: 1,
        };
        assert_eq!(ok.check(), Ok(()));
        let bad = |f: fn(&mut CheckRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            r.check().unwrap_err()
        };
        assert_eq!(bad(|r| r.fanout = false), CheckBoundsError::NoTransport);
        assert_eq!(
            bad(|r| r.duration_ms = 60_001),
            CheckBoundsError::Duration(60_001)
        );
        assert_eq!(bad(|r| r.peers = 1), CheckBoundsError::Peers(1));
        assert_eq!(bad(|r| r.peers = 257), CheckBoundsError::Peers(257));
    }
}
