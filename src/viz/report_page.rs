//! The page of `mpcomm report --html`: the aggregated table and line charts over the number of
//! peers, one line per setting (transport, ordering mode and repair, messages, WAN). One
//! self-contained file: inline CSS and SVG, no script, no URL of any kind.

use std::collections::BTreeMap;
use std::io::{self, Write};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::geometry::{nice_ceiling, PALETTE};
use crate::compare::aggregate::Group;

const W: f64 = 560.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = H - 42.0;
/// Dash patterns: a second (third, …) round through the palette gets its own.
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;max-width:1250px}
h2{margin:1.2em 0 .2em;font-size:1.15em}
.cap{margin:0 0 .5em;color:#555}
table.agg{border-collapse:collapse;font:12px/1.3 ui-monospace,monospace}
table.agg td,table.agg th{padding:2px 6px;border:1px solid #ddd;text-align:right}
table.agg th{background:#f3f3f3}
table.agg td.t{text-align:left}
.scroll{overflow-x:auto}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}
.chart{flex:0 1 580px}
svg text{font:11px sans-serif;fill:#222}
.grid{stroke:#ddd}
.axis{stroke:#888}
polyline{fill:none;stroke-width:2}
ul.legend{list-style:none;padding:0;margin:.6em 0;columns:2 320px;font-size:13px}
ul.legend li{margin:.1em 0}
ul.legend svg{vertical-align:middle;margin-right:.4em}
";

/// One chart: title, caption, the value of a group (None: no data) and its unit.
struct Metric {
    title: &'static str,
    caption: &'static str,
    unit: &'static str,
    value: fn(&Group) -> Option<f64>,
}

const METRICS: [Metric; 5] = [
    Metric {
        title: "Out-of-order rounds",
        caption: "Share of the N × M delivery positions at which not every receiver delivered the \
                  same message (mean over the samples; lower is better, 0 = one agreed order).",
        unit: "% of positions",
        value: |g| Some(g.out_of_order_pct),
    },
    Metric {
        title: "Pairwise disagreement",
        caption: "Mean Kendall distance between two receivers' delivery orders, in % of message \
                  pairs (0 = the same order, 100 = reversed).",
        unit: "% of pairs",
        value: |g| Some(100.0 * g.disagreement_mean),
    },
    Metric {
        title: "Loss",
        caption: "Messages a receiver never delivered, mean per run (summed over receivers).",
        unit: "messages",
        value: |g| Some(g.lost_mean),
    },
    Metric {
        title: "Latency p50",
        caption: "Median one-way latency (send → delivery), mean over the samples; the p99 is in \
                  the table.",
        unit: "µs",
        value: |g| g.latency_p50_us,
    },
    Metric {
        title: "Causal violations",
        caption: "Deliveries before a message that happened before them (mean over the runs \
                  where it was computed; 0 under causal and total orders).",
        unit: "deliveries",
        value: |g| g.causal_violations_mean,
    },
];

/// A series' name: the setting its groups share besides N.
fn series_name(g: &Group) -> String {
    let wan = if g.wan.is_empty() {
        String::new()
    } else {
        format!(", WAN {} ×{}", g.wan, g.time_scale)
    };
    format!(
        "{}, {}/{}, {} msgs{wan}",
        g.transport, g.order, g.repair, g.msgs_per_peer
    )
}

/// Colour and dash pattern of series `i`.
fn style_of(i: usize) -> (&'static str, &'static str) {
    (
        PALETTE[i % PALETTE.len()],
        DASHES[(i / PALETTE.len()) % DASHES.len()],
    )
}

/// The y range fitted to `values`: nice steps around the data's min and max, with 0 in it
/// when the data come near it.
pub fn y_range(values: &[f64]) -> (f64, f64) {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    let lo = if lo >= 0.0 && (lo <= hi - lo || lo == hi) {
        0.0
    } else {
        lo
    };
    let step = nice_ceiling((hi - lo) / 4.0);
    let (a, mut b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    if b <= a {
        b = a + step;
    }
    (a, b)
}

/// Write the page of `groups` (rows of [`crate::compare::aggregate::aggregate`]).
pub fn write_report_page(w: &mut dyn Write, groups: &[Group], source: &str) -> io::Result<()> {
    let mut series: BTreeMap<String, Vec<&Group>> = BTreeMap::new();
    for g in groups {
        series.entry(series_name(g)).or_default().push(g);
    }
    let mut ns: Vec<u16> = groups.iter().map(|g| g.peers).collect();
    ns.sort_unstable();
    ns.dedup();
    let samples: u64 = groups.iter().map(|g| g.samples).sum();
    let page = html! {
        (DOCTYPE)
        html lang="en";
        head {
            meta charset="utf-8";
            meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'";
            title { "mpcomm report" }
            style { (PreEscaped(STYLE)) }
        }
        body;
        h1 { "mpcomm report" }
        p { (samples) " runs from " code { (source) } " in " (groups.len()) " groups, "
            (series.len()) " settings over N = "
            (ns.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")) "." }
        section {
            h2 { "Charts" }
            p.cap { "x: the number of peers N; one line per setting, as in the legend under \
                     each chart; the y axis is fitted to the data (it need not start at 0)." }
            div.charts {
                @for m in &METRICS { (chart(m, &series, &ns)) }
            }
        }
        (table(groups))
    };
    w.write_all(page.into_string().as_bytes())?;
    w.write_all(b"</body></html>\n")
}

fn chart(m: &Metric, series: &BTreeMap<String, Vec<&Group>>, ns: &[u16]) -> Markup {
    let values: Vec<f64> = series
        .values()
        .flatten()
        .filter_map(|g| (m.value)(g))
        .collect();
    let (lo, hi) = y_range(&values);
    let x = |n: u16| {
        let (a, b) = (
            f64::from(*ns.first().unwrap_or(&0)),
            f64::from(*ns.last().unwrap_or(&0)),
        );
        if b > a {
            LEFT + 20.0 + (f64::from(n) - a) / (b - a) * (W - LEFT - RIGHT - 40.0)
        } else {
            (LEFT + W - RIGHT) / 2.0
        }
    };
    let y = |v: f64| BOTTOM - (v - lo) / (hi - lo) * (BOTTOM - TOP);
    let ticks: Vec<f64> = (0..=4)
        .map(|k| lo + (hi - lo) * f64::from(k) / 4.0)
        .collect();
    // As many decimals as the tick step needs (2.5 stays 2.5).
    let step = (hi - lo) / 4.0;
    let digits = (0..3)
        .find(|&d| (step * 10f64.powi(d)).fract().abs() < 1e-9)
        .unwrap_or(3) as usize;
    let fmt = |v: f64| format!("{v:.digits$}");
    html! {
        figure.chart style="margin:0" {
            h3 { (m.title) }
            p.cap { (m.caption) }
            @if values.is_empty() {
                p.cap { em { "No data in these results." } }
            } @else {
                svg viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img" aria-label=(m.title) {
                    @for &t in &ticks {
                        line.grid x1=(LEFT) y1=(format!("{:.1}", y(t))) x2=(W - RIGHT) y2=(format!("{:.1}", y(t))) {}
                        text x=(LEFT - 6.0) y=(format!("{:.1}", y(t) + 4.0)) text-anchor="end" { (fmt(t)) }
                    }
                    @for &n in ns {
                        line.grid x1=(format!("{:.1}", x(n))) y1=(TOP) x2=(format!("{:.1}", x(n))) y2=(BOTTOM) {}
                        text x=(format!("{:.1}", x(n))) y=(BOTTOM + 16.0) text-anchor="middle" { (n) }
                    }
                    line.axis x1=(LEFT) y1=(BOTTOM) x2=(W - RIGHT) y2=(BOTTOM) {}
                    line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(BOTTOM) {}
                    text x=(format!("{:.1}", (LEFT + W - RIGHT) / 2.0)) y=(H - 6.0) text-anchor="middle" { "peers (N)" }
                    text x="12" y=(format!("{:.1}", (TOP + BOTTOM) / 2.0))
                        transform=(format!("rotate(-90 12 {:.1})", (TOP + BOTTOM) / 2.0)) text-anchor="middle" { (m.unit) }
                    @for (i, (name, gs)) in series.iter().enumerate() {
                        @let (colour, dash) = style_of(i);
                        @let pts: Vec<(f64, f64)> = gs.iter().filter_map(|g| (m.value)(g).map(|v| (x(g.peers), y(v)))).collect();
                        g {
                            title { (name) }
                            polyline points=(pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" "))
                                stroke=(colour) stroke-dasharray=(dash) {}
                            @for (a, b) in &pts {
                                circle cx=(format!("{a:.1}")) cy=(format!("{b:.1}")) r="3.5" fill=(colour) {}
                            }
                        }
                    }
                }
                ul.legend {
                    @for (i, name) in series.keys().enumerate() {
                        @let (colour, dash) = style_of(i);
                        li {
                            svg width="28" height="10" aria-hidden="true" {
                                line x1="1" y1="5" x2="27" y2="5" stroke=(colour) stroke-width="2.5" stroke-dasharray=(dash) {}
                            }
                            (name)
                        }
                    }
                }
            }
        }
    }
}

fn table(groups: &[Group]) -> Markup {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
    html! {
        section {
            h2 { "The table" }
            p.cap { "One row per setting and N, as `mpcomm report` prints it: mean ± sample standard \
                     deviation over the runs (samples); incpl = runs with missing peers; arrival = \
                     the order the network handed up, before ordering; total = runs in which every \
                     two peers agreed on their common messages' order; ovh/dlv = control datagrams \
                     and retransmissions per delivery." }
            div.scroll {
                table.agg {
                    tr {
                        @for h in ["transport", "wan", "order", "repair", "peers", "msgs", "samples", "incpl",
                            "out-of-order ± sd", "%", "arrival ooo ± sd", "disagreement ± sd", "lost",
                            "p50 µs", "p99 µs", "causal", "total", "ovh/dlv", "delay p50 µs", "delay p99 µs"] {
                            th { (h) }
                        }
                    }
                    @for g in groups {
                        tr {
                            td.t { (g.transport) }
                            td.t { @if g.wan.is_empty() { "-" } @else { (g.wan) " ×" (g.time_scale) } }
                            td.t { (g.order) }
                            td.t { (g.repair) }
                            td { (g.peers) }
                            td { (g.msgs_per_peer) }
                            td { (g.samples) }
                            td { (g.incomplete) }
                            td { (format!("{:.1} ± {:.1}", g.out_of_order_mean, g.out_of_order_sd)) }
                            td { (format!("{:.2}", g.out_of_order_pct)) }
                            td { (format!("{:.1} ± {:.1}", g.arrival_out_of_order_mean, g.arrival_out_of_order_sd)) }
                            td { (format!("{:.4} ± {:.4}", g.disagreement_mean, g.disagreement_sd)) }
                            td { (format!("{:.1}", g.lost_mean)) }
                            td { (opt(g.latency_p50_us)) }
                            td { (opt(g.latency_p99_us)) }
                            td { (opt(g.causal_violations_mean)) }
                            td { (g.total_order_runs) "/" (g.samples) }
                            td { (format!("{:.3}", g.per_delivery_mean)) }
                            td { (opt(g.ordering_delay_p50_us)) }
                            td { (opt(g.ordering_delay_p99_us)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y_is_fitted_to_the_data() {
        assert_eq!(y_range(&[]), (0.0, 1.0));
        assert_eq!(y_range(&[0.0, 7.0]), (0.0, 8.0));
        // Far from 0: the range starts near the data.
        let (lo, hi) = y_range(&[1000.0, 1010.0]);
        assert!(
            (995.0..=1000.0).contains(&lo) && (1010.0..=1015.0).contains(&hi),
            "{lo} {hi}"
        );
        let (lo, hi) = y_range(&[5.0, 5.0]);
        assert!(lo <= 5.0 && hi > 5.0);
        assert_eq!(y_range(&[f64::NAN, 2.0]).0, 0.0);
    }

    #[test]
    fn empty_results_make_a_page_without_charts() {
        let mut out = Vec::new();
        write_report_page(&mut out, &[], "r.jsonl").unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("No data"));
        assert!(!html.contains("http:") && !html.contains("https:"));
    }
}
