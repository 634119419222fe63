//! The latency section: percentile curves per receiver and over all deliveries.

use maud::{html, Markup};

use super::{Run, P};
use crate::compare::peerlog::{code_value, NEGATIVE, OUT_OF_RANGE};
use crate::viz::geometry as geo;

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

pub(super) fn latency(run: &Run) -> Markup {
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
