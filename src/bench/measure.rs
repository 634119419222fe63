//! One point of a bench: its two lab runs, and the figures taken from their reports, logs and
//! the peers' CPU time.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::plan::{Plan, Point};
use crate::compare::Report;
use crate::lab::Session;
use crate::wire::log::LogView;

/// One host kind × transport × N: what its JSON line says.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub hosts: &'static str,
    pub transport: String,
    pub peers: u16,
    /// Messages per peer of the saturation run.
    pub msgs: u32,
    /// Deliveries of the saturation run, and N × N × M.
    pub deliveries: u64,
    pub expected: u64,
    /// First send to last delivery of the saturation run, over all peers (one host clock).
    pub span_ms: Option<f64>,
    /// deliveries / span.
    pub delivered_per_s: Option<f64>,
    /// Expected deliveries that never happened (saturation run).
    pub lost: u64,
    /// Datagrams the receivers' kernels dropped (full receive buffer), summed over the peers;
    /// null when the logs do not record it.
    pub kernel_drops: Option<u64>,
    /// Datagram copies the senders' kernels refused (ENOBUFS and the like), summed.
    pub send_drops: Option<u64>,
    /// Loss that neither kind of drop accounts for (`lost − kernel_drops − send_drops`, at
    /// least 0; the drops count control datagrams too, so this can hide some loss).
    pub lost_unattributed: Option<u64>,
    pub duplicates: u64,
    /// DATA datagrams (first transmissions) the senders put on the wire per message sent.
    pub sender_datagrams_per_msg: Option<f64>,
    /// Their UDP payload bytes per message sent.
    pub sender_bytes_per_msg: Option<f64>,
    /// Send syscalls (`sendmmsg`/`sendmsg`) per message sent, over all peers.
    pub send_syscalls_per_msg: Option<f64>,
    /// Receive syscalls (`recvmmsg`/`recvmsg`) per delivery, over all peers.
    pub recv_syscalls_per_delivery: Option<f64>,
    /// Send and receive syscalls of all peers per message sent.
    pub syscalls_per_msg: Option<f64>,
    /// User + system CPU of all peer processes per delivery (saturation run).
    pub cpu_ns_per_delivery: Option<f64>,
    /// Where the CPU time comes from: `peers` (each peer's getrusage, in its log header) or
    /// `children` (this process's getrusage(RUSAGE_CHILDREN) before and after the run).
    pub cpu_source: &'static str,
    /// The same from getrusage(RUSAGE_CHILDREN) around the run: the peer processes' whole
    /// lives (exec, handshake, log, upload included), a cross-check of the headers' figure.
    pub cpu_children_ns_per_delivery: Option<f64>,
    /// The paced run.
    pub latency_us: Latency,
    /// Why a run failed (its figures are then missing or partial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Messages per peer, and the rate each peer sent them at (messages/s).
    pub msgs: u32,
    pub rate_per_peer: u32,
    /// N × N × rate: deliveries per second the paced run asks of the machine.
    pub offered_per_s: u64,
    pub deliveries: u64,
    pub lost: u64,
}

/// What one saturation run's logs say beyond the report.
#[derive(Debug, Default)]
struct LogFacts {
    first_send_ns: Option<u64>,
    last_deliver_ns: Option<u64>,
    /// DATA messages the peers sent (their headers' `sent`).
    sent: u64,
}

/// Read, then remove, the logs of `run_id` in `dir`.
fn take_logs(dir: &Path, run_id: u64) -> anyhow::Result<LogFacts> {
    let tag = format!("mpcomm-{run_id:016x}-");
    let mut facts = LogFacts::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ours = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&tag));
        if !ours {
            continue;
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let _ = std::fs::remove_file(&path);
        let view = LogView::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid log: {e:?}", path.display()))?;
        facts.sent += u64::from(view.header.sent);
        for r in view.records() {
            facts.first_send_ns = Some(facts.first_send_ns.map_or(r.send_ns, |v| v.min(r.send_ns)));
            facts.last_deliver_ns = Some(
                facts
                    .last_deliver_ns
                    .map_or(r.deliver_ns, |v| v.max(r.deliver_ns)),
            );
        }
    }
    Ok(facts)
}

/// Remove whatever logs a failed run left.
fn drop_logs(dir: &Path, run_id: Option<u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let tag = run_id.map(|id| format!("mpcomm-{id:016x}-"));
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".mplog") && tag.as_ref().is_none_or(|t| name.starts_with(t)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// User + system CPU of this process's terminated, reaped children, in ns.
fn children_cpu_ns() -> u64 {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid `rusage`.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a live `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0;
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// The peers' own cost counters, summed (from their log headers, via the report).
#[derive(Debug, Default, Clone, Copy)]
struct Costs {
    kernel_drops: u64,
    send_drops: u64,
    data_datagrams: u64,
    data_bytes: u64,
    send_syscalls: u64,
    recv_syscalls: u64,
    cpu_ns: u64,
}

fn peer_costs(report: &Report) -> Costs {
    let mut c = Costs::default();
    for p in report.per_peer.iter().filter(|p| p.present) {
        c.kernel_drops += p.kernel_drops;
        c.send_drops += p.send_drops;
        c.data_datagrams += p.data_datagrams_sent;
        c.data_bytes += p.data_bytes_sent;
        c.send_syscalls += p.send_syscalls;
        c.recv_syscalls += p.recv_syscalls;
        c.cpu_ns += p.cpu_ns;
    }
    c
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Run point `p` (saturation, then paced); `progress` is told about each run.
pub fn point(
    session: &Session,
    p: &Point,
    plan: &Plan,
    seed: u64,
    mut progress: impl FnMut(&str),
) -> Row {
    let label = format!("{} {} N={}", p.hosts.as_str(), p.transport, p.peers);
    let mut row = Row {
        hosts: p.hosts.as_str(),
        transport: p.transport.to_string(),
        peers: p.peers,
        msgs: p.saturation_msgs,
        deliveries: 0,
        expected: u64::from(p.peers) * u64::from(p.peers) * u64::from(p.saturation_msgs),
        span_ms: None,
        delivered_per_s: None,
        lost: 0,
        kernel_drops: None,
        send_drops: None,
        lost_unattributed: None,
        duplicates: 0,
        sender_datagrams_per_msg: None,
        sender_bytes_per_msg: None,
        send_syscalls_per_msg: None,
        recv_syscalls_per_delivery: None,
        syscalls_per_msg: None,
        cpu_ns_per_delivery: None,
        cpu_source: "children",
        cpu_children_ns_per_delivery: None,
        latency_us: Latency {
            msgs: p.paced_msgs,
            rate_per_peer: plan.rate,
            offered_per_s: u64::from(p.peers) * u64::from(p.peers) * u64::from(plan.rate),
            ..Latency::default()
        },
        error: None,
    };

    // Saturation.
    let cpu_before = children_cpu_ns();
    let outcome = session.run(&plan.experiment(p, seed, true));
    let children_ns = children_cpu_ns().saturating_sub(cpu_before);
    match outcome {
        Ok(crate::lab::Ran { report, .. }) => {
            let facts = take_logs(session.log_dir(), report.run_id);
            row.deliveries = report.deliveries;
            row.lost = report.lost;
            row.duplicates = report.duplicates;
            let sent = match &facts {
                Ok(f) => {
                    if let (Some(a), Some(b)) = (f.first_send_ns, f.last_deliver_ns) {
                        let span = b.saturating_sub(a);
                        row.span_ms = Some(span as f64 / 1e6);
                        row.delivered_per_s =
                            (span > 0).then(|| report.deliveries as f64 / (span as f64 / 1e9));
                    }
                    f.sent
                }
                Err(e) => {
                    row.error = Some(format!("saturation run: cannot read its logs: {e:#}"));
                    u64::from(p.peers) * u64::from(p.saturation_msgs)
                }
            };
            row.cpu_ns_per_delivery = ratio(children_ns, report.deliveries);
            let c = peer_costs(&report);
            row.kernel_drops = Some(c.kernel_drops);
            row.send_drops = Some(c.send_drops);
            row.lost_unattributed = Some(report.lost.saturating_sub(c.kernel_drops + c.send_drops));
            row.sender_datagrams_per_msg = ratio(c.data_datagrams, sent);
            row.sender_bytes_per_msg = ratio(c.data_bytes, sent);
            row.send_syscalls_per_msg = ratio(c.send_syscalls, sent);
            row.recv_syscalls_per_delivery = ratio(c.recv_syscalls, report.deliveries);
            row.syscalls_per_msg = ratio(c.send_syscalls + c.recv_syscalls, sent);
            row.cpu_children_ns_per_delivery = ratio(children_ns, report.deliveries);
            if c.cpu_ns > 0 {
                row.cpu_ns_per_delivery = ratio(c.cpu_ns, report.deliveries);
                row.cpu_source = "peers";
            }
            progress(&format!(
                "{label} saturation, M={}: {} deliveries/s, {} lost{}",
                p.saturation_msgs,
                row.delivered_per_s
                    .map_or("?".into(), super::output::thousands),
                row.lost,
                row.kernel_drops
                    .map_or(String::new(), |k| format!(" ({k} kernel drops)"))
            ));
        }
        Err(e) => {
            drop_logs(session.log_dir(), None);
            row.error = Some(format!("saturation run failed: {e:#}"));
            progress(&format!("{label} saturation: failed: {e:#}"));
        }
    }

    // Paced: latency at a low rate.
    let outcome = session.run(&plan.experiment(p, seed, false));
    drop_logs(session.log_dir(), None);
    match outcome {
        Ok(crate::lab::Ran { report, .. }) => {
            row.latency_us.p50 = report.latency_us.p50;
            row.latency_us.p99 = report.latency_us.p99;
            row.latency_us.deliveries = report.deliveries;
            row.latency_us.lost = report.lost;
            progress(&format!(
                "{label} paced, M={} at {}/s: latency p50 {} us, p99 {} us",
                p.paced_msgs,
                plan.rate,
                super::output::opt(report.latency_us.p50, 1),
                super::output::opt(report.latency_us.p99, 1)
            ));
        }
        Err(e) => {
            let why = format!("paced run failed: {e:#}");
            row.error = Some(match row.error.take() {
                Some(first) => format!("{first}; {why}"),
                None => why,
            });
            progress(&format!("{label} paced: failed: {e:#}"));
        }
    }
    row
}
