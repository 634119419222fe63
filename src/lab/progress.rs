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
    drawn: bool,
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
            drawn: false,
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
            let _ = write!(err, "\r\x1b[K[{bar}] {done}/{total} {what}{left}");
            if done == total {
                let _ = writeln!(err);
            }
            self.drawn = done < total;
        } else {
            let _ = writeln!(err, "mpcomm lab: [{done}/{total}] {what}{left}");
        }
    }

    /// A message that must stay on screen (a failure), above the bar.
    pub fn note(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.drawn {
            let _ = write!(err, "\r\x1b[K");
        }
        let _ = writeln!(err, "mpcomm lab: {text}");
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
