//! Progress of a series of runs on stderr: a bar redrawn in place on a terminal, one line per
//! run otherwise (logs, CI). Time left is estimated from each run's expected sending time, so a
//! grid that goes from small to large runs does not promise too early an end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::Experiment;

pub struct Progress {
    costs: Vec<f64>,
    done_cost: f64,
    all_cost: f64,
    started: Instant,
    tty: bool,
    /// The bar as last drawn, while it is on screen (no newline after it yet).
    shown: Option<String>,
}

/// Fixed cost of a run besides sending: processes, handshake, upload, analysis.
const OVERHEAD_S: f64 = 0.3;

impl Progress {
    pub fn new(experiments: &[Experiment]) -> Progress {
        let costs: Vec<f64> = experiments
            .iter()
            .map(|e| {
                let mean_gap = (e.interval.0 + e.interval.1).as_secs_f64() / 2.0;
                f64::from(e.msgs) * mean_gap * e.time_scale + OVERHEAD_S
            })
            .collect();
        let all_cost = costs.iter().sum();
        Progress {
            costs,
            done_cost: 0.0,
            all_cost,
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    /// Run `k` (0-based) has ended; `what` says how.
    pub fn ran(&mut self, k: usize, what: &str) {
        self.done_cost += self.costs[k];
        let total = self.costs.len();
        let done = k + 1;
        let left = self.time_left(done == total);
        let mut err = std::io::stderr().lock();
        if self.tty && total > 1 {
            let width = 30;
            let filled = (width * done) / total;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(width - filled));
            let line = format!("[{bar}] {done}/{total} {what}{left}");
            let _ = write!(err, "\r\x1b[K{line}");
            if done == total {
                let _ = writeln!(err);
                self.shown = None;
            } else {
                self.shown = Some(line);
            }
        } else {
            let _ = writeln!(err, "mpcomm lab: [{done}/{total}] {what}{left}");
        }
    }

    /// A message that must stay on screen (a failure), above the bar.
    pub fn note(&mut self, text: &str) {
        let shown = self.clear();
        let _ = writeln!(std::io::stderr().lock(), "mpcomm lab: {text}");
        self.redraw(shown);
    }

    /// Runs `print` (which writes a report to stdout) with the bar off the screen, so what it
    /// prints starts at column 0 when stdout and stderr share a terminal; the bar comes back
    /// below it.
    pub fn around<T>(&mut self, print: impl FnOnce() -> T) -> T {
        let shown = self.clear();
        let r = print();
        self.redraw(shown);
        r
    }

    fn clear(&mut self) -> Option<String> {
        let shown = self.shown.take();
        if shown.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
        shown
    }

    fn redraw(&mut self, shown: Option<String>) {
        if let Some(line) = shown {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K{line}");
            self.shown = Some(line);
        }
    }

    fn time_left(&self, finished: bool) -> String {
        if finished || self.costs.len() <= 4 || self.done_cost <= 0.0 {
            return String::new();
        }
        let per_cost = self.started.elapsed().as_secs_f64() / self.done_cost;
        let left = Duration::from_secs_f64(per_cost * (self.all_cost - self.done_cost).max(0.0));
        if left < Duration::from_secs(1) {
            return String::new();
        }
        format!(" (about {:.0} s left)", left.as_secs_f64())
    }
}
