//! The side-by-side table of ordering modes: one row per mode × transport (× size), aggregated
//! over the runs. It reads reports as JSON values by path, not as `Report` fields, so a field
//! the comparator does not (yet) write shows as "-" instead of breaking the build or the table.

use std::io::{self, Write};

use serde_json::{json, Value};

use crate::wire::{Order, Repair, Transport};

/// Counts where one bad run matters: shown as median and max.
const VIOLATIONS: [&str; 3] = [
    "arrival.out_of_order_rounds",
    "out_of_order_rounds",
    "causal_violations",
];
/// Shown as the median over the runs.
const MEDIANS: [&str; 7] = [
    "rounds",
    "lost",
    "kernel_drops",
    "duplicates",
    "overhead.per_delivery",
    "ordering_delay_us.p50",
    "ordering_delay_us.p99",
];

/// One row; `None` = no run of the row had the field.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub order: String,
    pub repair: String,
    pub transport: String,
    pub peers: String,
    pub msgs: String,
    pub runs: usize,
    /// Per `VIOLATIONS` entry: (median, max).
    pub violations: [Option<(f64, f64)>; 3],
    /// Per `MEDIANS` entry.
    pub medians: [Option<f64>; 7],
}

/// A report's JSON with the mode that was asked for where the report does not say (a
/// comparator that does not read the mode from the logs yet), so rows still tell modes apart.
pub fn with_asked(mut v: Value, order: Order, repair: Repair, transport: Transport) -> Value {
    let asked = [
        ("order", order.as_str()),
        ("repair", repair.as_str()),
        ("transport", transport.as_str()),
    ];
    for (key, value) in asked {
        if v.get(key).is_none_or(Value::is_null) {
            v[key] = value.into();
        }
    }
    v
}

/// The value at a dotted path (`"a.b"` = `v["a"]["b"]`), if it is there.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn label(v: &Value, path: &str) -> String {
    match at(v, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Group runs by (order, repair, transport, peers, msgs), rows in first-seen order.
pub fn rows(runs: &[Value]) -> Vec<Row> {
    let key =
        |v: &Value| ["order", "repair", "transport", "peers", "msgs_per_peer"].map(|p| label(v, p));
    let mut keys: Vec<[String; 5]> = Vec::new();
    for r in runs {
        let k = key(r);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|k| {
            let group: Vec<&Value> = runs.iter().filter(|r| key(r) == k).collect();
            let numbers = |path: &str| -> Vec<f64> {
                group.iter().filter_map(|r| at(r, path)?.as_f64()).collect()
            };
            let [order, repair, transport, peers, msgs] = k;
            Row {
                order,
                repair,
                transport,
                peers,
                msgs,
                runs: group.len(),
                violations: VIOLATIONS.map(|p| {
                    let v = numbers(p);
                    let max = v.iter().copied().reduce(f64::max);
                    median(v).zip(max)
                }),
                medians: MEDIANS.map(|p| median(numbers(p))),
            }
        })
        .collect()
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn med_max(v: Option<(f64, f64)>) -> String {
    match v {
        None => "-".into(),
        Some((m, x)) => format!("{} ({})", num(Some(m)), num(Some(x))),
    }
}

/// The human table, with a legend that says what the cells are.
pub fn write_human(rows: &[Row], w: &mut dyn Write) -> io::Result<()> {
    let head = [
        "order",
        "repair",
        "transport",
        "N",
        "M",
        "runs",
        "rounds",
        "ooo arrival",
        "ooo delivery",
        "causal viol.",
        "lost",
        "kernel drops",
        "dups",
        "overhead",
        "delay p50",
        "delay p99",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.order.clone(),
                r.repair.clone(),
                r.transport.clone(),
                r.peers.clone(),
                r.msgs.clone(),
                r.runs.to_string(),
                num(r.medians[0]),
            ];
            c.extend(r.violations.iter().map(|&v| med_max(v)));
            c.extend(r.medians[1..].iter().map(|&v| num(v)));
            c
        })
        .collect();
    let width: Vec<usize> = (0..head.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: &[String]| {
        // Names left-aligned, numbers right-aligned.
        let parts: Vec<String> = c
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (s, &n))| {
                if i < 3 {
                    format!("{s:<n$}")
                } else {
                    format!("{s:>n$}")
                }
            })
            .collect();
        parts.join("  ")
    };
    writeln!(w, "{}", line(&head.map(String::from)))?;
    for c in &cells {
        writeln!(w, "{}", line(c))?;
    }
    writeln!(
        w,
        "Medians over the runs; ooo = out-of-order rounds in arrival and in delivery order, which\n\
         with causal violations show as median (max). kernel drops = datagrams this host's full\n\
         receive buffers dropped (they explain lost; repaired ones are not lost). overhead =\n\
         protocol overhead per delivery; delay = ordering delay (arrival to delivery), µs;\n\
         - = not in the reports."
    )
}

/// The `--json` form: `{"summary": [row, …]}`, missing values as null.
pub fn summary_json(rows: &[Row]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut o = json!({
                "order": r.order, "repair": r.repair, "transport": r.transport,
                "peers": r.peers.parse::<u64>().ok(), "msgs_per_peer": r.msgs.parse::<u64>().ok(),
                "runs": r.runs,
            });
            for (p, v) in VIOLATIONS.iter().zip(&r.violations) {
                o[p.replace('.', "_")] =
                    v.map_or(Value::Null, |(m, x)| json!({"median": m, "max": x}));
            }
            for (p, v) in MEDIANS.iter().zip(&r.medians) {
                o[p.replace('.', "_")] = json!(v);
            }
            o
        })
        .collect();
    json!({ "summary": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(order: &str, transport: &str, ooo: u64, causal: Option<u64>) -> Value {
        let mut v = json!({
            "order": order, "repair": "nack", "transport": transport, "peers": 4,
            "msgs_per_peer": 10, "rounds": 40, "out_of_order_rounds": ooo, "lost": 0,
            "kernel_drops": 7,
            "arrival": {"out_of_order_rounds": ooo + 5},
            "overhead": {"per_delivery": 1.25},
            "ordering_delay_us": {"p50": 120.0, "p99": 900.5},
        });
        if let Some(c) = causal {
            v["causal_violations"] = json!(c);
        }
        v
    }

    #[test]
    fn rows_group_by_mode_and_transport_with_median_and_max() {
        let runs = [
            run("fifo", "fanout", 3, Some(1)),
            run("fifo", "fanout", 9, Some(4)),
            run("fifo", "fanout", 4, None),
            run("causal", "fanout", 0, Some(0)),
            run("fifo", "multicast", 2, Some(0)),
        ];
        let rows = rows(&runs);
        let names: Vec<(&str, &str, usize)> = rows
            .iter()
            .map(|r| (r.order.as_str(), r.transport.as_str(), r.runs))
            .collect();
        assert_eq!(
            names,
            [
                ("fifo", "fanout", 3),
                ("causal", "fanout", 1),
                ("fifo", "multicast", 1)
            ]
        );
        let fifo = &rows[0];
        assert_eq!(fifo.violations[0], Some((9.0, 14.0))); // arrival: 8, 14, 9
        assert_eq!(fifo.violations[1], Some((4.0, 9.0)));
        assert_eq!(fifo.violations[2], Some((2.5, 4.0))); // only two runs had it
        assert_eq!(fifo.medians[0], Some(40.0));
        assert_eq!(fifo.medians[2], Some(7.0)); // kernel drops 7, 7, 7
        assert_eq!(fifo.medians[3], None); // no duplicates field
        assert_eq!(fifo.medians[6], Some(900.5));
    }

    #[test]
    fn the_asked_mode_fills_in_only_what_the_report_lacks() {
        let v = with_asked(
            json!({"transport": null}),
            Order::Fifo,
            Repair::Nack,
            Transport::Fanout,
        );
        assert_eq!(
            (v["order"].as_str(), v["transport"].as_str()),
            (Some("fifo"), Some("fanout"))
        );
        let said = json!({"order": "causal", "repair": "off", "transport": "multicast"});
        assert_eq!(
            with_asked(said.clone(), Order::Fifo, Repair::Nack, Transport::Fanout),
            said
        );
    }

    #[test]
    fn missing_fields_show_as_dashes_and_nulls() {
        // A report from before the ordering fields: only the old ones.
        let old = json!({"transport": "fanout", "peers": 3, "msgs_per_peer": 5,
                         "rounds": 15, "out_of_order_rounds": 2, "lost": 1, "duplicates": 0});
        let rows = rows(&[old]);
        assert_eq!(
            (rows[0].order.as_str(), rows[0].repair.as_str()),
            ("-", "-")
        );
        let mut text = Vec::new();
        write_human(&rows, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let line: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            line,
            [
                "-", "-", "fanout", "3", "5", "1", "15", "-", "2", "(2)", "-", "1", "-", "0", "-",
                "-", "-"
            ]
        );
        let j = summary_json(&rows);
        let row = &j["summary"][0];
        assert_eq!(
            row["out_of_order_rounds"],
            json!({"median": 2.0, "max": 2.0})
        );
        assert_eq!(row["causal_violations"], Value::Null);
        assert_eq!(row["ordering_delay_us_p99"], Value::Null);
        assert_eq!(row["kernel_drops"], Value::Null);
        assert_eq!(row["peers"], 3);
        assert_eq!(row["order"], "-");
    }
}
