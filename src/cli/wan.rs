//! `mpcomm wan list|show`.

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum WanCommand {
    /// The built-in profiles: zones, longest one-way delay, jitter and loss of each.
    List {
        /// One JSON object per profile instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print a profile as a `.wan` file (a built-in name, or a file to check): save it, edit
    /// it, and pass the file to `--wan`.
    Show {
        /// A built-in name (`mpcomm wan list`) or a path to a `.wan` file.
        name: String,
    },
}

pub fn run(cmd: WanCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WanCommand::List { json } => crate::wan::cli::list(json),
        WanCommand::Show { name } => crate::wan::cli::show(&name),
    }
}
