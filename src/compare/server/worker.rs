//! The comparator's one worker thread: analyse a complete (or timed-out) run, append the
//! report to the results file (fsynced), write histograms and page, hand the outcome back
//! through a channel and the loop's waker.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use mio::{Token, Waker};

use super::store::Run;
use crate::compare::analyse::{analyse, AnalyseOptions};
use crate::compare::report::Report;
use crate::compare::{append_result, hist};

/// A run for the worker; `waiting` is the connection whose upload completed it (and its peer).
pub struct Job {
    pub id: u64,
    pub run: Run,
    pub waiting: Option<(Token, u16)>,
}

pub enum Outcome {
    /// Analysed, appended and fsynced.
    Reported(Box<Report>),
    /// The results line could not be written (the file is as before); the run comes back.
    NotWritten { reason: String, run: Run },
    /// The analysis panicked (a bug).
    Broken,
}

pub struct Done {
    pub id: u64,
    pub waiting: Option<(Token, u16)>,
    pub outcome: Outcome,
}

/// Where the worker writes each run's histograms and page.
pub struct OutDirs {
    pub hist: Option<PathBuf>,
    pub html: Option<PathBuf>,
}

/// The worker's loop: ends when the job channel closes.
pub fn report_runs(
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
    waker: Arc<Waker>,
    mut results: Option<File>,
    dirs: OutDirs,
    opts: AnalyseOptions,
) {
    for Job { id, run, waiting } in jobs {
        let analysed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| analyse(&run.logs, &opts)));
        let outcome = match analysed {
            Err(_) => {
                say!("compare: run {id:016x}: the analysis failed (a bug: please report it with the logs)");
                Outcome::Broken
            }
            Ok(report) => match results.as_mut().map(|f| append_result(f, &report)) {
                Some(Err(e)) => {
                    say!("compare: run {id:016x}: cannot append to the results file: {e}");
                    Outcome::NotWritten {
                        reason: format!("the results file could not be written ({e})"),
                        run,
                    }
                }
                _ => {
                    write_extras(id, &run, &report, &dirs);
                    drop(run);
                    Outcome::Reported(Box::new(report))
                }
            },
        };
        if done
            .send(Done {
                id,
                waiting,
                outcome,
            })
            .is_err()
        {
            return;
        }
        let _ = waker.wake();
    }
}

/// The page and the histograms: failures are logged, the report stands without them.
fn write_extras(id: u64, run: &Run, report: &Report, dirs: &OutDirs) {
    if let Some(dir) = &dirs.html {
        let page = dir.join(format!("run-{id:016x}.html"));
        let (stride, _) = crate::viz::service_drawing(run.peers, run.msgs);
        if let Err(e) = crate::viz::write_page_file(&page, &run.logs, &run.times, report, stride) {
            say!("compare: run {id:016x}: {e:#}");
        }
    }
    if let Some(dir) = &dirs.hist {
        if let Err(e) = hist::write_run(dir, &run.logs, report) {
            say!(
                "compare: run {id:016x}: cannot write histograms into {}: {e}",
                dir.display()
            );
        }
    }
}
