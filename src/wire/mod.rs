//! Every byte mpcomm puts on a wire or on disk is defined here, by hand, in network byte order.
//!
//! Two layers, as in smoltcp:
//!
//! * a **view** (`Packet<T: AsRef<[u8]>>`) reads and writes fields in raw octets of a buffer it
//!   borrows. `Packet::new_checked` verifies once that every accessor is in bounds, so nothing
//!   after it can panic. Untrusted input *must* go through `new_checked`; using it when emitting
//!   into a reused buffer is wrong (the check would pass or fail by chance).
//! * a **`Repr`** is the small, validated value. `parse` takes a checked view and returns a value
//!   or a typed [`Error`]; `buffer_len` says how many bytes `emit` needs, and `emit` never panics
//!   on a buffer that long.
//!
//! Every decoder is total: any byte string gives a value or an `Error`, never a panic. The tests
//! in each file and `tests/fuzz_wire.rs` hold that promise with fixtures, mutations, truncations
//! and seeded random bytes.
//!
//! * [`packet`]: the peer datagrams (HELLO, HELLO_ACK, DATA, STOP, HEARTBEAT, NACK, ORDER).
//! * [`log`]: the binary delivery log a peer writes and uploads.
//! * [`frame`]: the length-prefixed frames on TCP (uploads, replies, C2).
//! * [`refusal`]: the reason code in the comparator's refusal frames.
//! * [`auth`]: the tag an authenticated run puts at the end of every datagram.
//! * [`probe`]: the preflight's PROBE and REPLY (`mpcomm check`).
//! * [`child`]: what a child peer tells the process that started it (ready, outcome).

#[macro_use]
mod macros;
pub mod auth;
pub mod c2;
pub mod child;
pub mod frame;
pub mod log;
pub mod packet;
pub mod probe;
pub mod refusal;

/// Why a byte string was refused. Fieldless and `Copy` so it can index a counter array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Error {
    /// Shorter than the fixed header or than a length field says.
    Truncated = 0,
    /// Does not start with our magic: not ours at all.
    BadMagic = 1,
    /// Ours, but a version this build does not speak.
    BadVersion = 2,
    /// A message kind this build does not know.
    UnknownKind = 3,
    /// A length that contradicts the kind or the buffer (too long, trailing bytes, odd size).
    BadLength = 4,
    /// A field whose value makes no sense (a reserved byte set, an id out of range, bad UTF-8).
    BadValue = 5,
}

impl Error {
    /// Number of variants: the size of a counter array indexed by `Error as usize`.
    pub const COUNT: usize = 6;
    pub const ALL: [Error; Error::COUNT] = [
        Error::Truncated,
        Error::BadMagic,
        Error::BadVersion,
        Error::UnknownKind,
        Error::BadLength,
        Error::BadValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadMagic => "bad magic",
            Error::BadVersion => "unsupported version",
            Error::UnknownKind => "unknown kind",
            Error::BadLength => "bad length",
            Error::BadValue => "bad field value",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Byte ranges of a fixed layout; `const fn` ranges for fields that follow a variable part.
pub(crate) type Field = std::ops::Range<usize>;

/// How a run's datagrams travel. Recorded in logs and reports (as "fanout" / "multicast").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One unicast datagram to every listed peer.
    Fanout,
    /// One datagram to an IP multicast group.
    Multicast,
}

impl Transport {
    pub fn as_u8(self) -> u8 {
        match self {
            Transport::Fanout => 0,
            Transport::Multicast => 1,
        }
    }
    pub fn from_u8(v: u8) -> Result<Transport> {
        match v {
            0 => Ok(Transport::Fanout),
            1 => Ok(Transport::Multicast),
            _ => Err(Error::BadValue),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Fanout => "fanout",
            Transport::Multicast => "multicast",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fanout" | "unicast" => Ok(Transport::Fanout),
            "multicast" | "mcast" => Ok(Transport::Multicast),
            _ => Err(format!("unknown transport {s:?}: use fanout or multicast")),
        }
    }
}

/// Which delivery guarantee a run's peers give (agreed in HELLO, recorded in every log).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Deliver on arrival: the original experiment, which shows the problem.
    #[default]
    None,
    /// Each sender's messages in its sequence order.
    Fifo,
    /// Vector timestamps (CBCAST): after everything that causally precedes a message.
    Causal,
    /// One peer (peer 0) fixes a global order in ORDER messages.
    Sequencer,
    /// Lamport timestamps, (timestamp, sender) order, implicit acknowledgement by data and
    /// heartbeats.
    Lamport,
}

impl Order {
    pub const ALL: [Order; 5] = [
        Order::None,
        Order::Fifo,
        Order::Causal,
        Order::Sequencer,
        Order::Lamport,
    ];
    pub fn as_u8(self) -> u8 {
        match self {
            Order::None => 0,
            Order::Fifo => 1,
            Order::Causal => 2,
            Order::Sequencer => 3,
            Order::Lamport => 4,
        }
    }
    pub fn from_u8(v: u8) -> Result<Order> {
        Order::ALL
            .get(usize::from(v))
            .copied()
            .ok_or(Error::BadValue)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Order::None => "none",
            Order::Fifo => "fifo",
            Order::Causal => "causal",
            Order::Sequencer => "sequencer",
            Order::Lamport => "lamport",
        }
    }
    /// The repair a mode gets when none is asked for: `off` for `none` (the original
    /// experiment, unchanged), `nack` for every mode that promises something.
    pub fn default_repair(self) -> Repair {
        match self {
            Order::None => Repair::Off,
            _ => Repair::Nack,
        }
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Order::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!("unknown order {s:?}: use none, fifo, causal, sequencer or lamport")
            })
    }
}

/// Whether receivers repair gaps (NACK to the sender, retransmission from what it kept).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Repair {
    #[default]
    Off,
    Nack,
}

impl Repair {
    pub fn as_u8(self) -> u8 {
        match self {
            Repair::Off => 0,
            Repair::Nack => 1,
        }
    }
    pub fn from_u8(v: u8) -> Result<Repair> {
        match v {
            0 => Ok(Repair::Off),
            1 => Ok(Repair::Nack),
            _ => Err(Error::BadValue),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::Off => "off",
            Repair::Nack => "nack",
        }
    }
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Repair {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "off" | "none" => Ok(Repair::Off),
            "nack" => Ok(Repair::Nack),
            _ => Err(format!("unknown repair {s:?}: use nack or off")),
        }
    }
}
