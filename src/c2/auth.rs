//! Mutual challenge–response over a pre-shared key, then per-frame MACs. Sans-IO: frames in,
//! frames out; the drivers (agent, controller, control client) only move bytes.
//!
//! ```text
//!   client → server  C2Hello  role_c, cn          (fresh 32-byte nonce)
//!   server → client  C2Hello  Controller, sn      (fresh 32-byte nonce)
//!   client → server  C2Auth   HMAC(psk, "client proof" | role_c | cn | sn)
//!   server → client  C2Auth   HMAC(psk, "server proof" | role_c | cn | sn)   (only if the client's
//!                                                   proof verified, so the server is no MAC oracle)
//!   both ways        C2Message counter u64 | body | HMAC(k_dir, counter | body)
//!                    k_dir = HMAC(psk, "key c2s" or "key s2c" | role_c | cn | sn)
//! ```
//!
//! Fresh nonces on both sides make every connection's keys new, so a frame recorded on one
//! connection fails the MAC on any other; the counter must be exactly the next one, so a frame
//! replayed or dropped within a connection is refused; one key per direction stops reflection.
//! HMAC-SHA256 comes from the `hmac` and `sha2` crates; tags are compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::proto::{Hello, Role, NONCE_LEN, TAG_LEN, VERSION};
use crate::wire::c2::{emit_sealed_prefix, SealedPacket};
use crate::wire::frame::Kind;
use crate::wire::Error as WireError;

pub type Key = [u8; 32];
type HmacSha256 = Hmac<Sha256>;

// Names the protocol version too, so proofs of two versions never match.
const LABEL: &[u8] = b"mpcomm-c2 v2 ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// A handshake frame that does not decode.
    Malformed(crate::wire::Error),
    /// A frame kind that does not belong at this step.
    Unexpected(Kind),
    /// The other side claims a role that may not connect here.
    WrongRole(Role),
    /// The other side speaks another C2 protocol version (another mpcomm release).
    Version(u8),
    /// The other side does not hold our key.
    BadProof,
    /// A frame whose MAC does not verify: forged, altered in flight, or from another connection.
    BadTag,
    /// A frame whose MAC verifies but whose counter is not the next one: a replay.
    Replay { expected: u64, got: u64 },
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Malformed(e) => write!(f, "malformed handshake frame ({e})"),
            AuthError::Unexpected(k) => write!(f, "unexpected frame {k:?} during the handshake"),
            AuthError::WrongRole(r) => write!(f, "role {r:?} may not connect here"),
            AuthError::Version(v) => write!(
                f,
                "the other side speaks C2 protocol version {}, this mpcomm version {VERSION}: run the same mpcomm release on the controller, the agents and the control host",
                // Version 1 sent 0 in what was then a reserved byte.
                if *v == 0 { 1 } else { *v }
            ),
            AuthError::BadProof => f.write_str(
                "wrong key: the other side's proof does not match our pre-shared key (copy the same key file to both)",
            ),
            AuthError::BadTag => {
                f.write_str("frame MAC does not verify (forged, altered or replayed from another connection)")
            }
            AuthError::Replay { expected, got } => write!(f, "replayed frame: counter {got}, expected {expected}"),
        }
    }
}

impl std::error::Error for AuthError {}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The transcript both proofs and both session keys are bound to.
struct Transcript {
    role: u8,
    cn: [u8; NONCE_LEN],
    sn: [u8; NONCE_LEN],
}

impl Transcript {
    fn derive(&self, psk: &Key, what: &[u8]) -> [u8; 32] {
        mac(psk, &[LABEL, what, &[self.role], &self.cn, &self.sn])
    }
    fn verify(&self, psk: &Key, what: &[u8], proof: &[u8]) -> bool {
        let mut m = HmacSha256::new_from_slice(psk).expect("any key length");
        for p in [LABEL, what, &[self.role], &self.cn, &self.sn] {
            m.update(p);
        }
        m.verify_slice(proof).is_ok()
    }
    fn session(&self, psk: &Key, client: bool) -> Session {
        let c2s = self.derive(psk, b"key c2s");
        let s2c = self.derive(psk, b"key s2c");
        let (send, recv) = if client { (c2s, s2c) } else { (s2c, c2s) };
        Session {
            send: HmacSha256::new_from_slice(&send).expect("any key length"),
            recv: HmacSha256::new_from_slice(&recv).expect("any key length"),
            send_ctr: 0,
            recv_ctr: 0,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    SendHello,
    AwaitHello,
    AwaitProof,
    Done,
}

/// One side of the handshake. Call order after every input: `poll_transmit` until `None`,
/// then `take_session`.
pub struct Handshake {
    psk: Key,
    client: bool,
    my_role: Role,
    my_nonce: [u8; NONCE_LEN],
    peer_role: Option<Role>,
    peer_nonce: [u8; NONCE_LEN],
    step: Step,
    outbox: Option<(Kind, [u8; proto_max_handshake()])>,
    outbox_len: usize,
    session: Option<Session>,
}

const fn proto_max_handshake() -> usize {
    super::proto::HELLO_LEN
}

impl Handshake {
    /// The connecting side (agent or control client). `nonce` must be fresh from the OS RNG.
    pub fn client(psk: Key, role: Role, nonce: [u8; NONCE_LEN]) -> Handshake {
        let mut h = Handshake::new(psk, true, role, nonce);
        h.queue(
            Kind::C2Hello,
            &Hello {
                role,
                version: VERSION,
                nonce,
            }
            .emit(),
        );
        h.step = Step::SendHello;
        h
    }

    /// The accepting side (controller).
    pub fn server(psk: Key, nonce: [u8; NONCE_LEN]) -> Handshake {
        Handshake::new(psk, false, Role::Controller, nonce)
    }

    fn new(psk: Key, client: bool, my_role: Role, my_nonce: [u8; NONCE_LEN]) -> Handshake {
        Handshake {
            psk,
            client,
            my_role,
            my_nonce,
            peer_role: None,
            peer_nonce: [0; NONCE_LEN],
            step: Step::AwaitHello,
            outbox: None,
            outbox_len: 0,
            session: None,
        }
    }

    /// The client's role as the server learned it (None before its Hello).
    pub fn peer_role(&self) -> Option<Role> {
        self.peer_role
    }

    fn queue(&mut self, kind: Kind, payload: &[u8]) {
        let mut b = [0; proto_max_handshake()];
        b[..payload.len()].copy_from_slice(payload);
        self.outbox = Some((kind, b));
        self.outbox_len = payload.len();
    }

    fn queue_hello(&mut self) {
        let hello = Hello {
            role: self.my_role,
            version: VERSION,
            nonce: self.my_nonce,
        }
        .emit();
        self.queue(Kind::C2Hello, &hello);
    }

    fn transcript(&self) -> Transcript {
        let (role, cn, sn) = if self.client {
            (self.my_role, self.my_nonce, self.peer_nonce)
        } else {
            (
                self.peer_role.unwrap_or(Role::Controller),
                self.peer_nonce,
                self.my_nonce,
            )
        };
        Transcript {
            role: role.into(),
            cn,
            sn,
        }
    }

    /// Feed one received frame. An error means: close the connection. After `Version` (on the
    /// server) our Hello is queued: it carries only our role, version and nonce, and a driver
    /// that sends it before closing lets the other side name both versions.
    pub fn handle_frame(&mut self, kind: Kind, payload: &[u8]) -> Result<(), AuthError> {
        match (&self.step, kind) {
            (Step::AwaitHello, Kind::C2Hello) => {
                let h = match Hello::parse(payload) {
                    Ok(h) => h,
                    Err(WireError::BadVersion) => {
                        let theirs = Hello::version_of(payload).unwrap_or(0);
                        if !self.client {
                            // Our Hello names our version: a driver that sends it before
                            // closing lets the client name both versions too.
                            self.queue_hello();
                        }
                        return Err(AuthError::Version(theirs));
                    }
                    Err(e) => return Err(AuthError::Malformed(e)),
                };
                let allowed = if self.client {
                    h.role == Role::Controller
                } else {
                    matches!(h.role, Role::Agent | Role::Control)
                };
                if !allowed {
                    return Err(AuthError::WrongRole(h.role));
                }
                self.peer_role = Some(h.role);
                self.peer_nonce = h.nonce;
                if self.client {
                    let proof = self.transcript().derive(&self.psk, b"client proof");
                    self.queue(Kind::C2Auth, &proof);
                } else {
                    self.queue_hello();
                }
                self.step = Step::AwaitProof;
                Ok(())
            }
            (Step::AwaitProof, Kind::C2Auth) => {
                let t = self.transcript();
                let what: &[u8] = if self.client {
                    b"server proof"
                } else {
                    b"client proof"
                };
                if payload.len() != TAG_LEN || !t.verify(&self.psk, what, payload) {
                    return Err(AuthError::BadProof);
                }
                if !self.client {
                    let proof = t.derive(&self.psk, b"server proof");
                    self.queue(Kind::C2Auth, &proof);
                }
                self.session = Some(t.session(&self.psk, self.client));
                self.step = Step::Done;
                Ok(())
            }
            (_, k) => Err(AuthError::Unexpected(k)),
        }
    }

    /// The next frame to send, written into `out` (cleared first).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        let (kind, b) = self.outbox.take()?;
        out.clear();
        out.extend_from_slice(&b[..self.outbox_len]);
        if self.step == Step::SendHello {
            self.step = Step::AwaitHello;
        }
        Some(kind)
    }

    /// The session, once both proofs verified and our last handshake frame was taken.
    pub fn take_session(&mut self) -> Option<Session> {
        if self.outbox.is_some() {
            return None;
        }
        self.session.take()
    }
}

/// An authenticated connection: seals outgoing message bodies and opens incoming ones.
pub struct Session {
    send: HmacSha256,
    recv: HmacSha256,
    send_ctr: u64,
    recv_ctr: u64,
}

impl Session {
    /// Write the C2Message payload for `body` into `out` (cleared first).
    pub fn seal(&mut self, body: &[u8], out: &mut Vec<u8>) {
        emit_sealed_prefix(self.send_ctr, body, out);
        let mut m = self.send.clone();
        m.update(out);
        out.extend_from_slice(&m.finalize().into_bytes());
        self.send_ctr += 1;
    }

    /// Verify a C2Message payload and return its body.
    pub fn open<'a>(&mut self, payload: &'a [u8]) -> Result<&'a [u8], AuthError> {
        let p = SealedPacket::new_checked(payload).map_err(|_| AuthError::BadTag)?;
        let mut m = self.recv.clone();
        m.update(p.signed());
        m.verify_slice(p.tag()).map_err(|_| AuthError::BadTag)?;
        let got = p.counter();
        if got != self.recv_ctr {
            return Err(AuthError::Replay {
                expected: self.recv_ctr,
                got,
            });
        }
        self.recv_ctr += 1;
        Ok(p.into_body())
    }
}

/// A fresh nonce (or key) from the OS RNG.
pub fn fresh32() -> [u8; 32] {
    use rand::RngCore;
    let mut b = [0; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests;
