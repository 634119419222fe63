//! A run made visible: one self-contained HTML page (space-time diagram, delivery-order
//! strips, latency percentile curves, the report) from a run's logs and its report.
//!
//! * [`geometry`]: scales, lanes, arrows, the palette (pure, tested).
//! * [`trace`]: the send/arrive/deliver times the diagram draws, read from log bytes.
//! * [`page`]: the page itself (maud templates).
//! * [`report_page`]: the page of `mpcomm report --html` (table and charts over N).

pub mod chart;
pub mod geometry;
pub mod page;
pub mod report_page;
pub mod trace;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::compare::report::Matrices;
use crate::compare::{PeerLog, Report};

/// Write the page of one run to `out`: `logs` as the analysis read them, `files` the same
/// logs on disk (read again for the times the diagram draws).
pub fn write_run_page(
    out: &Path,
    logs: &[PeerLog],
    files: &[PathBuf],
    report: &Report,
) -> anyhow::Result<()> {
    write_run_page_with(out, logs, files, report, None)
}

/// [`write_run_page`] with the run's matrices when `report` has none (the page then need not
/// analyse the logs again to draw them).
pub fn write_run_page_with(
    out: &Path,
    logs: &[PeerLog],
    files: &[PathBuf],
    report: &Report,
    matrix: Option<&Matrices>,
) -> anyhow::Result<()> {
    let stride = geometry::arrow_stride(report.deliveries, page::MAX_ARROWS);
    let mut times = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read log {}", f.display()))?;
        let t = trace::Times::from_bytes(&bytes, stride, usize::MAX)
            .with_context(|| format!("{} is not a valid mpcomm delivery log", f.display()))?;
        times.push(t);
    }
    create_page(out, |w| {
        page::write_page_with(w, logs, &times, report, stride, matrix)
    })
}

/// Write the page of one run whose drawn times are already read (with `stride`).
pub fn write_page_file(
    out: &Path,
    logs: &[PeerLog],
    times: &[trace::Times],
    report: &Report,
    stride: u32,
) -> anyhow::Result<()> {
    create_page(out, |w| page::write_page(w, logs, times, report, stride))
}

/// Create `out` and write a page into it through a buffer (the page is never one string).
pub fn create_page(
    out: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let file = std::fs::File::create(out)
        .with_context(|| format!("cannot create the page {}", out.display()))?;
    let mut w = BufWriter::new(file);
    write(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("cannot write the page {}", out.display()))
}

/// What the comparator service keeps of an upload for the page, from the log's own header
/// (it cannot wait for the others): its stride, and a cap per log so that N logs draw at most
/// about [`page::MAX_ARROWS`] whatever they claim.
pub fn service_drawing(peers: u16, msgs: u32) -> (u32, usize) {
    let n = u64::from(peers.max(1));
    let stride = geometry::arrow_stride(n * n * u64::from(msgs), page::MAX_ARROWS);
    (stride, (page::MAX_ARROWS / n) as usize + 1)
}

/// The `.mplog` files of run `run_id` in `dir` (as peers name them), sorted.
pub fn run_log_files(dir: &Path, run_id: u64) -> anyhow::Result<Vec<PathBuf>> {
    let tag = format!("mpcomm-{run_id:016x}-");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "mplog")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&tag))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Read the logs of run `run_id` from `dir` and write its page.
pub fn write_page_from_dir(
    out: &Path,
    dir: &Path,
    run_id: u64,
    report: &Report,
) -> anyhow::Result<()> {
    let files = run_log_files(dir, run_id)?;
    let logs = files
        .iter()
        .map(|f| PeerLog::from_file(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_run_page(out, &logs, &files, report)
}

/// Where run `k` (0-based) of `total` goes: `file` itself for a single run, else
/// `<stem>-<k+1>.<ext>` beside it (ext `html` when `file` has none).
pub fn page_path(file: &Path, k: usize, total: usize) -> PathBuf {
    if total <= 1 {
        return file.to_path_buf();
    }
    let stem = file
        .file_stem()
        .map_or_else(|| "run".into(), |s| s.to_string_lossy().into_owned());
    let ext = file
        .extension()
        .map_or_else(|| "html".into(), |e| e.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}-{}.{ext}", k + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths() {
        let f = Path::new("out/run.html");
        assert_eq!(page_path(f, 0, 1), PathBuf::from("out/run.html"));
        assert_eq!(page_path(f, 0, 3), PathBuf::from("out/run-1.html"));
        assert_eq!(page_path(f, 2, 3), PathBuf::from("out/run-3.html"));
        assert_eq!(page_path(Path::new("x"), 1, 2), PathBuf::from("x-2.html"));
    }
}
