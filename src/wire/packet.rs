//! Peer datagrams: the handshake (HELLO, HELLO_ACK), the messages (DATA), the end (STOP), and
//! what repair and ordering need (HEARTBEAT, NACK, ORDER).
//!
//! ```text
//! header (HEADER_LEN = 14 bytes)
//!   0..2 magic "MP"   2 version (2)   3 kind   4..12 run id   12..14 sender id
//! HELLO      14..22 nonce (≠ 0)   22..24 peers   24..28 messages per peer
//!            28 ordering mode     29 repair (modes must agree: see `wire::Order`, `wire::Repair`)
//! HELLO_ACK  14..16 to (peer id)  16..24 nonce of the HELLO acknowledged
//!            24..32 the sender's own nonce   32..40 its view of peer 0's nonce (0 = not heard)
//! DATA       14..18 seq   18..26 send time, ns since the Unix epoch   26 flags (bit 0: a
//!            retransmission)   27 reserved (0)   28..36 Lamport timestamp (0 = none)
//!            36..38 vector length V (0, or N for `causal`)   38..38+4V vector   then padding
//! STOP       14..18 DATA messages sent   18..26 Lamport clock   26..30 ORDER entries assigned
//!            (the sequencer; else 0)   30 flags (bit 0: I have everything from everyone)
//! HEARTBEAT  as STOP, sent while the sender has more to send or to serve
//! NACK       14..16 to (the sender asked)   16 stream (0 DATA, 1 ORDER)   17 ranges R (1..=32)
//!            18..18+8R  R × (first u32, count u32)
//! ORDER      14..18 global index of the first entry   18..20 entries E (1..=MAX_ORDER_ENTRIES)
//!            20..20+6E  E × (sender u16, seq u32)
//! ```
//!
//! A HELLO's run id is the one given on the command line, or 0 while the peers have not agreed
//! on one; then they take the nonce of peer 0, and a peer passes the handshake only when every
//! ACK it holds names the same peer-0 nonce it knows (so a restarted peer 0 cannot split a run).
//! Every other kind after the handshake carries the agreed id, so a datagram of another run is
//! recognised and counted, never misread. Only DATA may carry padding (to reach `--size`); any
//! other trailing byte is an error. Version 1 (no stamps, no repair) is refused as `BadVersion`.

use byteorder::{ByteOrder, NetworkEndian};

use super::{Error, Field, Order, Repair, Result};

pub const MAGIC: [u8; 2] = *b"MP";
pub const VERSION: u8 = 2;
/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Ranges in one NACK.
pub const MAX_NACK_RANGES: usize = 32;
/// Entries in one ORDER (6 bytes each: an ORDER stays under 1,500 bytes).
pub const MAX_ORDER_ENTRIES: usize = 240;

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
    pub const HELLO_ORDER: usize = HELLO_MSGS.end;
    pub const HELLO_REPAIR: usize = HELLO_ORDER + 1;

    pub const ACK_TO: Field = BODY..BODY + 2;
    pub const ACK_NONCE: Field = ACK_TO.end..ACK_TO.end + 8;
    pub const ACK_FROM_NONCE: Field = ACK_NONCE.end..ACK_NONCE.end + 8;
    pub const ACK_RUN_NONCE: Field = ACK_FROM_NONCE.end..ACK_FROM_NONCE.end + 8;

    pub const DATA_SEQ: Field = BODY..BODY + 4;
    pub const DATA_SEND_NS: Field = DATA_SEQ.end..DATA_SEQ.end + 8;
    pub const DATA_FLAGS: usize = DATA_SEND_NS.end;
    pub const DATA_RESERVED: usize = DATA_FLAGS + 1;
    pub const DATA_LAMPORT: Field = DATA_RESERVED + 1..DATA_RESERVED + 9;
    pub const DATA_VLEN: Field = DATA_LAMPORT.end..DATA_LAMPORT.end + 2;
    pub const DATA_VECTOR: usize = DATA_VLEN.end;

    pub const ANN_SENT: Field = BODY..BODY + 4;
    pub const ANN_LAMPORT: Field = ANN_SENT.end..ANN_SENT.end + 8;
    pub const ANN_ORDERED: Field = ANN_LAMPORT.end..ANN_LAMPORT.end + 4;
    pub const ANN_FLAGS: usize = ANN_ORDERED.end;

    pub const NACK_TO: Field = BODY..BODY + 2;
    pub const NACK_STREAM: usize = NACK_TO.end;
    pub const NACK_COUNT: usize = NACK_STREAM + 1;
    pub const NACK_RANGES: usize = NACK_COUNT + 1;

    pub const ORDER_FIRST: Field = BODY..BODY + 4;
    pub const ORDER_COUNT: Field = ORDER_FIRST.end..ORDER_FIRST.end + 2;
    pub const ORDER_ENTRIES: usize = ORDER_COUNT.end;
}

pub const HEADER_LEN: usize = field::BODY;
pub const HELLO_LEN: usize = field::HELLO_REPAIR + 1;
pub const HELLO_ACK_LEN: usize = field::ACK_RUN_NONCE.end;
/// The smallest DATA datagram (no vector); `--size` below it is raised to it.
pub const DATA_MIN_LEN: usize = field::DATA_VECTOR;
/// STOP and HEARTBEAT.
pub const ANNOUNCE_LEN: usize = field::ANN_FLAGS + 1;
pub const NACK_RANGE_LEN: usize = 8;
pub const ORDER_ENTRY_LEN: usize = 6;

const DATA_RETRANSMIT: u8 = 1;
const ANN_COMPLETE: u8 = 1;

/// The DATA length with a vector of `v` entries and no padding.
pub const fn data_len(v: usize) -> usize {
    DATA_MIN_LEN + 4 * v
}

enum_with_unknown! {
    /// Datagram kinds.
    pub enum Kind {
        Hello = 1,
        HelloAck = 2,
        Data = 3,
        Stop = 4,
        Heartbeat = 5,
        Nack = 6,
        Order = 7,
    }
}

/// Which stream a NACK asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The DATA of the peer asked.
    Data,
    /// The sequencer's ORDER entries (global indices).
    Order,
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

/// What STOP and HEARTBEAT say: how far the sender's streams go, and whether it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Announce {
    /// DATA messages sent so far (STOP: in all).
    pub sent: u32,
    /// The sender's Lamport clock (0 outside `lamport`).
    pub lamport: u64,
    /// ORDER entries assigned so far (the sequencer; 0 for everyone else).
    pub ordered: u32,
    /// The sender has every message of every peer (delivered or given up) and is only
    /// waiting to serve repairs: once all peers say so, all may stop.
    pub complete: bool,
}

/// What a datagram says, checked. Lists (NACK ranges, ORDER entries, DATA vectors) stay in the
/// datagram; read them with [`nack_range`], [`order_entry`] and [`data_vector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// "I am here, with this ordering mode and repair": retransmitted until every peer
    /// acknowledged it.
    Hello {
        nonce: u64,
        peers: u16,
        msgs: u32,
        /// Raw codes: a peer compares them and names an unknown one instead of dropping it.
        order: u8,
        repair: u8,
    },
    /// "I, incarnation `from_nonce`, heard your HELLO with this nonce; peer 0's nonce, as far
    /// as I know, is `run_nonce`."
    HelloAck {
        to: u16,
        nonce: u64,
        from_nonce: u64,
        run_nonce: u64,
    },
    /// One message. `vector` u32 entries and then `pad` zero bytes follow the fixed part.
    Data {
        seq: u32,
        send_ns: u64,
        retransmit: bool,
        lamport: u64,
        vector: u16,
        pad: u16,
    },
    /// "I sent `sent` DATA messages and will send no more."
    Stop(Announce),
    /// "So far": lets receivers find a lost tail, and carries the Lamport clock when idle.
    Heartbeat(Announce),
    /// "Peer `to`, please resend these": `ranges` (first, count) pairs follow.
    Nack { to: u16, stream: Stream, ranges: u8 },
    /// "Global positions `first`.. hold these messages": `entries` (sender, seq) pairs follow.
    Order { first: u32, entries: u16 },
}

impl Body {
    /// A first transmission of DATA without stamps or padding (the original experiment's).
    pub const fn plain_data(seq: u32, send_ns: u64) -> Body {
        Body::Data {
            seq,
            send_ns,
            retransmit: false,
            lamport: 0,
            vector: 0,
            pad: 0,
        }
    }
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
        let announce = || -> Result<Announce> {
            exact(ANNOUNCE_LEN)?;
            let flags = p.buffer.as_ref()[field::ANN_FLAGS];
            if flags & !ANN_COMPLETE != 0 {
                return Err(Error::BadValue);
            }
            Ok(Announce {
                sent: p.u32_at(field::ANN_SENT),
                lamport: p.u64_at(field::ANN_LAMPORT),
                ordered: p.u32_at(field::ANN_ORDERED),
                complete: flags & ANN_COMPLETE != 0,
            })
        };
        let body = match p.kind() {
            Kind::Hello => {
                exact(HELLO_LEN)?;
                let nonce = p.u64_at(field::HELLO_NONCE);
                let peers = p.u16_at(field::HELLO_PEERS);
                if nonce == 0 || peers == 0 {
                    return Err(Error::BadValue);
                }
                let data = p.buffer.as_ref();
                Body::Hello {
                    nonce,
                    peers,
                    msgs: p.u32_at(field::HELLO_MSGS),
                    order: data[field::HELLO_ORDER],
                    repair: data[field::HELLO_REPAIR],
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
                let data = p.buffer.as_ref();
                let flags = data[field::DATA_FLAGS];
                if flags & !DATA_RETRANSMIT != 0 || data[field::DATA_RESERVED] != 0 {
                    return Err(Error::BadValue);
                }
                let vector = p.u16_at(field::DATA_VLEN);
                let fixed = data_len(usize::from(vector));
                if len < fixed {
                    return Err(Error::Truncated);
                }
                Body::Data {
                    seq: p.u32_at(field::DATA_SEQ),
                    send_ns: p.u64_at(field::DATA_SEND_NS),
                    retransmit: flags & DATA_RETRANSMIT != 0,
                    lamport: p.u64_at(field::DATA_LAMPORT),
                    vector,
                    pad: (len - fixed) as u16,
                }
            }
            Kind::Stop => Body::Stop(announce()?),
            Kind::Heartbeat => Body::Heartbeat(announce()?),
            Kind::Nack => {
                if len < field::NACK_RANGES {
                    return Err(Error::Truncated);
                }
                let data = p.buffer.as_ref();
                let stream = match data[field::NACK_STREAM] {
                    0 => Stream::Data,
                    1 => Stream::Order,
                    _ => return Err(Error::BadValue),
                };
                let ranges = data[field::NACK_COUNT];
                if ranges == 0 || usize::from(ranges) > MAX_NACK_RANGES {
                    return Err(Error::BadValue);
                }
                exact(field::NACK_RANGES + NACK_RANGE_LEN * usize::from(ranges))?;
                Body::Nack {
                    to: p.u16_at(field::NACK_TO),
                    stream,
                    ranges,
                }
            }
            Kind::Order => {
                if len < field::ORDER_ENTRIES {
                    return Err(Error::Truncated);
                }
                let entries = p.u16_at(field::ORDER_COUNT);
                if entries == 0 || usize::from(entries) > MAX_ORDER_ENTRIES {
                    return Err(Error::BadValue);
                }
                exact(field::ORDER_ENTRIES + ORDER_ENTRY_LEN * usize::from(entries))?;
                Body::Order {
                    first: p.u32_at(field::ORDER_FIRST),
                    entries,
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
            Body::Data { vector, pad, .. } => data_len(vector as usize) + pad as usize,
            Body::Stop(_) | Body::Heartbeat(_) => ANNOUNCE_LEN,
            Body::Nack { ranges, .. } => field::NACK_RANGES + NACK_RANGE_LEN * ranges as usize,
            Body::Order { entries, .. } => {
                field::ORDER_ENTRIES + ORDER_ENTRY_LEN * entries as usize
            }
        }
    }

    /// Write into `buf[..self.buffer_len()]`; returns the length written. Padding is zeroed;
    /// the lists (vector, ranges, entries) are zeroed too: fill them with [`put_data_vector`],
    /// [`put_nack_range`] and [`put_order_entry`].
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let mut p = Packet::new_unchecked(&mut buf[..len]);
        match self.body {
            Body::Hello {
                nonce,
                peers,
                msgs,
                order,
                repair,
            } => {
                p.header_mut(Kind::Hello, self.run_id, self.sender);
                p.put_u64(field::HELLO_NONCE, nonce);
                p.put_u16(field::HELLO_PEERS, peers);
                p.put_u32(field::HELLO_MSGS, msgs);
                p.buffer[field::HELLO_ORDER] = order;
                p.buffer[field::HELLO_REPAIR] = repair;
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
            Body::Data {
                seq,
                send_ns,
                retransmit,
                lamport,
                vector,
                ..
            } => {
                p.header_mut(Kind::Data, self.run_id, self.sender);
                p.put_u32(field::DATA_SEQ, seq);
                p.put_u64(field::DATA_SEND_NS, send_ns);
                p.buffer[field::DATA_FLAGS] = if retransmit { DATA_RETRANSMIT } else { 0 };
                p.buffer[field::DATA_RESERVED] = 0;
                p.put_u64(field::DATA_LAMPORT, lamport);
                p.put_u16(field::DATA_VLEN, vector);
                p.buffer[DATA_MIN_LEN..].fill(0);
            }
            Body::Stop(a) | Body::Heartbeat(a) => {
                let kind = if matches!(self.body, Body::Stop(_)) {
                    Kind::Stop
                } else {
                    Kind::Heartbeat
                };
                p.header_mut(kind, self.run_id, self.sender);
                p.put_u32(field::ANN_SENT, a.sent);
                p.put_u64(field::ANN_LAMPORT, a.lamport);
                p.put_u32(field::ANN_ORDERED, a.ordered);
                p.buffer[field::ANN_FLAGS] = if a.complete { ANN_COMPLETE } else { 0 };
            }
            Body::Nack { to, stream, ranges } => {
                p.header_mut(Kind::Nack, self.run_id, self.sender);
                p.put_u16(field::NACK_TO, to);
                p.buffer[field::NACK_STREAM] = match stream {
                    Stream::Data => 0,
                    Stream::Order => 1,
                };
                p.buffer[field::NACK_COUNT] = ranges;
                p.buffer[field::NACK_RANGES..].fill(0);
            }
            Body::Order { first, entries } => {
                p.header_mut(Kind::Order, self.run_id, self.sender);
                p.put_u32(field::ORDER_FIRST, first);
                p.put_u16(field::ORDER_COUNT, entries);
                p.buffer[field::ORDER_ENTRIES..].fill(0);
            }
        }
        len
    }
}

/// The HELLO fields a peer checks against its own configuration, decoded.
pub fn hello_modes(order: u8, repair: u8) -> Result<(Order, Repair)> {
    Ok((Order::from_u8(order)?, Repair::from_u8(repair)?))
}

/// Entry `i` of a decoded DATA's vector. `bytes` must be the datagram `Repr::decode` accepted
/// and `i` below its `vector`.
pub fn data_vector(bytes: &[u8], i: usize) -> u32 {
    let at = field::DATA_VECTOR + 4 * i;
    NetworkEndian::read_u32(&bytes[at..at + 4])
}

/// Write a DATA's vector after `emit` (the buffer was emitted with `vector = values.len()`).
pub fn put_data_vector(buf: &mut [u8], values: &[u32]) {
    for (i, &v) in values.iter().enumerate() {
        let at = field::DATA_VECTOR + 4 * i;
        NetworkEndian::write_u32(&mut buf[at..at + 4], v);
    }
}

/// Range `i` (first, count) of a decoded NACK.
pub fn nack_range(bytes: &[u8], i: usize) -> (u32, u32) {
    let at = field::NACK_RANGES + NACK_RANGE_LEN * i;
    (
        NetworkEndian::read_u32(&bytes[at..at + 4]),
        NetworkEndian::read_u32(&bytes[at + 4..at + 8]),
    )
}

pub fn put_nack_range(buf: &mut [u8], i: usize, (first, count): (u32, u32)) {
    let at = field::NACK_RANGES + NACK_RANGE_LEN * i;
    NetworkEndian::write_u32(&mut buf[at..at + 4], first);
    NetworkEndian::write_u32(&mut buf[at + 4..at + 8], count);
}

/// Entry `i` (sender, seq) of a decoded ORDER.
pub fn order_entry(bytes: &[u8], i: usize) -> (u16, u32) {
    let at = field::ORDER_ENTRIES + ORDER_ENTRY_LEN * i;
    (
        NetworkEndian::read_u16(&bytes[at..at + 2]),
        NetworkEndian::read_u32(&bytes[at + 2..at + 6]),
    )
}

pub fn put_order_entry(buf: &mut [u8], i: usize, (sender, seq): (u16, u32)) {
    let at = field::ORDER_ENTRIES + ORDER_ENTRY_LEN * i;
    NetworkEndian::write_u16(&mut buf[at..at + 2], sender);
    NetworkEndian::write_u32(&mut buf[at + 2..at + 6], seq);
}

/// Rewrite only the seq and send time of an emitted DATA datagram (the hot path re-stamps a
/// template).
pub fn restamp_data(buf: &mut [u8], seq: u32, send_ns: u64) {
    NetworkEndian::write_u32(&mut buf[field::DATA_SEQ], seq);
    NetworkEndian::write_u64(&mut buf[field::DATA_SEND_NS], send_ns);
}

/// What the emulated WAN needs from a datagram without decoding it whole: the sender, and
/// for a first transmission of DATA its send time (the WAN delivers at send time + delay).
/// `None` for the handshake (HELLO, HELLO_ACK), which the WAN lets through at once.
pub fn wan_view(bytes: &[u8]) -> Option<(u16, Option<u64>)> {
    let p = Packet::new_checked(bytes).ok()?;
    match p.kind() {
        Kind::Hello | Kind::HelloAck | Kind::Unknown(_) => None,
        Kind::Data if p.len() >= DATA_MIN_LEN => {
            let retransmit = bytes[field::DATA_FLAGS] & DATA_RETRANSMIT != 0;
            Some((
                p.sender(),
                (!retransmit).then(|| p.u64_at(field::DATA_SEND_NS)),
            ))
        }
        _ => Some((p.sender(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HELLO_BYTES: [u8; HELLO_LEN] = [
        b'M', b'P', 2, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, // header: run 7, sender 2
        0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 8, 0, 0, 0, 100, // nonce, 8 peers, 100 msgs
        4, 1, // lamport, nack
    ];
    static ACK_BYTES: [u8; HELLO_ACK_LEN] = [
        b'M', b'P', 2, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 5, // header: run 7, sender 5
        0, 2, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, // to 2, nonce
        0, 0, 0, 0, 0, 0, 0x50, 0x05, // its own nonce 0x5005
        0, 0, 0, 0, 0, 0, 0x10, 0x01, // peer 0's nonce 0x1001
    ];
    static DATA_BYTES: [u8; data_len(2) + 2] = [
        b'M', b'P', 2, 3, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x01,
        0x00, // sender 256
        0, 0, 0, 42, 0x17, 0x9a, 0x3f, 0x1c, 0x00, 0x00, 0x00, 0x01, // seq 42, time
        1, 0, // a retransmission, reserved
        0, 0, 0, 0, 0, 0, 0x01, 0x02, // Lamport 258
        0, 2, 0, 0, 0, 5, 0, 0, 0, 9, // vector [5, 9]
        0, 0, // pad 2
    ];
    static STOP_BYTES: [u8; ANNOUNCE_LEN] = [
        b'M', b'P', 2, 4, 0, 0, 0, 0, 0, 0, 0, 7, 0, 3, 0, 0, 0, 100, // sent 100
        0, 0, 0, 0, 0, 0, 0, 77, 0, 0, 0, 0, 1, // Lamport 77, ordered 0, complete
    ];
    static HEARTBEAT_BYTES: [u8; ANNOUNCE_LEN] = [
        b'M', b'P', 2, 5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 10, // sent 10
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 33, 0, // Lamport 0, ordered 33
    ];
    static NACK_BYTES: [u8; 18 + 16] = [
        b'M', b'P', 2, 6, 0, 0, 0, 0, 0, 0, 0, 7, 0, 1, // sender 1
        0, 4, 0, 2, // to 4, DATA, 2 ranges
        0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 4, // [3, +1), [9, +4)
    ];
    static ORDER_BYTES: [u8; 20 + 12] = [
        b'M', b'P', 2, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, // sender 0
        0, 0, 0, 50, 0, 2, // first 50, 2 entries
        0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 9, // (3, 8), (0, 9)
    ];

    fn announce(sent: u32, lamport: u64, ordered: u32, complete: bool) -> Announce {
        Announce {
            sent,
            lamport,
            ordered,
            complete,
        }
    }

    fn fixtures() -> Vec<(&'static [u8], Repr)> {
        let r = |run_id, sender, body| Repr {
            run_id,
            sender,
            body,
        };
        vec![
            (
                &HELLO_BYTES[..],
                r(
                    7,
                    2,
                    Body::Hello {
                        nonce: 0xdead_beef,
                        peers: 8,
                        msgs: 100,
                        order: 4,
                        repair: 1,
                    },
                ),
            ),
            (
                &ACK_BYTES[..],
                r(
                    7,
                    5,
                    Body::HelloAck {
                        to: 2,
                        nonce: 0xdead_beef,
                        from_nonce: 0x5005,
                        run_nonce: 0x1001,
                    },
                ),
            ),
            (
                &DATA_BYTES[..],
                r(
                    0x1122_3344_5566_7788,
                    256,
                    Body::Data {
                        seq: 42,
                        send_ns: 0x179a_3f1c_0000_0001,
                        retransmit: true,
                        lamport: 258,
                        vector: 2,
                        pad: 2,
                    },
                ),
            ),
            (
                &STOP_BYTES[..],
                r(7, 3, Body::Stop(announce(100, 77, 0, true))),
            ),
            (
                &HEARTBEAT_BYTES[..],
                r(7, 0, Body::Heartbeat(announce(10, 0, 33, false))),
            ),
            (
                &NACK_BYTES[..],
                r(
                    7,
                    1,
                    Body::Nack {
                        to: 4,
                        stream: Stream::Data,
                        ranges: 2,
                    },
                ),
            ),
            (
                &ORDER_BYTES[..],
                r(
                    7,
                    0,
                    Body::Order {
                        first: 50,
                        entries: 2,
                    },
                ),
            ),
        ]
    }

    #[test]
    fn deconstruct_fixtures() {
        let p = Packet::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert_eq!(p.kind(), Kind::Data);
        assert_eq!(p.run_id(), 0x1122_3344_5566_7788);
        assert_eq!(p.sender(), 256);
        for (bytes, repr) in fixtures() {
            assert_eq!(Repr::decode(bytes), Ok(repr));
        }
        assert_eq!(
            (data_vector(&DATA_BYTES, 0), data_vector(&DATA_BYTES, 1)),
            (5, 9)
        );
        assert_eq!(nack_range(&NACK_BYTES, 0), (3, 1));
        assert_eq!(nack_range(&NACK_BYTES, 1), (9, 4));
        assert_eq!(order_entry(&ORDER_BYTES, 0), (3, 8));
        assert_eq!(order_entry(&ORDER_BYTES, 1), (0, 9));
        assert_eq!(hello_modes(4, 1), Ok((Order::Lamport, Repair::Nack)));
        assert_eq!(hello_modes(5, 1), Err(Error::BadValue));
    }

    #[test]
    fn construct_fixtures_over_garbage() {
        for (bytes, repr) in fixtures() {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            assert_eq!(repr.emit(&mut buf), bytes.len());
            match repr.body {
                Body::Data { .. } => put_data_vector(&mut buf, &[5, 9]),
                Body::Nack { .. } => {
                    put_nack_range(&mut buf, 0, (3, 1));
                    put_nack_range(&mut buf, 1, (9, 4));
                }
                Body::Order { .. } => {
                    put_order_entry(&mut buf, 0, (3, 8));
                    put_order_entry(&mut buf, 1, (0, 9));
                }
                _ => {}
            }
            assert_eq!(buf, bytes);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for (bytes, _) in fixtures() {
            let is_data = bytes[3] == 3;
            for cut in 0..bytes.len() {
                let e = Repr::decode(&bytes[..cut]);
                if !(is_data && cut >= data_len(2)) {
                    assert!(e.is_err(), "{bytes:?} cut at {cut}");
                }
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            let r = Repr::decode(&longer);
            if is_data {
                assert!(r.is_ok());
            } else {
                assert_eq!(r, Err(Error::BadLength), "{bytes:?}");
            }
        }
    }

    #[test]
    fn one_field_wrong() {
        let mut b = HELLO_BYTES;
        b[0] = b'X';
        assert_eq!(Repr::decode(&b), Err(Error::BadMagic));
        let mut b = HELLO_BYTES;
        b[2] = 1;
        assert_eq!(
            Repr::decode(&b),
            Err(Error::BadVersion),
            "version 1 is refused"
        );
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
        // DATA: unknown flag, reserved byte, a vector longer than the datagram.
        let mut b = DATA_BYTES;
        b[26] = 2;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = DATA_BYTES;
        b[27] = 1;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = DATA_BYTES;
        b[37] = 4;
        assert_eq!(Repr::decode(&b), Err(Error::Truncated));
        // Announce: unknown flag.
        let mut b = STOP_BYTES;
        b[30] = 3;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        // NACK: unknown stream, zero ranges, too many ranges.
        let mut b = NACK_BYTES;
        b[16] = 2;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = NACK_BYTES;
        b[17] = 0;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = NACK_BYTES;
        b[17] = 33;
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = NACK_BYTES;
        b[17] = 3;
        assert_eq!(Repr::decode(&b), Err(Error::Truncated));
        // ORDER: zero entries, more entries than bytes.
        let mut b = ORDER_BYTES;
        b[18..20].fill(0);
        assert_eq!(Repr::decode(&b), Err(Error::BadValue));
        let mut b = ORDER_BYTES;
        b[19] = 3;
        assert_eq!(Repr::decode(&b), Err(Error::Truncated));
    }

    #[test]
    fn restamp_changes_only_seq_and_time() {
        let data = |seq, send_ns| Repr {
            run_id: 9,
            sender: 1,
            body: Body::Data {
                seq,
                send_ns,
                retransmit: false,
                lamport: 0,
                vector: 0,
                pad: 10,
            },
        };
        let repr = data(0, 0);
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf);
        restamp_data(&mut buf, 5, 77);
        assert_eq!(Repr::decode(&buf), Ok(data(5, 77)));
    }

    #[test]
    fn wan_view_tells_fresh_data_from_the_rest() {
        assert_eq!(wan_view(&HELLO_BYTES), None);
        assert_eq!(wan_view(&ACK_BYTES), None);
        assert_eq!(wan_view(&DATA_BYTES), Some((256, None)), "a retransmission");
        let mut fresh = DATA_BYTES;
        fresh[26] = 0;
        assert_eq!(wan_view(&fresh), Some((256, Some(0x179a_3f1c_0000_0001))));
        assert_eq!(wan_view(&NACK_BYTES), Some((1, None)));
        assert_eq!(wan_view(b"garbage"), None);
    }
}
