//! The delivery log: what one peer delivered, in delivery order.
//!
//! A log is a header followed by fixed-size records, all big-endian:
//!
//! ```text
//! header (HEADER_FIXED_LEN bytes, then `wan` and `zone` as UTF-8 of the lengths given)
//!   0..8    magic "MPCOMLOG"       8..10  version (4)        10..12 header length (bytes)
//!  12..20   run id                20..22 peer id            22..24 peers (N)
//!  24..28   messages per peer (M) 28     transport          29     flags (bit 0: kernel rx
//!           stamps; bit 1: authenticated run)
//!  30..32   DATA datagram size    32..40 start, ns since the Unix epoch
//!  40..48   clock error bound, ns (u64::MAX = unknown)      48..56 setup ns (start → barrier)
//!  56..64   duration ns (start → end)                       64..72 malformed datagrams
//!  72..80   datagrams of other runs                         80..88 record count
//!  88..92   DATA sent by this peer  92..96 time scale, parts per million (1_000_000 = 1.0)
//!  96       wan name length       97     zone length        98     ordering mode  99 repair
//! 100..108  control datagrams sent (every copy: a fan-out send to N peers counts N)
//! 108..116  control bytes sent (UDP payload)    116..124 DATA datagrams retransmitted
//! 124..132  NACKs sent              132..140 messages given up (declared lost after the bound)
//! 140..148  duplicate arrivals dropped by repair  148..152 failure (0 none, 1 sequencer lost)
//! 152..160  forged datagrams (an authenticated run's tag did not verify)
//! 160..168  kernel drops (SO_RXQ_OVFL: datagrams the kernel dropped on this peer's sockets,
//!           their receive buffers full)      168..176 DATA datagrams sent (every copy)
//! 176..184  DATA bytes sent (UDP payload)     184..192 send syscalls  192..200 receive syscalls
//! 200..208  CPU ns (user + system, getrusage)  208..216 send drops (datagrams a send refused)
//! 216       the TTL / hop limit this peer's first-transmission DATA leave with (0 = unknown)
//! 217..224  reserved (0)
//! then `wan` and `zone`
//! record (RECORD_LEN = 48 bytes)
//!   0..2 sender   2..4 flags (bit 0: recv_ns is a kernel stamp; bit 1: the copy that reached
//!   the ordering stage was a retransmission)   4..8 seq
//!   8..16 send ns (sender's clock)  16..24 receive ns  24..32 delivery ns (receiver's clock)
//!  32..40 ns when it reached the ordering stage   40..44 arrival index (0, 1, … in the order
//!   messages reached the ordering stage)   44 received TTL / hop limit (IP_RECVTTL,
//!   IPV6_RECVHOPLIMIT; 0 = unknown)   45..48 reserved (0)
//! ```
//!
//! Sorting a log's records by arrival index gives the order the network (after the emulated
//! WAN and repair) handed messages up; the records' own order is the delivery order. Both
//! orders, from the same log, show the problem and the fix side by side.
//!
//! After the records, a trailer of N × (u32 messages known to exist from that sender, u32 the
//! count its STOP announced; u32::MAX = unknown / no STOP): how far each sender's stream got
//! as this peer saw it, so the comparator tells a crashed sender from loss. (A trailer, not
//! header fields: N may be 65,535, more than a u16 header length covers.)
//!
//! The header length field lets a later version append fields that this one skips; the file
//! length must be exactly header + count × 48 + N × 8, so truncation is always detected.
//!
//! Version 2 logs (no fields 160..216: the strings follow `forged` directly) and version 3
//! logs (no fields 216..224) are still read; the fields they lack parse as 0. Their records'
//! byte 44 was reserved (0), so it reads as "TTL unknown" there too.

use byteorder::{ByteOrder, NetworkEndian};

use super::{Error, Field, Order, Repair, Result, Transport};

pub const MAGIC: &[u8; 8] = b"MPCOMLOG";
pub const VERSION: u16 = 4;
/// The previous version, still read (its header ends at the send drops: no sending TTL).
pub const VERSION_3: u16 = 3;
/// The previous version, still read (its header has no kernel-drop and cost counters).
pub const VERSION_2: u16 = 2;
pub const RECORD_LEN: usize = 48;
/// `failure`: the sequencer fell silent with messages waiting for their order.
pub const FAILURE_SEQUENCER_LOST: u32 = 1;
/// Time scale 1.0 in the header's parts-per-million unit.
pub const SCALE_ONE: u32 = 1_000_000;
/// `clock_error_ns` value that means "the kernel did not say".
const CLOCK_UNKNOWN: u64 = u64::MAX;

mod field {
    use super::Field;
    pub const MAGIC: Field = 0..8;
    pub const VERSION: Field = 8..10;
    pub const HEADER_LEN: Field = 10..12;
    pub const RUN_ID: Field = 12..20;
    pub const PEER_ID: Field = 20..22;
    pub const PEERS: Field = 22..24;
    pub const MSGS: Field = 24..28;
    pub const TRANSPORT: usize = 28;
    pub const FLAGS: usize = 29;
    pub const MSG_SIZE: Field = 30..32;
    pub const START_NS: Field = 32..40;
    pub const CLOCK_ERROR_NS: Field = 40..48;
    pub const SETUP_NS: Field = 48..56;
    pub const DURATION_NS: Field = 56..64;
    pub const MALFORMED: Field = 64..72;
    pub const FOREIGN: Field = 72..80;
    pub const RECORD_COUNT: Field = 80..88;
    pub const SENT: Field = 88..92;
    pub const TIME_SCALE: Field = 92..96;
    pub const WAN_LEN: usize = 96;
    pub const ZONE_LEN: usize = 97;
    pub const ORDER: usize = 98;
    pub const REPAIR: usize = 99;
    pub const CONTROL_DATAGRAMS: Field = 100..108;
    pub const CONTROL_BYTES: Field = 108..116;
    pub const RETRANSMISSIONS: Field = 116..124;
    pub const NACKS_SENT: Field = 124..132;
    pub const GIVEN_UP: Field = 132..140;
    pub const DUPLICATES_DROPPED: Field = 140..148;
    pub const FAILURE: Field = 148..152;
    pub const FORGED: Field = 152..160;
    /// Where version 2's strings begin.
    pub const VARIABLE_V2: usize = FORGED.end;
    pub const KERNEL_DROPS: Field = 160..168;
    pub const DATA_DATAGRAMS_SENT: Field = 168..176;
    pub const DATA_BYTES_SENT: Field = 176..184;
    pub const SEND_SYSCALLS: Field = 184..192;
    pub const RECV_SYSCALLS: Field = 192..200;
    pub const CPU_NS: Field = 200..208;
    pub const SEND_DROPS: Field = 208..216;
    /// Where version 3's strings begin.
    pub const VARIABLE_V3: usize = SEND_DROPS.end;
    pub const DATA_TTL: usize = 216;
    pub const RESERVED: Field = 217..224;
    pub const VARIABLE: usize = RESERVED.end;

    pub const R_SENDER: Field = 0..2;
    pub const R_FLAGS: Field = 2..4;
    pub const R_SEQ: Field = 4..8;
    pub const R_SEND_NS: Field = 8..16;
    pub const R_RECV_NS: Field = 16..24;
    pub const R_DELIVER_NS: Field = 24..32;
    pub const R_ARRIVE_NS: Field = 32..40;
    pub const R_ARRIVAL: Field = 40..44;
    pub const R_TTL: usize = 44;
    pub const R_RESERVED: Field = 45..48;
}

pub const HEADER_FIXED_LEN: usize = field::VARIABLE;
/// The fixed part of a version 2 header.
pub const HEADER_FIXED_LEN_V2: usize = field::VARIABLE_V2;
/// The fixed part of a version 3 header.
pub const HEADER_FIXED_LEN_V3: usize = field::VARIABLE_V3;
const FLAG_KERNEL_STAMPS: u8 = 1;
const FLAG_AUTHENTICATED: u8 = 2;
const RFLAG_KERNEL_STAMP: u16 = 1;
const RFLAG_RETRANSMITTED: u16 = 2;

/// Everything a log says about its run and its peer, besides the records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogHeader {
    pub run_id: u64,
    pub peer_id: u16,
    pub peers: u16,
    pub msgs: u32,
    pub transport: Option<Transport>,
    /// The peer read kernel receive timestamps (SO_TIMESTAMPNS) for at least some records.
    pub kernel_stamps: bool,
    pub msg_size: u16,
    pub start_ns: u64,
    /// The host's own bound on its clock error (adjtimex `maxerror`), if the kernel has one.
    pub clock_error_ns: Option<u64>,
    pub setup_ns: u64,
    pub duration_ns: u64,
    pub malformed: u64,
    pub foreign: u64,
    pub record_count: u64,
    pub sent: u32,
    pub time_scale_ppm: u32,
    /// Name of the emulated-WAN profile ("" = none), at most 255 bytes.
    pub wan: String,
    /// This peer's zone label in that profile ("" = none), at most 255 bytes.
    pub zone: String,
    pub order: Order,
    pub repair: Repair,
    pub cost: Cost,
    /// 0, or why the run could not keep its guarantee (`FAILURE_SEQUENCER_LOST`).
    pub failure: u32,
    /// Datagrams whose tag did not verify (authenticated runs; 0 without a key).
    pub forged: u64,
    /// The run had a key: every datagram this peer accepted carried a valid tag.
    pub authenticated: bool,
    /// Datagrams the kernel dropped on this peer's receive sockets because their receive
    /// buffers were full (SO_RXQ_OVFL, summed over the peer's sockets; see `peer::batch`).
    pub kernel_drops: u64,
    /// DATA datagrams this peer handed to the kernel: every fan-out copy (N per message),
    /// retransmissions included (they are also `cost.retransmissions`).
    pub data_datagrams_sent: u64,
    /// UDP payload bytes of those datagrams.
    pub data_bytes_sent: u64,
    /// sendmmsg/sendmsg calls (every kind of datagram).
    pub send_syscalls: u64,
    /// recvmmsg/recvmsg calls, those that found nothing included.
    pub recv_syscalls: u64,
    /// This process's user + system CPU time at the end of the run (getrusage RUSAGE_SELF).
    pub cpu_ns: u64,
    /// Datagram copies a send refused with an error other than "would block" (ENOBUFS, no
    /// route, …): given up, never on the wire.
    pub send_drops: u64,
    /// The TTL (IPv4) or hop limit (IPv6) this peer's first-transmission DATA left with: the
    /// multicast TTL, or the unicast 64 the fan-out socket sets; 0 = unknown (older logs).
    /// A receiver's hop distance from this peer is this minus the TTL it received.
    pub data_ttl: u8,
    /// Per sender, how far its stream got as this peer saw it (`None`: not recorded). Lives
    /// in the log's trailer: `encode` writes `peers` entries whatever the length (missing ones
    /// as not recorded), `LogView::parse` reads them; `LogHeader::parse` leaves it empty.
    pub streams: Vec<Option<StreamEnd>>,
}

/// How far one sender's stream got, as one receiver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct StreamEnd {
    /// Messages known to exist (highest seq seen + 1, or an announced count).
    pub known: u32,
    /// The count its STOP announced, if a STOP arrived.
    pub stop: Option<u32>,
}

const UNKNOWN_U32: u32 = u32::MAX;
const STREAM_END_LEN: usize = 8;

/// What repair and ordering cost one peer (what it sent besides first-transmission DATA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Cost {
    /// Datagrams other than first-transmission DATA (HELLO, ACK, STOP, HEARTBEAT, NACK,
    /// ORDER), every copy counted.
    pub control_datagrams: u64,
    pub control_bytes: u64,
    /// DATA datagrams sent again after a NACK (every copy).
    pub retransmissions: u64,
    pub nacks_sent: u64,
    /// Messages this peer declared lost after the repair bound.
    pub given_up: u64,
    /// Arrivals dropped because the message had already arrived.
    pub duplicates_dropped: u64,
}

impl LogHeader {
    /// Bytes `emit` writes (strings are cut to 255 bytes on a char boundary).
    pub fn buffer_len(&self) -> usize {
        HEADER_FIXED_LEN + short(&self.wan).len() + short(&self.zone).len()
    }

    /// Bytes of the trailer `encode` writes after the records.
    pub fn trailer_len(&self) -> usize {
        STREAM_END_LEN * usize::from(self.peers)
    }

    fn emit_trailer(&self, buf: &mut [u8]) {
        for (p, chunk) in buf.chunks_exact_mut(STREAM_END_LEN).enumerate() {
            let end = self.streams.get(p).copied().flatten();
            let known = end.map_or(UNKNOWN_U32, |e| e.known.min(UNKNOWN_U32 - 1));
            let stop = end.and_then(|e| e.stop).unwrap_or(UNKNOWN_U32);
            NetworkEndian::write_u32(&mut chunk[0..4], known);
            NetworkEndian::write_u32(&mut chunk[4..8], stop);
        }
    }

    fn parse_trailer(buf: &[u8]) -> Vec<Option<StreamEnd>> {
        buf.chunks_exact(STREAM_END_LEN)
            .map(|c| {
                let known = NetworkEndian::read_u32(&c[0..4]);
                let stop = NetworkEndian::read_u32(&c[4..8]);
                (known != UNKNOWN_U32).then_some(StreamEnd {
                    known,
                    stop: (stop != UNKNOWN_U32).then_some(stop),
                })
            })
            .collect()
    }

    pub fn time_scale(&self) -> f64 {
        f64::from(self.time_scale_ppm) / f64::from(SCALE_ONE)
    }

    /// Write the header into `buf[..self.buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let wan = short(&self.wan);
        let zone = short(&self.zone);
        buf[field::MAGIC].copy_from_slice(MAGIC);
        NetworkEndian::write_u16(&mut buf[field::VERSION], VERSION);
        NetworkEndian::write_u16(&mut buf[field::HEADER_LEN], self.buffer_len() as u16);
        NetworkEndian::write_u64(&mut buf[field::RUN_ID], self.run_id);
        NetworkEndian::write_u16(&mut buf[field::PEER_ID], self.peer_id);
        NetworkEndian::write_u16(&mut buf[field::PEERS], self.peers);
        NetworkEndian::write_u32(&mut buf[field::MSGS], self.msgs);
        buf[field::TRANSPORT] = self.transport.map_or(0xff, Transport::as_u8);
        let mut flags = 0;
        if self.kernel_stamps {
            flags |= FLAG_KERNEL_STAMPS;
        }
        if self.authenticated {
            flags |= FLAG_AUTHENTICATED;
        }
        buf[field::FLAGS] = flags;
        NetworkEndian::write_u16(&mut buf[field::MSG_SIZE], self.msg_size);
        NetworkEndian::write_u64(&mut buf[field::START_NS], self.start_ns);
        let clock = self.clock_error_ns.unwrap_or(CLOCK_UNKNOWN);
        NetworkEndian::write_u64(&mut buf[field::CLOCK_ERROR_NS], clock);
        NetworkEndian::write_u64(&mut buf[field::SETUP_NS], self.setup_ns);
        NetworkEndian::write_u64(&mut buf[field::DURATION_NS], self.duration_ns);
        NetworkEndian::write_u64(&mut buf[field::MALFORMED], self.malformed);
        NetworkEndian::write_u64(&mut buf[field::FOREIGN], self.foreign);
        NetworkEndian::write_u64(&mut buf[field::RECORD_COUNT], self.record_count);
        NetworkEndian::write_u32(&mut buf[field::SENT], self.sent);
        NetworkEndian::write_u32(&mut buf[field::TIME_SCALE], self.time_scale_ppm);
        buf[field::WAN_LEN] = wan.len() as u8;
        buf[field::ZONE_LEN] = zone.len() as u8;
        buf[field::ORDER] = self.order.as_u8();
        buf[field::REPAIR] = self.repair.as_u8();
        let c = &self.cost;
        NetworkEndian::write_u64(&mut buf[field::CONTROL_DATAGRAMS], c.control_datagrams);
        NetworkEndian::write_u64(&mut buf[field::CONTROL_BYTES], c.control_bytes);
        NetworkEndian::write_u64(&mut buf[field::RETRANSMISSIONS], c.retransmissions);
        NetworkEndian::write_u64(&mut buf[field::NACKS_SENT], c.nacks_sent);
        NetworkEndian::write_u64(&mut buf[field::GIVEN_UP], c.given_up);
        NetworkEndian::write_u64(&mut buf[field::DUPLICATES_DROPPED], c.duplicates_dropped);
        NetworkEndian::write_u32(&mut buf[field::FAILURE], self.failure);
        NetworkEndian::write_u64(&mut buf[field::FORGED], self.forged);
        NetworkEndian::write_u64(&mut buf[field::KERNEL_DROPS], self.kernel_drops);
        let data = self.data_datagrams_sent;
        NetworkEndian::write_u64(&mut buf[field::DATA_DATAGRAMS_SENT], data);
        NetworkEndian::write_u64(&mut buf[field::DATA_BYTES_SENT], self.data_bytes_sent);
        NetworkEndian::write_u64(&mut buf[field::SEND_SYSCALLS], self.send_syscalls);
        NetworkEndian::write_u64(&mut buf[field::RECV_SYSCALLS], self.recv_syscalls);
        NetworkEndian::write_u64(&mut buf[field::CPU_NS], self.cpu_ns);
        NetworkEndian::write_u64(&mut buf[field::SEND_DROPS], self.send_drops);
        buf[field::DATA_TTL] = self.data_ttl;
        buf[field::RESERVED].fill(0);
        let w = field::VARIABLE;
        buf[w..w + wan.len()].copy_from_slice(wan.as_bytes());
        buf[w + wan.len()..w + wan.len() + zone.len()].copy_from_slice(zone.as_bytes());
    }

    /// Parse a header from the start of `data`; returns it and the header length, where the
    /// records begin.
    pub fn parse(data: &[u8]) -> Result<(LogHeader, usize)> {
        if data.len() < HEADER_FIXED_LEN_V2 {
            return Err(if data.len() >= 8 && &data[field::MAGIC] != MAGIC {
                Error::BadMagic
            } else {
                Error::Truncated
            });
        }
        if &data[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        let fixed = match NetworkEndian::read_u16(&data[field::VERSION]) {
            VERSION => HEADER_FIXED_LEN,
            VERSION_3 => HEADER_FIXED_LEN_V3,
            VERSION_2 => HEADER_FIXED_LEN_V2,
            _ => return Err(Error::BadVersion),
        };
        if data.len() < fixed {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(NetworkEndian::read_u16(&data[field::HEADER_LEN]));
        let wan_len = usize::from(data[field::WAN_LEN]);
        let zone_len = usize::from(data[field::ZONE_LEN]);
        if header_len < fixed + wan_len + zone_len {
            return Err(Error::BadLength);
        }
        if data.len() < header_len {
            return Err(Error::Truncated);
        }
        let transport = match data[field::TRANSPORT] {
            0xff => None,
            t => Some(Transport::from_u8(t)?),
        };
        let w = fixed;
        let text = |r: Field| {
            std::str::from_utf8(&data[r])
                .map(str::to_owned)
                .map_err(|_| Error::BadValue)
        };
        let wan = text(w..w + wan_len)?;
        let zone = text(w + wan_len..w + wan_len + zone_len)?;
        let peers = NetworkEndian::read_u16(&data[field::PEERS]);
        let peer_id = NetworkEndian::read_u16(&data[field::PEER_ID]);
        if peers == 0 || peer_id >= peers {
            return Err(Error::BadValue);
        }
        let clock = NetworkEndian::read_u64(&data[field::CLOCK_ERROR_NS]);
        let u64_at = |f: Field| NetworkEndian::read_u64(&data[f]);
        // Version 2 has none of the fields after `forged`: they read as 0.
        let v3_at = |f: Field| if fixed >= f.end { u64_at(f) } else { 0 };
        let cost = Cost {
            control_datagrams: u64_at(field::CONTROL_DATAGRAMS),
            control_bytes: u64_at(field::CONTROL_BYTES),
            retransmissions: u64_at(field::RETRANSMISSIONS),
            nacks_sent: u64_at(field::NACKS_SENT),
            given_up: u64_at(field::GIVEN_UP),
            duplicates_dropped: u64_at(field::DUPLICATES_DROPPED),
        };
        let header = LogHeader {
            run_id: NetworkEndian::read_u64(&data[field::RUN_ID]),
            peer_id,
            peers,
            msgs: NetworkEndian::read_u32(&data[field::MSGS]),
            transport,
            kernel_stamps: data[field::FLAGS] & FLAG_KERNEL_STAMPS != 0,
            authenticated: data[field::FLAGS] & FLAG_AUTHENTICATED != 0,
            msg_size: NetworkEndian::read_u16(&data[field::MSG_SIZE]),
            start_ns: NetworkEndian::read_u64(&data[field::START_NS]),
            clock_error_ns: (clock != CLOCK_UNKNOWN).then_some(clock),
            setup_ns: NetworkEndian::read_u64(&data[field::SETUP_NS]),
            duration_ns: NetworkEndian::read_u64(&data[field::DURATION_NS]),
            malformed: NetworkEndian::read_u64(&data[field::MALFORMED]),
            foreign: NetworkEndian::read_u64(&data[field::FOREIGN]),
            record_count: NetworkEndian::read_u64(&data[field::RECORD_COUNT]),
            sent: NetworkEndian::read_u32(&data[field::SENT]),
            time_scale_ppm: NetworkEndian::read_u32(&data[field::TIME_SCALE]),
            wan,
            zone,
            order: Order::from_u8(data[field::ORDER])?,
            repair: Repair::from_u8(data[field::REPAIR])?,
            cost,
            failure: NetworkEndian::read_u32(&data[field::FAILURE]),
            forged: NetworkEndian::read_u64(&data[field::FORGED]),
            kernel_drops: v3_at(field::KERNEL_DROPS),
            data_datagrams_sent: v3_at(field::DATA_DATAGRAMS_SENT),
            data_bytes_sent: v3_at(field::DATA_BYTES_SENT),
            send_syscalls: v3_at(field::SEND_SYSCALLS),
            recv_syscalls: v3_at(field::RECV_SYSCALLS),
            cpu_ns: v3_at(field::CPU_NS),
            send_drops: v3_at(field::SEND_DROPS),
            data_ttl: if fixed > field::DATA_TTL {
                data[field::DATA_TTL]
            } else {
                0
            },
            streams: Vec::new(),
        };
        Ok((header, header_len))
    }
}

/// At most 255 bytes of `s`, cut on a char boundary.
fn short(s: &str) -> &str {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One delivery: which message, when it was sent, received and handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    pub sender: u16,
    pub seq: u32,
    /// Sender's wall clock at send, ns since the Unix epoch.
    pub send_ns: u64,
    /// Receiver's wall clock when the datagram arrived (kernel stamp when `kernel_stamp`).
    pub recv_ns: u64,
    /// Receiver's wall clock when the message was delivered (after any emulated delay).
    pub deliver_ns: u64,
    pub kernel_stamp: bool,
    /// Receiver's wall clock when the message reached the ordering stage (after the emulated
    /// WAN and repair); `deliver_ns - arrive_ns` is what ordering held it back.
    pub arrive_ns: u64,
    /// Its place (0, 1, …) in the order messages reached the ordering stage.
    pub arrival: u32,
    /// The copy that reached the ordering stage was a retransmission.
    pub retransmitted: bool,
    /// The TTL / hop limit that copy arrived with (0 = unknown: not reported by the kernel,
    /// or an older log).
    pub ttl: u8,
}

impl Record {
    /// Read a record from exactly `RECORD_LEN` bytes; never fails (every bit pattern is a record,
    /// unknown flag bits are ignored).
    #[inline]
    pub fn parse(b: &[u8; RECORD_LEN]) -> Record {
        let flags = NetworkEndian::read_u16(&b[field::R_FLAGS]);
        Record {
            sender: NetworkEndian::read_u16(&b[field::R_SENDER]),
            kernel_stamp: flags & RFLAG_KERNEL_STAMP != 0,
            retransmitted: flags & RFLAG_RETRANSMITTED != 0,
            arrive_ns: NetworkEndian::read_u64(&b[field::R_ARRIVE_NS]),
            arrival: NetworkEndian::read_u32(&b[field::R_ARRIVAL]),
            seq: NetworkEndian::read_u32(&b[field::R_SEQ]),
            send_ns: NetworkEndian::read_u64(&b[field::R_SEND_NS]),
            recv_ns: NetworkEndian::read_u64(&b[field::R_RECV_NS]),
            deliver_ns: NetworkEndian::read_u64(&b[field::R_DELIVER_NS]),
            ttl: b[field::R_TTL],
        }
    }

    #[inline]
    pub fn emit(&self, b: &mut [u8; RECORD_LEN]) {
        NetworkEndian::write_u16(&mut b[field::R_SENDER], self.sender);
        let mut flags = 0;
        if self.kernel_stamp {
            flags |= RFLAG_KERNEL_STAMP;
        }
        if self.retransmitted {
            flags |= RFLAG_RETRANSMITTED;
        }
        NetworkEndian::write_u16(&mut b[field::R_FLAGS], flags);
        NetworkEndian::write_u32(&mut b[field::R_SEQ], self.seq);
        NetworkEndian::write_u64(&mut b[field::R_SEND_NS], self.send_ns);
        NetworkEndian::write_u64(&mut b[field::R_RECV_NS], self.recv_ns);
        NetworkEndian::write_u64(&mut b[field::R_DELIVER_NS], self.deliver_ns);
        NetworkEndian::write_u64(&mut b[field::R_ARRIVE_NS], self.arrive_ns);
        NetworkEndian::write_u32(&mut b[field::R_ARRIVAL], self.arrival);
        b[field::R_TTL] = self.ttl;
        b[field::R_RESERVED].fill(0);
    }
}

/// A checked view of a whole log in memory: header parsed, length verified, records borrowed.
#[derive(Debug, Clone)]
pub struct LogView<'a> {
    pub header: LogHeader,
    records: &'a [u8],
}

impl<'a> LogView<'a> {
    /// Check a whole log: header, then that the rest is exactly `record_count` records and
    /// the trailer. Records with a sender outside `0..peers` are refused too, so consumers can
    /// index by it.
    pub fn parse(data: &'a [u8]) -> Result<LogView<'a>> {
        let (mut header, header_len) = LogHeader::parse(data)?;
        let rest = &data[header_len..];
        let trailer = header.trailer_len();
        if rest.len() < trailer {
            return Err(Error::Truncated);
        }
        let (body, ends) = rest.split_at(rest.len() - trailer);
        header.streams = LogHeader::parse_trailer(ends);
        if body.len() % RECORD_LEN != 0 {
            return Err(Error::Truncated);
        }
        if (body.len() / RECORD_LEN) as u64 != header.record_count {
            return Err(Error::BadLength);
        }
        let peers = header.peers;
        if body
            .chunks_exact(RECORD_LEN)
            .any(|r| NetworkEndian::read_u16(&r[field::R_SENDER]) >= peers)
        {
            return Err(Error::BadValue);
        }
        Ok(LogView {
            header,
            records: body,
        })
    }

    pub fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records in delivery order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record> + 'a {
        self.records.chunks_exact(RECORD_LEN).map(|c| {
            let c: &[u8; RECORD_LEN] = c.try_into().expect("chunks_exact yields RECORD_LEN");
            Record::parse(c)
        })
    }
}

/// Serialise a header (its `record_count` set from `records`) and the records.
pub fn encode(header: &LogHeader, records: &[Record]) -> Vec<u8> {
    let mut header = header.clone();
    header.record_count = records.len() as u64;
    let hl = header.buffer_len();
    let body = records.len() * RECORD_LEN;
    let mut out = vec![0u8; hl + body + header.trailer_len()];
    header.emit(&mut out[..hl]);
    for (r, chunk) in records.iter().zip(out[hl..].chunks_exact_mut(RECORD_LEN)) {
        r.emit(
            chunk
                .try_into()
                .expect("chunks_exact_mut yields RECORD_LEN"),
        );
    }
    header.emit_trailer(&mut out[hl + body..]);
    out
}

/// Write a log file atomically: a temporary file in the same directory, fsync, rename.
pub fn write_file(
    path: &std::path::Path,
    header: &LogHeader,
    records: &[Record],
) -> std::io::Result<()> {
    write_bytes(path, &encode(header, records))
}

/// Write an encoded log to `path` through `path.mplog.tmp` and a rename, so a reader never
/// sees half a log; on failure (a full disk) the temporary file is removed.
pub fn write_bytes(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("mplog.tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let done = written.and_then(|()| std::fs::rename(&tmp, path));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> LogHeader {
        LogHeader {
            run_id: 0x0102_0304_0506_0708,
            peer_id: 1,
            peers: 3,
            msgs: 10,
            transport: Some(Transport::Multicast),
            kernel_stamps: true,
            msg_size: 64,
            start_ns: 1_700_000_000_000_000_000,
            clock_error_ns: Some(250_000),
            setup_ns: 12_345_678,
            duration_ns: 987_654_321,
            malformed: 7,
            foreign: 2,
            record_count: 0,
            sent: 10,
            time_scale_ppm: 100_000,
            wan: "gcp8".into(),
            zone: "SA".into(),
            order: Order::Sequencer,
            repair: Repair::Nack,
            cost: Cost {
                control_datagrams: 11,
                control_bytes: 12,
                retransmissions: 13,
                nacks_sent: 14,
                given_up: 15,
                duplicates_dropped: 16,
            },
            failure: FAILURE_SEQUENCER_LOST,
            forged: 17,
            authenticated: false,
            kernel_drops: 18,
            data_datagrams_sent: 19,
            data_bytes_sent: 20,
            send_syscalls: 21,
            recv_syscalls: 22,
            cpu_ns: 23,
            send_drops: 24,
            data_ttl: 25,
            streams: vec![
                Some(StreamEnd {
                    known: 10,
                    stop: Some(10),
                }),
                None,
                Some(StreamEnd {
                    known: 4,
                    stop: None,
                }),
            ],
        }
    }

    const RECORD_BYTES: [u8; RECORD_LEN] = [
        0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00,
        0x2a, // sender 2, kernel stamp + retx, seq 42
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8, // send 1000
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0xd0, // recv 2000
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xb8, // deliver 3000
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xc4, // arrive 2500
        0x00, 0x00, 0x01, 0x00, 0x3d, 0x00, 0x00, 0x00, // arrival 256, TTL 61, reserved
    ];

    #[test]
    fn record_fixture_both_ways() {
        let r = Record::parse(&RECORD_BYTES);
        let want = Record {
            sender: 2,
            seq: 42,
            send_ns: 1000,
            recv_ns: 2000,
            deliver_ns: 3000,
            kernel_stamp: true,
            arrive_ns: 2500,
            arrival: 256,
            retransmitted: true,
            ttl: 61,
        };
        assert_eq!(r, want);
        let mut buf = [0xa5u8; RECORD_LEN];
        want.emit(&mut buf);
        assert_eq!(buf, RECORD_BYTES);
    }

    #[test]
    fn header_fields_at_their_offsets() {
        let h = header();
        let mut buf = vec![0xa5u8; h.buffer_len()];
        h.emit(&mut buf);
        assert_eq!(&buf[0..8], b"MPCOMLOG");
        assert_eq!(&buf[8..12], &[0, 4, 0, 230]);
        assert_eq!(&buf[12..20], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[20..24], &[0, 1, 0, 3]);
        assert_eq!(buf[28], 1);
        assert_eq!(buf[29], 1);
        assert_eq!(&buf[96..100], &[4, 2, 3, 1]);
        assert_eq!(&buf[100..108], &[0, 0, 0, 0, 0, 0, 0, 11]);
        assert_eq!(&buf[140..148], &[0, 0, 0, 0, 0, 0, 0, 16]);
        assert_eq!(&buf[148..152], &[0, 0, 0, 1]);
        assert_eq!(&buf[152..160], &[0, 0, 0, 0, 0, 0, 0, 17]);
        for (i, at) in (160..216).step_by(8).enumerate() {
            assert_eq!(
                &buf[at..at + 8],
                &[0, 0, 0, 0, 0, 0, 0, 18 + i as u8],
                "at {at}"
            );
        }
        assert_eq!(&buf[216..224], &[25, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&buf[224..], b"gcp8SA");
        let streams = h.streams.clone();
        let header_only = LogHeader {
            streams: vec![],
            ..h.clone()
        };
        assert_eq!(LogHeader::parse(&buf), Ok((header_only, 230)));
        // The trailer, after the (here no) records.
        let bytes = encode(&h, &[]);
        let t = &bytes[230..];
        assert_eq!(
            &t[0..8],
            &[0, 0, 0, 10, 0, 0, 0, 10],
            "sender 0: 10 known, STOP 10"
        );
        assert_eq!(&t[8..16], &[0xff; 8], "sender 1: not recorded");
        assert_eq!(
            &t[16..24],
            &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
            "sender 2: no STOP"
        );
        assert_eq!(LogView::parse(&bytes).unwrap().header.streams, streams);
    }

    /// A version 2 log, as version 2 wrote it: the strings right after `forged`, no
    /// kernel-drop or cost counters.
    fn v2_bytes(h: &LogHeader, records: &[Record]) -> Vec<u8> {
        let mut b = encode(h, records);
        b.drain(HEADER_FIXED_LEN_V2..HEADER_FIXED_LEN);
        let hl = h.buffer_len() - (HEADER_FIXED_LEN - HEADER_FIXED_LEN_V2);
        NetworkEndian::write_u16(&mut b[8..10], VERSION_2);
        NetworkEndian::write_u16(&mut b[10..12], hl as u16);
        b
    }

    #[test]
    fn version_2_logs_still_parse_with_zero_counters() {
        let h = header();
        let recs = [Record {
            sender: 2,
            seq: 5,
            ..Record::default()
        }];
        let bytes = v2_bytes(&h, &recs);
        assert_eq!(&bytes[8..12], &[0, 2, 0, 166]);
        assert_eq!(&bytes[160..166], b"gcp8SA");
        let view = LogView::parse(&bytes).unwrap();
        let want = LogHeader {
            record_count: 1,
            kernel_drops: 0,
            data_datagrams_sent: 0,
            data_bytes_sent: 0,
            send_syscalls: 0,
            recv_syscalls: 0,
            cpu_ns: 0,
            send_drops: 0,
            data_ttl: 0,
            ..h
        };
        assert_eq!(view.header, want);
        assert_eq!(view.records().collect::<Vec<_>>(), recs);
        for cut in 0..bytes.len() {
            assert!(LogView::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A version 3 header length too short for the version 3 fixed part is refused.
        let mut b = encode(&header(), &[]);
        NetworkEndian::write_u16(&mut b[10..12], 166);
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadLength);
    }

    /// A version 3 log, as version 3 wrote it: the strings right after `send_drops`, records
    /// with byte 44 reserved (0).
    #[test]
    fn version_3_logs_still_parse_without_ttls() {
        let h = header();
        let recs = [Record {
            sender: 1,
            seq: 3,
            ..Record::default()
        }];
        let mut b = encode(&h, &recs);
        b.drain(HEADER_FIXED_LEN_V3..HEADER_FIXED_LEN);
        let hl = h.buffer_len() - (HEADER_FIXED_LEN - HEADER_FIXED_LEN_V3);
        NetworkEndian::write_u16(&mut b[8..10], VERSION_3);
        NetworkEndian::write_u16(&mut b[10..12], hl as u16);
        assert_eq!(&b[216..222], b"gcp8SA");
        let view = LogView::parse(&b).unwrap();
        let want = LogHeader {
            record_count: 1,
            data_ttl: 0,
            ..h
        };
        assert_eq!(view.header, want);
        assert_eq!(view.records().collect::<Vec<_>>(), recs);
        for cut in 0..b.len() {
            assert!(LogView::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn whole_log_round_trip() {
        let recs: Vec<Record> = (0..5)
            .map(|i| Record {
                sender: i % 3,
                seq: u32::from(i),
                send_ns: 1,
                recv_ns: 2,
                deliver_ns: 3,
                kernel_stamp: false,
                arrive_ns: 2,
                arrival: u32::from(4 - i),
                retransmitted: i == 2,
                ttl: 64 - i as u8,
            })
            .collect();
        let bytes = encode(&header(), &recs);
        let view = LogView::parse(&bytes).unwrap();
        assert_eq!(view.header.record_count, 5);
        assert_eq!(view.records().collect::<Vec<_>>(), recs);
        // Every truncation is refused, none panics.
        for cut in 0..bytes.len() {
            assert!(LogView::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_nonsense() {
        let bytes = encode(&header(), &[]);
        let mut b = bytes.clone();
        b[0] ^= 1;
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadMagic);
        let mut b = bytes.clone();
        b[9] = 9;
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadVersion);
        let mut b = bytes.clone();
        b[21] = 3; // peer id 3 of 3
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
        let mut b = bytes.clone();
        b[98] = 9; // no such ordering mode
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
        let mut b = bytes.clone();
        b[28] = 7;
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
        let mut b = bytes.clone();
        b[11] = 20; // header length shorter than the fixed part
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadLength);
        let mut b = encode(&header(), &[Record::default()]);
        let at = header().buffer_len();
        b[at + 1] = 3; // sender 3 of 3 peers
        assert_eq!(LogView::parse(&b).unwrap_err(), Error::BadValue);
    }

    #[test]
    fn long_strings_are_cut_on_char_boundaries() {
        let mut h = header();
        h.wan = "é".repeat(200);
        let bytes = encode(&h, &[]);
        let view = LogView::parse(&bytes).unwrap();
        assert_eq!(view.header.wan.len(), 254);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("mpcomm-log-test-{}", std::process::id()));
        // The log's name is taken by a non-empty directory: the final rename fails.
        let path = dir.join("x.mplog");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        assert!(write_bytes(&path, &encode(&header(), &[])).is_err());
        assert!(!path.with_extension("mplog.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
