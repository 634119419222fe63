//! The matrices as heat tables, and the comparator's report as text.

use maud::{html, Markup, PreEscaped};

use super::assets::SCRIPT;
use super::Run;

/// The receiver × sender latency p50 and the pairwise disagreement as heatmaps: tables whose
/// cells are shaded by value (darker = larger), the value in the cell and on hover.
pub(super) fn matrices(run: &Run) -> Markup {
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

pub(super) fn numbers(run: &Run) -> Markup {
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
