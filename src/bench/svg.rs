//! The bench's chart: four panels against N (log axes), one line per host kind × transport,
//! the legend to the right of the panels. Written by hand: a few dozen elements, no fonts
//! measured, the same bytes for the same rows.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::measure::Row;

/// Okabe–Ito orange and blue: told apart with every common colour-vision deficiency.
fn colour(transport: &str) -> &'static str {
    match transport {
        "multicast" => "#0072B2",
        _ => "#E69F00",
    }
}

struct Panel {
    title: &'static str,
    value: fn(&Row) -> Option<f64>,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "delivered datagrams/s (saturation)",
        value: |r| r.delivered_per_s,
    },
    Panel {
        title: "CPU ns per delivery, all peers",
        value: |r| r.cpu_ns_per_delivery,
    },
    Panel {
        title: "sender DATA datagrams per message",
        value: |r| r.sender_datagrams_per_msg,
    },
    Panel {
        title: "one-way latency p99, µs (paced)",
        value: |r| r.latency_us.p99,
    },
];

const PANEL_W: f64 = 330.0;
const PANEL_H: f64 = 270.0;
const PAD_L: f64 = 62.0;
const PAD_R: f64 = 18.0;
const PAD_T: f64 = 28.0;
const PAD_B: f64 = 42.0;
const TOP: f64 = 34.0;
const LEGEND_W: f64 = 190.0;

/// `1500` → `1.5k`, `2000000` → `2M`.
fn compact(v: f64) -> String {
    let (x, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = if x >= 10.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    };
    format!("{s}{unit}")
}

/// Decades covering `lo..=hi` (both > 0) and the ticks to draw.
fn log_range(lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
    let a = lo.log10().floor();
    let mut b = hi.log10().ceil();
    if b <= a {
        b = a + 1.0;
    }
    let mut ticks = Vec::new();
    let fine = b - a <= 2.0;
    for d in (a as i32)..=(b as i32) {
        let base = 10f64.powi(d);
        ticks.push(base);
        if fine && (d as f64) < b {
            ticks.push(2.0 * base);
            ticks.push(5.0 * base);
        }
    }
    (10f64.powf(a), 10f64.powf(b), ticks)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The series: (hosts, transport) in first-appearance order.
fn series(rows: &[Row]) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for r in rows {
        if !out.iter().any(|(h, t)| *h == r.hosts && *t == r.transport) {
            out.push((r.hosts, r.transport.clone()));
        }
    }
    out
}

fn marker(svg: &mut String, transport: &str, hollow: bool, x: f64, y: f64) {
    let c = colour(transport);
    let fill = if hollow { "white" } else { c };
    if transport == "multicast" {
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{fill}" stroke="{c}" stroke-width="1.5"/>"#,
            x - 3.5,
            y - 3.5
        );
    } else {
        let _ = write!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{fill}" stroke="{c}" stroke-width="1.5"/>"#
        );
    }
}

pub fn render(rows: &[Row]) -> String {
    let all_n: Vec<u16> = {
        let mut v: Vec<u16> = rows.iter().map(|r| r.peers).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let (nmin, nmax) = (
        f64::from(*all_n.first().unwrap_or(&2)),
        f64::from(*all_n.last().unwrap_or(&4)),
    );
    let (xlo, xhi) = if nmax > nmin {
        (nmin.log2(), nmax.log2())
    } else {
        (nmin.log2() - 1.0, nmin.log2() + 1.0)
    };
    let width = 2.0 * PANEL_W + LEGEND_W;
    let height = TOP + 2.0 * PANEL_H;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="12" y="22" font-size="15" font-weight="bold">mpcomm bench: both transports against N (log axes)</text>"#
    );
    let series = series(rows);
    for (i, panel) in PANELS.iter().enumerate() {
        let ox = (i % 2) as f64 * PANEL_W;
        let oy = TOP + (i / 2) as f64 * PANEL_H;
        let (px0, px1) = (ox + PAD_L, ox + PANEL_W - PAD_R);
        let (py0, py1) = (oy + PAD_T, oy + PANEL_H - PAD_B);
        let x_of = |n: f64| px0 + (n.log2() - xlo) / (xhi - xlo) * (px1 - px0);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold">{}</text>"#,
            px0,
            py0 - 10.0,
            esc(panel.title)
        );
        let _ = write!(
            svg,
            r##"<rect x="{px0:.1}" y="{py0:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#444"/>"##,
            px1 - px0,
            py1 - py0
        );
        for &n in &all_n {
            let x = x_of(f64::from(n));
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" y1="{py0:.1}" x2="{x:.1}" y2="{py1:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{n}</text>"##,
                py1 + 14.0
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">peers N</text>"#,
            (px0 + px1) / 2.0,
            py1 + 30.0
        );
        let values: Vec<f64> = rows
            .iter()
            .filter_map(|r| (panel.value)(r))
            .filter(|v| *v > 0.0 && v.is_finite())
            .collect();
        if values.is_empty() {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666">no data</text>"##,
                (px0 + px1) / 2.0,
                (py0 + py1) / 2.0
            );
            continue;
        }
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        let (ylo, yhi, ticks) = log_range(lo, hi);
        let y_of =
            |v: f64| py1 - (v.log10() - ylo.log10()) / (yhi.log10() - ylo.log10()) * (py1 - py0);
        for t in ticks {
            let y = y_of(t);
            let _ = write!(
                svg,
                r##"<line x1="{px0:.1}" y1="{y:.1}" x2="{px1:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                px0 - 5.0,
                y + 4.0,
                compact(t)
            );
        }
        for (hosts, transport) in &series {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.hosts == *hosts && r.transport == *transport)
                .filter_map(|r| {
                    let v = (panel.value)(r)?;
                    (v > 0.0 && v.is_finite()).then(|| (x_of(f64::from(r.peers)), y_of(v)))
                })
                .collect();
            let hollow = *hosts == "netns";
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
                path.join(" "),
                colour(transport),
                if hollow {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                }
            );
            for (x, y) in pts {
                marker(&mut svg, transport, hollow, x, y);
            }
        }
    }
    // The legend, outside the panels.
    let lx = 2.0 * PANEL_W + 10.0;
    let _ = write!(
        svg,
        r#"<text x="{lx:.1}" y="{:.1}" font-size="12" font-weight="bold">series</text>"#,
        TOP + PAD_T
    );
    for (k, (hosts, transport)) in series.iter().enumerate() {
        let y = TOP + PAD_T + 20.0 + k as f64 * 20.0;
        let hollow = *hosts == "netns";
        let _ = write!(
            svg,
            r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{}/>"#,
            lx + 28.0,
            colour(transport),
            if hollow {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            }
        );
        marker(&mut svg, transport, hollow, lx + 14.0, y);
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{transport} ({hosts})</text>"#,
            lx + 36.0,
            y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

pub fn write(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(rows)).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ranges_cover_the_values() {
        let (lo, hi, ticks) = log_range(3.0, 700.0);
        assert_eq!((lo, hi), (1.0, 1000.0));
        assert!(ticks.contains(&1.0) && ticks.contains(&1000.0));
        let (lo, hi, _) = log_range(5.0, 5.0);
        assert_eq!((lo, hi), (1.0, 10.0));
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(2e6), "2M");
        assert_eq!(compact(20.0), "20");
    }
}
