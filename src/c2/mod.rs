//! Command and control (stub; being written).
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum C2Command {
    /// Print a fresh pre-shared key.
    Keygen,
}

pub fn run(_cmd: C2Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
