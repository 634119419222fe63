//! How a peer's protocol behaves: sizes, timers and modes, with the defaults of `Config::new`.

use super::*;

/// How a peer's protocol behaves; sizes come from here, nothing is hard-coded.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: u16,
    pub peers: u16,
    pub msgs: u32,
    /// Gap between two DATA sends, uniform in `interval.0..=interval.1`; zero = back to back.
    pub interval: (Duration, Duration),
    /// DATA datagram size in bytes (raised to the minimum).
    pub size: usize,
    /// Seeds the send schedule (and nothing that must differ between runs).
    pub seed: u64,
    /// The run id given by the user, or `None` to take peer 0's nonce.
    pub run_id: Option<u64>,
    /// This incarnation's random, non-zero nonce (the driver draws it from the OS).
    pub nonce: u64,
    pub hello_retry: Duration,
    pub hello_retry_max: Duration,
    pub handshake_timeout: Duration,
    pub drain: Duration,
    /// How many times STOP is sent, `stop_gap` apart.
    pub stop_repeats: u32,
    pub stop_gap: Duration,
    /// The delivery guarantee; every peer of a run must use the same (checked in HELLO).
    pub order: Order,
    /// Gap repair; agreed in HELLO like `order`.
    pub repair: RepairMode,
    /// Fan-out (a `Dest::All` send costs N datagrams) or multicast (one).
    pub transport: Transport,
    /// A gap repair could not fill for this long (no progress) is declared lost; raised to
    /// 20 round trips of the emulated WAN's longest delay.
    pub give_up: Duration,
    /// The drain never lasts longer than this after our last DATA, whatever is outstanding.
    pub drain_max: Duration,
    /// The run's key: every datagram carries a tag, and one that does not verify is forged.
    pub run_key: Option<RunKey>,
}

impl Config {
    pub fn new(id: u16, peers: u16, msgs: u32) -> Config {
        Config {
            id,
            peers,
            msgs,
            interval: (Duration::from_millis(10), Duration::from_millis(100)),
            size: packet::DATA_MIN_LEN,
            seed: 0,
            run_id: None,
            nonce: 0x6d70_636f_6d6d_0001 ^ u64::from(id),
            hello_retry: Duration::from_millis(100),
            hello_retry_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(2),
            stop_repeats: 3,
            stop_gap: Duration::from_millis(20),
            order: Order::None,
            repair: RepairMode::Off,
            transport: Transport::Fanout,
            give_up: Duration::from_secs(2),
            drain_max: Duration::from_secs(30),
            run_key: None,
        }
    }
}
