//! `c2 serve`'s settings as a plain struct: what the driver and the core take, whoever built it
//! (the clap `ServeArgs` today, a test or another front end tomorrow).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::c2::controller::ServeArgs;
use crate::c2::registry::OrderBy;

/// Slack on top of the sending time: the peer's 30 s handshake timeout, drain, upload retries
/// and the comparator's own run timeout.
pub const RUN_SLACK: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub key_file: PathBuf,
    /// `None`: the listen address's IP, the comparator's default port.
    pub compare_listen: Option<SocketAddr>,
    pub peer_port: u16,
    pub group: Option<SocketAddr>,
    pub order_by: OrderBy,
    pub results: Option<PathBuf>,
    pub hist_dir: Option<PathBuf>,
    pub run_timeout: Duration,
    /// Offer the `>>>` prompt when stdin is a terminal.
    pub prompt: bool,
    /// Added to every run's sending time before it counts as timed out.
    pub run_slack: Duration,
}

impl ServeConfig {
    /// The defaults of `c2 serve`, listening on `listen` with the key in `key_file`.
    pub fn new(listen: SocketAddr, key_file: PathBuf) -> ServeConfig {
        ServeConfig {
            listen,
            key_file,
            compare_listen: None,
            peer_port: 4567,
            group: None,
            order_by: OrderBy::Registration,
            results: None,
            hist_dir: None,
            run_timeout: Duration::from_secs(30),
            prompt: false,
            run_slack: RUN_SLACK,
        }
    }
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> ServeConfig {
        ServeConfig {
            listen: a.listen,
            key_file: a.key_file,
            compare_listen: a.compare_listen,
            peer_port: a.peer_port,
            group: a.group,
            order_by: a.order_by,
            results: a.results,
            hist_dir: a.hist_dir,
            run_timeout: a.run_timeout,
            prompt: !a.no_prompt,
            run_slack: RUN_SLACK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn the_clap_arguments_map_onto_the_config() {
        let cli = Cli::try_parse_from([
            "serve",
            "--listen",
            "127.0.0.1:9",
            "--key-file",
            "/k",
            "--peer-port",
            "5000",
            "--order-by",
            "zone",
            "--run-timeout",
            "2s",
            "--no-prompt",
        ])
        .unwrap();
        let c = ServeConfig::from(cli.serve);
        assert_eq!(c.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!((c.peer_port, c.order_by), (5000, OrderBy::Zone));
        assert_eq!(c.run_timeout, Duration::from_secs(2));
        assert!(!c.prompt, "--no-prompt");
        assert_eq!(c.run_slack, RUN_SLACK);
    }
}
