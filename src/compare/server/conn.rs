//! One upload connection of the comparator: one `Upload` frame in (header checked against the
//! cap from its 12 bytes alone, payload buffered only as it arrives and only while it keeps up
//! [`MIN_UPLOAD_RATE`]), one reply frame out, a short linger, close. The service decides what
//! an upload means; this file only moves its bytes, at most [`READS_PER_WAKE`] reads per call.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::store::Refusal;
use crate::net::framing::{FrameWriter, READS_PER_WAKE};
use crate::wire::frame::{frame_bytes, FrameHeader, Kind, Reason, HEADER_LEN};

/// After its first `read_timeout`, an upload must have delivered at least this many bytes per
/// second since its header: received ≥ rate × (elapsed − read_timeout), checked on every read
/// and at the deadline it implies.
pub const MIN_UPLOAD_RATE: u64 = 64 << 10;
/// After the reply, unread input is drained this long before closing, so the close does not
/// turn into a reset that destroys the reply.
pub const LINGER: Duration = Duration::from_secs(2);
/// Reads of a lingering connection per wake-up (the linger is a courtesy).
const DRAIN_READS: usize = 64;
/// A reply is one short frame: its queue never needs more.
const MAX_REPLY: usize = 64 << 10;

pub enum State {
    /// The header must be complete by `by`.
    Header {
        buf: [u8; HEADER_LEN],
        got: usize,
        by: Instant,
    },
    /// The header was complete at `since`.
    Payload {
        len: usize,
        buf: Vec<u8>,
        since: Instant,
    },
    /// The upload completed its run; the reply waits for the worker.
    Waiting,
    Reply(FrameWriter),
    Linger,
}

pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub state: State,
    /// When the connection is dropped: the earliest of the idle deadline and the state's own.
    pub deadline: Instant,
    /// Last progress + `read_timeout`.
    pub idle: Instant,
}

/// What a read decided.
pub enum Step {
    /// Keep waiting for readiness.
    Wait,
    /// Stopped at the read bound with data possibly left: call again without an event.
    More,
    /// The whole payload (taken out of the connection).
    Upload(Vec<u8>),
    /// Send this refusal, then close.
    Refuse(Refusal),
    /// Close now (nothing useful can be sent).
    Close(String),
    /// The client connected and left without a byte (a reachability probe, a health check):
    /// close without a log line.
    Left,
}

/// What a payload may grow by: memory held now by stored logs and every upload buffer, and
/// the budget (`--max-pending`).
pub struct Budget {
    pub pending: usize,
    pub max: u64,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, now: Instant, read_timeout: Duration) -> Conn {
        let deadline = now + read_timeout;
        Conn {
            stream,
            peer,
            state: State::Header {
                buf: [0; HEADER_LEN],
                got: 0,
                by: deadline,
            },
            deadline,
            idle: deadline,
        }
    }

    /// Bytes this connection holds for its upload.
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Payload { buf, .. } => buf.capacity(),
            _ => 0,
        }
    }

    /// Read what is there (bounded); decide when the frame is complete or broken.
    pub fn read(
        &mut self,
        scratch: &mut [u8],
        max_upload: u32,
        read_timeout: Duration,
        budget: Budget,
    ) -> Step {
        let rt = read_timeout;
        for _ in 0..READS_PER_WAKE {
            let n = match &mut self.state {
                State::Header { buf, got, .. } => self.stream.read(&mut buf[*got..]),
                State::Payload { len, buf, .. } => {
                    let want = (*len - buf.len()).min(scratch.len());
                    self.stream.read(&mut scratch[..want])
                }
                _ => return Step::Wait,
            };
            let n = match n {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Step::Close(format!("read failed: {e}")),
            };
            let now = Instant::now();
            self.idle = now + rt;
            match &mut self.state {
                State::Header { buf, got, by } => {
                    self.deadline = self.idle.min(*by);
                    if n == 0 {
                        return if *got == 0 {
                            Step::Left
                        } else {
                            bad_frame(format!(
                                "truncated frame: {got} of {HEADER_LEN} header bytes"
                            ))
                        };
                    }
                    *got += n;
                    if *got < HEADER_LEN {
                        continue;
                    }
                    let h = match FrameHeader::parse(buf, u32::MAX) {
                        Ok(h) => h,
                        Err(e) => return bad_frame(format!("bad frame: {e}")),
                    };
                    if h.kind != Kind::Upload {
                        return bad_frame(format!(
                            "bad frame: expected an upload, got {:?}",
                            h.kind
                        ));
                    }
                    if h.len > max_upload {
                        return Step::Refuse(Refusal::new(
                            Reason::TooLarge,
                            format!(
                                "upload of {} bytes is over the cap of {max_upload} bytes (--max-upload)",
                                h.len
                            ),
                        ));
                    }
                    if h.len == 0 {
                        return Step::Upload(Vec::new());
                    }
                    self.state = State::Payload {
                        len: h.len as usize,
                        buf: Vec::new(),
                        since: now,
                    };
                    self.deadline = rate_deadline(now, 0, rt).min(self.idle);
                }
                State::Payload { len, buf, since } => {
                    if n == 0 {
                        return bad_frame(format!(
                            "truncated upload: {} of {len} bytes",
                            buf.len()
                        ));
                    }
                    let grow = (buf.len() + n).saturating_sub(buf.capacity());
                    if grow > 0 {
                        // Doubling, but never past the announced length.
                        let want = (buf.capacity() * 2).max(buf.len() + n).min(*len);
                        let extra = want - buf.capacity();
                        if (budget.pending + extra) as u64 > budget.max {
                            return Step::Refuse(over_budget(budget.pending, budget.max));
                        }
                        buf.reserve_exact(want - buf.len());
                    }
                    buf.extend_from_slice(&scratch[..n]);
                    let by = rate_deadline(*since, buf.len(), rt);
                    if now > by {
                        return Step::Refuse(too_slow(buf.len(), *len, *since, now));
                    }
                    self.deadline = by.min(self.idle);
                    if buf.len() == *len {
                        return Step::Upload(std::mem::take(buf));
                    }
                }
                _ => unreachable!("read only in Header and Payload"),
            }
        }
        Step::More
    }

    /// Queue `kind`/`reason`/`msg` as the reply and start writing it; the deadline is
    /// another read timeout.
    pub fn start_reply(&mut self, kind: Kind, reason: Reason, msg: &str, deadline: Instant) {
        let mut w = FrameWriter::new(MAX_REPLY + HEADER_LEN);
        let text = &msg.as_bytes()[..msg.len().min(MAX_REPLY)];
        let h = FrameHeader {
            kind,
            reason,
            len: 0,
        };
        // Under the queue's cap by construction.
        let _ = w.queue(h, text);
        self.state = State::Reply(w);
        self.deadline = deadline;
    }

    /// Write the reply; true when all of it is sent (then the write side is shut).
    pub fn write_reply(&mut self) -> io::Result<bool> {
        let State::Reply(w) = &mut self.state else {
            return Ok(true);
        };
        w.flush(&mut self.stream)?;
        if w.wants_write() {
            return Ok(false);
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        Ok(true)
    }

    /// Discard input; true when the peer has closed, the socket failed or it keeps sending.
    pub fn drain(&mut self, scratch: &mut [u8]) -> bool {
        for _ in 0..DRAIN_READS {
            match self.stream.read(scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        true
    }

    /// Why this connection's deadline passed, for the refusal it is sent (`None`: close
    /// without a word).
    pub fn timeout_refusal(&self, now: Instant, read_timeout: Duration) -> Option<Refusal> {
        let timeout = |t: String| Some(Refusal::new(Reason::ReadTimeout, t));
        match &self.state {
            State::Header { got: 0, .. } => timeout(format!(
                "read timeout: nothing received in {read_timeout:?}"
            )),
            State::Header { got, .. } => {
                timeout(format!("read timeout: {got} of {HEADER_LEN} header bytes"))
            }
            State::Payload { len, buf, .. } if self.idle <= now => {
                timeout(format!("read timeout: {} of {len} bytes", buf.len()))
            }
            State::Payload { len, buf, since } => Some(too_slow(buf.len(), *len, *since, now)),
            _ => None,
        }
    }
}

/// One refusal frame, written once without waiting for the socket (the client has had its
/// time, or never got any), then close.
pub fn refuse_at_once(stream: &mut TcpStream, refusal: &Refusal) {
    let mut bytes = Vec::with_capacity(HEADER_LEN + refusal.text.len());
    frame_bytes(
        &mut bytes,
        refusal.kind(),
        refusal.reason,
        refusal.text.as_bytes(),
    );
    let _ = stream.write(&bytes);
    let _ = stream.shutdown(Shutdown::Both);
}

fn bad_frame(text: String) -> Step {
    Step::Refuse(Refusal::new(Reason::BadFrame, text))
}

/// When an upload whose header came at `since` and that has `got` bytes falls below
/// [`MIN_UPLOAD_RATE`] after its first `read_timeout`.
pub fn rate_deadline(since: Instant, got: usize, read_timeout: Duration) -> Instant {
    since + read_timeout + Duration::from_secs_f64(got as f64 / MIN_UPLOAD_RATE as f64)
}

fn too_slow(got: usize, len: usize, since: Instant, now: Instant) -> Refusal {
    Refusal::new(
        Reason::TooSlow,
        format!(
            "too slow: {got} of {len} bytes in {:.1} s; an upload must average {} KiB/s after its first read timeout",
            now.saturating_duration_since(since).as_secs_f64(),
            MIN_UPLOAD_RATE >> 10
        ),
    )
}

pub fn over_budget(pending: usize, budget: u64) -> Refusal {
    Refusal::new(
        Reason::OverBudget,
        format!(
            "the comparator is busy: it holds {} MiB of incomplete runs and uploads, its budget is {} MiB (--max-pending); try again when runs complete",
            pending >> 20,
            budget >> 20
        ),
    )
}
