//! `mpcomm`: one binary, one subcommand per part. Each arm hands typed arguments to the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Subcommand};

mod generate;

/// Make the message-ordering problem of uncoordinated multicast visible, measurable and fixable.
///
/// N peers each send M messages to all peers at random intervals, with nobody coordinating;
/// every peer logs the order in which messages arrived, and a comparator reports how often the
/// peers disagree, what was lost or duplicated, and one-way latency.
///
/// Start with `mpcomm lab` (a whole experiment on this machine), then read `mpcomm lab --help`.
#[derive(clap::Parser)]
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
    Check(mpcomm::check::CheckArgs),
    Bench(mpcomm::bench::BenchArgs),
    /// Run the comparator service, or analyse log files offline (--logs).
    Compare(mpcomm::compare::CompareArgs),
    /// Aggregate a results file (JSON lines) into the table of the original study.
    Report(mpcomm::compare::ReportArgs),
    /// The emulated WAN's built-in profiles: list them, print one as a file to edit.
    #[command(subcommand)]
    Wan(mpcomm::wan::cli::WanCommand),
    /// Work with delivery log files.
    #[command(subcommand)]
    Log(mpcomm::peer::LogCommand),
    /// Send a delivery log to a comparator again (after a failed upload).
    Upload(mpcomm::peer::UploadArgs),
    /// Command and control across machines: agents, controller, control commands.
    #[command(subcommand)]
    C2(mpcomm::c2::C2Command),
    /// Write manual pages and shell completions (for packagers: packaging/build-deb.sh).
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}

fn main() -> ExitCode {
    let matches = with_exit_codes(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Lab(args) => mpcomm::lab::run(args),
        Command::Peer(args) => mpcomm::peer::run(args),
        Command::Check(args) => mpcomm::check::run_cli(args),
        Command::Bench(args) => mpcomm::bench::run(args),
        Command::Compare(args) => mpcomm::compare::run_compare(args),
        Command::Report(args) => mpcomm::compare::run_report(args),
        Command::Log(cmd) => mpcomm::peer::run_log(cmd),
        Command::Wan(cmd) => mpcomm::wan::cli::run(cmd),
        Command::Upload(args) => mpcomm::peer::run_upload(args),
        Command::C2(cmd) => mpcomm::c2::run(cmd),
        Command::Generate(what) => generate::run(what, with_exit_codes(Cli::command())),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            mpcomm::say!("mpcomm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    (&["c2", "run"], "0 every run was reported, 1 a value was refused before sending (the flag named), a run was refused or failed, or the controller cannot be reached, 2 bad arguments."),
    (&["c2", "status"], "0 the list was printed, 1 the controller cannot be reached or refused, or fewer than --live agents were live, 2 bad arguments."),
    (&["c2", "check"], "0 every host passed over every transport asked for, 1 a pair failed (one FAIL line each, prefixed with its host), a host could not check, the check was refused or the controller cannot be reached, 2 bad arguments."),
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
