//! `c2 serve`'s settings as a plain struct: what the driver and the core take, whoever built it
//! (`cli::c2` from the flags, a test, another front end).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
