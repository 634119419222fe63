//! Peer datagrams: the handshake (HELLO, HELLO_ACK), the messages (DATA) and the end (STOP).
//!
//! ```text
//! header (HEADER_LEN = 14 bytes)
//!   0..2 magic "MP"   2 version (1)   3 kind   4..12 run id   12..14 sender id
//! HELLO      14..22 nonce (≠ 0)   22..24 peers   24..28 messages per peer
//! HELLO_ACK  14..16 to (peer id)  16..24 nonce of the HELLO acknowledged
//!            24..32 the sender's own nonce   32..40 its view of peer 0's nonce (0 = not heard)
//! DATA       14..18 seq           18..26 send time, ns since the Unix epoch   26.. padding
//! STOP       14..18 DATA messages the sender sent
//! ```
//!
//! A HELLO's run id is the one given on the command line, or 0 while the peers have not agreed
//! on one; then they take the nonce of peer 0, and a peer passes the handshake only when every
//! ACK it holds names the same peer-0 nonce it knows (so a restarted peer 0 cannot split a run). DATA and STOP always carry the agreed id, so a
//! datagram of another run is recognised and counted, never misread. Only DATA may carry
//! padding (to reach `--size`); any other trailing byte is an error.

use byteorder::{ByteOrder, NetworkEndian};

use super::{Error, Field, Result};

pub const MAGIC: [u8; 2] = *b"MP";
pub const VERSION: u8 = 1;
/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

mod field {
    use super::Field;
    pub const MAGIC: Field = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const RUN_ID: Field = 4..12;
    pub const SENDER: Field = 12..14;
    pub const BODY: usize = SENDER.end;

    pub const HELLO_NONCE: Field = BODY..BODY + 8;
    pub const HELLO_PEERS: Field = HELLO_NONCE.end..HELLO_NONCE.end + 2;
    pub const HELLO_MSGS: Field = HELLO_PEERS.end..HELLO_PEERS.end + 4;

    pub const ACK_TO: Field = BODY..BODY + 2;
    pub const ACK_NONCE: Field = ACK_TO.end..ACK_TO.end + 8;
    pub const ACK_FROM_NONCE: Field = ACK_NONCE.end..ACK_NONCE.end + 8;
    pub const ACK_RUN_NONCE: Field = ACK_FROM_NONCE.end..ACK_FROM_NONCE.end + 8;

    pub const DATA_SEQ: Field = BODY..BODY + 4;
    pub const DATA_SEND_NS: Field = DATA_SEQ.end..DATA_SEQ.end + 8;

    pub const STOP_SENT: Field = BODY..BODY + 4;
}

pub const HEADER_LEN: usize = field::BODY;
pub const HELLO_LEN: usize = field::HELLO_MSGS.end;
pub const HELLO_ACK_LEN: usize = field::ACK_RUN_NONCE.end;
/// The smallest DATA datagram; `--size` below it is raised to it.
pub const DATA_MIN_LEN: usize = field::DATA_SEND_NS.end;
pub const STOP_LEN: usize = field::STOP_SENT.end;

enum_with_unknown! {
    /// Datagram kinds.
    pub enum Kind {
        Hello = 1,
        HelloAck = 2,
        Data = 3,
        Stop = 4,
    }
}

/// A view of a datagram; after `new_checked` every header accessor is in bounds.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap untrusted bytes: refuses anything shorter than the header or not ours.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Make sure no header accessor can panic.
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

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    pub fn kind(&self) -> Kind {
        Kind::from(self.buffer.as_ref()[field::KIND])
    }
    pub fn run_id(&self) -> u64 {
        NetworkEndian::read_u64(&self.buffer.as_ref()[field::RUN_ID])
    }
    pub fn sender(&self) -> u16 {
        NetworkEndian::read_u16(&self.buffer.as_ref()[field::SENDER])
    }
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }
    pub fn is_empty(&self) -> bool {
        self.buffer.as_ref().is_empty()
    }
    fn u16_at(&self, f: Field) -> u16 {
        NetworkEndian::read_u16(&self.buffer.as_ref()[f])
    }
    fn u32_at(&self, f: Field) -> u32 {
        NetworkEndian::read_u32(&self.buffer.as_ref()[f])
    }
    fn u64_at(&self, f: Field) -> u64 {
        NetworkEndian::read_u64(&self.buffer.as_ref()[f])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn header_mut(&mut self, kind: Kind, run_id: u64, sender: u16) {
        let data = self.buffer.as_mut();
        data[field::MAGIC].copy_from_slice(&MAGIC);
        data[field::VERSION] = VERSION;
        data[field::KIND] = u8::from(kind);
        NetworkEndian::write_u64(&mut data[field::RUN_ID], run_id);
        NetworkEndian::write_u16(&mut data[field::SENDER], sender);
    }
    fn put_u16(&mut self, f: Field, v: u16) {
        NetworkEndian::write_u16(&mut self.buffer.as_mut()[f], v)
    }
    fn put_u32(&mut self, f: Field, v: u32) {
        NetworkEndian::write_u32(&mut self.buffer.as_mut()[f], v)
    }
    fn put_u64(&mut self, f: Field, v: u64) {
        NetworkEndian::write_u64(&mut self.buffer.as_mut()[f], v)
    }
}

/// What a datagram says, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// "I am here": retransmitted until every peer acknowledged it.
    Hello { nonce: u64, peers: u16, msgs: u32 },
    /// "I, incarnation `from_nonce`, heard your HELLO with this nonce; peer 0's nonce, as far
    /// as I know, is `run_nonce`."
    HelloAck {
        to: u16,
        nonce: u64,
        from_nonce: u64,
        run_nonce: u64,
    },
    /// One message. `pad` zero bytes follow the fixed part.
    Data { seq: u32, send_ns: u64, pad: u16 },
    /// "I sent `sent` DATA messages and will send no more."
    Stop { sent: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub run_id: u64,
    pub sender: u16,
    pub body: Body,
}

impl Repr {
    /// Decode a checked packet. Padding of DATA is not inspected.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if p.version() != VERSION {
            return Err(Error::BadVersion);
        }
        let len = p.len();
        let exact = |want: usize| match len.cmp(&want) {
            std::cmp::Ordering::Less => Err(Error::Truncated),
            std::cmp::Ordering::Greater => Err(Error::BadLength),
            std::cmp::Ordering::Equal => Ok(()),
        };
        let body = match p.kind() {
            Kind::Hello => {
                exact(HELLO_LEN)?;
                let nonce = p.u64_at(field::HELLO_NONCE);
                let peers = p.u16_at(field::HELLO_PEERS);
                if nonce == 0 || peers == 0 {
                    return Err(Error::BadValue);
                }
                Body::Hello {
                    nonce,
                    peers,
                    msgs: p.u32_at(field::HELLO_MSGS),
                }
            }
            Kind::HelloAck => {
                exact(HELLO_ACK_LEN)?;
                Body::HelloAck {
                    to: p.u16_at(field::ACK_TO),
                    nonce: p.u64_at(field::ACK_NONCE),
                    from_nonce: p.u64_at(field::ACK_FROM_NONCE),
                    run_nonce: p.u64_at(field::ACK_RUN_NONCE),
                }
            }
            Kind::Data => {
                if len < DATA_MIN_LEN {
                    return Err(Error::Truncated);
                }
                if len > MAX_DATAGRAM {
                    return Err(Error::BadLength);
                }
                Body::Data {
                    seq: p.u32_at(field::DATA_SEQ),
                    send_ns: p.u64_at(field::DATA_SEND_NS),
                    pad: (len - DATA_MIN_LEN) as u16,
                }
            }
            Kind::Stop => {
                exact(STOP_LEN)?;
                Body::Stop {
                    sent: p.u32_at(field::STOP_SENT),
                }
            }
            Kind::Unknown(_) => return Err(Error::UnknownKind),
        };
        Ok(Repr {
            run_id: p.run_id(),
            sender: p.sender(),
            body,
        })
    }

    /// Decode untrusted bytes in one step.
    pub fn decode(bytes: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    pub const fn buffer_len(&self) -> usize {
        match self.body {
            Body::Hello { .. } => HELLO_LEN,
            Body::HelloAck { .. } => HELLO_ACK_LEN,
            Body::Data { pad, .. } => DATA_MIN_LEN + pad as usize,
            Body::Stop { .. } => STOP_LEN,
        }
    }

    /// Write into `buf[..self.buffer_len()]` (padding is zeroed); returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let mut p = Packet::new_unchecked(&mut buf[..len]);
        match self.body {
            Body::Hello { nonce, peers, msgs } => {
                p.header_mut(Kind::Hello, self.run_id, self.sender);
                p.put_u64(field::HELLO_NONCE, nonce);
                p.put_u16(field::HELLO_PEERS, peers);
                p.put_u32(field::HELLO_MSGS, msgs);
            }
            Body::HelloAck {
                to,
                nonce,
                from_nonce,
                run_nonce,
            } => {
                p.header_mut(Kind::HelloAck, self.run_id, self.sender);
                p.put_u16(field::ACK_TO, to);
                p.put_u64(field::ACK_NONCE, nonce);
                p.put_u64(field::ACK_FROM_NONCE, from_nonce);
                p.put_u64(field::ACK_RUN_NONCE, run_nonce);
            }
            Body::Data { seq, send_ns, .. } => {
                p.header_mut(Kind::Data, self.run_id, self.sender);
                p.put_u32(field::DATA_SEQ, seq);
                p.put_u64(field::DATA_SEND_NS, send_ns);
                p.buffer[DATA_MIN_LEN..].fill(0);
            }
            Body::Stop { sent } => {
                p.header_mut(Kind::Stop, self.run_id, self.sender);
                p.put_u32(field::STOP_SENT, sent);
            }
        }
        len
    }
}

/// Rewrite only the send time of an emitted DATA datagram (the hot path re-stamps a template).
pub fn restamp_data(buf: &mut [u8], seq: u32, send_ns: u64) {
    NetworkEndian::write_u32(&mut buf[field::DATA_SEQ], seq);
    NetworkEndian::write_u64(&mut buf[field::DATA_SEND_NS], send_ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    static HELLO_BYTES: [u8; HELLO_LEN] = [
        b'M', b'P', 1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, // header: run 7, sender 2
        0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 8, 0, 0, 0, 100, // nonce, 8 peers, 100 msgs
    ];
    static ACK_BYTES: [u8; HELLO_ACK_LEN] = [
        b'M', b'P', 1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 5, // header: run 7, sender 5
        0, 2, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, // to 2, nonce
        0, 0, 0, 0, 0, 0, 0x50, 0x05, // its own nonce 0x5005
        0, 0, 0, 0, 0, 0, 0x10, 0x01, // peer 0's nonce 0x1001
    ];
    static DATA_BYTES: [u8; DATA_MIN_LEN + 2] = [
        b'M', b'P', 1, 3, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x01,
        0x00, // sender 256
        0, 0, 0, 42, 0x17, 0x9a, 0x3f, 0x1c, 0x00, 0x00, 0x00, 0x01, 0,
        0, // seq 42, time, pad 2
    ];
    static STOP_BYTES: [u8; STOP_LEN] =
        [b'M', b'P', 1, 4, 0, 0, 0, 0, 0, 0, 0, 7, 0, 3, 0, 0, 0, 100];

    fn fixtures() -> Vec<(&'static [u8], Repr)> {
        vec![
            (
                &HELLO_BYTES[..],
                Repr {
                    run_id: 7,
                    sender: 2,
                    body: Body::Hello {
                        nonce: 0xdead_beef,
                        peers: 8,
                        msgs: 100,
                    },
                },
            ),
            (
                &ACK_BYTES[..],
                Repr {
                    run_id: 7,
                    sender: 5,
                    body: Body::HelloAck {
                        to: 2,
                        nonce: 0xdead_beef,
                        from_nonce: 0x5005,
                        run_nonce: 0x1001,
                    },
                },
            ),
            (
                &DATA_BYTES[..],
                Repr {
                    run_id: 0x1122_3344_5566_7788,
                    sender: 256,
                    body: Body::Data {
                        seq: 42,
                        send_ns: 0x179a_3f1c_0000_0001,
                        pad: 2,
                    },
                },
            ),
            (
                &STOP_BYTES[..],
                Repr {
                    run_id: 7,
                    sender: 3,
                    body: Body::Stop { sent: 100 },
                },
            ),
        ]
    }

    #[test]
    fn deconstruct_fixtures() {
        let p = Packet::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert_eq!(p.kind(), Kind::Data);
        assert_eq!(p.run_id(), 0x1122_3344_5566_7788);
        assert_eq!(p.sender(), 256);
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
                let e = Repr::decode(&bytes[..cut]);
                let is_data = bytes[3] == 3;
                if !(is_data && cut >= DATA_MIN_LEN) {
                    assert!(e.is_err(), "{bytes:?} cut at {cut}");
                }
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            let r = Repr::decode(&longer);
            if bytes[3] == 3 {
                assert!(r.is_ok());
            } else {
                assert_eq!(r, Err(Error::BadLength));
            }
        }
    }

    #[test]
    fn one_field_wrong() {
        let mut b = HELLO_BYTES;
        b[0] = b'X';
        assert_eq!(Repr::decode(&b), Err(Error::BadMagic));
        let mut b = HELLO_BYTES;
        b[2] = 2;
        assert_eq!(Repr::decode(&b), Err(Error::BadVersion));
        let mut b = HELLO_BYTES;
        b[3] = 77;
        assert_eq!(Repr::decode(&b), Err(Error::UnknownKind));
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().kind(),
            Kind::Unknown(77)
        );
        let mut b = HELLO_BYTES;
        b[14..22].fill(0);
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = HELLO_BYTES;
        b[22..24].fill(0);
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        assert_eq!(Repr::decode(b"M"), Err(Error::Truncated));
        assert_eq!(Repr::decode(b"XY"), Err(Error::BadMagic));
        let big = vec![0u8; MAX_DATAGRAM + 1];
        let mut big = big;
        big[..DATA_MIN_LEN].copy_from_slice(&DATA_BYTES[..DATA_MIN_LEN]);
        assert_eq!(Repr::decode(&big), Err(Error::BadLength));
    }

    #[test]
    fn restamp_changes_only_seq_and_time() {
        let repr = Repr {
            run_id: 9,
            sender: 1,
            body: Body::Data {
                seq: 0,
                send_ns: 0,
                pad: 10,
            },
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf);
        restamp_data(&mut buf, 5, 77);
        let want = Repr {
            run_id: 9,
            sender: 1,
            body: Body::Data {
                seq: 5,
                send_ns: 77,
                pad: 10,
            },
        };
        assert_eq!(Repr::decode(&buf), Ok(want));
    }
}
