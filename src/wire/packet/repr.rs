//! The checked value of a peer datagram (`Repr`, `Body`, `Announce`): `parse` from a view,
//! `buffer_len` and `emit` into a buffer.

use super::{
    data_len, field, Kind, Packet, Stream, ANNOUNCE_LEN, ANN_COMPLETE, DATA_MIN_LEN,
    DATA_RETRANSMIT, HELLO_ACK_LEN, HELLO_LEN, MAX_DATAGRAM, MAX_NACK_RANGES, MAX_ORDER_ENTRIES,
    NACK_RANGE_LEN, ORDER_ENTRY_LEN, VERSION,
};
use crate::wire::{Error, Result};

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
///
/// [`nack_range`]: super::nack_range
/// [`order_entry`]: super::order_entry
/// [`data_vector`]: super::data_vector
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
    ///
    /// [`put_data_vector`]: super::put_data_vector
    /// [`put_nack_range`]: super::put_nack_range
    /// [`put_order_entry`]: super::put_order_entry
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
