//! `mpcomm`: one binary, one subcommand per part. Each arm hands typed arguments to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make the message-ordering problem of uncoordinated multicast visible, measurable and fixable.
///
/// N peers each send M messages to all peers at random intervals, with nobody coordinating;
/// every peer logs the order in which messages arrived, and a comparator reports how often the
/// peers disagree, what was lost or duplicated, and one-way latency.
///
/// Start with `mpcomm lab` (a whole experiment on this machine), then read `mpcomm lab --help`.
#[derive(Parser)]
#[command(name = "mpcomm", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // `lab` and `peer` take their help (with examples) from their argument structs.
    Lab(mpcomm::lab::LabArgs),
    Peer(mpcomm::peer::PeerArgs),
    Bench(mpcomm::bench::BenchArgs),
    /// Run the comparator service, or analyse log files offline (--logs).
    Compare(mpcomm::compare::CompareArgs),
    /// Aggregate a results file (JSON lines) into the table of the original study.
    Report(mpcomm::compare::ReportArgs),
    /// Work with delivery log files.
    #[command(subcommand)]
    Log(mpcomm::peer::LogCommand),
    /// Send a delivery log to a comparator again (after a failed upload).
    Upload(mpcomm::peer::UploadArgs),
    /// Command and control across machines: agents, controller, control commands.
    #[command(subcommand)]
    C2(mpcomm::c2::C2Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(args) => mpcomm::lab::run(args),
        Command::Peer(args) => mpcomm::peer::run(args),
        Command::Bench(args) => mpcomm::bench::run(args),
        Command::Compare(args) => mpcomm::compare::run_compare(args),
        Command::Report(args) => mpcomm::compare::run_report(args),
        Command::Log(cmd) => mpcomm::peer::run_log(cmd),
        Command::Upload(args) => mpcomm::peer::run_upload(args),
        Command::C2(cmd) => mpcomm::c2::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            mpcomm::say!("mpcomm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
