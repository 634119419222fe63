//! The bench's chart: four panels against N, one line per host kind × transport, drawn by
//! [`crate::viz::chart`] like every chart of mpcomm (log axes where the values span them).

use std::path::Path;

use anyhow::Context as _;

use super::measure::Row;
use crate::viz::chart::{figure, Chart, Series};

struct Panel {
    title: &'static str,
    unit: &'static str,
    value: fn(&Row) -> Option<f64>,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "delivered datagrams/s (saturation)",
        unit: "datagrams/s",
        value: |r| r.delivered_per_s,
    },
    Panel {
        title: "CPU ns per delivery, all peers",
        unit: "ns",
        value: |r| r.cpu_ns_per_delivery,
    },
    Panel {
        title: "sender DATA datagrams per message",
        unit: "datagrams",
        value: |r| r.sender_datagrams_per_msg,
    },
    Panel {
        title: "one-way latency p99, µs (paced)",
        unit: "µs",
        value: |r| r.latency_us.p99,
    },
];

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

pub fn render(rows: &[Row]) -> String {
    let keys = series(rows);
    let lines: Vec<Vec<Series>> = PANELS
        .iter()
        .map(|p| {
            keys.iter()
                .map(|(hosts, transport)| Series {
                    name: format!("{transport} ({hosts})"),
                    points: rows
                        .iter()
                        .filter(|r| r.hosts == *hosts && r.transport == *transport)
                        .filter_map(|r| (p.value)(r).map(|v| (r.peers, v)))
                        .collect(),
                })
                .collect()
        })
        .collect();
    let charts: Vec<Chart> = PANELS
        .iter()
        .zip(&lines)
        .map(|(p, l)| Chart {
            title: p.title,
            unit: p.unit,
            cap: None,
            series: l,
        })
        .collect();
    figure(&charts, 2)
}

pub fn write(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(rows)).with_context(|| format!("cannot write {}", path.display()))
}
