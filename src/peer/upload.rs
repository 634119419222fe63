//! Uploading a delivery log to the comparator: one `Upload` frame, one reply frame.
//! Retries with exponential backoff; on final failure the caller keeps the file for
//! `mpcomm upload`.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::wire::frame::{self, Kind, Reason};

/// Replies are short messages; a longer one is not a comparator.
const MAX_REPLY: u32 = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The comparator answers after storing the log (and, for the last peer, after the report is
/// written and fsynced), which for big runs takes a while.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Default attempts (`--upload-attempts`, `mpcomm upload --attempts`): with [`backoff`] the
/// waits add up to 15.75 s, longer than the comparator's default 10 s read timeout, so a slot
/// held by a silent connection is free again before a peer gives up.
pub const DEFAULT_ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The wait after failed attempt `attempt` (1-based): 250 ms doubling up to 4 s.
pub fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    (FIRST_BACKOFF * (1u32 << doublings)).min(MAX_BACKOFF)
}

/// What one attempt got back. Decided on the frame's kind and reason code, never on its
/// text (which is for the log line).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Accepted(String),
    /// Refused for good: the same bytes get the same answer.
    Rejected(Reason, String),
    /// Refused for now: try again later.
    Busy(Reason, String),
}

impl Reply {
    /// A reply frame's meaning: `Busy`, or a transient code in any refusal, is worth a retry.
    /// A refusal without a code (an old comparator) is taken at its kind.
    fn from_frame(kind: Kind, reason: Reason, text: String) -> Option<Reply> {
        match kind {
            Kind::Accepted => Some(Reply::Accepted(text)),
            Kind::Busy => Some(Reply::Busy(reason, text)),
            Kind::Rejected if reason.is_transient() => Some(Reply::Busy(reason, text)),
            Kind::Rejected => Some(Reply::Rejected(reason, text)),
            _ => None,
        }
    }
}

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

/// Tries once, on a thread of its own so the handshake does not wait, whether the comparator
/// accepts a connection now; if not, says so at once rather than after the run. The probe
/// connects and closes without a byte, which the comparator closes without a log line.
pub fn probe_in_background(comparator: String) {
    let _ = std::thread::Builder::new()
        .name("comparator-probe".into())
        .spawn(move || {
            let addr = match comparator.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(a)) => a,
                _ => {
                    return crate::say!(
                        "mpcomm peer: warning: cannot resolve the comparator {comparator:?}; the log will be kept on disk if that does not change by the end of the run"
                    )
                }
            };
            if let Err(e) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                crate::say!(
                    "mpcomm peer: warning: the comparator at {addr} cannot be reached now ({e}); the run goes on, and the log is kept on disk if the upload fails"
                );
            }
        });
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
    let mut last = None;
    for attempt in 1..=attempts {
        match try_once(addr, log) {
            Ok(Reply::Accepted(msg)) => return Ok(msg),
            // An earlier attempt was stored but its acknowledgement lost: that is success.
            Ok(Reply::Rejected(Reason::Duplicate, reason)) if attempt > 1 => {
                return Ok(format!("stored by an earlier attempt ({reason})"))
            }
            Ok(Reply::Busy(_, reason)) => {
                say!("mpcomm: comparator at {addr} asks to retry (attempt {attempt}/{attempts}): {reason}");
                last = Some(io::Error::other(reason));
            }
            // Any other refusal is an answer: retrying the same bytes cannot change it.
            Ok(Reply::Rejected(_, reason)) => return Err(UploadError::Rejected { addr, reason }),
            Err(e) => {
                say!("mpcomm: upload to {addr} failed (attempt {attempt}/{attempts}): {e}");
                last = Some(e);
            }
        }
        if attempt < attempts {
            // A comparator that is down, restarting or full gets time to recover.
            std::thread::sleep(backoff(attempt));
        }
    }
    Err(UploadError::Unreachable {
        addr,
        attempts,
        last: last.expect("at least one attempt"),
    })
}

fn try_once(addr: SocketAddr, log: &[u8]) -> io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_write_timeout(Some(REPLY_TIMEOUT))?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))?;
    s.set_nodelay(true)?;
    if let Err(write_error) = frame::write_frame(&mut s, Kind::Upload, log) {
        // The comparator may have refused the upload from its header (too large, or busy) and
        // closed while we were still writing: its reply, if any, is the real answer.
        return match read_reply(&mut s) {
            Ok(r @ (Reply::Rejected(..) | Reply::Busy(..))) => Ok(r),
            _ => Err(write_error),
        };
    }
    read_reply(&mut s)
}

fn read_reply(s: &mut TcpStream) -> io::Result<Reply> {
    let (h, payload) = frame::read_frame_with(s, MAX_REPLY)?;
    let text = String::from_utf8_lossy(&payload).into_owned();
    Reply::from_frame(h.kind, h.reason, text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply kind {:?}", h.kind),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_attempts_outlast_the_comparators_read_timeout() {
        let waits: Duration = (1..DEFAULT_ATTEMPTS).map(backoff).sum();
        let read_timeout =
            crate::compare::ServerConfig::local("127.0.0.1:0".parse().unwrap()).read_timeout;
        assert!(waits > read_timeout, "{waits:?}");
        assert_eq!(waits, Duration::from_millis(15_750));
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    /// A scripted comparator answering each connection with the next reply kind; returns
    /// its address and a handle giving the number of connections it saw.
    fn scripted(replies: Vec<Kind>) -> (String, std::thread::JoinHandle<usize>) {
        scripted_with(replies.into_iter().map(|k| (k, Reason::Unstated)).collect())
    }

    fn scripted_with(replies: Vec<(Kind, Reason)>) -> (String, std::thread::JoinHandle<usize>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let n = replies.len();
            for (kind, reason) in replies {
                let (mut s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                frame::read_frame(&mut s, 1 << 20).unwrap();
                frame::write_frame_with(&mut s, kind, reason, b"scripted").unwrap();
            }
            n
        });
        (addr, t)
    }

    #[test]
    fn busy_is_retried_and_rejected_is_final() {
        let (addr, t) = scripted(vec![Kind::Busy, Kind::Busy, Kind::Accepted]);
        assert_eq!(upload(&addr, b"log", 3).unwrap(), "scripted");
        assert_eq!(t.join().unwrap(), 3);
        let (addr, t) = scripted(vec![Kind::Rejected]);
        let e = upload(&addr, b"log", 3).unwrap_err();
        assert!(matches!(e, UploadError::Rejected { .. }), "{e}");
        assert_eq!(t.join().unwrap(), 1);
        // Busy to the last attempt: the log stays with the caller.
        let (addr, t) = scripted(vec![Kind::Busy, Kind::Busy]);
        let e = upload(&addr, b"log", 2).unwrap_err();
        assert!(
            matches!(e, UploadError::Unreachable { attempts: 2, .. }),
            "{e}"
        );
        assert_eq!(t.join().unwrap(), 2);
    }

    #[test]
    fn retries_are_decided_on_the_code_not_the_words() {
        let text = || "try again: the first one is kept".to_owned();
        // Words that once meant "retry" or "duplicate" decide nothing without their code.
        assert_eq!(
            Reply::from_frame(Kind::Rejected, Reason::Unstated, text()),
            Some(Reply::Rejected(Reason::Unstated, text()))
        );
        assert_eq!(
            Reply::from_frame(Kind::Rejected, Reason::OverBudget, text()),
            Some(Reply::Busy(Reason::OverBudget, text()))
        );
        // A transient code newer than this build is retried too.
        assert_eq!(
            Reply::from_frame(Kind::Rejected, Reason::Unknown(50), text()),
            Some(Reply::Busy(Reason::Unknown(50), text()))
        );
        assert_eq!(
            Reply::from_frame(Kind::Upload, Reason::Unstated, text()),
            None
        );
    }

    #[test]
    fn a_duplicate_after_a_lost_acknowledgement_is_success() {
        // The first attempt's reply is lost (here: Busy); the second finds the log stored.
        let (addr, t) = scripted_with(vec![
            (Kind::Busy, Reason::Full),
            (Kind::Rejected, Reason::Duplicate),
        ]);
        let msg = upload(&addr, b"log", 3).unwrap();
        assert!(msg.starts_with("stored by an earlier attempt"), "{msg}");
        assert_eq!(t.join().unwrap(), 2);
        // On the first attempt a duplicate is another peer's log: an answer, not a success.
        let (addr, t) = scripted_with(vec![(Kind::Rejected, Reason::Duplicate)]);
        let e = upload(&addr, b"log", 3).unwrap_err();
        assert!(matches!(e, UploadError::Rejected { .. }), "{e}");
        assert_eq!(t.join().unwrap(), 1);
    }
}
