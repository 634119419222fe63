//! One self-contained HTML page for a run: inline CSS, SVG and a few lines of JavaScript, no
//! URL of any kind (a Content-Security-Policy forbids every fetch), readable without scripts.
//! Sections are rendered and written one at a time, so memory holds one section's markup.

use std::fmt;
use std::io::{self, Write};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::geometry::{self as geo, Lanes, TimeScale};
use super::trace::Times;
use crate::compare::peerlog::{code_value, NEGATIVE, NOT_EXPECTED, OUT_OF_RANGE};
use crate::compare::report::Matrices;
use crate::compare::{PeerLog, Report};
use crate::wire::Order;

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

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;max-width:1250px}
h2{margin:1.2em 0 .2em;font-size:1.15em}
.cap{margin:0 0 .5em;color:#555}
.mats{display:flex;gap:2em;flex-wrap:wrap}
table.heat{border-collapse:collapse;font:12px/1.2 ui-monospace,monospace}
table.heat caption{font:13px system-ui,sans-serif;text-align:left;padding-bottom:.3em}
table.heat td,table.heat th{padding:2px 5px;text-align:right;border:1px solid #eee}
.scroll{overflow-x:auto}
svg text{font:11px sans-serif;fill:#222}
.lane line{stroke:#888;stroke-width:1}
line.a{stroke:#999;stroke-width:.7;stroke-opacity:.5;marker-end:url(#head)}
line.a.hi{stroke:#D55E00;stroke-opacity:.4}
line.hb{stroke:#0072B2;stroke-width:4;stroke-opacity:.55}
.dis{fill:#222}
.sw{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin:0 .2em 0 .8em}
.lat polyline{fill:none;stroke-width:1.3}
.lat polyline.all{stroke:#555;stroke-width:3;stroke-dasharray:6 3}
.grid{stroke:#ddd}
.pair{display:flex;gap:1em;flex-wrap:wrap}
.pair>div{flex:1 1 560px;min-width:0}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
#filter input{width:6em}
";

/// Without a script every arrow shows; with one, the select lets one sender's show alone and
/// the time window (from/to ms, or `#t=FROM-TO` in the address) hides the arrows and bars that
/// lie wholly outside it. Times map to x through the svg's `data-x0`, `data-x1`, `data-ms`.
const SCRIPT: &str = "
(function(){var f=document.getElementById('filter'),s=document.getElementById('only'),
a=document.getElementById('from'),b=document.getElementById('to'),g=document.getElementById('st');
f.hidden=false;var x0=+g.getAttribute('data-x0'),x1=+g.getAttribute('data-x1'),
ms=+g.getAttribute('data-ms');
function x(t){return ms>0?x0+Math.min(Math.max(t/ms,0),1)*(x1-x0):x0;}
function num(e,d){var t=parseFloat(e.value);return isNaN(t)?d:t;}
function apply(){var v=s.value,lo=x(num(a,0))-0.1,hi=x(num(b,ms))+0.1;
document.querySelectorAll('#st .a,#st .hb').forEach(function(e){
var p=+e.getAttribute('x1'),q=+e.getAttribute('x2');
var ok=(v===''||e.getAttribute('data-s')===v)&&Math.max(p,q)>=lo&&Math.min(p,q)<=hi;
e.style.display=ok?'':'none';});}
var m=/^#t=([0-9.]+)-([0-9.]+)$/.exec(location.hash);if(m){a.value=m[1];b.value=m[2];}
s.onchange=apply;a.oninput=apply;b.oninput=apply;apply();})();
";

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

fn diagram(run: &Run, w: &mut dyn Write) -> io::Result<()> {
    let first = run.times.iter().map(|t| t.first_ns).min().unwrap_or(0);
    let last = run.times.iter().map(|t| t.last_ns).max().unwrap_or(0);
    let scale = TimeScale::new(first, last, LABEL_W, WIDTH - 20.0);
    let lanes = Lanes {
        top: 30.0,
        gap: LANE_GAP,
    };
    let height = lanes.height(run.peers) + 10.0;
    let drawn: usize = run.times.iter().map(|t| t.drawn.len()).sum();
    let span_ms = scale.span_ms();
    let tick_ms = geo::nice_ceiling(span_ms / 8.0);
    let ticks = (0..)
        .map(|k| f64::from(k) * tick_ms)
        .take_while(|&t| t <= span_ms);
    let zone = |peer: u16| {
        run.logs
            .iter()
            .find(|l| l.header.peer_id == peer)
            .map(|l| l.header.zone.clone())
            .or_else(|| {
                run.report
                    .per_peer
                    .get(usize::from(peer))
                    .and_then(|p| p.zone.clone())
            })
            .unwrap_or_default()
    };
    let frame = html! {
        section {
            h2 { "Space-time diagram" }
            p.cap {
                "Time runs left to right, one line per peer; each line goes from a message's send \
                 (on its sender's line) to its delivery at a receiver. "
                span style="color:#D55E00" { "Orange-red" }
                ": messages delivered at different positions by different receivers."
                @if run.ordered { " Blue bars: how long ordering held a delivery back (arrival → delivery)." }
            }
            @if run.stride > 1 {
                p.cap { strong { "Thinned: " } "every " (run.stride) "th message is drawn ("
                    (drawn) " deliveries of " (run.report.deliveries) ")." }
            }
            p #filter hidden {
                label { "Show sender: "
                    select #only {
                        option value="" { "all" }
                        @for s in 0..run.peers { option value=(s) { "peer " (s) } }
                    }
                }
                " "
                label { "Time window from " input #from type="number" min="0" step="any" value="0"; }
                label { " to " input #to type="number" min="0" step="any" value=(P(span_ms)); " ms" }
                span.cap { " (arrows wholly outside the window are hidden)" }
            }
            div.scroll {
                svg #st viewBox=(format!("0 0 {WIDTH} {}", P(height))) width=(WIDTH) height=(P(height))
                    data-x0=(LABEL_W) data-x1=(WIDTH - 20.0) data-ms=(span_ms)
                    role="img" aria-label="space-time diagram" {
                    defs { marker #head viewBox="0 0 6 6" refX="6" refY="3" markerWidth="5"
                        markerHeight="5" orient="auto" { path d="M0 0L6 3L0 6z" fill="#999" {} } }
                    @for t in ticks {
                        @let x = scale.x(first + (t * 1e6) as u64);
                        line.grid x1=(P(x)) y1="18" x2=(P(x)) y2=(P(height - 10.0)) {}
                        text x=(P(x)) y="12" text-anchor="middle" { (t) " ms" }
                    }
                    @for peer in 0..run.peers {
                        @let y = lanes.y(peer);
                        g.lane {
                            text x="4" y=(P(y + 4.0)) { "peer " (peer) " " (zone(peer)) }
                            line x1=(LABEL_W) y1=(P(y)) x2=(WIDTH - 20.0) y2=(P(y)) {}
                        }
                    }
                    (PreEscaped(SLOT))
                }
            }
        }
    };
    let mut arrows = |w: &mut dyn Write| {
        for t in run.times {
            emit(w, receiver_arrows(run, t, &scale, &lanes))?;
        }
        Ok(())
    };
    emit_framed(w, frame, &mut [&mut arrows])
}

/// One receiver's arrows (and hold-back bars, when ordering ran).
fn receiver_arrows(run: &Run, t: &Times, scale: &TimeScale, lanes: &Lanes) -> Markup {
    html! {
        @for d in &t.drawn {
            @let a = geo::delivery_arrow(scale, lanes, d.sender, d.send_ns, t.receiver, d.deliver_ns);
            @let msg = u64::from(d.sender) * u64::from(run.msgs) + u64::from(d.seq);
            @let hi = u32::try_from(msg).is_ok_and(|m| run.differs.get(m) == Some(true));
            @if run.ordered && d.deliver_ns > d.arrive_ns {
                @let b = geo::hold_back_bar(scale, lanes, t.receiver, d.arrive_ns, d.deliver_ns);
                line.hb x1=(P(b.x1)) y1=(P(b.y1)) x2=(P(b.x2)) y2=(P(b.y2)) data-s=(d.sender) {}
            }
            line.a.hi[hi] x1=(P(a.x1)) y1=(P(a.y1)) x2=(P(a.x2)) y2=(P(a.y2)) data-s=(d.sender) {}
        }
    }
}

/// The sender of each position of an order (`None`: a message no sender should have sent).
fn senders_of(order: &[u32], msgs: u32) -> impl Iterator<Item = Option<u16>> + '_ {
    order
        .iter()
        .map(move |&m| (m != NOT_EXPECTED && msgs > 0).then(|| (m / msgs) as u16))
}

/// Positions (under `shown`) at which not every order holds the same message.
fn disagreeing_positions(orders: &[&[u32]], shown: usize) -> Vec<bool> {
    (0..shown)
        .map(|k| {
            let first = orders.first().and_then(|o| o.get(k));
            orders.iter().any(|o| o.get(k) != first)
        })
        .collect()
}

fn strip_block(
    run: &Run,
    orders: &[(u16, &[u32])],
    width: f64,
    class: &str,
    w: &mut dyn Write,
) -> io::Result<()> {
    let longest = orders.iter().map(|(_, o)| o.len()).max().unwrap_or(0);
    let shown = longest.min(MAX_STRIP_POSITIONS);
    let cw = geo::cell_width(shown, width - 60.0, MIN_CELL_W);
    let plain: Vec<&[u32]> = orders.iter().map(|&(_, o)| o).collect();
    let marks = disagreeing_positions(&plain, shown);
    let svg_w = 60.0 + cw * shown as f64;
    let height = 10.0 + orders.len() as f64 * (STRIP_H + STRIP_GAP) + 8.0;
    let frame = html! {
        @if shown < longest {
            p.cap { "Showing the first " (shown) " of " (longest) " positions." }
        }
        div.scroll {
            svg viewBox=(format!("0 0 {} {}", P(svg_w), P(height))) width=(P(svg_w)) height=(P(height)) {
                @for (k, &d) in marks.iter().enumerate() {
                    @if d { rect.dis x=(P(60.0 + cw * k as f64)) y="2" width=(P(cw)) height="6" {} }
                }
                (PreEscaped(SLOT))
            }
        }
    };
    let mut rows = |w: &mut dyn Write| {
        for (row, &(peer, order)) in orders.iter().enumerate() {
            let y = 10.0 + row as f64 * (STRIP_H + STRIP_GAP);
            emit(
                w,
                strip_row(run, peer, &order[..order.len().min(shown)], y, cw, class),
            )?;
        }
        Ok(())
    };
    emit_framed(w, frame, &mut [&mut rows])
}

/// One receiver's row of cells, coloured by sender.
fn strip_row(run: &Run, peer: u16, order: &[u32], y: f64, cw: f64, class: &str) -> Markup {
    html! {
        g class=(class) transform=(format!("translate(0 {})", P(y))) {
            title { "receiver " (peer) }
            text x="2" y="11" { "peer " (peer) }
            @for (k, s) in senders_of(order, run.msgs).enumerate() {
                rect x=(P(60.0 + cw * k as f64)) width=(P(cw)) height=(STRIP_H)
                    fill=(s.map_or("#fff", geo::sender_colour)) {}
            }
        }
    }
}

fn strips(run: &Run, w: &mut dyn Write) -> io::Result<()> {
    let delivery: Vec<(u16, &[u32])> = run
        .logs
        .iter()
        .map(|l| (l.header.peer_id, l.order.as_slice()))
        .collect();
    let arrival: Vec<(u16, &[u32])> = run
        .logs
        .iter()
        .map(|l| (l.header.peer_id, l.arrival_order()))
        .collect();
    let frame = html! {
        section {
            h2 { "Delivery order" }
            p.cap {
                "One row per receiver, one cell per delivery position (left = first), coloured by \
                 the message's sender; a dark mark above a position: not every receiver delivered \
                 the same message there (an out-of-order round)."
            }
            p {
                @for s in 0..run.peers {
                    span.sw style=(format!("background:{}", geo::sender_colour(s))) {}
                    "peer " (s)
                }
            }
            @if run.ordered {
                div.pair {
                    div { h3 { "Arrival order (at the ordering stage)" } (PreEscaped(SLOT)) }
                    div { h3 { "Delivery order (after ordering)" } (PreEscaped(SLOT)) }
                }
            } @else {
                (PreEscaped(SLOT))
            }
        }
    };
    if run.ordered {
        emit_framed(
            w,
            frame,
            &mut [
                &mut |w: &mut dyn Write| {
                    strip_block(run, &arrival, WIDTH / 2.0, "arrival-strip", w)
                },
                &mut |w: &mut dyn Write| strip_block(run, &delivery, WIDTH / 2.0, "strip", w),
            ],
        )
    } else {
        emit_framed(
            w,
            frame,
            &mut [&mut |w: &mut dyn Write| strip_block(run, &delivery, WIDTH, "strip", w)],
        )
    }
}

/// Sorted latency codes of deliveries (negative and out-of-range ones left out): codes rise
/// with the latency, so sorting them sorts the latencies at 2 bytes each.
fn sorted_codes<'a>(codes: impl Iterator<Item = &'a u16>) -> Vec<u16> {
    let mut v: Vec<u16> = codes
        .copied()
        .filter(|&c| c != NEGATIVE && c != OUT_OF_RANGE)
        .collect();
    v.sort_unstable();
    v
}

/// A latency code in µs.
fn code_us(code: u16) -> f64 {
    code_value(code) as f64 / 1e3
}

fn latency(run: &Run) -> Markup {
    const W: f64 = 760.0;
    const H: f64 = 340.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = H - 40.0;
    const TOP: f64 = 15.0;
    const STEPS: u32 = 120;
    let per: Vec<(u16, Vec<(f64, u16)>)> = run
        .logs
        .iter()
        .map(|l| {
            let v = sorted_codes(l.latency.codes.iter());
            (l.header.peer_id, geo::percentile_points(&v, STEPS))
        })
        .collect();
    let all_sorted = sorted_codes(run.logs.iter().flat_map(|l| l.latency.codes.iter()));
    let overall = geo::percentile_points(&all_sorted, STEPS);
    let max_nines = (all_sorted.len().max(10) as f64).log10();
    let max_us = geo::nice_ceiling(all_sorted.last().map_or(0.0, |&c| code_us(c)));
    drop(all_sorted);
    let x = |p: f64| LEFT + geo::nines(p, max_nines) / max_nines * (W - LEFT - 20.0);
    let y = |v: f64| geo::value_y(v, max_us, BOTTOM, TOP);
    let points = |pts: &[(f64, u16)]| {
        pts.iter()
            .map(|&(p, c)| format!("{},{}", P(x(p)), P(y(code_us(c)))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let x_ticks: Vec<(f64, String)> = (0..=max_nines.floor() as i32)
        .map(|k| {
            let p = 1.0 - 10f64.powi(-k);
            let label = match k {
                0 => "0%".to_owned(),
                1 => "90%".to_owned(),
                _ => format!("99.{}%", "9".repeat(k as usize - 2)).replace(".%", "%"),
            };
            (p, label)
        })
        .collect();
    html! {
        section {
            h2 { "Latency" }
            p.cap {
                "One-way latency (delivery − send) against percentile, HdrHistogram style: the x \
                 axis stretches the tail (90%, 99%, 99.9% equally apart); one coloured curve per \
                 receiver, the thick dashed grey one over all deliveries."
            }
            svg.lat viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img" aria-label="latency percentiles" {
                @for i in 0..=4 {
                    @let v = max_us * f64::from(i) / 4.0;
                    line.grid x1=(LEFT) y1=(P(y(v))) x2=(W - 20.0) y2=(P(y(v))) {}
                    text x=(LEFT - 6.0) y=(P(y(v) + 4.0)) text-anchor="end" { (v) }
                }
                @for (p, label) in &x_ticks {
                    line.grid x1=(P(x(*p))) y1=(TOP) x2=(P(x(*p))) y2=(BOTTOM) {}
                    text x=(P(x(*p))) y=(BOTTOM + 16.0) text-anchor="middle" { (label) }
                }
                text x=(P(W / 2.0)) y=(H - 4.0) text-anchor="middle" { "percentile" }
                text x="12" y=(P((TOP + BOTTOM) / 2.0)) transform=(format!("rotate(-90 12 {})", P((TOP + BOTTOM) / 2.0)))
                    text-anchor="middle" { "latency µs" }
                @for (peer, pts) in &per {
                    polyline points=(points(pts)) stroke=(geo::sender_colour(*peer)) {
                        title { "receiver " (peer) }
                    }
                }
                polyline.all points=(points(&overall)) { title { "all deliveries" } }
            }
            p {
                @for (peer, _) in &per {
                    span.sw style=(format!("background:{}", geo::sender_colour(*peer))) {}
                    "receiver " (peer)
                }
            }
        }
    }
}

/// The receiver × sender latency p50 and the pairwise disagreement as heatmaps: tables whose
/// cells are shaded by value (darker = larger), the value in the cell and on hover.
fn matrices(run: &Run) -> Markup {
    let computed;
    let m = match run.matrix {
        Some(m) => m,
        None => {
            let opts = crate::compare::AnalyseOptions {
                matrix: true,
                ..Default::default()
            };
            computed = crate::compare::analyse(run.logs, &opts);
            match &computed.matrix {
                Some(m) => m,
                None => return html! {}, // Too many peers for matrices.
            }
        }
    };
    html! {
        section {
            h2 { "Matrices" }
            p.cap { "Darker = larger. Left: the median one-way latency of each sender's messages \
                     at each receiver (µs). Right: how far apart two peers' delivery orders are \
                     (Kendall distance: 0 = the same order, 1 = reversed)." }
            div.mats {
                (heat_table("latency p50, µs (row: receiver, column: sender)", &m.latency_p50_us, 0))
                (heat_table("pairwise disagreement (Kendall distance)", &m.disagreement, 4))
            }
        }
    }
}

fn heat_table(title: &str, rows: &[Vec<Option<f64>>], digits: usize) -> Markup {
    let max = rows
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, &v| a.max(v));
    let shade = |v: f64| {
        let a = if max > 0.0 { v / max } else { 0.0 };
        // Vermilion of the palette, more opaque as the value grows; text stays readable.
        format!("background: rgba(213, 94, 0, {:.2})", 0.08 + 0.8 * a)
    };
    html! {
        table.heat {
            caption { (title) }
            tr { th {} @for c in 0..rows.len() { th { (c) } } }
            @for (r, row) in rows.iter().enumerate() {
                tr {
                    th { (r) }
                    @for (c, v) in row.iter().enumerate() {
                        @match v {
                            Some(v) => td style=(shade(*v)) title=(format!("{r} → {c}: {v:.digits$}")) { (format!("{v:.digits$}")) },
                            None => td title=(format!("{r} → {c}: none")) { "-" },
                        }
                    }
                }
            }
        }
    }
}

fn numbers(run: &Run) -> Markup {
    let mut text = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = run.report.write_human(&mut text);
    html! {
        section {
            h2 { "The report" }
            p.cap { "The comparator's numbers for this run, as `mpcomm compare` prints them; the \
                     metrics are defined in the README, section \"The comparator\"." }
            pre { (String::from_utf8_lossy(&text)) }
        }
        script { (PreEscaped(SCRIPT)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_differs_when_its_position_does_or_a_receiver_lacks_it() {
        use crate::wire::log::{encode, LogHeader, Record};
        let log = |peer: u16, order: &[(u16, u32)]| {
            let header = LogHeader {
                peer_id: peer,
                peers: 2,
                msgs: 2,
                ..LogHeader::default()
            };
            let recs: Vec<Record> = order
                .iter()
                .map(|&(sender, seq)| Record {
                    sender,
                    seq,
                    ..Record::default()
                })
                .collect();
            PeerLog::from_bytes(&encode(&header, &recs)).unwrap()
        };
        let logs = [
            log(0, &[(0, 0), (1, 0), (0, 1), (1, 1)]),
            log(1, &[(0, 0), (0, 1), (1, 0)]),
        ];
        let d = differing_messages(&logs);
        // Indices: (0,0)=0, (0,1)=1, (1,0)=2, (1,1)=3.
        assert_eq!(d.get(0), Some(false));
        assert_eq!(d.get(1), Some(true));
        assert_eq!(d.get(2), Some(true));
        assert_eq!(d.get(3), Some(true), "receiver 1 lacks it");
        assert_eq!(d.get(4), None);
    }

    #[test]
    fn coordinates_are_short() {
        assert_eq!(P(3.0).to_string(), "3");
        assert_eq!(P(3.04).to_string(), "3");
        assert_eq!(P(3.06).to_string(), "3.1");
        assert_eq!(P(-1.25).to_string(), "-1.3");
    }

    #[test]
    fn positions_disagree_where_any_order_differs_or_ends() {
        let a: &[u32] = &[0, 1, 2, 3];
        let b: &[u32] = &[0, 2, 1];
        assert_eq!(disagreeing_positions(&[a, b], 4), [false, true, true, true]);
        assert_eq!(disagreeing_positions(&[a, a], 3), [false; 3]);
    }
}
