//! The space-time diagram: one lane per peer, an arrow per drawn delivery, hold-back bars.

use std::io::{self, Write};

use maud::{html, Markup, PreEscaped};

use super::{emit, emit_framed, Run, LABEL_W, LANE_GAP, P, SLOT, WIDTH};
use crate::viz::geometry::{self as geo, Lanes, TimeScale};
use crate::viz::trace::Times;

pub(super) fn diagram(run: &Run, w: &mut dyn Write) -> io::Result<()> {
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
