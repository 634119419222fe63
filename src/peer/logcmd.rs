//! `mpcomm log dump`: a delivery log as text or CSV.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::wire::log::LogView;

/// The CSV header, exactly (scripts depend on it).
pub const CSV_HEADER: &str = "receiver,position,sender,seq,send_ns,recv_ns,deliver_ns";

pub fn dump(path: &Path, csv: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let log = LogView::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid delivery log: {e}", path.display()))?;
    let h = &log.header;
    if csv {
        writeln!(out, "{CSV_HEADER}")?;
        for (pos, r) in log.records().enumerate() {
            writeln!(
                out,
                "{},{pos},{},{},{},{},{}",
                h.peer_id, r.sender, r.seq, r.send_ns, r.recv_ns, r.deliver_ns
            )?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "# run {:#018x}  peer {} of {}  {} msgs/peer  transport {}",
        h.run_id,
        h.peer_id,
        h.peers,
        h.msgs,
        h.transport.map_or("?", |t| t.as_str())
    )?;
    writeln!(out, "# {} deliveries  setup {:.1} ms  duration {:.1} ms  malformed {}  foreign {}  kernel stamps {}",
        h.record_count, h.setup_ns as f64 / 1e6, h.duration_ns as f64 / 1e6, h.malformed, h.foreign, h.kernel_stamps)?;
    if !h.wan.is_empty() {
        writeln!(
            out,
            "# emulated WAN {} zone {} time scale {}",
            h.wan,
            h.zone,
            h.time_scale()
        )?;
    }
    writeln!(
        out,
        "{:>8} {:>6} {:>8} {:>12}",
        "position", "sender", "seq", "latency_us"
    )?;
    for (pos, r) in log.records().enumerate() {
        let lat = (r.deliver_ns as i128 - r.send_ns as i128) as f64 / 1e3;
        writeln!(out, "{pos:>8} {:>6} {:>8} {lat:>12.1}", r.sender, r.seq)?;
    }
    Ok(())
}
