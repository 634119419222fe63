//! One C2 connection on a non-blocking stream: frame reassembly with a cap, the handshake, then
//! sealed messages. The thin layer between a mio socket and the sans-IO [`auth`] machine; the
//! agent and controller drivers own one per connection and call it on readiness.

use std::io::{self, Read, Write};

use super::auth::{AuthError, Handshake, Session};
use super::proto::{Msg, Role, HELLO_LEN, MAX_FRAME};
use crate::wire::frame::{FrameHeader, Kind, HEADER_LEN};

/// Outgoing bytes a slow reader may leave queued before we drop the connection.
const MAX_WRITE_QUEUE: usize = 4 << 20;
/// Reads per call before yielding to other sources (fairness bound). When a call stops here,
/// `read_pending` says so: under edge-triggered readiness no new event comes for data already
/// in the socket, so the driver must call `on_readable` again without waiting for one.
pub const READS_PER_EVENT: usize = 64;

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
            ),
            _ => false,
        }
    }

    /// True when the failure is the other side not proving the key (what we log as a refusal).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, ConnError::Auth(_) | ConnError::Frame(_))
    }
}

pub struct Conn<S> {
    pub stream: S,
    hs: Option<Handshake>,
    session: Option<Session>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    scratch: Vec<u8>,
    sealed: Vec<u8>,
    peer_role: Option<Role>,
    read_pending: bool,
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S, hs: Handshake) -> Conn<S> {
        let mut c = Conn {
            stream,
            hs: Some(hs),
            session: None,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
            wpos: 0,
            scratch: Vec::new(),
            sealed: Vec::new(),
            peer_role: None,
            read_pending: false,
        };
        c.pump_handshake();
        c
    }

    pub fn is_established(&self) -> bool {
        self.session.is_some()
    }

    /// The client's role (controller side), known once its Hello arrived.
    pub fn peer_role(&self) -> Option<Role> {
        self.peer_role
    }

    /// True when the last `on_readable` stopped at its read cap before the socket ran dry.
    pub fn read_pending(&self) -> bool {
        self.read_pending
    }

    /// True when bytes wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    fn push_frame(&mut self, kind: Kind, payload_from_sealed: bool) -> Result<(), ConnError> {
        let payload = if payload_from_sealed {
            &self.sealed
        } else {
            &self.scratch
        };
        let mut hdr = [0u8; HEADER_LEN];
        FrameHeader {
            kind,
            len: payload.len() as u32,
        }
        .emit(&mut hdr);
        if self.wbuf.len() - self.wpos + payload.len() > MAX_WRITE_QUEUE {
            return Err(ConnError::Backlog);
        }
        self.wbuf.extend_from_slice(&hdr);
        self.wbuf.extend_from_slice(payload);
        Ok(())
    }

    fn pump_handshake(&mut self) {
        let Some(hs) = self.hs.as_mut() else { return };
        let mut out = std::mem::take(&mut self.scratch);
        while let Some(kind) = hs.poll_transmit(&mut out) {
            let mut hdr = [0u8; HEADER_LEN];
            FrameHeader {
                kind,
                len: out.len() as u32,
            }
            .emit(&mut hdr);
            self.wbuf.extend_from_slice(&hdr);
            self.wbuf.extend_from_slice(&out);
        }
        self.scratch = out;
        self.peer_role = self.peer_role.or(hs.peer_role());
        if let Some(s) = hs.take_session() {
            self.session = Some(s);
            self.hs = None;
        }
    }

    /// Queue one message (after the handshake; before it, messages are a programming error).
    pub fn send(&mut self, msg: &Msg) -> Result<(), ConnError> {
        let session = self
            .session
            .as_mut()
            .expect("send only after the handshake");
        self.scratch.clear();
        msg.emit(&mut self.scratch);
        session.seal(&self.scratch, &mut self.sealed);
        self.push_frame(Kind::C2Message, true)
    }

    /// Write what the socket takes. `Ok(())` also when it would block (see `wants_write`).
    pub fn flush(&mut self) -> Result<(), ConnError> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        Ok(())
    }

    /// Read what the socket has and decode whole frames; authenticated messages go to `msgs`.
    /// Returns `Ok(true)` if the handshake completed during this call.
    pub fn on_readable(&mut self, msgs: &mut Vec<Msg>) -> Result<bool, ConnError> {
        let was = self.is_established();
        let mut chunk = [0u8; 16 * 1024];
        self.read_pending = true;
        for _ in 0..READS_PER_EVENT {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.read_pending = false;
                    self.decode(msgs)?;
                    return Err(ConnError::Closed);
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    self.decode(msgs)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_pending = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_pending = false;
                    return Err(e.into());
                }
            }
        }
        self.flush()?;
        Ok(!was && self.is_established())
    }

    fn decode(&mut self, msgs: &mut Vec<Msg>) -> Result<(), ConnError> {
        loop {
            if self.rbuf.len() < HEADER_LEN {
                return Ok(());
            }
            // Before authentication only handshake-sized frames: an unauthenticated peer
            // cannot make us buffer more than a few dozen bytes.
            let cap = if self.is_established() {
                MAX_FRAME
            } else {
                HELLO_LEN as u32
            };
            let h = FrameHeader::parse(&self.rbuf[..HEADER_LEN], cap).map_err(ConnError::Frame)?;
            let end = HEADER_LEN + h.len as usize;
            if self.rbuf.len() < end {
                return Ok(());
            }
            let payload = &self.rbuf[HEADER_LEN..end];
            if let Some(session) = self.session.as_mut() {
                if h.kind != Kind::C2Message {
                    return Err(AuthError::Unexpected(h.kind).into());
                }
                let body = session.open(payload)?;
                msgs.push(Msg::parse(body).map_err(ConnError::Message)?);
            } else {
                let hs = self.hs.as_mut().expect("handshake until established");
                hs.handle_frame(h.kind, payload)?;
                self.pump_handshake();
            }
            self.rbuf.drain(..end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c2::auth::fresh32;
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
        FrameHeader {
            kind: Kind::C2Hello,
            len: u32::MAX,
        }
        .emit(&mut hdr);
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
        FrameHeader {
            kind: Kind::C2Message,
            len: 8,
        }
        .emit(&mut hdr);
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
        s.stream.queued = std::mem::take(&mut c.wbuf);
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
