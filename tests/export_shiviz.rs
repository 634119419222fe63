//! `mpcomm log export --shiviz` on the logs of a real `mpcomm lab` run, through the real binary:
//! the file passes ShiViz's own checks, re-implemented here independently of the exporter —
//! (1) each host's own clock entry is 1, 2, 3, … over its events; (2) every clock equals the
//! happened-before join recomputed from the send → delivery pairs named in the event text;
//! (3) clocks name only hosts present; (4) the file's regex (translated to Rust's syntax)
//! matches every event, and its delimiter every execution line.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use support::{mpcomm, Proc, TempDir};

type Clock = BTreeMap<String, u64>;

struct Event {
    host: String,
    clock: Clock,
    /// ("send" | "deliver", message id) when the text names one.
    kind: String,
    msg: String,
}

/// ShiViz's JavaScript (XRegExp) syntax to Rust's: named groups, and literal braces (JavaScript
/// takes a `{` that opens no `{n,m}` quantifier literally, Rust refuses it; these expressions
/// have no quantifier braces, so every brace is escaped).
fn to_rust(js: &str) -> regex::Regex {
    let rust = js
        .replace("(?<", "(?P<")
        .replace('{', r"\{")
        .replace('}', r"\}");
    regex::Regex::new(&rust).unwrap_or_else(|e| panic!("{js}: {e}"))
}

#[test]
fn shiviz_export_of_a_wan_lab_run_passes_shiviz_checks() {
    let logs = TempDir::new("shiviz");
    let mut c = mpcomm();
    c.args([
        "lab",
        "--json",
        "--interval",
        "1..3",
        "--drain",
        "300ms",
        "--peers",
        "4",
        "--msgs",
        "20",
        "--wan",
        "gcp8",
        "--time-scale",
        "0.05",
        "--transport",
        "fanout",
        "--log-dir",
    ])
    .arg(logs.path());
    let (status, stdout) = Proc::spawn(c).finish(Duration::from_secs(120));
    assert!(status.success(), "lab failed: {status}");
    let report: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let run_id = u64::from_str_radix(report["run_id"].as_str().unwrap(), 16).unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(logs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mplog"))
        .collect();
    assert_eq!(files.len(), 4, "{files:?}");

    let out = logs.path().join("run.shiviz");
    let status = mpcomm()
        .args(["log", "export", "--shiviz"])
        .arg(&out)
        .args(&files)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();

    // Header: regex, delimiter, empty line.
    let (regex_line, rest) = text.split_once('\n').unwrap();
    let (delim_line, rest) = rest.split_once('\n').unwrap();
    let log = rest.strip_prefix('\n').expect("an empty third line");
    let regex = to_rust(regex_line);
    let delim = to_rust(delim_line);
    for g in ["host", "clock", "event"] {
        assert!(regex.capture_names().any(|n| n == Some(g)), "group {g}");
    }

    // One execution, labelled with the run.
    let delims: Vec<_> = delim.captures_iter(log).collect();
    assert_eq!(delims.len(), 1);
    assert_eq!(delims[0].get(0).unwrap().start(), 0);
    assert_eq!(&delims[0]["trace"], format!("run {run_id:016x}"));
    let body = &log[delims[0].get(0).unwrap().end()..];
    let body = body.strip_prefix('\n').unwrap();

    // (4) The regex matches every event: its matches tile the body, two lines each.
    let mut events = Vec::new();
    let mut at = 0;
    for m in regex.captures_iter(body) {
        let whole = m.get(0).unwrap();
        assert_eq!(
            body[at..whole.start()].trim(),
            "",
            "unmatched text before {at}"
        );
        at = whole.end();
        let clock: Clock = serde_json::from_str(&m["clock"]).unwrap();
        let ev = &m["event"];
        let mut words = ev.split(' ');
        let kind = words.next().unwrap().to_owned();
        let msg = words.next().unwrap_or("").to_owned();
        events.push(Event {
            host: m["host"].to_owned(),
            clock,
            kind,
            msg,
        });
    }
    assert_eq!(body[at..].trim(), "", "unmatched text at the end");
    assert_eq!(body.lines().count(), 2 * events.len());

    let hosts: BTreeSet<String> = events.iter().map(|e| e.host.clone()).collect();
    let want: BTreeSet<String> = (0..4).map(|p| format!("peer{p}")).collect();
    assert_eq!(hosts, want);
    let sends = events.iter().filter(|e| e.kind == "send").count();
    let delivers = events.iter().filter(|e| e.kind == "deliver").count();
    assert_eq!(sends, 80);
    assert_eq!(
        delivers, 320,
        "no loss, no duplicates in a WAN run without loss"
    );
    assert_eq!(
        events.len(),
        sends + delivers,
        "only send and deliver events"
    );

    // (1) and (3).
    let mut per_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        per_host.entry(&e.host).or_default().push(i);
        assert!(e.clock.keys().all(|h| hosts.contains(h)), "{:?}", e.clock);
        assert!(e.clock.values().all(|&v| v > 0), "zero entries omitted");
    }
    for (h, idx) in &per_host {
        let mut own: Vec<u64> = idx.iter().map(|&i| events[i].clock[*h]).collect();
        own.sort_unstable();
        let expect: Vec<u64> = (1..=idx.len() as u64).collect();
        assert_eq!(own, expect, "{h}: own entries 1, 2, …");
    }

    // (2) Recompute every clock from the host orders (by own entry, as ShiViz orders a host)
    // and the send → delivery pairs, independently of the file's event order.
    let mut order: BTreeMap<&str, Vec<usize>> = per_host.clone();
    for (h, idx) in order.iter_mut() {
        idx.sort_by_key(|&i| events[i].clock[*h]);
    }
    let send_of: HashMap<&str, usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == "send")
        .map(|(i, e)| (e.msg.as_str(), i))
        .collect();
    let mut computed: Vec<Option<Clock>> = vec![None; events.len()];
    let mut cursor: BTreeMap<&str, usize> = order.keys().map(|&h| (h, 0)).collect();
    let mut left = events.len();
    while left > 0 {
        let mut progressed = false;
        for (&h, idx) in &order {
            let c = cursor.get_mut(h).unwrap();
            while *c < idx.len() {
                let i = idx[*c];
                let e = &events[i];
                let dep = if e.kind == "deliver" {
                    send_of.get(e.msg.as_str()).copied()
                } else {
                    None
                };
                if dep.is_some_and(|d| computed[d].is_none()) {
                    break;
                }
                let mut vc: Clock = if *c == 0 {
                    Clock::new()
                } else {
                    computed[idx[*c - 1]].clone().unwrap()
                };
                if let Some(d) = dep {
                    for (k, v) in computed[d].as_ref().unwrap() {
                        let x = vc.entry(k.clone()).or_insert(0);
                        *x = (*x).max(*v);
                    }
                }
                *vc.entry(h.to_owned()).or_insert(0) += 1;
                assert_eq!(vc, e.clock, "event {i} on {h}: {} {}", e.kind, e.msg);
                computed[i] = Some(vc);
                *c += 1;
                left -= 1;
                progressed = true;
            }
        }
        assert!(progressed, "happened-before has a cycle");
    }
    // Deliveries really depend on the other hosts: some clock names all four.
    assert!(events.iter().any(|e| e.clock.len() == 4));
}

#[test]
fn log_export_help_explains_shiviz() {
    let out = mpcomm().args(["log", "export", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("ShiViz"), "{help}");
    assert!(help.contains("--shiviz <FILE>"), "{help}");
}
