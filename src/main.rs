//! `mpcomm`: one binary, one subcommand per part. The command line is `mpcomm::cli`'s.

fn main() -> std::process::ExitCode {
    mpcomm::cli::main()
}
