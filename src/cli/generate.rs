//! `mpcomm generate`: manual pages and shell completions written from the real command
//! definition (the one `main` parses, exit codes included), so they cannot drift from `--help`.
//! Part of the binary crate, not the library: it needs `main`'s `Cli`. Hidden from `--help`;
//! `packaging/build-deb.sh` runs it before `cargo deb`, and the README shows how to install the
//! completions by hand.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

/// The shells whose completions `completions` writes, with the file names their vendor
/// directories expect (bash: `mpcomm.bash`, zsh: `_mpcomm`, fish: `mpcomm.fish`).
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Write manual pages or shell completions (for packagers).
#[derive(clap::Subcommand)]
pub enum GenerateCommand {
    /// Write mpcomm.1 and one page per subcommand (mpcomm-lab.1, mpcomm-c2-agent.1, …) to DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Write bash (mpcomm.bash), zsh (_mpcomm) and fish (mpcomm.fish) completions to DIR.
    Completions {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Print one shell's completion script on stdout, e.g. `source <(mpcomm generate completion bash)`.
    Completion {
        /// The shell.
        shell: Shell,
    },
}

/// `cmd` is the command `main` parses with (after `with_exit_codes`).
pub fn run(what: GenerateCommand, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    match what {
        GenerateCommand::Man { dir } => {
            create(&dir)?;
            let mut cmd = cmd.disable_help_subcommand(true);
            cmd.build(); // names each subcommand's page: mpcomm-c2-agent
            man_pages(&cmd, &dir)
                .with_context(|| format!("cannot write the manual pages to {}", dir.display()))?;
        }
        GenerateCommand::Completions { dir } => {
            create(&dir)?;
            let mut cmd = cmd;
            for shell in SHELLS {
                clap_complete::generate_to(shell, &mut cmd, "mpcomm", &dir).with_context(|| {
                    format!("cannot write the {shell} completions to {}", dir.display())
                })?;
            }
        }
        GenerateCommand::Completion { shell } => {
            let mut out = crate::util::out::stdout().lock();
            clap_complete::generate(shell, &mut cmd.clone(), "mpcomm", &mut out);
            out.flush().context("cannot write to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cmd`'s page and those of its visible subcommands, each footed "mpcomm VERSION" (clap_mangen
/// would put the subcommand's own name there).
fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone())
        .source(concat!("mpcomm ", env!("CARGO_PKG_VERSION")))
        .manual("mpcomm manual")
        .generate_to(dir)
        .map(drop)
}

fn create(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
