//! What a child peer tells the process that started it (the lab, the C2 agent): one datagram
//! per message on a unix datagram socket the parent bound and named with `peer --notify PATH`.
//! A parent decides on these fields, never on the words of the peer's stderr (which stays for
//! people).
//!
//! ```text
//!   0..2  magic "MQ"   2 version (1)   3 kind
//! Ready (kind 1), 34 bytes: the sockets are bound (and joined), the handshake is next
//!   4..6  peer id      6..10 pid      10 family (4 or 6)   11 reserved (0)
//!  12..28 bound address (IPv4: the first 4 bytes, the rest 0)   28..30 bound port
//!  30..34 receive buffer granted, bytes
//! Outcome (kind 2), 18 bytes + path: the run is over, the process exits next
//!   4..6  peer id      6 ok (0 or 1)   7 reason (the exit code, below)
//!   8..16 run id (0: none agreed)   16..18 log path length   18.. log path (bytes; empty: none)
//! ```

use byteorder::{ByteOrder, NetworkEndian};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Error, Field, Result};

pub const MAGIC: &[u8; 2] = b"MQ";
pub const VERSION: u8 = 1;
/// The longest log path an Outcome carries (a datagram this size always fits a unix socket).
pub const MAX_PATH: usize = 4096;

mod field {
    use super::Field;
    pub const MAGIC: Field = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const PEER: Field = 4..6;
    // Ready
    pub const PID: Field = 6..10;
    pub const FAMILY: usize = 10;
    pub const RESERVED: usize = 11;
    pub const ADDR: Field = 12..28;
    pub const PORT: Field = 28..30;
    pub const RCVBUF: Field = 30..34;
    // Outcome
    pub const OK: usize = 6;
    pub const REASON: usize = 7;
    pub const RUN_ID: Field = 8..16;
    pub const PATH_LEN: Field = 16..18;
    #[allow(non_snake_case)]
    pub const fn PATH(len: usize) -> Field {
        PATH_LEN.end..PATH_LEN.end + len
    }
}

pub const READY_LEN: usize = field::RCVBUF.end;
pub const OUTCOME_FIXED_LEN: usize = field::PATH_LEN.end;

enum_with_unknown! {
    pub enum Kind {
        Ready = 1,
        Outcome = 2,
    }
}

enum_with_unknown! {
    /// How the run ended: the peer's exit code (`peer::exit`), so both say the same.
    pub enum Reason {
        /// Done: the log is written (and uploaded, with a comparator).
        Done = 0,
        /// Another error (stderr says which).
        Error = 1,
        Handshake = 2,
        Upload = 3,
        ModeMismatch = 4,
        OrderFailed = 5,
        LogWrite = 6,
        Interrupted = 130,
    }
}

impl Reason {
    /// In words, for a parent's message about a failed peer.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Done => "done",
            Reason::Error => "an error",
            Reason::Handshake => "handshake timed out",
            Reason::Upload => "log kept but not uploaded",
            Reason::ModeMismatch => "refused: a peer runs another --order or --repair",
            Reason::OrderFailed => "ordering failed",
            Reason::LogWrite => "the log could not be written",
            Reason::Interrupted => "interrupted",
            Reason::Unknown(_) => "an unknown reason",
        }
    }
}

/// One message of a child peer to its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr {
    Ready {
        peer: u16,
        pid: u32,
        bound: SocketAddr,
        rcvbuf: u32,
    },
    Outcome {
        peer: u16,
        /// The run gave what it promised (every message delivered in its order).
        ok: bool,
        reason: Reason,
        run_id: Option<u64>,
        /// Raw bytes of the path (unix paths need not be UTF-8); empty: no log written.
        log: Vec<u8>,
    },
}

impl Repr {
    pub fn parse(data: &[u8]) -> Result<Repr> {
        if data.len() < field::KIND + 1 {
            return Err(Error::Truncated);
        }
        if data[field::MAGIC] != MAGIC[..] {
            return Err(Error::BadMagic);
        }
        if data[field::VERSION] != VERSION {
            return Err(Error::BadVersion);
        }
        match Kind::from(data[field::KIND]) {
            Kind::Ready => {
                check_exact(data, READY_LEN)?;
                if data[field::RESERVED] != 0 {
                    return Err(Error::BadValue);
                }
                let raw = &data[field::ADDR];
                let ip = match data[field::FAMILY] {
                    4 if raw[4..].iter().all(|&b| b == 0) => {
                        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
                    }
                    6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(raw).expect("16 bytes"))),
                    _ => return Err(Error::BadValue),
                };
                Ok(Repr::Ready {
                    peer: NetworkEndian::read_u16(&data[field::PEER]),
                    pid: NetworkEndian::read_u32(&data[field::PID]),
                    bound: SocketAddr::new(ip, NetworkEndian::read_u16(&data[field::PORT])),
                    rcvbuf: NetworkEndian::read_u32(&data[field::RCVBUF]),
                })
            }
            Kind::Outcome => {
                if data.len() < OUTCOME_FIXED_LEN {
                    return Err(Error::Truncated);
                }
                let len = usize::from(NetworkEndian::read_u16(&data[field::PATH_LEN]));
                if len > MAX_PATH {
                    return Err(Error::BadLength);
                }
                check_exact(data, field::PATH(len).end)?;
                let ok = match data[field::OK] {
                    0 => false,
                    1 => true,
                    _ => return Err(Error::BadValue),
                };
                let reason = Reason::from(data[field::REASON]);
                if let Reason::Unknown(_) = reason {
                    return Err(Error::BadValue);
                }
                let run_id = NetworkEndian::read_u64(&data[field::RUN_ID]);
                Ok(Repr::Outcome {
                    peer: NetworkEndian::read_u16(&data[field::PEER]),
                    ok,
                    reason,
                    run_id: (run_id != 0).then_some(run_id),
                    log: data[field::PATH(len)].to_vec(),
                })
            }
            Kind::Unknown(_) => Err(Error::UnknownKind),
        }
    }

    /// Bytes [`Repr::emit`] writes. An Outcome's path over [`MAX_PATH`] is sent empty.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Ready { .. } => READY_LEN,
            Repr::Outcome { log, .. } => OUTCOME_FIXED_LEN + sent_path(log).len(),
        }
    }

    /// Write into `buf`, which is at least [`Repr::buffer_len`] long; returns the length.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = self.buffer_len();
        let buf = &mut buf[..n];
        buf[field::MAGIC].copy_from_slice(MAGIC);
        buf[field::VERSION] = VERSION;
        match self {
            Repr::Ready {
                peer,
                pid,
                bound,
                rcvbuf,
            } => {
                buf[field::KIND] = Kind::Ready.into();
                NetworkEndian::write_u16(&mut buf[field::PEER], *peer);
                NetworkEndian::write_u32(&mut buf[field::PID], *pid);
                buf[field::RESERVED] = 0;
                let addr = &mut buf[field::ADDR];
                addr.fill(0);
                match bound.ip() {
                    IpAddr::V4(ip) => {
                        addr[..4].copy_from_slice(&ip.octets());
                        buf[field::FAMILY] = 4;
                    }
                    IpAddr::V6(ip) => {
                        addr.copy_from_slice(&ip.octets());
                        buf[field::FAMILY] = 6;
                    }
                }
                NetworkEndian::write_u16(&mut buf[field::PORT], bound.port());
                NetworkEndian::write_u32(&mut buf[field::RCVBUF], *rcvbuf);
            }
            Repr::Outcome {
                peer,
                ok,
                reason,
                run_id,
                log,
            } => {
                let path = sent_path(log);
                buf[field::KIND] = Kind::Outcome.into();
                NetworkEndian::write_u16(&mut buf[field::PEER], *peer);
                buf[field::OK] = u8::from(*ok);
                buf[field::REASON] = (*reason).into();
                NetworkEndian::write_u64(&mut buf[field::RUN_ID], run_id.unwrap_or(0));
                NetworkEndian::write_u16(&mut buf[field::PATH_LEN], path.len() as u16);
                buf[field::PATH(path.len())].copy_from_slice(path);
            }
        }
        n
    }

    /// The message in a buffer of its own.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

fn sent_path(log: &[u8]) -> &[u8] {
    if log.len() > MAX_PATH {
        &[]
    } else {
        log
    }
}

fn check_exact(data: &[u8], len: usize) -> Result<()> {
    match data.len() {
        n if n < len => Err(Error::Truncated),
        n if n > len => Err(Error::BadLength),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static READY_BYTES: [u8; READY_LEN] = [
        b'M', b'Q', 1, 1, // magic, version, kind
        0, 3, // peer 3
        0, 0, 0x30, 0x39, // pid 12345
        4, 0, // IPv4, reserved
        127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 127.0.0.2
        0x11, 0xd2, // port 4562
        0, 0x10, 0, 0, // 1 MiB
    ];

    static OUTCOME_BYTES: [u8; OUTCOME_FIXED_LEN + 5] = [
        b'M', b'Q', 1, 2, // magic, version, kind
        0, 1, // peer 1
        1, 0, // ok, Done
        0, 0, 0, 0, 0, 0, 0, 0x2a, // run 0x2a
        0, 5, b'/', b't', b'm', b'p', b'/', // "/tmp/"
    ];

    fn ready() -> Repr {
        Repr::Ready {
            peer: 3,
            pid: 12345,
            bound: "127.0.0.2:4562".parse().unwrap(),
            rcvbuf: 1 << 20,
        }
    }

    fn outcome() -> Repr {
        Repr::Outcome {
            peer: 1,
            ok: true,
            reason: Reason::Done,
            run_id: Some(0x2a),
            log: b"/tmp/".to_vec(),
        }
    }

    #[test]
    fn fixtures_decode_field_by_field() {
        assert_eq!(Repr::parse(&READY_BYTES), Ok(ready()));
        assert_eq!(Repr::parse(&OUTCOME_BYTES), Ok(outcome()));
    }

    #[test]
    fn emit_writes_every_byte_of_the_fixtures() {
        for (repr, bytes) in [(ready(), &READY_BYTES[..]), (outcome(), &OUTCOME_BYTES[..])] {
            let mut buf = vec![0xa5; repr.buffer_len()];
            assert_eq!(repr.emit(&mut buf), bytes.len());
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn round_trips_ipv6_and_failures() {
        let cases = [
            Repr::Ready {
                peer: 0,
                pid: u32::MAX,
                bound: "[::1]:4570".parse().unwrap(),
                rcvbuf: 0,
            },
            Repr::Outcome {
                peer: 9,
                ok: false,
                reason: Reason::Handshake,
                run_id: None,
                log: Vec::new(),
            },
            Repr::Outcome {
                peer: 2,
                ok: false,
                reason: Reason::Interrupted,
                run_id: Some(u64::MAX),
                log: vec![0xff; MAX_PATH],
            },
        ];
        for r in cases {
            assert_eq!(Repr::parse(&r.to_bytes()), Ok(r));
        }
    }

    #[test]
    fn a_path_too_long_is_sent_empty() {
        let mut r = outcome();
        if let Repr::Outcome { log, .. } = &mut r {
            *log = vec![b'a'; MAX_PATH + 1];
        }
        let Ok(Repr::Outcome { log, .. }) = Repr::parse(&r.to_bytes()) else {
            panic!("parses");
        };
        assert!(log.is_empty());
    }

    #[test]
    fn one_wrong_field_is_refused_with_its_reason() {
        let bad = |bytes: &[u8], at: usize, v: u8| {
            let mut b = bytes.to_vec();
            b[at] = v;
            Repr::parse(&b)
        };
        assert_eq!(bad(&READY_BYTES, 0, b'X'), Err(Error::BadMagic));
        assert_eq!(bad(&READY_BYTES, 2, 2), Err(Error::BadVersion));
        assert_eq!(bad(&READY_BYTES, 3, 9), Err(Error::UnknownKind));
        assert_eq!(bad(&READY_BYTES, field::FAMILY, 5), Err(Error::BadValue));
        assert_eq!(bad(&READY_BYTES, field::RESERVED, 1), Err(Error::BadValue));
        // An IPv4 address with bytes after its four.
        assert_eq!(bad(&READY_BYTES, 20, 1), Err(Error::BadValue));
        assert_eq!(bad(&OUTCOME_BYTES, field::OK, 2), Err(Error::BadValue));
        assert_eq!(bad(&OUTCOME_BYTES, field::REASON, 7), Err(Error::BadValue));
        // The path length against the datagram: longer, shorter, over the cap.
        assert_eq!(bad(&OUTCOME_BYTES, 17, 6), Err(Error::Truncated));
        assert_eq!(bad(&OUTCOME_BYTES, 17, 4), Err(Error::BadLength));
        assert_eq!(bad(&OUTCOME_BYTES, 16, 0xff), Err(Error::BadLength));
        let mut long = READY_BYTES.to_vec();
        long.push(0);
        assert_eq!(Repr::parse(&long), Err(Error::BadLength));
        for cut in 0..READY_BYTES.len() {
            assert_eq!(
                Repr::parse(&READY_BYTES[..cut]),
                Err(Error::Truncated),
                "{cut}"
            );
        }
        for cut in 0..OUTCOME_BYTES.len() {
            assert_eq!(
                Repr::parse(&OUTCOME_BYTES[..cut]),
                Err(Error::Truncated),
                "{cut}"
            );
        }
    }
}
