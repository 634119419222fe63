//! The systemd units: `systemd-analyze verify` must print nothing (it exits 0 on unknown keys,
//! so any output counts as failure) and `systemd-analyze security --offline=yes` must score each
//! unit at 2.0 or lower. Both run on a copy whose ExecStart points at the built binary (verify
//! fails on a missing one). Skipped, saying why, where systemd-analyze is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: [&str; 2] = ["mpcomm-agent.service", "mpcomm-c2.service"];

fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file())
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies of the units with ExecStart on the binary cargo built.
fn unit_copies() -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "mpcomm-units-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for u in UNITS {
        let text = std::fs::read_to_string(src.join(u)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/mpcomm "),
            "{u}: ExecStart should run /usr/bin/mpcomm"
        );
        let text = text.replace("/usr/bin/mpcomm", env!("CARGO_BIN_EXE_mpcomm"));
        std::fs::write(dir.join(u), text).unwrap();
    }
    TempDir(dir)
}

#[test]
fn units_verify_without_any_warning() {
    let Some(sa) = systemd_analyze() else {
        eprintln!(
            "SKIPPED: systemd-analyze not found on PATH (install systemd to check the units)"
        );
        return;
    };
    let dir = unit_copies();
    for u in UNITS {
        let out = Command::new(&sa)
            .args(["verify", "--man=no"])
            .arg(dir.0.join(u))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("systemd-analyze verify {u}: {} {text:?}", out.status);
        assert!(out.status.success(), "{u}: {text}");
        assert!(
            text.trim().is_empty(),
            "{u}: systemd-analyze verify printed warnings:\n{text}"
        );
    }
}

#[test]
fn units_score_2_0_or_lower_on_systemd_analyze_security() {
    let Some(sa) = systemd_analyze() else {
        eprintln!(
            "SKIPPED: systemd-analyze not found on PATH (install systemd to check the units)"
        );
        return;
    };
    let dir = unit_copies();
    for u in UNITS {
        // --threshold counts in tenths: 20 = exposure 2.0.
        let out = Command::new(&sa)
            .args(["security", "--offline=yes", "--threshold=20"])
            .arg(dir.0.join(u))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{u}: no exposure level in:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        eprintln!("MEASURED systemd-analyze security --offline=yes {u}: {score}");
        assert!(
            out.status.success(),
            "{u}: exposure {score} above the 2.0 threshold"
        );
        assert!(score <= 2.0, "{u}: exposure {score}");
    }
}

/// The group table of this systemd: `@name` → its entries (names and nested `@groups`).
fn syscall_groups(sa: &Path) -> std::collections::HashMap<String, Vec<String>> {
    let out = Command::new(sa).arg("syscall-filter").output().unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter failed"
    );
    let mut groups = std::collections::HashMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_string());
            groups.insert(line.trim().to_string(), Vec::new());
        } else if let (Some(g), Some(item)) = (&current, line.strip_prefix("    ")) {
            if !item.starts_with('#') && !item.trim().is_empty() {
                groups.get_mut(g).unwrap().push(item.trim().to_string());
            }
        } else {
            current = None;
        }
    }
    groups
}

fn expand(
    groups: &std::collections::HashMap<String, Vec<String>>,
    item: &str,
    out: &mut std::collections::HashSet<String>,
) {
    // `name:errno` sets an error number; the name is what counts.
    let item = item.split(':').next().unwrap();
    if item.starts_with('@') {
        let members = groups
            .get(item)
            .unwrap_or_else(|| panic!("unknown syscall group {item}"));
        for m in members {
            expand(groups, m, out);
        }
    } else {
        out.insert(item.to_string());
    }
}

/// Whether a unit's `SystemCallFilter=` lines, applied in order the way systemd does (the
/// first one picks allow- or deny-list; later `~` lines take away, later plain lines add), let
/// each of `calls` through.
fn filter_allows(unit: &str, sa: &Path, calls: &[&str]) -> Vec<bool> {
    let groups = syscall_groups(sa);
    let mut mode: Option<bool> = None; // Some(true): allow-list
    let mut set = std::collections::HashSet::new();
    for line in unit.lines() {
        let Some(v) = line.trim().strip_prefix("SystemCallFilter=") else {
            continue;
        };
        if v.trim().is_empty() {
            mode = None;
            set.clear();
            continue;
        }
        let (deny, list) = match v.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let mut items = std::collections::HashSet::new();
        for item in list.split_whitespace() {
            expand(&groups, item, &mut items);
        }
        let allow_list = *mode.get_or_insert(!deny);
        // In an allow-list, plain lines add; in a deny-list, `~` lines add.
        if allow_list != deny {
            set.extend(items);
        } else {
            set.retain(|s| !items.contains(s));
        }
    }
    calls
        .iter()
        .map(|c| match mode {
            None => true,
            Some(true) => set.contains(*c),
            Some(false) => !set.contains(*c),
        })
        .collect()
}

/// The agent puts the host's clock error bound (`adjtimex`, modes 0) into every delivery log:
/// its filter must let that read-only call through, while nothing that sets the clock passes
/// and the unit keeps no capability (CAP_SYS_TIME would be needed to set it via adjtimex).
#[test]
fn agent_filter_allows_adjtimex_but_nothing_that_sets_the_clock() {
    let Some(sa) = systemd_analyze() else {
        eprintln!(
            "SKIPPED: systemd-analyze not found on PATH (install systemd to check the units)"
        );
        return;
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let agent = std::fs::read_to_string(src.join("mpcomm-agent.service")).unwrap();
    let allowed = filter_allows(
        &agent,
        &sa,
        &[
            "adjtimex",
            "clock_adjtime",
            "clock_settime",
            "settimeofday",
            "mount",
        ],
    );
    eprintln!("mpcomm-agent.service: adjtimex, clock_adjtime, clock_settime, settimeofday, mount allowed: {allowed:?}");
    assert_eq!(
        allowed,
        [true, true, false, false, false],
        "agent filter: adjtimex and clock_adjtime must pass, clock setters and mount must not"
    );
    // ProtectClock= would deny all of @clock again, whatever the filter lines say.
    assert!(
        !agent
            .lines()
            .any(|l| l.trim().starts_with("ProtectClock=") && !l.contains("=no")),
        "ProtectClock= in the agent unit blocks adjtimex"
    );
    assert!(
        agent.lines().any(|l| l.trim() == "CapabilityBoundingSet="),
        "the agent unit must keep an empty capability bounding set"
    );
    let c2 = std::fs::read_to_string(src.join("mpcomm-c2.service")).unwrap();
    assert_eq!(
        filter_allows(&c2, &sa, &["clock_settime", "settimeofday"]),
        [false, false]
    );
}
