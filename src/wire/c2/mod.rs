//! The C2 link (agent ↔ controller ↔ control client), byte by byte, in network byte order. Its
//! frames travel inside `wire::frame` frames of kinds C2Hello, C2Auth and C2Message:
//!
//! ```text
//!   C2Hello   (both ways, first)   0 role   1 version   2..4 reserved (0)   4..36 nonce
//!   C2Auth    (both ways, second)  0..32 proof = HMAC-SHA256(psk, label | role | cn | sn)
//!   C2Message (after auth)         0..8 counter   8..n-32 body   n-32..n tag
//!   body                           0 kind   1.. fields, per kind ([`msg`])
//! ```
//!
//! **The version byte.** Byte 1 of every Hello is the C2 version ([`VERSION`]); bytes 0 and 1
//! keep their place in every version, so two releases can always tell each other theirs.
//! [`Hello::parse`] checks the version before anything else and refuses another one as
//! `BadVersion`, and [`Hello::version_of`] reads it even then, so the handshake names both
//! versions instead of reporting a bad frame. Bodies carry no version of their own: each is
//! bound by its MAC to a session whose version both sides agreed in their Hellos.
//!
//! **Syntax here, bounds in the handler.** A decoder refuses only what makes no sense as bytes
//! (short input, trailing bytes, unknown codes, a string longer than its field, bad UTF-8, a
//! double that is not finite, a list longer than the bytes that follow). A well-formed message
//! whose values are out of bounds (peers, msgs, interval, …) parses; the code that acts on it
//! checks the bounds (`c2::proto`) and answers with a typed refusal ([`RefusalCode`] + text).

pub mod check;
mod cursor;
pub mod msg;

#[cfg(test)]
mod tests;

use byteorder::{ByteOrder, NetworkEndian};

use super::{Error, Field, Result};

pub use msg::{AgentInfo, CheckRequest, CheckResult, CheckSpec, Msg, RunRequest, RunSpec};

/// The C2 protocol version, byte 1 of every Hello. Version 1 sent 0 there (a reserved byte);
/// 2 added order and repair to `RunSpec` and `RunRequest`; 3 the time scale, the WAN's extra
/// loss and an optional seed; 4 a refusal code in RUN_FINISHED and lists bounded by the bytes
/// that follow instead of by run limits; 5 the preflight (`c2 check`): CHECK_REQUEST, CHECK,
/// CHECK_DONE and CHECK_RESULT. Both sides refuse another version in the handshake,
/// before any message could be misread.
pub const VERSION: u8 = 5;
pub const NONCE_LEN: usize = 32;
pub const TAG_LEN: usize = 32;
pub const COUNTER_LEN: usize = 8;
/// Cap on one C2 frame payload: a report in JSON fits comfortably, a 4 GiB prefix does not.
pub const MAX_FRAME: u32 = 1 << 20;

/// Field widths of the format (a longer string is not a C2 message; `emit` cuts to them).
pub const MAX_LABEL: usize = 32;
pub const MAX_TEXT: usize = 4_096;
pub const MAX_REPORT: usize = (MAX_FRAME as usize) - 1024;
/// A host's preflight report (JSON) in CHECK_DONE and CHECK_RESULT: a report, the error text
/// and the other fields still fit in one frame.
pub const MAX_CHECK_REPORT: usize = MAX_REPORT - MAX_TEXT - 64;
/// Agents in one STATUS (the controller lists at most this many).
pub const MAX_AGENTS_LISTED: usize = 1024;

mod field {
    use super::Field;
    pub const ROLE: usize = 0;
    pub const VERSION: usize = 1;
    pub const RESERVED: Field = 2..4;
    pub const NONCE: Field = 4..4 + super::NONCE_LEN;

    pub const COUNTER: Field = 0..super::COUNTER_LEN;
    pub const BODY: usize = COUNTER.end;
}

pub const HELLO_LEN: usize = field::NONCE.end;
/// The smallest C2Message payload: a counter and a tag around an empty body.
pub const SEALED_MIN_LEN: usize = COUNTER_LEN + TAG_LEN;

enum_with_unknown! {
    /// Who is speaking on a connection (part of every proof, so a proof cannot change roles).
    pub enum Role {
        Controller = 0,
        Agent = 1,
        Control = 2,
    }
}

enum_with_unknown! {
    /// Message kinds (byte 0 of a body). 1..: agent → controller, 10..: controller → agent,
    /// 20..: control → controller, 30..: controller → control.
    pub enum MsgKind {
        Register = 1,
        Heartbeat = 2,
        RunReady = 3,
        RunFinished = 4,
        CheckDone = 5,
        Run = 10,
        Shutdown = 11,
        Check = 12,
        RunRequest = 20,
        StatusRequest = 21,
        ExitRequest = 22,
        CheckRequest = 23,
        Progress = 30,
        RunReport = 31,
        Refused = 32,
        Status = 33,
        ExitDone = 34,
        CheckResult = 35,
    }
}

enum_with_unknown! {
    /// Why an agent did not start a run (RUN_FINISHED with `refused` set). The controller and
    /// tools decide on this code, never on the words; the text is for humans. A code a newer
    /// agent sends and this build does not know is still a refusal (`Unknown`).
    pub enum RefusalCode {
        /// Another run is running (`running` says which): one run at a time.
        Busy = 1,
        /// The RUN is well-formed but outside the documented limits.
        OutOfBounds = 2,
        /// The agent could not start its peer (program, key file, spawn).
        CannotStart = 3,
    }
}

/// A checked view of a C2Hello payload: after `new_checked` every accessor is in bounds.
#[derive(Debug, Clone, Copy)]
pub struct HelloPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HelloPacket<T> {
    pub const fn new_unchecked(buffer: T) -> HelloPacket<T> {
        HelloPacket { buffer }
    }

    /// Wrap untrusted bytes. The version is checked first (a Hello of another version may
    /// have another length), then the length.
    pub fn new_checked(buffer: T) -> Result<HelloPacket<T>> {
        let p = HelloPacket::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        match data.get(field::VERSION) {
            None => return Err(Error::Truncated),
            Some(&v) if v != VERSION => return Err(Error::BadVersion),
            Some(_) => {}
        }
        match data.len().cmp(&HELLO_LEN) {
            std::cmp::Ordering::Less => Err(Error::Truncated),
            std::cmp::Ordering::Greater => Err(Error::BadLength),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    pub fn role(&self) -> Role {
        Role::from(self.buffer.as_ref()[field::ROLE])
    }
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    pub fn reserved(&self) -> u16 {
        NetworkEndian::read_u16(&self.buffer.as_ref()[field::RESERVED])
    }
    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = [0; NONCE_LEN];
        n.copy_from_slice(&self.buffer.as_ref()[field::NONCE]);
        n
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HelloPacket<T> {
    fn set_role(&mut self, r: Role) {
        self.buffer.as_mut()[field::ROLE] = r.into();
    }
    fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }
    fn set_reserved(&mut self) {
        self.buffer.as_mut()[field::RESERVED].fill(0);
    }
    fn set_nonce(&mut self, n: &[u8; NONCE_LEN]) {
        self.buffer.as_mut()[field::NONCE].copy_from_slice(n);
    }
}

/// The first frame each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    /// Always [`VERSION`] after `parse`; `emit` writes what it holds (tests speak old versions).
    pub version: u8,
    pub nonce: [u8; NONCE_LEN],
}

impl Hello {
    /// The version byte of a Hello of any version (None: too short to have one).
    pub fn version_of(payload: &[u8]) -> Option<u8> {
        payload.get(field::VERSION).copied()
    }

    pub fn parse(payload: &[u8]) -> Result<Hello> {
        let p = HelloPacket::new_checked(payload)?;
        let role = p.role();
        if matches!(role, Role::Unknown(_)) || p.reserved() != 0 {
            return Err(Error::BadValue);
        }
        Ok(Hello {
            role,
            version: p.version(),
            nonce: p.nonce(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HELLO_LEN
    }

    pub fn emit(&self) -> [u8; HELLO_LEN] {
        let mut p = HelloPacket::new_unchecked([0; HELLO_LEN]);
        p.set_role(self.role);
        p.set_version(self.version);
        p.set_reserved();
        p.set_nonce(&self.nonce);
        p.buffer
    }
}

/// A checked view of a C2Message payload (counter, body, tag); the MAC is `c2::auth`'s.
#[derive(Debug, Clone, Copy)]
pub struct SealedPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SealedPacket<T> {
    /// Wrap untrusted bytes: refuses anything without room for a counter and a tag.
    pub fn new_checked(buffer: T) -> Result<SealedPacket<T>> {
        if buffer.as_ref().len() < SEALED_MIN_LEN {
            return Err(Error::Truncated);
        }
        Ok(SealedPacket { buffer })
    }
    pub fn counter(&self) -> u64 {
        NetworkEndian::read_u64(&self.buffer.as_ref()[field::COUNTER])
    }
    /// Counter and body: what the tag covers.
    pub fn signed(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - TAG_LEN]
    }
    pub fn body(&self) -> &[u8] {
        &self.signed()[field::BODY..]
    }
    pub fn tag(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - TAG_LEN..]
    }
}

impl<'a> SealedPacket<&'a [u8]> {
    /// The body, borrowed for as long as the payload.
    pub fn into_body(self) -> &'a [u8] {
        let b = self.buffer;
        &b[field::BODY..b.len() - TAG_LEN]
    }
}

/// Write a C2Message payload without its tag into `out` (cleared first): counter, then body.
/// The sealer appends the tag.
pub fn emit_sealed_prefix(counter: u64, body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(body);
}
