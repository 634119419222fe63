//! Uploading a delivery log to the comparator: one `Upload` frame, one reply frame.
//! Retries with exponential backoff; on final failure the caller keeps the file for
//! `mpcomm upload`.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::wire::frame::{self, Kind};

/// Replies are short messages; a longer one is not a comparator.
const MAX_REPLY: u32 = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The comparator answers after storing the log (and, for the last peer, after the report is
/// written and fsynced), which for big runs takes a while.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// The comparator's words for a refusal that a later attempt may overcome (see
/// `compare::server`): busy, too many connections, results not written.
const TRANSIENT: [&str; 3] = ["try again", "upload it again", "too many connections"];

/// The comparator's words for "this (run, peer) is already stored" (see `compare::server`).
const DUPLICATE_KEPT: &str = "the first one is kept";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot resolve comparator address {0:?}")]
    Resolve(String),
    #[error("comparator at {addr} refused the log: {reason}")]
    Rejected { addr: SocketAddr, reason: String },
    #[error("could not reach the comparator at {addr} after {attempts} attempts: {last}")]
    Unreachable {
        addr: SocketAddr,
        attempts: u32,
        last: io::Error,
    },
}

/// Send `log` (a whole log file's bytes) to `comparator`, trying up to `attempts` times.
/// Returns the comparator's acknowledgement message.
pub fn upload(comparator: &str, log: &[u8], attempts: u32) -> Result<String, UploadError> {
    let addr = comparator
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| UploadError::Resolve(comparator.to_owned()))?;
    let attempts = attempts.max(1);
    let mut backoff = Duration::from_millis(250);
    let mut last = None;
    for attempt in 1..=attempts {
        match try_once(addr, log) {
            Ok(Ok(msg)) => return Ok(msg),
            // An earlier attempt was stored but its acknowledgement lost: that is success.
            Ok(Err(reason)) if attempt > 1 && reason.contains(DUPLICATE_KEPT) => {
                return Ok(format!("stored by an earlier attempt ({reason})"))
            }
            // A busy comparator, or one that could not write its results, asks for a retry.
            Ok(Err(reason)) if TRANSIENT.iter().any(|t| reason.contains(t)) => {
                say!("mpcomm: comparator at {addr} asks to retry (attempt {attempt}/{attempts}): {reason}");
                last = Some(io::Error::other(reason));
            }
            // Any other refusal is an answer: retrying the same bytes cannot change it.
            Ok(Err(reason)) => return Err(UploadError::Rejected { addr, reason }),
            Err(e) => {
                say!("mpcomm: upload to {addr} failed (attempt {attempt}/{attempts}): {e}");
                last = Some(e);
            }
        }
        if attempt < attempts {
            // Backoff between attempts to a comparator that is down or restarting.
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    Err(UploadError::Unreachable {
        addr,
        attempts,
        last: last.expect("at least one attempt"),
    })
}

fn try_once(addr: SocketAddr, log: &[u8]) -> io::Result<Result<String, String>> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_write_timeout(Some(REPLY_TIMEOUT))?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    s.set_nodelay(true)?;
    if let Err(write_error) = frame::write_frame(&mut s, Kind::Upload, log) {
        // The comparator may have refused the upload from its header (too large) and closed
        // while we were still writing: its reply, if any, is the real answer.
        return match frame::read_frame(&mut s, MAX_REPLY) {
            Ok((Kind::Rejected, payload)) => {
                Ok(Err(String::from_utf8_lossy(&payload).into_owned()))
            }
            _ => Err(write_error),
        };
    }
    let (kind, payload) = frame::read_frame(&mut s, MAX_REPLY)?;
    let text = String::from_utf8_lossy(&payload).into_owned();
    match kind {
        Kind::Accepted => Ok(Ok(text)),
        Kind::Rejected => Ok(Err(text)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply kind {other:?}"),
        )),
    }
}
