//! The ordering modes end to end through the real binary (`mpcomm lab --order all`): child peer
//! processes on loopback behind the emulated WAN with loss, the in-process comparator, and the
//! guarantee of each mode checked on the report — then recomputed from the `log dump --csv`
//! output by an independent script (`tests/scripts/recompute_order.py`).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{mpcomm, Proc, TempDir};

const N: u64 = 5;
const M: u64 = 30;

fn run_all_modes(logs: &TempDir, loss: &str) -> Vec<serde_json::Value> {
    let mut c = mpcomm();
    c.arg("lab");
    all_modes(c, N, M, logs, loss)
}

/// `lab … --order all --transport both --json` on `c` (which holds `lab` and any placement
/// flag); returns the per-run reports after checking the summary line.
fn all_modes(mut c: Command, n: u64, m: u64, logs: &TempDir, loss: &str) -> Vec<serde_json::Value> {
    c.args(["--json", "--order", "all", "--transport", "both"])
        .args(["--peers", &n.to_string(), "--msgs", &m.to_string()])
        .args(["--wan", "gcp8", "--time-scale", "0.05", "--wan-loss", loss])
        .args(["--interval", "10..60", "--drain", "300ms", "--log-dir"])
        .arg(logs.path());
    let (status, stdout) = Proc::spawn(c).finish(Duration::from_secs(300));
    assert!(status.success(), "lab failed: {status}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let (summary, runs): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|v| v.get("summary").is_some());
    assert_eq!(summary.len(), 1, "one side-by-side summary line");
    assert_eq!(
        summary[0]["summary"].as_array().unwrap().len(),
        10,
        "5 modes x 2 transports"
    );
    runs
}

fn u(r: &serde_json::Value, path: &str) -> u64 {
    path.split('.')
        .fold(r, |v, k| &v[k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path} in {r}"))
}

fn assert_guarantees(runs: &[serde_json::Value], what: &str) {
    assert_guarantees_of(runs, N, M, what)
}

fn assert_guarantees_of(runs: &[serde_json::Value], n: u64, m: u64, what: &str) {
    assert_eq!(runs.len(), 10);
    for r in runs {
        let order = r["order"].as_str().unwrap();
        let at = format!("{what}, {order} over {}", r["transport"]);
        // The lab gives every run a key: every datagram was authenticated, none forged.
        assert_eq!(r["authenticated"], true, "{at}");
        assert_eq!(u(r, "forged"), 0, "{at}");
        let rounds = u(r, "rounds");
        assert_eq!(rounds, n * m, "{at}");
        // The arrival order (what the network did) is disordered in every mode.
        assert!(
            u(r, "arrival.out_of_order_rounds") * 10 >= rounds * 9,
            "{at}: arrival order should show the problem"
        );
        match order {
            "none" => {
                assert_eq!(r["repair"], "off", "{at}");
                assert!(u(r, "out_of_order_rounds") * 10 >= rounds * 9, "{at}");
            }
            _ => {
                assert_eq!(r["repair"], "nack", "{at}");
                assert_eq!(u(r, "lost"), 0, "{at}");
                assert_eq!(u(r, "duplicates"), 0, "{at}");
                assert_eq!(u(r, "fifo_violations"), 0, "{at}");
                assert_eq!(u(r, "repairs.given_up"), 0, "{at}");
            }
        }
        if matches!(order, "causal" | "sequencer" | "lamport") {
            assert_eq!(u(r, "causal_violations"), 0, "{at}");
        }
        if matches!(order, "sequencer" | "lamport") {
            assert_eq!(u(r, "out_of_order_rounds"), 0, "{at}");
            assert_eq!(r["total_order"], true, "{at}");
            assert_eq!(
                r["pairwise_disagreement"]["max"].as_f64(),
                Some(0.0),
                "{at}"
            );
        }
    }
}

#[test]
fn every_mode_keeps_its_guarantee_without_and_with_loss() {
    let logs = TempDir::new("order-lab");
    assert_guarantees(&run_all_modes(&logs, "0"), "no loss");
    let logs = TempDir::new("order-lab-loss");
    let runs = run_all_modes(&logs, "0.05");
    assert_guarantees(&runs, "5 % loss");
    let nacks: u64 = runs
        .iter()
        .filter(|r| r["order"] != "none")
        .map(|r| u(r, "overhead.nacks"))
        .sum();
    assert!(nacks > 0, "5 % loss needed repairs");
    recompute_from_csv(&logs, &runs);
}

/// The comparator's causal-violation count and total-order check, and the arrival order's
/// out-of-order rounds, recomputed from the CSV dumps by an independent script.
fn recompute_from_csv(logs: &TempDir, runs: &[serde_json::Value]) {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIP recomputation: python3 is not installed");
        return;
    }
    let mut by_run: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for e in std::fs::read_dir(logs.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "mplog") {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            by_run.entry(name[7..23].to_string()).or_default().push(p);
        }
    }
    for r in runs {
        let id = r["run_id"].as_str().expect("run_id is a hex string").to_string();
        let files = &by_run[&id];
        assert_eq!(files.len() as u64, N, "run {id}");
        let csvs = support::csv_dumps(files);
        let out = support::run_script("recompute_order.py", N, M, &csvs);
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        let at = format!("{} over {}", r["order"], r["transport"]);
        assert_eq!(got["causal_violations"], r["causal_violations"], "{at}");
        assert_eq!(got["total_order"], r["total_order"], "{at}");
        assert_eq!(got["out_of_order_rounds"], r["out_of_order_rounds"], "{at}");
        assert_eq!(
            got["arrival"]["out_of_order_rounds"], r["arrival"]["out_of_order_rounds"],
            "{at}"
        );
    }
}

/// Every mode with peers as separate hosts (network namespaces on a bridge, real IGMP for
/// multicast), behind the emulated WAN with 5 % loss.
#[test]
fn every_mode_keeps_its_guarantee_between_namespace_hosts() {
    for mode in support::netns_modes() {
        let mut c = mpcomm();
        let how = match mode {
            mpcomm::netns::Mode::Root => "root",
            mpcomm::netns::Mode::UserNamespace => "userns",
        };
        c.env("MPCOMM_NETNS", how).args(["lab", "--netns"]);
        let logs = TempDir::new("order-netns");
        let runs = all_modes(c, 4, 20, &logs, "0.05");
        assert_guarantees_of(&runs, 4, 20, &format!("netns {how}"));
    }
}

#[test]
fn peers_with_different_modes_refuse_each_other_and_exit_non_zero() {
    let (addrs, _) = support::loopback_peers(2);
    let peers = support::join(&addrs);
    let logs = TempDir::new("refuse");
    let spawn = |id: &str, order: &str| {
        let mut c = mpcomm();
        c.args(["peer", "--peers", &peers, "--id", id, "--msgs", "5"])
            .args(["--order", order, "--handshake-timeout", "20s", "--log-dir"])
            .arg(logs.path());
        Proc::spawn(c)
    };
    let started = std::time::Instant::now();
    let procs = [
        (spawn("0", "fifo"), "fifo", "lamport"),
        (spawn("1", "lamport"), "lamport", "fifo"),
    ];
    for (mut p, mine, theirs) in procs {
        let line = p.wait_for_line("refused", Duration::from_secs(30));
        assert!(
            line.contains(&format!("--order {theirs}"))
                && line.contains(&format!("--order {mine}")),
            "names both modes: {line}"
        );
        let (status, _) = p.finish(Duration::from_secs(30));
        assert_eq!(status.code(), Some(4), "{line}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused at once, not at the handshake timeout"
    );
}
