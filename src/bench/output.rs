//! The bench's text table.

use std::io::{self, Write};

use super::measure::Row;
use super::plan::Plan;

/// `1234567.8` → `1,234,568`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A value with `decimals`, or `-` when there is none.
pub fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}

/// This machine, as the table's footer names it: cores, CPU model, kernel, load average.
pub fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = read("/proc/sys/kernel/osrelease");
    let load = read("/proc/loadavg");
    let load = load.split_whitespace().next().unwrap_or("?");
    format!(
        "{cores} cores, {model}, Linux {}, load average {load} at the end",
        kernel.trim()
    )
}

pub fn write_table(rows: &[Row], plan: &Plan, w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "{:<9} {:<10} {:>4} {:>12} {:>8} {:>8} {:>10} {:>9} {:>12} {:>9} {:>9} {:>9}",
        "hosts",
        "transport",
        "N",
        "delivered/s",
        "lost",
        "k.drops",
        "dgrams/msg",
        "bytes/msg",
        "syscalls/msg",
        "cpu ns/dl",
        "p50 us",
        "p99 us"
    )?;
    for r in rows {
        writeln!(
            w,
            "{:<9} {:<10} {:>4} {:>12} {:>8} {:>8} {:>10} {:>9} {:>12} {:>9} {:>9} {:>9}",
            r.hosts,
            r.transport,
            r.peers,
            r.delivered_per_s.map_or("-".into(), thousands),
            r.lost,
            r.kernel_drops.map_or("-".into(), |k| k.to_string()),
            opt(r.sender_datagrams_per_msg, 2),
            opt(r.sender_bytes_per_msg, 0),
            opt(r.syscalls_per_msg, 2),
            r.cpu_ns_per_delivery.map_or("-".into(), thousands),
            opt(r.latency_us.p50, 1),
            opt(r.latency_us.p99, 1),
        )?;
    }
    writeln!(
        w,
        "saturation: --interval 0, M = {} deliveries / N² msgs per peer (at least {}); latency: {} msgs/s per peer, fixed gap; {}-byte DATA",
        thousands(plan.deliveries as f64),
        super::plan::MIN_MSGS,
        plan.rate,
        plan.size
    )?;
    writeln!(
        w,
        "delivered/s = deliveries / (last delivery - first send); dgrams, bytes = DATA the senders sent per message; syscalls = send + receive, all peers, per message sent; cpu = all peers' user + system time per delivery"
    )?;
    writeln!(w, "machine: {}", machine())?;
    for r in rows.iter().filter(|r| r.error.is_some()) {
        writeln!(
            w,
            "{} {} N={}: {}",
            r.hosts,
            r.transport,
            r.peers,
            r.error.as_deref().unwrap_or_default()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }
}
