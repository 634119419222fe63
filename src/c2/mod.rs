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

#[derive(clap::Subcommand, Debug)]
pub enum C2Command {
    /// Print a fresh pre-shared key: `mpcomm c2 keygen > key && chmod 600 key`.
    Keygen,
    /// Resident agent (one per host): connects out to the controller, starts peer runs.
    Agent(agent::AgentArgs),
    /// The controller: agent registry, runs, and the comparator in the same process.
    Serve(controller::ServeArgs),
    /// Start a run (or a series: --repeat, --transport both, --order all) and print the reports.
    Run(client::RunArgs),
    /// Preflight across the live agents: does unicast and multicast get through between them?
    Check(client::C2CheckArgs),
    /// List the agents the controller knows, live or lost.
    Status(client::StatusArgs),
    /// Stop every agent (also those that register within 3 s: still connecting, or in their
    /// reconnect backoff), then the controller.
    Exit(client::ControlArgs),
}

pub fn run(cmd: C2Command) -> anyhow::Result<ExitCode> {
    match cmd {
        C2Command::Keygen => {
            use std::io::Write;
            crate::util::out::stdout().write_all(key::generate().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        C2Command::Agent(a) => agent::run(a),
        C2Command::Serve(a) => controller::run(a),
        C2Command::Run(a) => client::run_series(a),
        C2Command::Check(a) => client_check::run(a.into()),
        C2Command::Status(a) => client::status(a),
        C2Command::Exit(a) => client::exit(a),
    }
}
