//! On a terminal the lab's progress bar shares the screen with the reports: every report line
//! must start at column 0. Run through `script(1)`, which gives the lab a pseudo-terminal, and
//! replay what it wrote the way a terminal would (`\r`, `ESC [ K`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{mpcomm, Proc, TempDir};

/// The screen lines a terminal ends up showing for `raw`.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line: Vec<char> = Vec::new();
    let mut col = 0;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                lines.push(line.iter().collect());
                line.clear();
                col = 0;
            }
            '\r' => col = 0,
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                let mut code = String::new();
                for d in chars.by_ref() {
                    code.push(d);
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
                if code == "K" {
                    line.truncate(col);
                }
            }
            c => {
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    lines.push(line.iter().collect());
    lines
}

#[test]
fn report_lines_start_at_column_zero_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) from util-linux is not installed, so no pseudo-terminal");
        return;
    }
    let logs = TempDir::new("lab-tty");
    let typescript = logs.path().join("typescript");
    let exe = mpcomm().get_program().to_string_lossy().into_owned();
    let lab = format!(
        "{exe} lab --peers 3 --msgs 10 --interval 1..3 --drain 300ms --runs 2 --transport both \
         --log-dir {}",
        logs.path().display()
    );
    for (what, extra) in [("text", ""), ("json", " --json")] {
        let mut c = Command::new("script");
        c.args(["-qfec", &format!("{lab}{extra}")]).arg(&typescript);
        let (status, _) = Proc::spawn(c).finish(Duration::from_secs(120));
        assert!(
            status.success(),
            "{what}: lab under script failed: {status}"
        );
        let raw = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
        let lines = screen_lines(&raw);
        let reports: Vec<&String> = lines
            .iter()
            .filter(|l| {
                (l.contains(" peers x ") && l.contains(", order ")) || l.contains("\"run_id\"")
            })
            .collect();
        assert_eq!(
            reports.len(),
            4,
            "{what}: four reports on screen:\n{}",
            lines.join("\n")
        );
        for l in reports {
            assert!(
                l.starts_with("run ") || l.starts_with('{'),
                "{what}: a report line does not start at column 0: {l:?}"
            );
        }
        // The bar ends its own line: the last one drawn (4/4) stays, alone, on screen.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[####") && l.contains("4/4")),
            "{what}: the finished bar is not on screen:\n{}",
            lines.join("\n")
        );
    }
}
