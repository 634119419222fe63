//! Command and control across machines (issue 5): resident agents that start peer runs, a
//! controller that keeps the agent registry and runs the comparator, and control commands.
//!
//! * [`proto`]: the C2 messages, byte by byte; [`auth`]: the PSK handshake and per-frame MACs;
//!   [`conn`]: one framed, authenticated connection on a non-blocking socket.
//! * [`timing`], [`registry`], [`runs`], [`exit`]: the protocol logic as plain state over `Instant`.
//! * [`control`]: the controller's sans-IO core (its state machine, timers, prompt UI).
//! * [`agent`], [`controller`], [`client`]: the mio drivers and the blocking control client.
//! * [`key`], [`notify`]: key files and systemd readiness.

pub mod agent;
pub mod auth;
pub mod client;
pub mod client_check;
pub mod conn;
pub mod control;
pub mod controller;
pub mod exit;
pub mod key;
pub mod notify;
pub mod preflight;
pub mod proto;
pub mod registry;
pub mod runs;
pub mod timing;

use std::process::ExitCode;

/// `mpcomm c2 keygen`: a fresh pre-shared key on stdout.
pub fn keygen() -> anyhow::Result<ExitCode> {
    use std::io::Write;
    crate::util::out::stdout().write_all(key::generate().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
