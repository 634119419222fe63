//! Length-prefixed frames ([`crate::wire::frame`]) on a non-blocking stream, sans-IO at the
//! core: [`FrameReader`] takes bytes and hands whole frames to a [`FrameSink`], checking every
//! header against the sink's cap *before* waiting for its payload; [`FrameWriter`] queues
//! frames up to a cap and writes what the socket takes. [`FrameReader::read_from`] is the thin
//! I/O part: at most [`READS_PER_WAKE`] reads per call, so one fast sender cannot hold a loop,
//! and [`FrameReader::read_pending`] says when it stopped with data possibly left (under
//! edge-triggered readiness no new event comes for it: the driver must call again).

use std::io::{self, Read, Write};

use crate::wire::frame::{FrameHeader, HEADER_LEN};

/// Reads per [`FrameReader::read_from`] call (fairness bound).
pub const READS_PER_WAKE: usize = 64;
/// Bytes per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed by the other side")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame ({0})")]
    Frame(crate::wire::Error),
}

/// Where whole frames go; the cap may change with the sink's state (e.g. small before
/// authentication).
pub trait FrameSink {
    type Error: From<ReadError>;
    /// Largest payload accepted for the next frame.
    fn cap(&self) -> u32;
    fn frame(&mut self, header: FrameHeader, payload: &[u8]) -> Result<(), Self::Error>;
}

#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    pending: bool,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader {
            buf: Vec::with_capacity(4096),
            pending: false,
        }
    }

    /// Bytes held for an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True when the last [`read_from`](Self::read_from) stopped at its bound before the
    /// socket ran dry.
    pub fn read_pending(&self) -> bool {
        self.pending
    }

    /// Take `bytes` and hand every whole frame to `sink`. A header over the cap is refused
    /// from its 12 bytes: nothing of its payload is buffered.
    pub fn push<K: FrameSink>(&mut self, bytes: &[u8], sink: &mut K) -> Result<(), K::Error> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let result = loop {
            let rest = &self.buf[start..];
            if rest.len() < HEADER_LEN {
                break Ok(());
            }
            let h = match FrameHeader::parse(&rest[..HEADER_LEN], sink.cap()) {
                Ok(h) => h,
                Err(e) => break Err(ReadError::Frame(e).into()),
            };
            let end = HEADER_LEN + h.len as usize;
            if rest.len() < end {
                break Ok(());
            }
            if let Err(e) = sink.frame(h, &rest[HEADER_LEN..end]) {
                break Err(e);
            }
            start += end;
        };
        self.buf.drain(..start);
        result
    }

    /// Read what `stream` has (at most [`READS_PER_WAKE`] reads) and decode as it comes.
    /// The other side closing is `Err(Closed)`, after the frames before it were handed over.
    pub fn read_from<S: Read, K: FrameSink>(
        &mut self,
        stream: &mut S,
        sink: &mut K,
    ) -> Result<(), K::Error> {
        let mut chunk = [0u8; READ_CHUNK];
        self.pending = true;
        for _ in 0..READS_PER_WAKE {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    self.pending = false;
                    return Err(ReadError::Closed.into());
                }
                Ok(n) => self.push(&chunk[..n], sink)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending = false;
                    return Err(ReadError::Io(e).into());
                }
            }
        }
        Ok(())
    }
}

/// The queue is over its cap: the other side does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the other side does not read: {0} bytes queued")]
pub struct Backlog(pub usize);

#[derive(Debug)]
pub struct FrameWriter {
    buf: Vec<u8>,
    pos: usize,
    max: usize,
}

impl FrameWriter {
    /// A queue that refuses to hold more than `max` unsent bytes.
    pub fn new(max: usize) -> FrameWriter {
        FrameWriter {
            buf: Vec::with_capacity(4096),
            pos: 0,
            max,
        }
    }

    /// Queue one frame (`header.len` is set from `payload`).
    pub fn queue(&mut self, mut header: FrameHeader, payload: &[u8]) -> Result<(), Backlog> {
        let queued = self.buf.len() - self.pos;
        if queued + HEADER_LEN + payload.len() > self.max {
            return Err(Backlog(self.max));
        }
        header.len = payload.len() as u32;
        let mut hdr = [0u8; HEADER_LEN];
        header.emit(&mut hdr);
        self.buf.extend_from_slice(&hdr);
        self.buf.extend_from_slice(payload);
        Ok(())
    }

    /// True when bytes wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Write what the socket takes; `Ok` also when it would block (see `wants_write`). The
    /// other side gone shows as `WriteZero`, `BrokenPipe` or `ConnectionReset`.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while self.pos < self.buf.len() {
            match w.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(())
    }

    /// The queued bytes, taken (a test hands them to a reader directly).
    pub fn take_queued(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{frame_bytes, Kind, Reason};

    /// Collects frames; cap 16 until the first frame, then 1 MiB (like a handshake).
    #[derive(Default)]
    struct Collect {
        frames: Vec<(Kind, Vec<u8>)>,
    }

    impl FrameSink for Collect {
        type Error = ReadError;
        fn cap(&self) -> u32 {
            if self.frames.is_empty() {
                16
            } else {
                1 << 20
            }
        }
        fn frame(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ReadError> {
            self.frames.push((h.kind, payload.to_vec()));
            Ok(())
        }
    }

    fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        frame_bytes(&mut v, kind, Reason::Unstated, payload);
        v
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut bytes = frame(Kind::C2Hello, b"hi");
        bytes.extend(frame(Kind::C2Message, &[7; 1000]));
        bytes.extend(frame(Kind::C2Message, b""));
        for step in [1, 5, 12, 13, 999, bytes.len()] {
            let (mut r, mut sink) = (FrameReader::new(), Collect::default());
            for piece in bytes.chunks(step) {
                r.push(piece, &mut sink).unwrap();
            }
            assert_eq!(sink.frames.len(), 3, "step {step}");
            assert_eq!(sink.frames[0], (Kind::C2Hello, b"hi".to_vec()));
            assert_eq!(sink.frames[1].1, [7; 1000]);
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn a_header_over_the_cap_is_refused_before_its_payload() {
        let (mut r, mut sink) = (FrameReader::new(), Collect::default());
        let big = frame(Kind::C2Hello, &[0; 17]);
        let err = r.push(&big[..HEADER_LEN], &mut sink).unwrap_err();
        assert!(matches!(
            err,
            ReadError::Frame(crate::wire::Error::BadLength)
        ));
        // The cap is asked per frame: after the first, 1 MiB is fine.
        let (mut r, mut sink) = (FrameReader::new(), Collect::default());
        let mut two = frame(Kind::C2Hello, b"x");
        two.extend(&big);
        r.push(&two, &mut sink).unwrap();
        assert_eq!(sink.frames.len(), 2);
        let mut bad = frame(Kind::C2Hello, b"x");
        bad[0] = b'X';
        let err = r.push(&bad, &mut sink).unwrap_err();
        assert!(matches!(
            err,
            ReadError::Frame(crate::wire::Error::BadMagic)
        ));
    }

    /// A stream with more queued than one call may read, then dry.
    struct Queued(Vec<u8>, usize);

    impl Read for Queued {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 == self.0.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let k = (self.0.len() - self.1).min(buf.len());
            buf[..k].copy_from_slice(&self.0[self.1..self.1 + k]);
            self.1 += k;
            Ok(k)
        }
    }

    #[test]
    fn reads_per_call_are_bounded_and_the_rest_is_pending() {
        let one = frame(Kind::C2Message, &[1; 100]);
        let n = READS_PER_WAKE * READ_CHUNK / one.len() + 100;
        // A small first frame: the sink's cap before it is 16 bytes.
        let mut bytes = frame(Kind::C2Hello, b"hi");
        bytes.extend(one.repeat(n));
        let mut s = Queued(bytes, 0);
        let (mut r, mut sink) = (FrameReader::new(), Collect::default());
        r.read_from(&mut s, &mut sink).unwrap();
        assert!(r.read_pending());
        assert!(sink.frames.len() < n);
        r.read_from(&mut s, &mut sink).unwrap();
        assert!(!r.read_pending(), "dry");
        assert_eq!(sink.frames.len(), n + 1);
        // End of stream after the frames.
        let mut s = &frame(Kind::C2Message, b"last")[..];
        let mut sink = Collect::default();
        let err = FrameReader::new().read_from(&mut s, &mut sink).unwrap_err();
        assert!(matches!(err, ReadError::Closed));
        assert_eq!(sink.frames.len(), 1);
    }

    #[test]
    fn the_write_queue_is_capped_and_drains() {
        let mut w = FrameWriter::new(100);
        let h = FrameHeader::new(Kind::C2Message, 0);
        w.queue(h, &[0; 50]).unwrap();
        assert_eq!(w.queue(h, &[0; 50]), Err(Backlog(100)));
        assert!(w.wants_write());
        let mut out = Vec::new();
        w.flush(&mut out).unwrap();
        assert!(!w.wants_write());
        assert_eq!(out, frame(Kind::C2Message, &[0; 50]));
        w.queue(h, &[0; 80]).unwrap();
    }
}
