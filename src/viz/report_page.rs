//! The page of `mpcomm report --html`: the aggregated table and line charts over the number of
//! peers, one line per setting (transport, ordering mode and repair, messages, WAN). One
//! self-contained file: inline CSS and SVG, no script, no URL of any kind.

use std::collections::BTreeMap;
use std::io::{self, Write};

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::compare::aggregate::Group;

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
    /// The most the value can be (a share: 100 %).
    cap: Option<f64>,
    value: fn(&Group) -> Option<f64>,
}

const METRICS: [Metric; 5] = [
    Metric {
        title: "Out-of-order rounds",
        caption: "Share of the N × M delivery positions at which not every receiver delivered the \
                  same message (mean over the samples; lower is better, 0 = one agreed order).",
        unit: "% of positions",
        cap: Some(100.0),
        value: |g| Some(g.out_of_order_pct),
    },
    Metric {
        title: "Pairwise disagreement",
        caption: "Mean Kendall distance between two receivers' delivery orders, in % of message \
                  pairs (0 = the same order, 100 = reversed).",
        unit: "% of pairs",
        cap: Some(100.0),
        value: |g| Some(100.0 * g.disagreement_mean),
    },
    Metric {
        title: "Loss",
        caption: "Messages a receiver never delivered, mean per run (summed over receivers).",
        unit: "messages",
        cap: None,
        value: |g| Some(g.lost_mean),
    },
    Metric {
        title: "Latency p50",
        caption: "Median one-way latency (send → delivery), mean over the samples; the p99 is in \
                  the table.",
        unit: "µs",
        cap: None,
        value: |g| g.latency_p50_us,
    },
    Metric {
        title: "Causal violations",
        caption: "Deliveries before a message that happened before them (mean over the runs \
                  where it was computed; 0 under causal and total orders).",
        unit: "deliveries",
        cap: None,
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
                @for m in &METRICS { (chart(m, &series)) }
            }
        }
        (table(groups))
    };
    w.write_all(page.into_string().as_bytes())?;
    w.write_all(b"</body></html>\n")
}

fn chart(m: &Metric, series: &BTreeMap<String, Vec<&Group>>) -> Markup {
    let lines = series_of(m, series);
    let empty = lines.iter().all(|s| s.points.is_empty());
    html! {
        figure.chart style="margin:0" {
            h3 { (m.title) }
            p.cap { (m.caption) }
            @if empty {
                p.cap { em { "No data in these results." } }
            } @else {
                (PreEscaped(super::chart::svg(&super::chart::Chart { title: m.title, unit: m.unit, cap: m.cap, series: &lines }, false)))
                ul.legend {
                    @for (i, name) in series.keys().enumerate() {
                        li { (PreEscaped(super::chart::swatch(i))) (name) }
                    }
                }
            }
        }
    }
}

/// The metric's value of every group, one line per setting (the same order as the legend).
fn series_of(m: &Metric, series: &BTreeMap<String, Vec<&Group>>) -> Vec<super::chart::Series> {
    series
        .iter()
        .map(|(name, gs)| super::chart::Series {
            name: name.clone(),
            points: gs
                .iter()
                .filter_map(|g| (m.value)(g).map(|v| (g.peers, v)))
                .collect(),
        })
        .collect()
}

/// The `--svg` of `lab` and `report`: out-of-order rounds and pairwise disagreement over N,
/// side by side in one standalone file, each with its legend under it.
pub fn write_svg(groups: &[Group], path: &std::path::Path) -> io::Result<()> {
    let mut series: BTreeMap<String, Vec<&Group>> = BTreeMap::new();
    for g in groups {
        series.entry(series_name(g)).or_default().push(g);
    }
    let lines: Vec<Vec<super::chart::Series>> =
        METRICS[..2].iter().map(|m| series_of(m, &series)).collect();
    let charts: Vec<super::chart::Chart> = METRICS[..2]
        .iter()
        .zip(&lines)
        .map(|(m, l)| super::chart::Chart {
            title: m.title,
            unit: m.unit,
            cap: m.cap,
            series: l,
        })
        .collect();
    std::fs::write(path, super::chart::figure(&charts, 2))
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
    fn empty_results_make_a_page_without_charts() {
        let mut out = Vec::new();
        write_report_page(&mut out, &[], "r.jsonl").unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("No data"));
        assert!(!html.contains("http:") && !html.contains("https:"));
    }
}
