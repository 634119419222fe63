//! Line charts over the number of peers, drawn by hand as SVG: the `--svg` of `lab` and
//! `report`, the charts of `report --html`. One look everywhere: Okabe–Ito colours (dashed on
//! the second round), a marker shape per series, the legend outside the plot, one x tick per N
//! (log-spaced when N spans 8× or more), y fitted to the data (log when it spans two decades),
//! and series drawn on top of each other nudged apart so that none hides another.

use std::fmt::Write as _;

use super::geometry::nice_ceiling;

/// Okabe–Ito without its yellow, which is too light for a thin line on white.
const PALETTE: [&str; 7] = [
    "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000",
];
/// Dash patterns: a second (third, …) round through the palette gets its own.
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];
/// Markers, one per series in turn (with the colour and dash: three cues, not one).
const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
];

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

pub const W: f64 = 560.0;
pub const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = H - 42.0;

/// One line: a name for the legend and (N, value) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(u16, f64)>,
}

/// One panel: what it shows and its series.
pub struct Chart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    /// Upper bound the value can never pass (100 for a share in %): the axis stops there.
    pub cap: Option<f64>,
    pub series: &'a [Series],
}

/// Colour, dash and marker of series `i`.
fn style_of(i: usize) -> (&'static str, &'static str, Marker) {
    (
        PALETTE[i % PALETTE.len()],
        DASHES[(i / PALETTE.len()) % DASHES.len()],
        MARKERS[i % MARKERS.len()],
    )
}

/// The y range fitted to `values`: nice steps around the data's min and max, with 0 in it
/// when the data come near it; never past `cap`.
pub fn y_range(values: &[f64], cap: Option<f64>) -> (f64, f64) {
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
    match cap {
        Some(c) if b > c && hi <= c => (a, c),
        _ => (a, b),
    }
}

/// A log axis when every value is positive and they span two decades or more: then a value
/// of 0.0001 does not sit on zero beside one of 50.
fn log_y(values: &[f64]) -> Option<(f64, f64)> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || finite.iter().any(|&v| v <= 0.0) {
        return None;
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(0.0, f64::max);
    (hi / lo >= 100.0).then(|| {
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf(hi.log10().ceil()),
        )
    })
}

/// The smallest of 1, 2, 2.5, 5, 10 × 10^k that is at least `v`: round tick steps.
fn tick_step(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * e)
        .find(|&step| step >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * e)
}

fn fmt_tick(v: f64, step: f64) -> String {
    if v.abs() >= 1e6 {
        return format!("{}M", v / 1e6);
    }
    if v.abs() >= 1e4 {
        return format!("{}k", v / 1e3);
    }
    // As many decimals as the step needs (2.5 stays 2.5).
    let digits = (0..4)
        .find(|&d| (step * 10f64.powi(d)).fract().abs() < 1e-9)
        .unwrap_or(4) as usize;
    format!("{v:.digits$}")
}

/// One chart as an `<svg>` element, width W, height H. `standalone`: for a file of its own, with
/// the SVG namespace and the legend's rows under the plot; otherwise for inline use in a page
/// (which needs no namespace, so the page names no URL at all, and puts its legend in HTML).
pub fn svg(chart: &Chart, standalone: bool) -> String {
    let mut ns: Vec<u16> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    ns.sort_unstable();
    ns.dedup();
    let values: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let (first, last) = (
        f64::from(*ns.first().unwrap_or(&1)),
        f64::from(*ns.last().unwrap_or(&1)),
    );
    let log_x = first > 0.0 && last / first >= 8.0;
    let x = |n: u16| {
        let (a, b, v) = if log_x {
            (first.ln(), last.ln(), f64::from(n).ln())
        } else {
            (first, last, f64::from(n))
        };
        if b > a {
            LEFT + 20.0 + (v - a) / (b - a) * (W - LEFT - RIGHT - 40.0)
        } else {
            (LEFT + W - RIGHT) / 2.0
        }
    };
    let log = log_y(&values);
    let (lo, hi) = log.unwrap_or_else(|| y_range(&values, chart.cap));
    let y = |v: f64| {
        let f = match log {
            Some((a, b)) => (v.ln() - a.ln()) / (b.ln() - a.ln()),
            None => (v - lo) / (hi - lo),
        };
        BOTTOM - f.clamp(0.0, 1.0) * (BOTTOM - TOP)
    };
    let ticks: Vec<(f64, String)> = match log {
        Some((a, b)) => {
            let decades = (b / a).log10().round() as i32;
            (0..=decades)
                .map(|k| {
                    let v = a * 10f64.powi(k);
                    (v, fmt_tick(v, v))
                })
                .collect()
        }
        None => {
            // Ticks on round steps: 0, 500k, 1M, 1.5M rather than quarters of the range.
            let step = tick_step((hi - lo) / 4.0);
            (0..=8)
                .map(|k| lo + step * f64::from(k))
                .take_while(|v| *v <= hi + step * 1e-9)
                .map(|v| (v, fmt_tick(v, step)))
                .collect()
        }
    };
    let legend_rows = if standalone { chart.series.len() } else { 0 };
    let height = H + 18.0 * legend_rows as f64 + if standalone { 8.0 } else { 0.0 };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg{} viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" aria-label="{}" font-family="sans-serif" font-size="11">"#,
        if standalone {
            r#" xmlns="http://www.w3.org/2000/svg""#
        } else {
            ""
        },
        esc(chart.title)
    );
    let _ = write!(s, r##"<rect width="{W}" height="{height}" fill="#fff"/>"##);
    for (v, label) in &ticks {
        let yy = y(*v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    for &n in &ns {
        let xx = x(n);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{BOTTOM}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{n}</text>"##,
            BOTTOM + 16.0
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{}" y2="{BOTTOM}" stroke="#888"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#888"/>"##,
        W - RIGHT
    );
    let mid_x = (LEFT + W - RIGHT) / 2.0;
    let mid_y = (TOP + BOTTOM) / 2.0;
    let _ = write!(
        s,
        r#"<text x="{mid_x:.1}" y="{}" text-anchor="middle">peers (N){}</text><text x="12" y="{mid_y:.1}" transform="rotate(-90 12 {mid_y:.1})" text-anchor="middle">{}{}</text>"#,
        H - 6.0,
        if log_x { ", log scale" } else { "" },
        esc(chart.unit),
        if log.is_some() { ", log scale" } else { "" }
    );
    // Series whose points coincide are nudged apart by a few pixels, in turn, so each shows.
    let offsets = nudges(chart.series);
    for (i, series) in chart.series.iter().enumerate() {
        let (colour, dash, marker) = style_of(i);
        let pts: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(|p| p.1.is_finite() && (log.is_none() || p.1 > 0.0))
            .map(|&(n, v)| (x(n) + offsets[i], y(v)))
            .collect();
        let _ = write!(s, "<g><title>{}</title>", esc(&series.name));
        let line: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            line.join(" ")
        );
        for &(a, b) in &pts {
            s.push_str(&marker_svg(marker, a, b, colour));
        }
        s.push_str("</g>");
    }
    if standalone {
        for (i, series) in chart.series.iter().enumerate() {
            let (colour, dash, marker) = style_of(i);
            let yy = H + 8.0 + 18.0 * i as f64;
            let _ = write!(
                s,
                r#"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>"#,
                LEFT + 28.0
            );
            s.push_str(&marker_svg(marker, LEFT + 14.0, yy, colour));
            let _ = write!(
                s,
                r#"<text x="{}" y="{}">{}</text>"#,
                LEFT + 36.0,
                yy + 4.0,
                esc(&series.name)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// Standalone panels in one SVG file, `columns` to a row, each with its title above it and
/// its legend under it (the `--svg` of `lab`, `report` and `bench`).
pub fn figure(charts: &[Chart], columns: usize) -> String {
    let columns = columns.max(1);
    let panels: Vec<String> = charts.iter().map(|c| svg(c, true)).collect();
    let legend = charts.iter().map(|c| c.series.len()).max().unwrap_or(0);
    let cell_h = 26.0 + H + 8.0 + 18.0 * legend as f64;
    let rows = charts.len().div_ceil(columns);
    let w = columns.min(charts.len().max(1)) as f64 * (W + 20.0);
    let h = rows as f64 * cell_h;
    let mut out = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif"><rect width="{w}" height="{h}" fill="#fff"/>"##
    );
    for (k, (chart, panel)) in charts.iter().zip(&panels).enumerate() {
        let (x, y) = (
            (k % columns) as f64 * (W + 20.0),
            (k / columns) as f64 * cell_h,
        );
        // A nested <svg> at (x, y + 26): the panel keeps its own coordinates.
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="15" text-anchor="middle">{}</text>{}"#,
            x + W / 2.0,
            y + 18.0,
            esc(chart.title),
            panel.replacen(
                "<svg ",
                &format!(r#"<svg x="{x:.1}" y="{:.1}" "#, y + 26.0),
                1
            )
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A small legend swatch (line, dash and marker of series `i`) for an HTML legend.
pub fn swatch(i: usize) -> String {
    let (colour, dash, marker) = style_of(i);
    format!(
        r#"<svg width="28" height="12" aria-hidden="true"><line x1="1" y1="6" x2="27" y2="6" stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>{}</svg>"#,
        marker_svg(marker, 14.0, 6.0, colour)
    )
}

/// Horizontal offsets: 0 for a series whose points no earlier series shares; otherwise it is
/// moved ±3, ±6 … px, so identical lines stay visible side by side.
fn nudges(series: &[Series]) -> Vec<f64> {
    let mut out = vec![0.0; series.len()];
    let mut stacked = 0;
    for i in 1..series.len() {
        let same = (0..i).any(|j| {
            series[j].points.len() == series[i].points.len()
                && series[j]
                    .points
                    .iter()
                    .zip(&series[i].points)
                    .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(1.0))
        });
        if same {
            stacked += 1;
            let k = f64::from((stacked + 1) / 2) * 3.0;
            out[i] = if stacked % 2 == 1 { k } else { -k };
        }
    }
    out
}

fn marker_svg(m: Marker, x: f64, y: f64, colour: &str) -> String {
    match m {
        Marker::Circle => {
            format!(r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"/>"#)
        }
        Marker::Square => format!(
            r#"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="{colour}"/>"#,
            x - 3.5,
            y - 3.5
        ),
        Marker::Triangle => format!(
            r#"<path d="M{x:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z" fill="{colour}"/>"#,
            y - 4.5,
            x + 4.5,
            y + 3.5,
            x - 4.5,
            y + 3.5
        ),
        Marker::Diamond => format!(
            r#"<path d="M{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}Z" fill="{colour}"/>"#,
            y - 4.5,
            x + 4.5,
            y + 4.5,
            x - 4.5
        ),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y_is_fitted_to_the_data_and_a_share_stops_at_its_cap() {
        assert_eq!(y_range(&[], None), (0.0, 1.0));
        assert_eq!(y_range(&[0.0, 7.0], None), (0.0, 8.0));
        let (lo, hi) = y_range(&[1000.0, 1010.0], None);
        assert!(
            (995.0..=1000.0).contains(&lo) && (1010.0..=1015.0).contains(&hi),
            "{lo} {hi}"
        );
        let (lo, hi) = y_range(&[5.0, 5.0], None);
        assert!(lo <= 5.0 && hi > 5.0);
        assert_eq!(y_range(&[f64::NAN, 2.0], None).0, 0.0);
        // 93..100 %: the axis ends at 100, not 110.
        assert_eq!(y_range(&[93.0, 100.0], Some(100.0)).1, 100.0);
    }

    #[test]
    fn ticks_fall_on_round_steps() {
        assert_eq!(tick_step(375_000.0), 500_000.0);
        assert_eq!(tick_step(25.0), 25.0);
        assert_eq!(tick_step(1.75), 2.0);
        assert_eq!(tick_step(0.3), 0.5);
    }

    #[test]
    fn decades_get_a_log_axis() {
        assert_eq!(log_y(&[0.0001, 50.0]), Some((0.0001, 100.0)));
        assert_eq!(log_y(&[1.0, 50.0]), None);
        assert_eq!(log_y(&[0.0, 50.0]), None, "0 has no place on a log axis");
    }

    #[test]
    fn identical_series_are_nudged_apart_and_every_n_has_one_tick() {
        let same = |name: &str| Series {
            name: name.into(),
            points: vec![(2, 1.0), (4, 2.0)],
        };
        let series = [same("a"), same("b"), same("c")];
        assert_eq!(nudges(&series), vec![0.0, 3.0, -3.0]);
        let text = svg(
            &Chart {
                title: "t",
                unit: "u",
                cap: None,
                series: &series,
            },
            true,
        );
        assert_eq!(text.matches(">2</text>").count(), 1, "one tick per N");
        assert_eq!(text.matches("<polyline").count(), 3);
        assert!(text.contains(">c</text>"), "the legend is in the file");
    }
}
