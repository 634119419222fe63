//! `mpcomm log dump`: a delivery log as text or CSV.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::wire::log::{LogView, FAILURE_SEQUENCER_LOST};

/// The CSV header, exactly (scripts depend on it; new columns go at the end).
pub const CSV_HEADER: &str =
    "receiver,position,sender,seq,send_ns,recv_ns,deliver_ns,arrive_ns,arrival,retransmitted";

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
                "{},{pos},{},{},{},{},{},{},{},{}",
                h.peer_id,
                r.sender,
                r.seq,
                r.send_ns,
                r.recv_ns,
                r.deliver_ns,
                r.arrive_ns,
                r.arrival,
                u8::from(r.retransmitted)
            )?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "# run {:016x}  peer {} of {}  {} msgs/peer  transport {}",
        h.run_id,
        h.peer_id,
        h.peers,
        h.msgs,
        h.transport.map_or("?", |t| t.as_str())
    )?;
    writeln!(out, "# {} deliveries  setup {:.1} ms  duration {:.1} ms  malformed {}  foreign {}  kernel stamps {}",
        h.record_count, h.setup_ns as f64 / 1e6, h.duration_ns as f64 / 1e6, h.malformed, h.foreign, h.kernel_stamps)?;
    let c = &h.cost;
    writeln!(
        out,
        "# order {}  repair {}  control datagrams {} ({} bytes)  retransmissions {}  nacks {}  given up {}  duplicates dropped {}",
        h.order, h.repair, c.control_datagrams, c.control_bytes, c.retransmissions, c.nacks_sent, c.given_up, c.duplicates_dropped
    )?;
    if h.failure == FAILURE_SEQUENCER_LOST {
        writeln!(out, "# failure: the sequencer (peer 0) fell silent")?;
    } else if h.failure != 0 {
        writeln!(out, "# failure: unknown code {}", h.failure)?;
    }
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
        "{:>8} {:>6} {:>8} {:>12} {:>8} {:>10} {:>4}",
        "position", "sender", "seq", "latency_us", "arrival", "held_us", "retx"
    )?;
    for (pos, r) in log.records().enumerate() {
        let lat = (r.deliver_ns as i128 - r.send_ns as i128) as f64 / 1e3;
        // What ordering held it back.
        let held = (r.deliver_ns as i128 - r.arrive_ns as i128) as f64 / 1e3;
        let retx = if r.retransmitted { "yes" } else { "-" };
        writeln!(
            out,
            "{pos:>8} {:>6} {:>8} {lat:>12.1} {:>8} {held:>10.1} {retx:>4}",
            r.sender, r.seq, r.arrival
        )?;
    }
    Ok(())
}
