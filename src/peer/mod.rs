//! One peer: the protocol ([`machine`]), its mio driver ([`driver`]) over real sockets
//! ([`socket`]), the delivery log it writes and the upload that follows ([`upload`]).

pub mod machine;
pub mod sim;
mod timers;
#[cfg(test)]
mod tests;

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct PeerArgs {}
#[derive(clap::Subcommand, Debug)]
pub enum LogCommand {
    /// Print a log.
    Dump,
}
#[derive(clap::Args, Debug)]
pub struct UploadArgs {}

pub fn run(_args: PeerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
pub fn run_log(_cmd: LogCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
pub fn run_upload(_args: UploadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet implemented")
}
