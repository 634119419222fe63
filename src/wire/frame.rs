//! Length-prefixed frames on TCP: log uploads to the comparator and its replies (C2 adds kinds).
//!
//! ```text
//!   0..4  magic "MPCF"   4 version (1)   5 kind   6 reason   7 reserved (0)
//!   8..12 payload length   12..   payload (length bytes)
//! ```
//!
//! The reason byte is a [`Reason`] code in `Rejected` and `Busy` frames and 0 in every other
//! kind (it was reserved before the codes, so an old comparator's refusals read as
//! [`Reason::Unstated`]).
//!
//! The reader states its own cap: a length above it is refused *before* anything is buffered,
//! so a 4 GiB length prefix costs 12 bytes, not 4 GiB.

use byteorder::{ByteOrder, NetworkEndian};
use std::io::{self, Read, Write};

pub use super::refusal::Reason;
use super::{Error, Field, Result};

pub const MAGIC: &[u8; 4] = b"MPCF";
pub const VERSION: u8 = 1;

mod field {
    use super::Field;
    pub const MAGIC: Field = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const REASON: usize = 6;
    pub const RESERVED: usize = 7;
    pub const LENGTH: Field = 8..12;
}

pub const HEADER_LEN: usize = field::LENGTH.end;

enum_with_unknown! {
    /// What a frame carries. 1..=15: uploads; 16..: C2 (see `c2::proto`).
    pub enum Kind {
        /// Client → comparator: one delivery log (payload = the log file's bytes).
        Upload = 1,
        /// Comparator → client: the upload was stored (payload = UTF-8 message).
        Accepted = 2,
        /// Comparator → client: the upload was refused (payload = UTF-8 reason).
        Rejected = 3,
        /// Comparator → client: refused for now, not stored; send the same upload again later
        /// (busy, at a connection cap, results not written; payload = UTF-8 reason). Clients
        /// decide to retry on this kind, never on the words.
        Busy = 4,
        C2Hello = 16,
        C2Auth = 17,
        C2Message = 18,
    }
}

impl Kind {
    /// The kinds that carry a [`Reason`] code.
    pub fn is_refusal(self) -> bool {
        matches!(self, Kind::Rejected | Kind::Busy)
    }
}

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    /// [`Reason::Unstated`] unless `kind` is a refusal.
    pub reason: Reason,
    pub len: u32,
}

impl FrameHeader {
    /// A header without a reason code (anything but a refusal).
    pub fn new(kind: Kind, len: u32) -> FrameHeader {
        FrameHeader {
            kind,
            reason: Reason::Unstated,
            len,
        }
    }
}

impl FrameHeader {
    /// Parse the fixed header; `max_len` is the caller's cap on the payload.
    pub fn parse(data: &[u8], max_len: u32) -> Result<FrameHeader> {
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if &data[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        if data[field::VERSION] != VERSION {
            return Err(Error::BadVersion);
        }
        let kind = Kind::from(data[field::KIND]);
        if let Kind::Unknown(_) = kind {
            return Err(Error::UnknownKind);
        }
        let reason = Reason::from(data[field::REASON]);
        if data[field::RESERVED] != 0 || (!kind.is_refusal() && reason != Reason::Unstated) {
            return Err(Error::BadValue);
        }
        let len = NetworkEndian::read_u32(&data[field::LENGTH]);
        if len > max_len {
            return Err(Error::BadLength);
        }
        Ok(FrameHeader { kind, reason, len })
    }

    pub fn emit(&self, buf: &mut [u8; HEADER_LEN]) {
        buf[field::MAGIC].copy_from_slice(MAGIC);
        buf[field::VERSION] = VERSION;
        buf[field::KIND] = u8::from(self.kind);
        buf[field::REASON] = u8::from(self.reason);
        buf[field::RESERVED] = 0;
        NetworkEndian::write_u32(&mut buf[field::LENGTH], self.len);
    }
}

/// Blocking write of one frame (clients; the services write from their mio loops).
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    write_frame_with(w, kind, Reason::Unstated, payload)
}

/// Blocking write of one frame with a reason code (a refusal; `Unstated` for other kinds).
pub fn write_frame_with(
    w: &mut impl Write,
    kind: Kind,
    reason: Reason,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame payload over 4 GiB"))?;
    let mut hdr = [0u8; HEADER_LEN];
    FrameHeader { kind, reason, len }.emit(&mut hdr);
    w.write_all(&hdr)?;
    w.write_all(payload)?;
    w.flush()
}

/// Append one whole frame to `out` (how the services queue a reply).
pub fn frame_bytes(out: &mut Vec<u8>, kind: Kind, reason: Reason, payload: &[u8]) {
    let mut hdr = [0u8; HEADER_LEN];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    FrameHeader { kind, reason, len }.emit(&mut hdr);
    out.extend_from_slice(&hdr);
    out.extend_from_slice(&payload[..len as usize]);
}

/// Blocking read of one frame whose payload is at most `max_len` bytes.
pub fn read_frame(r: &mut impl Read, max_len: u32) -> io::Result<(Kind, Vec<u8>)> {
    let (h, payload) = read_frame_with(r, max_len)?;
    Ok((h.kind, payload))
}

/// Blocking read of one frame, with its whole header (for a refusal's reason code).
pub fn read_frame_with(r: &mut impl Read, max_len: u32) -> io::Result<(FrameHeader, Vec<u8>)> {
    let mut hdr = [0u8; HEADER_LEN];
    r.read_exact(&mut hdr)?;
    let h = FrameHeader::parse(&hdr, max_len)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))?;
    let mut payload = vec![0u8; h.len as usize];
    r.read_exact(&mut payload)?;
    Ok((h, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME_BYTES: [u8; 15] = [
        b'M', b'P', b'C', b'F', 1, 2, 0, 0, 0, 0, 0, 3, b'y', b'e', b's',
    ];

    #[test]
    fn fixture_both_ways() {
        let h = FrameHeader::parse(&FRAME_BYTES, 16).unwrap();
        assert_eq!(h, FrameHeader::new(Kind::Accepted, 3));
        let mut out = Vec::new();
        write_frame(&mut out, Kind::Accepted, b"yes").unwrap();
        assert_eq!(out, FRAME_BYTES);
        let (k, p) = read_frame(&mut &FRAME_BYTES[..], 16).unwrap();
        assert_eq!((k, p.as_slice()), (Kind::Accepted, &b"yes"[..]));
    }

    /// A `Rejected` frame with reason 8 (duplicate) and the text "dup".
    static REFUSAL_BYTES: [u8; 15] = [
        b'M', b'P', b'C', b'F', 1, 3, 8, 0, 0, 0, 0, 3, b'd', b'u', b'p',
    ];

    #[test]
    fn refusal_fixture_both_ways() {
        let (h, p) = read_frame_with(&mut &REFUSAL_BYTES[..], 16).unwrap();
        assert_eq!(
            h,
            FrameHeader {
                kind: Kind::Rejected,
                reason: Reason::Duplicate,
                len: 3
            }
        );
        assert_eq!(p, b"dup");
        let mut out = Vec::new();
        write_frame_with(&mut out, Kind::Rejected, Reason::Duplicate, b"dup").unwrap();
        assert_eq!(out, REFUSAL_BYTES);
        let mut queued = Vec::new();
        frame_bytes(&mut queued, Kind::Rejected, Reason::Duplicate, b"dup");
        assert_eq!(queued, REFUSAL_BYTES);
        let mut hdr = [0xa5; HEADER_LEN];
        h.emit(&mut hdr);
        assert_eq!(hdr, REFUSAL_BYTES[..HEADER_LEN]);
        // An old comparator's refusal (byte 6 was reserved, 0) reads as "no code".
        let mut b = REFUSAL_BYTES;
        b[6] = 0;
        let h = FrameHeader::parse(&b, 16).unwrap();
        assert_eq!(h.reason, Reason::Unstated);
        // A code newer than this build is a value, not an error.
        b[6] = 200;
        assert_eq!(
            FrameHeader::parse(&b, 16).unwrap().reason,
            Reason::Unknown(200)
        );
        // Byte 7 stays reserved.
        let mut b = REFUSAL_BYTES;
        b[7] = 1;
        assert_eq!(FrameHeader::parse(&b, 16), Err(Error::BadValue));
    }

    #[test]
    fn refuses_before_buffering() {
        let mut b = FRAME_BYTES;
        b[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(FrameHeader::parse(&b, 1 << 20), Err(Error::BadLength));
        assert!(read_frame(&mut &b[..], 1 << 20).is_err());
        let mut b = FRAME_BYTES;
        b[5] = 99;
        assert_eq!(FrameHeader::parse(&b, 16), Err(Error::UnknownKind));
        let mut b = FRAME_BYTES;
        b[4] = 2;
        assert_eq!(FrameHeader::parse(&b, 16), Err(Error::BadVersion));
        let mut b = FRAME_BYTES;
        b[7] = 1;
        assert_eq!(FrameHeader::parse(&b, 16), Err(Error::BadValue));
        // A reason code only in a refusal.
        let mut b = FRAME_BYTES;
        b[6] = 8;
        assert_eq!(FrameHeader::parse(&b, 16), Err(Error::BadValue));
        for cut in 0..HEADER_LEN {
            assert_eq!(
                FrameHeader::parse(&FRAME_BYTES[..cut], 16),
                Err(Error::Truncated)
            );
        }
    }
}
