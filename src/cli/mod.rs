//! The command line: every clap type of mpcomm lives here, one file per command family, and
//! nowhere else in the library. Each file parses into its clap structs, maps them into the
//! plain config of the part it runs (`peer::PeerSpec`, `lab::LabConfig`, …) and calls that
//! part; the parts know nothing of clap.
//!
//! Adding a flag: add the field (with its doc comment, which is its `--help`) to the clap
//! struct here, and the same field to the config it maps into. The mapping destructures the
//! clap struct without `..`, so the compiler points at the one line still missing.
//!
//! A value the part refuses after parsing (a typed error that says it is about the arguments)
//! becomes a clap usage error ([`usage`]): exit 2, clap's format, like a value clap refused.

mod bench;
mod c2;
mod c2_services;
pub(crate) mod check;
mod compare;
mod generate;
mod lab;
mod modes;
pub mod peer;
mod wan;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};

/// Make the message-ordering problem of uncoordinated multicast visible, measurable and fixable.
///
/// N peers each send M messages to all peers at random intervals, with nobody coordinating;
/// every peer logs the order in which messages arrived, and a comparator reports how often the
/// peers disagree, what was lost or duplicated, and one-way latency.
///
/// Start with `mpcomm lab` (a whole experiment on this machine), then read `mpcomm lab --help`.
#[derive(clap::Parser)]
#[command(name = "mpcomm", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // `lab` and `peer` take their help (with examples) from their argument structs.
    Lab(lab::LabArgs),
    Peer(peer::PeerArgs),
    Check(check::CheckArgs),
    Bench(bench::BenchArgs),
    /// Run the comparator service, or analyse log files offline (--logs).
    Compare(compare::CompareArgs),
    /// Aggregate a results file (JSON lines) into the table of the original study.
    Report(compare::ReportArgs),
    /// The emulated WAN's built-in profiles: list them, print one as a file to edit.
    #[command(subcommand)]
    Wan(wan::WanCommand),
    /// Work with delivery log files.
    #[command(subcommand)]
    Log(peer::LogCommand),
    /// Send a delivery log to a comparator again (after a failed upload).
    Upload(peer::UploadArgs),
    /// Command and control across machines: agents, controller, control commands.
    #[command(subcommand)]
    C2(c2::C2Command),
    /// Write manual pages and shell completions (for packagers: packaging/build-deb.sh).
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}

/// The whole of `mpcomm`'s `main`: parse, map, run, and turn an error into exit status 1.
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Lab(args) => lab::run(args),
        Command::Peer(args) => peer::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run_compare(args),
        Command::Report(args) => compare::run_report(args),
        Command::Log(cmd) => peer::run_log(cmd),
        Command::Wan(cmd) => wan::run(cmd),
        Command::Upload(args) => peer::run_upload(args),
        Command::C2(cmd) => c2::run(cmd),
        Command::Generate(what) => generate::run(what, command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say!("mpcomm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command `main` parses with: the derived one, exit codes appended to each `--help`.
pub fn command() -> clap::Command {
    with_exit_codes(Cli::command())
}

/// A usage error of the subcommand at `path` (e.g. `["c2", "run"]`), in clap's format: the
/// message, the subcommand's usage line, exit status 2.
pub fn usage(path: &[&str], message: impl std::fmt::Display) -> clap::Error {
    let mut cmd = command();
    cmd.build();
    let mut sub = &mut cmd;
    for name in path {
        sub = sub
            .find_subcommand_mut(name)
            .expect("usage: a path of subcommands");
    }
    sub.error(clap::error::ErrorKind::ValueValidation, message)
}

/// What each command's exit status means, appended to its `--help` (the peer's own text has
/// its codes already). 2 is always clap's: the arguments were wrong.
const EXIT_CODES: &[(&[&str], &str)] = &[
    (&["lab"], "0 every run was reported, 1 a run failed, an output could not be written or another error (stderr says which), 2 bad arguments, 130 interrupted (the peers were stopped)."),
    (&["compare"], "0 the service stopped cleanly or the logs were analysed, 1 an error (stderr says which), 2 bad arguments."),
    (&["report"], "0 the table was printed, 1 the file cannot be read or a line is not a run report (stderr names the line), 2 bad arguments."),
    (&["log", "dump"], "0 printed, 1 the log does not parse or cannot be read, 2 bad arguments."),
    (&["log", "export"], "0 written, 1 a log does not parse or the output cannot be written, 2 bad arguments."),
    (&["wan", "list"], "0 listed, 2 bad arguments."),
    (&["wan", "show"], "0 printed, 1 no such profile or the file is not a valid profile (the error names the line), 2 bad arguments."),
    (&["upload"], "0 every log was accepted, 3 a log was not accepted (it stays on disk: run this again), 1 another error, 2 bad arguments."),
    (&["c2", "keygen"], "0 a key was printed, 1 an error."),
    (&["c2", "agent"], "0 stopped by the controller or a signal, 1 an error (bad key file, cannot reach the controller's address), 2 bad arguments."),
    (&["c2", "serve"], "0 stopped by `c2 exit` or a signal, 1 an error (cannot listen, bad key file), 2 bad arguments."),
    (&["c2", "run"], "0 every run was reported, 1 a run was refused or failed, or the controller cannot be reached, 2 bad arguments (also a value refused before sending: the flag named)."),
    (&["c2", "check"], "0 every host passed over every transport asked for, 1 a pair failed (one FAIL line each, prefixed with its host), a host could not check, the check was refused or the controller cannot be reached, 2 bad arguments."),
    (&["c2", "status"], "0 the list was printed, 1 the controller cannot be reached or refused, or fewer than --live agents were live, 2 bad arguments."),
    (&["c2", "exit"], "0 the controller and its agents stopped, 1 the controller cannot be reached, 2 bad arguments."),
];

fn with_exit_codes(mut cli: clap::Command) -> clap::Command {
    fn add(cmd: clap::Command, path: &[&str], text: &str) -> clap::Command {
        match path {
            [] => {
                let before = cmd
                    .get_after_help()
                    .map(|h| format!("{h}\n\n"))
                    .unwrap_or_default();
                cmd.after_help(format!("{before}Exit codes: {text}"))
            }
            [first, rest @ ..] => cmd.mut_subcommand(*first, |sc| add(sc, rest, text)),
        }
    }
    for (path, text) in EXIT_CODES {
        cli = add(cli, path, text);
    }
    cli
}
