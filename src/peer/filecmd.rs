//! The commands on log files after a run: `mpcomm log dump`, `mpcomm log export`, `mpcomm upload`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::{exit, logcmd, upload};
use crate::wire::log;

/// `mpcomm log dump FILE [--csv]`.
pub fn run_log_dump(file: &Path, csv: bool) -> anyhow::Result<ExitCode> {
    let stdout = crate::util::out::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    logcmd::dump(file, csv, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `mpcomm log export --shiviz FILE LOG…` (`-`: standard output).
pub fn run_log_export(shiviz: &Path, logs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let logs = crate::export::read_logs(logs)?;
    let mut buf = Vec::new();
    let (runs, events) = crate::export::shiviz::write(&logs, &mut buf)?;
    if shiviz.as_os_str() == "-" {
        let stdout = crate::util::out::stdout();
        let mut out = stdout.lock();
        out.write_all(&buf)?;
        out.flush()?;
    } else {
        std::fs::write(shiviz, &buf)
            .with_context(|| format!("cannot write {}", shiviz.display()))?;
        say!(
            "mpcomm log export: {}: {runs} execution(s), {events} events",
            shiviz.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `mpcomm upload FILE… --comparator HOST:PORT`: each log, `attempts` tries each.
pub fn run_upload(files: &[PathBuf], comparator: &str, attempts: u32) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for file in files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        log::LogView::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid delivery log: {e}", file.display()))?;
        match upload::upload(comparator, &bytes, attempts) {
            Ok(msg) => say!("mpcomm upload: {}: {msg}", file.display()),
            Err(e) => {
                say!("mpcomm upload: {}: {e}", file.display());
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::UPLOAD)
    })
}
