//! The emulated wide-area network: zones, one-way delays, jitter and loss.
//!
//! `tc netem` is missing on many kernels and CI machines, so mpcomm emulates the WAN itself: a
//! [`Profile`] (a data file in `profiles/`, or any user file) gives the RTT between zones, and a
//! [`Link`] owned by each peer samples, per datagram, whether it is lost and how long after its
//! send time it is delivered. The peer's hold-back queue applies that delay. This is emulation,
//! labelled as such in logs and reports; it is not a measurement of a real network.

pub mod cli;
mod link;
mod profile;

pub use link::{check_loss, check_time_scale, Link};
pub use profile::{JitterDist, Profile, Source, WanError, MAX_DELAY_MS, SHIPPED};
