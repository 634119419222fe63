//! Length-prefixed frames on TCP: log uploads to the comparator and its replies (C2 adds kinds).
//!
//! ```text
//!   0..4  magic "MPCF"   4 version (1)   5 kind   6..8 reserved (0)   8..12 payload length
//!  12..   payload (length bytes)
//! ```
//!
//! The reader states its own cap: a length above it is refused *before* anything is buffered,
//! so a 4 GiB length prefix costs 12 bytes, not 4 GiB.

use byteorder::{ByteOrder, NetworkEndian};
use std::io::{self, Read, Write};

use super::{Error, Field, Result};

pub const MAGIC: &[u8; 4] = b"MPCF";
pub const VERSION: u8 = 1;

mod field {
    use super::Field;
    pub const MAGIC: Field = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const RESERVED: Field = 6..8;
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

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    pub len: u32,
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
        if data[field::RESERVED] != [0, 0] {
            return Err(Error::BadValue);
        }
        let len = NetworkEndian::read_u32(&data[field::LENGTH]);
        if len > max_len {
            return Err(Error::BadLength);
        }
        Ok(FrameHeader { kind, len })
    }

    pub fn emit(&self, buf: &mut [u8; HEADER_LEN]) {
        buf[field::MAGIC].copy_from_slice(MAGIC);
        buf[field::VERSION] = VERSION;
        buf[field::KIND] = u8::from(self.kind);
        buf[field::RESERVED].fill(0);
        NetworkEndian::write_u32(&mut buf[field::LENGTH], self.len);
    }
}

/// Blocking write of one frame (clients; the services write from their mio loops).
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame payload over 4 GiB"))?;
    let mut hdr = [0u8; HEADER_LEN];
    FrameHeader { kind, len }.emit(&mut hdr);
    w.write_all(&hdr)?;
    w.write_all(payload)?;
    w.flush()
}

/// Blocking read of one frame whose payload is at most `max_len` bytes.
pub fn read_frame(r: &mut impl Read, max_len: u32) -> io::Result<(Kind, Vec<u8>)> {
    let mut hdr = [0u8; HEADER_LEN];
    r.read_exact(&mut hdr)?;
    let h = FrameHeader::parse(&hdr, max_len)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))?;
    let mut payload = vec![0u8; h.len as usize];
    r.read_exact(&mut payload)?;
    Ok((h.kind, payload))
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
        assert_eq!(
            h,
            FrameHeader {
                kind: Kind::Accepted,
                len: 3
            }
        );
        let mut out = Vec::new();
        write_frame(&mut out, Kind::Accepted, b"yes").unwrap();
        assert_eq!(out, FRAME_BYTES);
        let (k, p) = read_frame(&mut &FRAME_BYTES[..], 16).unwrap();
        assert_eq!((k, p.as_slice()), (Kind::Accepted, &b"yes"[..]));
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
        for cut in 0..HEADER_LEN {
            assert_eq!(
                FrameHeader::parse(&FRAME_BYTES[..cut], 16),
                Err(Error::Truncated)
            );
        }
    }
}
