//! The delivery-order strips: a row of cells per receiver, coloured by sender.

use std::io::{self, Write};

use maud::{html, Markup, PreEscaped};

use super::{
    emit, emit_framed, Run, MAX_STRIP_POSITIONS, MIN_CELL_W, P, SLOT, STRIP_GAP, STRIP_H, WIDTH,
};
use crate::compare::peerlog::NOT_EXPECTED;
use crate::viz::geometry as geo;

/// The sender of each position of an order (`None`: a message no sender should have sent).
fn senders_of(order: &[u32], msgs: u32) -> impl Iterator<Item = Option<u16>> + '_ {
    order
        .iter()
        .map(move |&m| (m != NOT_EXPECTED && msgs > 0).then(|| (m / msgs) as u16))
}

/// Positions (under `shown`) at which not every order holds the same message.
pub(super) fn disagreeing_positions(orders: &[&[u32]], shown: usize) -> Vec<bool> {
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

pub(super) fn strips(run: &Run, w: &mut dyn Write) -> io::Result<()> {
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
