//! stdout and stderr that never panic. `println!` and `eprintln!` panic when their stream is a
//! closed pipe (`| head -1`, an agent killed with SIGKILL): a peer would die between writing
//! its log and uploading it. Here a closed pipe (EPIPE) ends that stream's output quietly —
//! later writes are skipped — and the program goes on with its work. Rust ignores SIGPIPE in
//! every `mpcomm` process, so EPIPE arrives as an error, never as a signal.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::util::out::err_line(format_args!($($arg)*))
    };
}

/// `println!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::util::out::out_line(format_args!($($arg)*))
    };
}

/// One line to stderr; a write error is dropped (stderr is where we would report it).
pub fn err_line(args: fmt::Arguments) {
    let _ = writeln!(Quiet(io::stderr().lock(), &STDERR_GONE), "{args}");
}

/// One whole line to stderr in a single `write` (the newline added here): processes sharing a
/// stderr (agents on one terminal, a journal) never split each other's lines, as long as the
/// line fits in `PIPE_BUF` (4096 bytes) on a pipe.
pub fn err_whole_line(mut line: String) {
    line.push('\n');
    let _ = Quiet(io::stderr().lock(), &STDERR_GONE).write_all(line.as_bytes());
}

/// One line to stdout; after EPIPE, nothing.
pub fn out_line(args: fmt::Arguments) {
    let _ = writeln!(stdout().lock(), "{args}");
}

/// Whether a reader of stdout went away (EPIPE) and output was dropped.
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// stdout for `write!`: once its reader is gone, everything is dropped and counted as written,
/// so `mpcomm report --json | head -1` ends with exit 0 and no error line. Other errors pass.
pub fn stdout() -> Quiet<io::Stdout> {
    Quiet(io::stdout(), &STDOUT_GONE)
}

impl Quiet<io::Stdout> {
    pub fn lock(&self) -> Quiet<io::StdoutLock<'static>> {
        Quiet(self.0.lock(), self.1)
    }
}

/// A writer whose EPIPE sets `gone` and turns every later write into a no-op.
pub struct Quiet<W>(W, &'static AtomicBool);

impl<W: Write> Quiet<W> {
    fn closed<T>(&self, r: io::Result<T>, all: T) -> io::Result<T> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.1.store(true, Ordering::Relaxed);
                Ok(all)
            }
            r => r,
        }
    }
}

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.1.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let r = self.0.write(buf);
        self.closed(r, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.1.load(Ordering::Relaxed) {
            return Ok(());
        }
        let r = self.0.flush();
        self.closed(r, ())
    }
}

/// Fails now, naming `flag`, when `path` could not be written at the end of a long run: the
/// file is opened for writing (created and removed again if it did not exist), nothing in an
/// existing file is changed.
pub fn check_writable(path: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{flag} {}: cannot write there: {e}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader is gone.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn epipe_ends_output_quietly_and_is_remembered() {
        static GONE: AtomicBool = AtomicBool::new(false);
        let mut w = Quiet(Closed, &GONE);
        assert!(writeln!(w, "first").is_ok());
        assert!(GONE.load(Ordering::Relaxed));
        assert!(writeln!(w, "second").is_ok());
    }

    #[test]
    fn other_errors_pass() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        static GONE: AtomicBool = AtomicBool::new(false);
        assert!(writeln!(Quiet(Full, &GONE), "x").is_err());
        assert!(!GONE.load(Ordering::Relaxed));
    }
}
