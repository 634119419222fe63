//! A whole experiment on this machine (stub; being written).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct LabArgs {}

pub fn run(_args: LabArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
