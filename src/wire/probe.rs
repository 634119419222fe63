//! The preflight's datagrams (`mpcomm check`): a PROBE sent by unicast to each peer and to the
//! multicast group, and the REPLY a peer sends back by unicast.
//!
//! ```text
//! header (HEADER_LEN = 12 bytes)
//!   0..2 magic "MK"   2 version (1)   3 kind   4..8 hash of the peer list   8..10 sender id
//!   10 transport this datagram went by (0 unicast, 1 multicast)   11 TTL it was sent with
//! PROBE  12..16 seq   16..24 send time, ns on the sender's own clock (echoed, never compared)
//! REPLY  12..14 to (the prober's id)   14..18 seq   18..26 the probe's send time, echoed
//!        26 transport the probe came by   27 TTL the probe arrived with (0 = not known)
//! ```
//!
//! The sent TTL travels in every datagram, so a receiver reads the hop distance as
//! `sent − received` (omping's way) without assuming any initial TTL. The list hash keeps a
//! check started with another `--peers` list (ids mean other hosts there) out of the counts.
//! Nothing is padded: any length other than the kind's is an error.

use byteorder::{ByteOrder, NetworkEndian};

use super::{Error, Result, Transport};

pub const MAGIC: [u8; 2] = *b"MK";
pub const VERSION: u8 = 1;

mod field {
    use crate::wire::Field;
    pub const MAGIC: Field = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const LIST_HASH: Field = 4..8;
    pub const SENDER: Field = 8..10;
    pub const TRANSPORT: usize = 10;
    pub const TTL: usize = 11;
    pub const BODY: usize = TTL + 1;

    pub const PROBE_SEQ: Field = BODY..BODY + 4;
    pub const PROBE_SENT_NS: Field = PROBE_SEQ.end..PROBE_SEQ.end + 8;

    pub const REPLY_TO: Field = BODY..BODY + 2;
    pub const REPLY_SEQ: Field = REPLY_TO.end..REPLY_TO.end + 4;
    pub const REPLY_SENT_NS: Field = REPLY_SEQ.end..REPLY_SEQ.end + 8;
    pub const REPLY_TRANSPORT: usize = REPLY_SENT_NS.end;
    pub const REPLY_TTL: usize = REPLY_TRANSPORT + 1;
}

pub const HEADER_LEN: usize = field::BODY;
pub const PROBE_LEN: usize = field::PROBE_SENT_NS.end;
pub const REPLY_LEN: usize = field::REPLY_TTL + 1;

enum_with_unknown! {
    /// Datagram kinds of the preflight.
    pub enum Kind {
        Probe = 1,
        Reply = 2,
    }
}

/// A view of a preflight datagram; after `new_checked` every header accessor is in bounds.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap untrusted bytes: refuses anything not ours or shorter than the header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() >= field::MAGIC.end && data[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    fn data(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn version(&self) -> u8 {
        self.data()[field::VERSION]
    }
    pub fn kind(&self) -> Kind {
        Kind::from(self.data()[field::KIND])
    }
    pub fn list_hash(&self) -> u32 {
        NetworkEndian::read_u32(&self.data()[field::LIST_HASH])
    }
    pub fn sender(&self) -> u16 {
        NetworkEndian::read_u16(&self.data()[field::SENDER])
    }
    pub fn transport_code(&self) -> u8 {
        self.data()[field::TRANSPORT]
    }
    pub fn ttl(&self) -> u8 {
        self.data()[field::TTL]
    }
    pub fn len(&self) -> usize {
        self.data().len()
    }
    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
}

/// What a datagram says, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// "Are you there?": number `seq` of the sender's probes over this transport.
    Probe { seq: u32, sent_ns: u64 },
    /// "Peer `to`, I heard your probe `seq` (sent at `sent_ns`), over `transport`, arriving
    /// with TTL `ttl` (0 = my kernel did not say)."
    Reply {
        to: u16,
        seq: u32,
        sent_ns: u64,
        transport: Transport,
        ttl: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub list_hash: u32,
    pub sender: u16,
    /// How this datagram travels (a reply always goes by unicast).
    pub transport: Transport,
    /// The TTL (IPv6: hop limit) it is sent with.
    pub ttl: u8,
    pub body: Body,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.version() != VERSION {
            return Err(Error::BadVersion);
        }
        let want = match p.kind() {
            Kind::Probe => PROBE_LEN,
            Kind::Reply => REPLY_LEN,
            Kind::Unknown(_) => return Err(Error::UnknownKind),
        };
        match p.len().cmp(&want) {
            std::cmp::Ordering::Less => return Err(Error::Truncated),
            std::cmp::Ordering::Greater => return Err(Error::BadLength),
            std::cmp::Ordering::Equal => {}
        }
        let data = p.data();
        let transport = Transport::from_u8(p.transport_code())?;
        let body = match p.kind() {
            Kind::Probe => Body::Probe {
                seq: NetworkEndian::read_u32(&data[field::PROBE_SEQ]),
                sent_ns: NetworkEndian::read_u64(&data[field::PROBE_SENT_NS]),
            },
            _ => {
                // A reply goes back by unicast, whatever it answers.
                if transport != Transport::Fanout {
                    return Err(Error::BadValue);
                }
                Body::Reply {
                    to: NetworkEndian::read_u16(&data[field::REPLY_TO]),
                    seq: NetworkEndian::read_u32(&data[field::REPLY_SEQ]),
                    sent_ns: NetworkEndian::read_u64(&data[field::REPLY_SENT_NS]),
                    transport: Transport::from_u8(data[field::REPLY_TRANSPORT])?,
                    ttl: data[field::REPLY_TTL],
                }
            }
        };
        Ok(Repr {
            list_hash: p.list_hash(),
            sender: p.sender(),
            transport,
            ttl: p.ttl(),
            body,
        })
    }

    /// Decode untrusted bytes in one step.
    pub fn decode(bytes: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    pub const fn buffer_len(&self) -> usize {
        match self.body {
            Body::Probe { .. } => PROBE_LEN,
            Body::Reply { .. } => REPLY_LEN,
        }
    }

    /// Write into `buf[..self.buffer_len()]`; returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let data = &mut buf[..len];
        data[field::MAGIC].copy_from_slice(&MAGIC);
        data[field::VERSION] = VERSION;
        NetworkEndian::write_u32(&mut data[field::LIST_HASH], self.list_hash);
        NetworkEndian::write_u16(&mut data[field::SENDER], self.sender);
        data[field::TRANSPORT] = self.transport.as_u8();
        data[field::TTL] = self.ttl;
        match self.body {
            Body::Probe { seq, sent_ns } => {
                data[field::KIND] = u8::from(Kind::Probe);
                NetworkEndian::write_u32(&mut data[field::PROBE_SEQ], seq);
                NetworkEndian::write_u64(&mut data[field::PROBE_SENT_NS], sent_ns);
            }
            Body::Reply {
                to,
                seq,
                sent_ns,
                transport,
                ttl,
            } => {
                data[field::KIND] = u8::from(Kind::Reply);
                NetworkEndian::write_u16(&mut data[field::REPLY_TO], to);
                NetworkEndian::write_u32(&mut data[field::REPLY_SEQ], seq);
                NetworkEndian::write_u64(&mut data[field::REPLY_SENT_NS], sent_ns);
                data[field::REPLY_TRANSPORT] = transport.as_u8();
                data[field::REPLY_TTL] = ttl;
            }
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PROBE_BYTES: [u8; PROBE_LEN] = [
        b'M', b'K', 1, 1, 0xca, 0xfe, 0xf0, 0x0d, 0, 2, 1,
        5, // hash, sender 2, multicast, TTL 5
        0, 0, 1, 0, 0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x00, // seq 256, 1 s
    ];
    static REPLY_BYTES: [u8; REPLY_LEN] = [
        b'M', b'K', 1, 2, 0xca, 0xfe, 0xf0, 0x0d, 0, 1, 0, 64, // sender 1, unicast, TTL 64
        0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x00, // to 2, seq 256, 1 s
        1, 4, // it came by multicast, with TTL 4
    ];

    fn fixtures() -> [(&'static [u8], Repr); 2] {
        [
            (
                &PROBE_BYTES[..],
                Repr {
                    list_hash: 0xcafe_f00d,
                    sender: 2,
                    transport: Transport::Multicast,
                    ttl: 5,
                    body: Body::Probe {
                        seq: 256,
                        sent_ns: 1_000_000_000,
                    },
                },
            ),
            (
                &REPLY_BYTES[..],
                Repr {
                    list_hash: 0xcafe_f00d,
                    sender: 1,
                    transport: Transport::Fanout,
                    ttl: 64,
                    body: Body::Reply {
                        to: 2,
                        seq: 256,
                        sent_ns: 1_000_000_000,
                        transport: Transport::Multicast,
                        ttl: 4,
                    },
                },
            ),
        ]
    }

    #[test]
    fn deconstruct_fixtures() {
        let p = Packet::new_checked(&PROBE_BYTES[..]).unwrap();
        assert_eq!((p.version(), p.kind()), (1, Kind::Probe));
        assert_eq!((p.list_hash(), p.sender()), (0xcafe_f00d, 2));
        assert_eq!((p.transport_code(), p.ttl()), (1, 5));
        for (bytes, repr) in fixtures() {
            assert_eq!(Repr::decode(bytes), Ok(repr));
        }
    }

    #[test]
    fn construct_fixtures_over_garbage() {
        for (bytes, repr) in fixtures() {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            assert_eq!(repr.emit(&mut buf), bytes.len());
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for (bytes, _) in fixtures() {
            for cut in 0..bytes.len() {
                assert!(Repr::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(Repr::decode(&longer), Err(Error::BadLength));
        }
    }

    #[test]
    fn one_field_wrong() {
        let mut b = PROBE_BYTES;
        b[1] = b'P';
        assert_eq!(Repr::decode(&b), Err(Error::BadMagic));
        let mut b = PROBE_BYTES;
        b[2] = 2;
        assert_eq!(Repr::decode(&b), Err(Error::BadVersion));
        let mut b = PROBE_BYTES;
        b[3] = 9;
        assert_eq!(Repr::decode(&b), Err(Error::UnknownKind));
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().kind(),
            Kind::Unknown(9)
        );
        let mut b = PROBE_BYTES;
        b[10] = 2;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue), "unknown transport");
        let mut b = REPLY_BYTES;
        b[10] = 1;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue), "a multicast reply");
        let mut b = REPLY_BYTES;
        b[26] = 7;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        // A peer datagram is not a probe.
        assert_eq!(Repr::decode(b"MP\x02\x03"), Err(Error::BadMagic));
        assert_eq!(Repr::decode(b"M"), Err(Error::Truncated));
    }
}
