//! A peer that dies mid-run: `mpcomm lab` prints the partial report of what the others
//! delivered (naming the missing peer, and what it never sent as unsent, not lost) and exits
//! non-zero.

mod support;

use std::time::{Duration, Instant};

use support::{mpcomm, Proc, TempDir};

/// Pid of the lab's child `mpcomm peer … --id ID …`.
fn child_peer(lab: u32, id: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: the fields after the last ')'.
        let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
        if ppid != lab.to_string() {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if args
            .windows(2)
            .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_peer_killed_mid_run_gives_a_partial_report_and_a_failure() {
    let logs = TempDir::new("partial");
    let mut c = mpcomm();
    c.args(["lab", "--peers", "3", "--msgs", "400", "--interval", "4..8"])
        .args([
            "--transport",
            "fanout",
            "--drain",
            "300ms",
            "--json",
            "--verbose",
        ])
        .arg("--log-dir")
        .arg(logs.path());
    let mut lab = Proc::spawn(c);
    for _ in 0..3 {
        lab.wait_for_line("mpcomm peer: ready", Duration::from_secs(20));
    }
    let lab_pid = lab.child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let victim = loop {
        if let Some(p) = child_peer(lab_pid, "2") {
            break p;
        }
        assert!(Instant::now() < deadline, "no peer 2 child found");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The run lasts ~2.4 s; let the barrier pass and some messages go before the kill.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: a plain kill(2) of a process we started (through the lab).
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let (status, stdout) = lab.finish(Duration::from_secs(60));
    assert!(!status.success(), "a failed run makes the lab fail");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "one (partial) report: {stdout}");
    let r = &lines[0];
    assert_eq!(r["missing_peers"], serde_json::json!([2]));
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("incomplete run: peer 2 failed"),
        "{warnings}"
    );
    assert!(warnings.contains("sender 2"), "{warnings}");
    let unsent = r["unsent"].as_u64().unwrap();
    assert!(
        unsent > 0 && unsent < 400,
        "peer 2 sent some, not all: unsent {unsent}"
    );
    // On loopback nothing is lost but what the kill caught in flight (one fan-out send to
    // the two others): what peer 2 never sent is unsent, not lost.
    assert!(r["lost"].as_u64().unwrap() <= 1, "lost {}", r["lost"]);
}
