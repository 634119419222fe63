//! One self-contained HTML page for a run: inline CSS, SVG and a few lines of JavaScript, no
//! URL of any kind (a Content-Security-Policy forbids every fetch), readable without scripts.
//! Sections are rendered and written one at a time, so memory holds one section's markup.
//!
//! This file holds what the sections share (the run, the slot writer) and the head; each
//! section has its own file: `diagram`, `strips`, `latency`, `tables` (matrices and report).

use std::fmt;
use std::io::{self, Write};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::trace::Times;
use crate::compare::peerlog::NOT_EXPECTED;
use crate::compare::report::Matrices;
use crate::compare::{PeerLog, Report};
use crate::wire::Order;

mod assets;
mod diagram;
mod latency;
mod strips;
mod tables;
#[cfg(test)]
mod tests;

use assets::STYLE;
use diagram::diagram;
use latency::latency;
use strips::strips;
use tables::{matrices, numbers};

/// At most this many arrows are drawn; above it every k-th message is (the page says so).
pub const MAX_ARROWS: u64 = 20_000;
/// At most this many positions per delivery-order strip (the page says how many it shows).
pub const MAX_STRIP_POSITIONS: usize = 2_000;

const WIDTH: f64 = 1200.0;
const LABEL_W: f64 = 150.0;
const LANE_GAP: f64 = 30.0;
const STRIP_H: f64 = 14.0;
const STRIP_GAP: f64 = 4.0;
/// Strips keep at least this width per cell (wider strips scroll sideways).
const MIN_CELL_W: f64 = 1.0;

/// A coordinate with one decimal (enough at this size, and short).
struct P(f64);

impl fmt::Display for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = (self.0 * 10.0).round() / 10.0;
        if r.fract() == 0.0 {
            write!(f, "{}", r as i64)
        } else {
            write!(f, "{r:.1}")
        }
    }
}

/// What the sections share: the run's size and which messages receivers disagree on.
struct Run<'a> {
    logs: &'a [PeerLog],
    times: &'a [Times],
    report: &'a Report,
    peers: u16,
    msgs: u32,
    ordered: bool,
    stride: u32,
    /// The run's matrices, if the caller has them.
    matrix: Option<&'a Matrices>,
    /// Per message index: its position is not the same at every present receiver.
    differs: Differs,
}

/// Write the page of one run. `times` are the drawn deliveries read with `stride` (see
/// [`geo::arrow_stride`]); `logs` and `report` are the run's analysis input and output.
///
/// [`geo::arrow_stride`]: super::geometry::arrow_stride
pub fn write_page(
    w: &mut dyn Write,
    logs: &[PeerLog],
    times: &[Times],
    report: &Report,
    stride: u32,
) -> io::Result<()> {
    write_page_with(w, logs, times, report, stride, None)
}

/// [`write_page`] with the run's matrices, used when `report` has none (else the page
/// analyses the logs once more for them).
pub fn write_page_with(
    w: &mut dyn Write,
    logs: &[PeerLog],
    times: &[Times],
    report: &Report,
    stride: u32,
    matrix: Option<&Matrices>,
) -> io::Result<()> {
    let header = logs.first().map(|l| &l.header);
    let run = Run {
        logs,
        times,
        report,
        peers: header.map_or(report.peers, |h| h.peers),
        msgs: header.map_or(report.msgs_per_peer, |h| h.msgs),
        ordered: header.is_some_and(|h| h.order != Order::None),
        stride,
        matrix: report.matrix.as_ref().or(matrix),
        differs: differing_messages(logs),
    };
    emit(w, head(&run))?;
    diagram(&run, w)?;
    strips(&run, w)?;
    emit(w, latency(&run))?;
    emit(w, matrices(&run))?;
    emit(w, numbers(&run))?;
    w.write_all(b"</body></html>\n")
}

/// Where a template leaves room for parts written one by one (never in escaped text: maud
/// escapes nothing in it, and no label holds a NUL).
const SLOT: &str = "\0";

/// Writes one part of a framed section.
type Fill<'a> = &'a mut dyn FnMut(&mut dyn Write) -> io::Result<()>;

fn emit(w: &mut dyn Write, m: Markup) -> io::Result<()> {
    w.write_all(m.into_string().as_bytes())
}

/// Write `frame` with each [`SLOT`] in it replaced by what the next `fill` writes: big parts
/// (arrows, strip rows) go out one at a time instead of as one string.
fn emit_framed(w: &mut dyn Write, frame: Markup, fills: &mut [Fill]) -> io::Result<()> {
    let frame = frame.into_string();
    let mut pieces = frame.split(SLOT);
    if let Some(first) = pieces.next() {
        w.write_all(first.as_bytes())?;
    }
    for (fill, piece) in fills.iter_mut().zip(pieces) {
        fill(w)?;
        w.write_all(piece.as_bytes())?;
    }
    Ok(())
}

/// Messages whose delivery position is not the same at every receiver (or that some receiver
/// lacks): the ones the diagram highlights. Sorted arrays of the distinct messages delivered,
/// so memory follows the deliveries, not the N × M a header claims (9 bytes a message).
struct Differs {
    msgs: Vec<u32>,
    differs: Vec<bool>,
}

impl Differs {
    fn get(&self, msg: u32) -> Option<bool> {
        self.msgs.binary_search(&msg).ok().map(|i| self.differs[i])
    }
}

fn differing_messages(logs: &[PeerLog]) -> Differs {
    let mut msgs: Vec<u32> = Vec::new();
    for log in logs {
        msgs.extend(log.order.iter().copied().filter(|&m| m != NOT_EXPECTED));
        msgs.sort_unstable();
        msgs.dedup();
    }
    msgs.shrink_to_fit();
    // Per message: first position seen, receivers that delivered it, positions differ.
    let mut first = vec![u32::MAX; msgs.len()];
    let mut count = vec![0u32; msgs.len()];
    let mut differs = vec![false; msgs.len()];
    for log in logs {
        for (pos, &msg) in log.order.iter().enumerate() {
            let Ok(i) = msgs.binary_search(&msg) else {
                continue;
            };
            if first[i] == u32::MAX {
                first[i] = pos as u32;
            }
            count[i] += 1;
            differs[i] |= first[i] != pos as u32;
        }
    }
    for (d, &n) in differs.iter_mut().zip(&count) {
        *d |= n as usize != logs.len();
    }
    Differs { msgs, differs }
}

fn head(run: &Run) -> Markup {
    let r = run.report;
    html! {
        (DOCTYPE)
        html lang="en";
        head {
            meta charset="utf-8";
            meta http-equiv="Content-Security-Policy"
                content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'";
            title { "mpcomm run " (format!("{:016x}", r.run_id)) }
            style { (PreEscaped(STYLE)) }
        }
        body;
        h1 { "Run " (format!("{:016x}", r.run_id)) }
        p {
            (r.peers) " peers × " (r.msgs_per_peer) " messages, "
            (r.transport.as_deref().unwrap_or("?")) ", order " (r.order) ", repair " (r.repair)
            @if let Some(wan) = &r.wan { ", WAN " (wan) " (time scale " (r.time_scale) ")" }
            ". " strong { (r.out_of_order_rounds) " of " (r.rounds) " positions out of order" }
            ", " (r.lost) " lost."
        }
    }
}
