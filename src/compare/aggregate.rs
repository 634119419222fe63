//! `mpcomm report`: many runs' JSON lines → the original study's table, per (transport, wan,
//! time scale, peers, msgs, ordering mode, repair): samples, mean and standard deviation of the
//! ordering metrics (delivery and arrival order), causal violations, overhead, mean latency and
//! ordering-delay percentiles; as text, CSV, JSON lines and an SVG chart.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use serde::Serialize;

use super::report::Report;
use super::ReportConfig;
use crate::wire::Order;

/// One row of the table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Group {
    pub transport: String,
    pub wan: String,
    pub time_scale: f64,
    pub peers: u16,
    pub msgs_per_peer: u32,
    pub samples: u64,
    /// Runs reported with missing peers.
    pub incomplete: u64,
    pub out_of_order_mean: f64,
    pub out_of_order_sd: f64,
    /// Mean and sd of out_of_order_rounds / rounds, in percent.
    pub out_of_order_pct: f64,
    pub out_of_order_pct_sd: f64,
    pub disagreement_mean: f64,
    pub disagreement_sd: f64,
    pub disagreement_max: f64,
    pub lost_mean: f64,
    pub duplicates_mean: f64,
    /// Means over the runs that had latency data.
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub latency_p999_us: Option<f64>,
    /// Ordering mode and repair of the group's runs ("?" in results written before them).
    pub order: String,
    pub repair: String,
    /// The out-of-order rounds of the arrival order (what ordering was given).
    pub arrival_out_of_order_mean: f64,
    pub arrival_out_of_order_sd: f64,
    pub arrival_out_of_order_pct: f64,
    /// Mean over the runs where it was computed (null: in none).
    pub causal_violations_mean: Option<f64>,
    /// Runs where every two peers delivered their common messages in the same order.
    pub total_order_runs: u64,
    pub per_delivery_mean: f64,
    /// Means over the runs that had ordering-delay data.
    pub ordering_delay_p50_us: Option<f64>,
    pub ordering_delay_p99_us: Option<f64>,
}

// New columns go at the end: scripts read the older ones by position.
const CSV_HEADER: &str = "transport,wan,time_scale,peers,msgs_per_peer,samples,incomplete,out_of_order_mean,out_of_order_sd,out_of_order_pct,out_of_order_pct_sd,disagreement_mean,disagreement_sd,disagreement_max,lost_mean,duplicates_mean,latency_p50_us,latency_p99_us,latency_p999_us,order,repair,arrival_out_of_order_mean,arrival_out_of_order_sd,arrival_out_of_order_pct,causal_violations_mean,total_order_runs,per_delivery_mean,ordering_delay_p50_us,ordering_delay_p99_us";

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    // Sample standard deviation (n − 1): these are samples of a random process.
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

fn mean_of(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.flatten().collect();
    (!v.is_empty()).then(|| mean_sd(&v).0)
}

fn pct_of(r: &Report, count: u64) -> f64 {
    if r.rounds > 0 {
        100.0 * count as f64 / r.rounds as f64
    } else {
        0.0
    }
}

/// Group reports and compute each row. Rows are sorted by transport, wan, time scale, peers,
/// msgs, then ordering mode (from none to lamport) and repair, so one setting's modes are
/// adjacent.
pub fn aggregate(reports: &[Report]) -> Vec<Group> {
    type Key = (String, String, u64, u16, u32, usize, String, String);
    let mut groups: BTreeMap<Key, Vec<&Report>> = BTreeMap::new();
    let label = |s: &str| {
        if s.is_empty() {
            "?".to_owned()
        } else {
            s.to_owned()
        }
    };
    for r in reports {
        let rank = Order::ALL
            .iter()
            .position(|o| o.as_str() == r.order)
            .unwrap_or(Order::ALL.len());
        let key = (
            r.transport.clone().unwrap_or_else(|| "?".into()),
            r.wan.clone().unwrap_or_default(),
            r.time_scale.to_bits(),
            r.peers,
            r.msgs_per_peer,
            rank,
            label(&r.order),
            label(&r.repair),
        );
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(
            |((transport, wan, scale, peers, msgs_per_peer, _, order, repair), rs)| {
                let ooo: Vec<f64> = rs.iter().map(|r| r.out_of_order_rounds as f64).collect();
                let pct: Vec<f64> = rs
                    .iter()
                    .map(|r| pct_of(r, r.out_of_order_rounds))
                    .collect();
                let arrival: Vec<f64> = rs
                    .iter()
                    .map(|r| r.arrival.out_of_order_rounds as f64)
                    .collect();
                let arrival_pct: Vec<f64> = rs
                    .iter()
                    .map(|r| pct_of(r, r.arrival.out_of_order_rounds))
                    .collect();
                let (arrival_out_of_order_mean, arrival_out_of_order_sd) = mean_sd(&arrival);
                let dis: Vec<f64> = rs.iter().map(|r| r.pairwise_disagreement.mean).collect();
                let (out_of_order_mean, out_of_order_sd) = mean_sd(&ooo);
                let (disagreement_mean, disagreement_sd) = mean_sd(&dis);
                Group {
                    transport,
                    wan,
                    time_scale: f64::from_bits(scale),
                    peers,
                    msgs_per_peer,
                    samples: rs.len() as u64,
                    incomplete: rs.iter().filter(|r| !r.missing_peers.is_empty()).count() as u64,
                    out_of_order_mean,
                    out_of_order_sd,
                    out_of_order_pct: mean_sd(&pct).0,
                    out_of_order_pct_sd: mean_sd(&pct).1,
                    disagreement_mean,
                    disagreement_sd,
                    disagreement_max: rs
                        .iter()
                        .map(|r| r.pairwise_disagreement.max)
                        .fold(0.0, f64::max),
                    lost_mean: mean_sd(&rs.iter().map(|r| r.lost as f64).collect::<Vec<_>>()).0,
                    duplicates_mean: mean_sd(
                        &rs.iter().map(|r| r.duplicates as f64).collect::<Vec<_>>(),
                    )
                    .0,
                    latency_p50_us: mean_of(rs.iter().map(|r| r.latency_us.p50)),
                    latency_p99_us: mean_of(rs.iter().map(|r| r.latency_us.p99)),
                    latency_p999_us: mean_of(rs.iter().map(|r| r.latency_us.p999)),
                    order,
                    repair,
                    arrival_out_of_order_mean,
                    arrival_out_of_order_sd,
                    arrival_out_of_order_pct: mean_sd(&arrival_pct).0,
                    causal_violations_mean: mean_of(
                        rs.iter().map(|r| r.causal_violations.map(|c| c as f64)),
                    ),
                    total_order_runs: rs.iter().filter(|r| r.total_order).count() as u64,
                    per_delivery_mean: mean_sd(
                        &rs.iter()
                            .map(|r| r.overhead.per_delivery)
                            .collect::<Vec<_>>(),
                    )
                    .0,
                    ordering_delay_p50_us: mean_of(rs.iter().map(|r| r.ordering_delay_us.p50)),
                    ordering_delay_p99_us: mean_of(rs.iter().map(|r| r.ordering_delay_us.p99)),
                }
            },
        )
        .collect()
}

/// The fields without which a JSON object is not a run report (every report has them).
const REPORT_KEYS: [&str; 4] = ["run_id", "peers", "msgs_per_peer", "rounds"];

/// Read a results file. A line that is not a run report (not JSON, or an object without the
/// report's fields, such as a lab's mode summary) is an error naming the file and line: a
/// table of `?` from a wrong file would look like a result.
pub fn read_results(path: &Path) -> anyhow::Result<Vec<Report>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open results file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: not a run report (not JSON)", at()))?;
        let missing: Vec<&str> = REPORT_KEYS
            .into_iter()
            .filter(|k| value.get(k).is_none())
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "{}: not a run report (no {}); give a file of `--json` or `--results` lines",
            at(),
            missing.join(", ")
        );
        let report =
            serde_json::from_value(value).with_context(|| format!("{}: not a run report", at()))?;
        out.push(report);
    }
    Ok(out)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |x| format!("{x:.1}"))
}

/// The aggregated table of `reports`.
pub fn write_table(reports: &[Report], w: &mut dyn Write) -> io::Result<()> {
    table(&aggregate(reports), w)
}

/// The aggregated rows of `reports` as CSV.
pub fn write_csv(reports: &[Report], w: &mut dyn Write) -> io::Result<()> {
    csv(&aggregate(reports), w)
}

/// The chart of `reports` (see [`svg`]).
pub fn write_svg(reports: &[Report], path: &Path) -> anyhow::Result<()> {
    svg(&aggregate(reports), path)
}

fn table(groups: &[Group], w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "{:<10} {:<8} {:<9} {:<6} {:>5} {:>5} {:>7} {:>5} {:>22} {:>7} {:>22} {:>18} {:>8} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "transport",
        "wan",
        "order",
        "repair",
        "peers",
        "msgs",
        "samples",
        "incpl",
        "out-of-order mean ± sd",
        "%",
        "arrival ooo mean ± sd",
        "disagreement ± sd",
        "lost",
        "p50 us",
        "p99 us",
        "causal",
        "total",
        "ovh/dlv",
        "delay p50",
        "delay p99"
    )?;
    for g in groups {
        let wan = if g.wan.is_empty() {
            "-".to_owned()
        } else if g.time_scale != 1.0 {
            format!("{}x{}", g.wan, g.time_scale)
        } else {
            g.wan.clone()
        };
        writeln!(
            w,
            "{:<10} {:<8} {:<9} {:<6} {:>5} {:>5} {:>7} {:>5} {:>22} {:>7.2} {:>22} {:>18} {:>8.1} {:>9} {:>9} {:>9} {:>7} {:>9.3} {:>9} {:>9}",
            g.transport,
            wan,
            g.order,
            g.repair,
            g.peers,
            g.msgs_per_peer,
            g.samples,
            g.incomplete,
            format!("{:.1} ± {:.1}", g.out_of_order_mean, g.out_of_order_sd),
            g.out_of_order_pct,
            format!(
                "{:.1} ± {:.1}",
                g.arrival_out_of_order_mean, g.arrival_out_of_order_sd
            ),
            format!("{:.4} ± {:.4}", g.disagreement_mean, g.disagreement_sd),
            g.lost_mean,
            opt(g.latency_p50_us),
            opt(g.latency_p99_us),
            opt(g.causal_violations_mean),
            format!("{}/{}", g.total_order_runs, g.samples),
            g.per_delivery_mean,
            opt(g.ordering_delay_p50_us),
            opt(g.ordering_delay_p99_us),
        )?;
    }
    Ok(())
}

fn csv(groups: &[Group], w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, "{CSV_HEADER}")?;
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    for g in groups {
        writeln!(
            w,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            quote(&g.transport),
            quote(&g.wan),
            g.time_scale,
            g.peers,
            g.msgs_per_peer,
            g.samples,
            g.incomplete,
            g.out_of_order_mean,
            g.out_of_order_sd,
            g.out_of_order_pct,
            g.out_of_order_pct_sd,
            g.disagreement_mean,
            g.disagreement_sd,
            g.disagreement_max,
            g.lost_mean,
            g.duplicates_mean,
            opt(g.latency_p50_us),
            opt(g.latency_p99_us),
            opt(g.latency_p999_us),
            quote(&g.order),
            quote(&g.repair),
            g.arrival_out_of_order_mean,
            g.arrival_out_of_order_sd,
            g.arrival_out_of_order_pct,
            opt(g.causal_violations_mean),
            g.total_order_runs,
            g.per_delivery_mean,
            opt(g.ordering_delay_p50_us),
            opt(g.ordering_delay_p99_us),
        )?;
    }
    Ok(())
}

/// Two panels over the number of peers, one line per (transport, order, repair, msgs, wan):
/// out-of-order rounds (% of N × M) and mean pairwise disagreement (%); drawn by
/// [`crate::viz::chart`], as the charts of `report --html`.
pub fn svg(groups: &[Group], path: &Path) -> anyhow::Result<()> {
    crate::viz::report_page::write_svg(groups, path)
        .map_err(|e| anyhow!("cannot draw {}: {e}", path.display()))
}

pub fn run(args: &ReportConfig) -> anyhow::Result<ExitCode> {
    let reports = read_results(&args.results)?;
    if reports.is_empty() {
        anyhow::bail!(
            "{} holds no reports: run `mpcomm compare --results {}` or `mpcomm lab` first",
            args.results.display(),
            args.results.display()
        );
    }
    let groups = aggregate(&reports);
    let stdout = crate::util::out::stdout();
    let mut out = stdout.lock();
    if args.csv {
        csv(&groups, &mut out)?;
    } else if args.json {
        for g in &groups {
            writeln!(out, "{}", serde_json::to_string(g)?)?;
        }
    } else {
        table(&groups, &mut out)?;
    }
    out.flush()?;
    if let Some(svg) = &args.svg {
        self::svg(&groups, svg)?;
        say!("report: chart written to {}", svg.display());
    }
    if let Some(page) = &args.html {
        let source = args.results.display().to_string();
        crate::viz::create_page(page, |w| {
            crate::viz::report_page::write_report_page(w, &groups, &source)
        })?;
        say!("report: page written to {}", page.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(order: &str, ooo: u64, arrival: u64, causal: Option<u64>) -> Report {
        let mut r = Report {
            transport: Some("fanout".into()),
            peers: 4,
            msgs_per_peer: 10,
            rounds: 40,
            order: order.into(),
            repair: "nack".into(),
            out_of_order_rounds: ooo,
            causal_violations: causal,
            total_order: ooo == 0,
            ..Report::default()
        };
        r.arrival.out_of_order_rounds = arrival;
        r.overhead.per_delivery = 0.5;
        r.ordering_delay_us.p50 = Some(ooo as f64);
        r
    }

    #[test]
    fn groups_by_order_and_repair_in_mode_order() {
        let rs = [
            report("lamport", 0, 30, Some(0)),
            report("none", 20, 20, Some(4)),
            report("none", 10, 10, None),
            report("", 5, 5, Some(1)),
        ];
        let g = aggregate(&rs);
        let labels: Vec<(&str, &str)> = g.iter().map(|g| (&*g.order, &*g.repair)).collect();
        assert_eq!(
            labels,
            [("none", "nack"), ("lamport", "nack"), ("?", "nack")]
        );
        assert_eq!((g[0].samples, g[0].out_of_order_mean), (2, 15.0));
        assert_eq!(g[0].arrival_out_of_order_mean, 15.0);
        // The mean over the runs where it was computed.
        assert_eq!(g[0].causal_violations_mean, Some(4.0));
        assert_eq!(
            (g[1].total_order_runs, g[1].arrival_out_of_order_pct),
            (1, 75.0)
        );
        assert_eq!(g[1].per_delivery_mean, 0.5);
        let mut csv_out = Vec::new();
        csv(&g, &mut csv_out).unwrap();
        let text = String::from_utf8(csv_out).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let row: Vec<&str> = text.lines().nth(2).unwrap().split(',').collect();
        assert_eq!(header.len(), row.len());
        let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!((col("order"), col("repair")), ("lamport", "nack"));
        assert_eq!(col("arrival_out_of_order_mean"), "30");
        let mut table_out = Vec::new();
        table(&g, &mut table_out).unwrap();
        assert!(String::from_utf8(table_out).unwrap().contains("lamport"));
    }
}
