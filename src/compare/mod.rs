//! The comparator (stub; being written).
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {}
#[derive(clap::Args, Debug)]
pub struct ReportArgs {}

pub fn run_compare(_args: CompareArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
pub fn run_report(_args: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
