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

mod header;
#[cfg(test)]
mod tests;
mod view;

pub use view::{encode, write_bytes, write_file, LogView};

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
