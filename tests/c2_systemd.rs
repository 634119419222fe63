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
