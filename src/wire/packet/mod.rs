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
//!
//! This file holds the layout (the `field` table, the lengths) and the `Packet` view with the
//! list accessors; `repr.rs` the checked value (`Repr`, `Body`, `Announce`); `tests.rs` the
//! byte fixtures.

use byteorder::{ByteOrder, NetworkEndian};

use super::{Error, Field, Order, Repair, Result};

mod repr;
#[cfg(test)]
mod tests;

pub use repr::{Announce, Body, Repr};

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
