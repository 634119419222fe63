//! One C2 connection on a non-blocking stream: the handshake, then sealed messages. The
//! framing (reassembly with caps on the header, bounded reads per wake-up, a capped write
//! queue) is [`crate::net::framing`]; what stays here is the C2 part: which frames are allowed
//! when, and the sans-IO [`auth`](super::auth) machine. The agent and controller drivers own
//! one per connection and call it on readiness.

use std::io::{self, Read, Write};

use super::auth::{AuthError, Handshake, Session};
use super::proto::{Msg, Role, HELLO_LEN, MAX_FRAME};
use crate::net::framing::{Backlog, FrameReader, FrameSink, FrameWriter, ReadError};
use crate::wire::frame::{FrameHeader, Kind};

/// Outgoing bytes a slow reader may leave queued before we drop the connection.
const MAX_WRITE_QUEUE: usize = 4 << 20;
/// Reads per call before yielding to other sources (fairness bound). When a call stops here,
/// `read_pending` says so: under edge-triggered readiness no new event comes for data already
/// in the socket, so the driver must call `on_readable` again without waiting for one.
pub const READS_PER_EVENT: usize = crate::net::framing::READS_PER_WAKE;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection closed by the other side")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame ({0})")]
    Frame(crate::wire::Error),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("authenticated message does not decode ({0})")]
    Message(crate::wire::Error),
    #[error("the other side does not read: {MAX_WRITE_QUEUE} bytes queued")]
    Backlog,
}

impl From<ReadError> for ConnError {
    fn from(e: ReadError) -> ConnError {
        match e {
            ReadError::Closed => ConnError::Closed,
            ReadError::Io(e) => ConnError::Io(e),
            ReadError::Frame(e) => ConnError::Frame(e),
        }
    }
}

impl From<Backlog> for ConnError {
    fn from(_: Backlog) -> ConnError {
        ConnError::Backlog
    }
}

impl ConnError {
    /// True when the other side closed or reset the connection (seen on a read or a write).
    pub fn is_closed(&self) -> bool {
        match self {
            ConnError::Closed => true,
            ConnError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::WriteZero
            ),
            _ => false,
        }
    }

    /// True when the failure is the other side not proving the key (what we log as a refusal).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, ConnError::Auth(_) | ConnError::Frame(_))
    }
}

/// The C2 state of a connection: what the frames mean.
struct Auth {
    hs: Option<Handshake>,
    session: Option<Session>,
    peer_role: Option<Role>,
    scratch: Vec<u8>,
}

impl Auth {
    /// Queue what the handshake wants sent; take the session once it is complete.
    fn pump(&mut self, out: &mut FrameWriter) -> Result<(), ConnError> {
        let Some(hs) = self.hs.as_mut() else {
            return Ok(());
        };
        while let Some(kind) = hs.poll_transmit(&mut self.scratch) {
            out.queue(FrameHeader::new(kind, 0), &self.scratch)?;
        }
        self.peer_role = self.peer_role.or(hs.peer_role());
        if let Some(s) = hs.take_session() {
            self.session = Some(s);
            self.hs = None;
        }
        Ok(())
    }
}

/// Frames of one `on_readable` call, decoded against the connection's state.
struct Sink<'a> {
    auth: &'a mut Auth,
    out: &'a mut FrameWriter,
    msgs: &'a mut Vec<Msg>,
}

impl FrameSink for Sink<'_> {
    type Error = ConnError;

    // Before authentication only handshake-sized frames: an unauthenticated peer cannot
    // make us buffer more than a few dozen bytes.
    fn cap(&self) -> u32 {
        if self.auth.session.is_some() {
            MAX_FRAME
        } else {
            HELLO_LEN as u32
        }
    }

    fn frame(&mut self, h: FrameHeader, payload: &[u8]) -> Result<(), ConnError> {
        if let Some(session) = self.auth.session.as_mut() {
            if h.kind != Kind::C2Message {
                return Err(AuthError::Unexpected(h.kind).into());
            }
            let body = session.open(payload)?;
            self.msgs
                .push(Msg::parse(body).map_err(ConnError::Message)?);
            return Ok(());
        }
        let hs = self.auth.hs.as_mut().expect("handshake until established");
        hs.handle_frame(h.kind, payload)?;
        self.auth.pump(self.out)
    }
}

pub struct Conn<S> {
    pub stream: S,
    auth: Auth,
    reader: FrameReader,
    writer: FrameWriter,
    sealed: Vec<u8>,
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S, hs: Handshake) -> Conn<S> {
        let mut c = Conn {
            stream,
            auth: Auth {
                hs: Some(hs),
                session: None,
                peer_role: None,
                scratch: Vec::new(),
            },
            reader: FrameReader::new(),
            writer: FrameWriter::new(MAX_WRITE_QUEUE),
            sealed: Vec::new(),
        };
        // The first handshake frames are a few dozen bytes: under the cap.
        let _ = c.auth.pump(&mut c.writer);
        c
    }

    pub fn is_established(&self) -> bool {
        self.auth.session.is_some()
    }

    /// The client's role (controller side), known once its Hello arrived.
    pub fn peer_role(&self) -> Option<Role> {
        self.auth.peer_role
    }

    /// True when the last `on_readable` stopped at its read cap before the socket ran dry.
    pub fn read_pending(&self) -> bool {
        self.reader.read_pending()
    }

    /// True when bytes wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.writer.wants_write()
    }

    /// Queue one message (after the handshake; before it, messages are a programming error).
    pub fn send(&mut self, msg: &Msg) -> Result<(), ConnError> {
        let session = self
            .auth
            .session
            .as_mut()
            .expect("send only after the handshake");
        let scratch = &mut self.auth.scratch;
        scratch.clear();
        msg.emit(scratch);
        session.seal(scratch, &mut self.sealed);
        self.writer
            .queue(FrameHeader::new(Kind::C2Message, 0), &self.sealed)?;
        Ok(())
    }

    /// Write what the socket takes. `Ok(())` also when it would block (see `wants_write`).
    pub fn flush(&mut self) -> Result<(), ConnError> {
        self.writer.flush(&mut self.stream).map_err(|e| {
            if e.kind() == io::ErrorKind::WriteZero {
                ConnError::Closed
            } else {
                ConnError::Io(e)
            }
        })
    }

    /// Read what the socket has and decode whole frames; authenticated messages go to `msgs`.
    /// Returns `Ok(true)` if the handshake completed during this call.
    pub fn on_readable(&mut self, msgs: &mut Vec<Msg>) -> Result<bool, ConnError> {
        let was = self.is_established();
        let mut sink = Sink {
            auth: &mut self.auth,
            out: &mut self.writer,
            msgs,
        };
        self.reader.read_from(&mut self.stream, &mut sink)?;
        self.flush()?;
        Ok(!was && self.is_established())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c2::auth::fresh32;
    use crate::wire::frame::HEADER_LEN;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Conn<UnixStream>, Conn<UnixStream>, [u8; 32]) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let key = fresh32();
        let client = Conn::new(a, Handshake::client(key, Role::Agent, fresh32()));
        let server = Conn::new(b, Handshake::server(key, fresh32()));
        (client, server, key)
    }

    /// Drive both ends on a real socket pair until neither has anything to do (bounded).
    fn pump(
        c: &mut Conn<UnixStream>,
        s: &mut Conn<UnixStream>,
        cm: &mut Vec<Msg>,
        sm: &mut Vec<Msg>,
    ) {
        for _ in 0..10 {
            c.flush().unwrap();
            s.on_readable(sm).unwrap();
            s.flush().unwrap();
            c.on_readable(cm).unwrap();
        }
    }

    #[test]
    fn handshake_and_messages_over_a_socket_pair() {
        let (mut c, mut s, _) = pair();
        let (mut cm, mut sm) = (Vec::new(), Vec::new());
        pump(&mut c, &mut s, &mut cm, &mut sm);
        assert!(c.is_established() && s.is_established());
        assert_eq!(s.peer_role(), Some(Role::Agent));
        c.send(&Msg::Heartbeat).unwrap();
        c.send(&Msg::RunReady { run_id: 5 }).unwrap();
        s.send(&Msg::Shutdown).unwrap();
        pump(&mut c, &mut s, &mut cm, &mut sm);
        assert_eq!(sm, [Msg::Heartbeat, Msg::RunReady { run_id: 5 }]);
        assert_eq!(cm, [Msg::Shutdown]);
    }

    #[test]
    fn unauthenticated_peer_cannot_make_us_buffer_a_large_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut s = Conn::new(b, Handshake::server(fresh32(), fresh32()));
        let mut hdr = [0u8; HEADER_LEN];
        FrameHeader::new(Kind::C2Hello, u32::MAX).emit(&mut hdr);
        (&a).write_all(&hdr).unwrap();
        let err = s.on_readable(&mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, ConnError::Frame(crate::wire::Error::BadLength)),
            "{err}"
        );
        assert!(err.is_auth_failure());
        // A message frame before the handshake is refused as out of order.
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut s = Conn::new(b, Handshake::server(fresh32(), fresh32()));
        FrameHeader::new(Kind::C2Message, 8).emit(&mut hdr);
        (&a).write_all(&hdr).unwrap();
        (&a).write_all(&[0; 8]).unwrap();
        assert!(matches!(
            s.on_readable(&mut Vec::new()),
            Err(ConnError::Auth(AuthError::Unexpected(Kind::C2Message)))
        ));
    }

    /// A socket with bytes queued in front of it (more than one call's read cap).
    struct Preloaded {
        sock: UnixStream,
        queued: Vec<u8>,
        pos: usize,
    }

    impl Read for Preloaded {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos < self.queued.len() {
                let k = (self.queued.len() - self.pos).min(buf.len());
                buf[..k].copy_from_slice(&self.queued[self.pos..self.pos + k]);
                self.pos += k;
                return Ok(k);
            }
            self.sock.read(buf)
        }
    }

    impl Write for Preloaded {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.sock.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.sock.flush()
        }
    }

    #[test]
    fn a_read_that_stops_at_its_cap_says_more_is_pending() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let key = fresh32();
        let mut c = Conn::new(a, Handshake::client(key, Role::Control, fresh32()));
        let mut s = Conn::new(
            Preloaded {
                sock: b,
                queued: Vec::new(),
                pos: 0,
            },
            Handshake::server(key, fresh32()),
        );
        let mut msgs = Vec::new();
        for _ in 0..10 {
            c.flush().unwrap();
            s.on_readable(&mut msgs).unwrap();
            s.flush().unwrap();
            c.on_readable(&mut msgs).unwrap();
        }
        assert!(c.is_established() && s.is_established());
        assert!(!s.read_pending(), "a drained socket has nothing pending");
        // More sealed frames than one call may read (64 reads of 16 KiB).
        let n = 25_000;
        for _ in 0..n {
            c.send(&Msg::StatusRequest).unwrap();
        }
        s.stream.queued = c.writer.take_queued();
        assert!(s.stream.queued.len() > READS_PER_EVENT * 16 * 1024);
        s.on_readable(&mut msgs).unwrap();
        assert!(s.read_pending(), "stopped at the cap with data left");
        assert!(msgs.len() < n);
        s.on_readable(&mut msgs).unwrap();
        assert!(!s.read_pending());
        assert_eq!(msgs.len(), n);
        assert!(msgs.iter().all(|m| *m == Msg::StatusRequest));
    }

    #[test]
    fn a_closed_peer_is_reported() {
        let (mut c, s, _) = pair();
        drop(s);
        assert!(matches!(
            c.on_readable(&mut Vec::new()),
            Err(ConnError::Closed) | Err(ConnError::Io(_))
        ));
    }
}
