//! WAN profiles: zones, a symmetric RTT matrix, jitter and loss, read from a small text format.
//!
//! One statement per line, `#` starts a comment, tokens are separated by whitespace:
//!
//! ```text
//! zones NA SA USW            # zone names, in order (round-robin assignment follows it)
//! same_zone_rtt_ms 0.5       # RTT between two peers of one zone (default 0)
//! jitter_ms 0.1              # scale of the random one-way term (default 0)
//! jitter_dist exponential    # uniform (0..jitter_ms) or exponential (mean jitter_ms)
//! jitter_max_ms 2            # cap of the jitter term (default 10 x jitter_ms)
//! loss 0.001                 # dropped fraction, 0..1 (default 0)
//! rtt NA  -     128.5 61.0   # one row per zone, values in `zones` order, `-` on the diagonal;
//! rtt SA  128.5 -     169.3  # a value may end in P (proxied) or E (estimated)
//! rtt USW 61.0  169.3 -
//! ```
//!
//! Every error names the line, so a user can fix a hand-written profile. Every delay (RTT,
//! same-zone RTT, jitter, jitter cap) is finite and in 0..=[`MAX_DELAY_MS`]; loss is in 0..1.
//!
//! This file holds the profile and its queries; `profile/parser.rs` reads the text format.

use std::path::Path;
use std::time::Duration;

mod parser;
#[cfg(test)]
mod tests;

use parser::Parser;

/// The profiles shipped in `profiles/`, compiled into the binary so `--wan gcp8` works from any
/// directory.
pub const SHIPPED: &[(&str, &str)] = &[
    ("lan", include_str!("../../profiles/lan.wan")),
    ("gcp8", include_str!("../../profiles/gcp8.wan")),
];

/// The largest RTT, jitter or jitter cap a profile may give, in ms: ten seconds is already far
/// beyond any real path, and it keeps every scaled delay and timer of a run finite and short.
pub const MAX_DELAY_MS: f64 = 10_000.0;

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WanError {
    #[error("WAN profile {name}, line {line}: {msg}")]
    Parse {
        name: String,
        line: usize,
        msg: String,
    },
    #[error("WAN profile {name}: {msg}")]
    Invalid { name: String, msg: String },
    #[error("cannot read WAN profile file {path}: {msg}")]
    Io { path: String, msg: String },
    #[error(
        "unknown WAN profile {0:?}: use a shipped name ({names}) or a path to a .wan file",
        names = shipped_names()
    )]
    Unknown(String),
}

fn shipped_names() -> String {
    SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a matrix value comes from (the source's caveat marks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Measured,
    /// `P`: taken from a neighbouring region.
    Proxied,
    /// `E`: estimated from distance, low confidence.
    Estimated,
}

/// Shape of the jitter term added to each one-way delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterDist {
    /// Uniform in `0..=jitter`.
    Uniform,
    /// Exponential with mean `jitter`, capped at `jitter_max`.
    Exponential,
}

/// A parsed, validated WAN profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub zones: Vec<String>,
    /// RTT in ms, row-major `zones.len()²`; the diagonal holds the same-zone RTT.
    rtt_ms: Vec<f64>,
    source: Vec<Source>,
    pub same_zone_rtt_ms: f64,
    pub jitter_ms: f64,
    pub jitter_dist: JitterDist,
    pub jitter_max_ms: f64,
    pub loss: f64,
}

impl Profile {
    /// A shipped profile by name (`lan`, `gcp8`), or a file by path. An argument with a `/` or a
    /// `.wan` ending is always a path; a bare name that is not shipped is tried as a path last.
    pub fn load(name_or_path: &str) -> Result<Profile, WanError> {
        let looks_like_path = name_or_path.contains('/') || name_or_path.ends_with(".wan");
        if !looks_like_path {
            if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
                return Profile::parse(name, text);
            }
        }
        let path = Path::new(name_or_path);
        if !looks_like_path && !path.is_file() {
            return Err(WanError::Unknown(name_or_path.to_string()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| WanError::Io {
            path: name_or_path.to_string(),
            msg: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name_or_path.to_string());
        Profile::parse(&name, &text)
    }

    /// Parse the text format above; `name` is used in error messages and reports.
    pub fn parse(name: &str, text: &str) -> Result<Profile, WanError> {
        Parser::new(name).run(text)
    }

    pub fn zone_index(&self, z: &str) -> Option<usize> {
        self.zones.iter().position(|x| x == z)
    }

    /// Zone index of each peer id: peer i gets zone i mod zones, in file order.
    pub fn round_robin(&self, peers: usize) -> Vec<usize> {
        (0..peers).map(|i| i % self.zones.len()).collect()
    }

    /// RTT between two zones in ms (same zone: the same-zone RTT).
    pub fn rtt_ms(&self, from: usize, to: usize) -> f64 {
        self.rtt_ms[from * self.zones.len() + to]
    }

    /// Where the value for this pair comes from.
    pub fn source(&self, from: usize, to: usize) -> Source {
        self.source[from * self.zones.len() + to]
    }

    /// The longest delay the profile can give one datagram: the largest RTT / 2 plus the
    /// jitter cap (before any time scale).
    pub fn max_one_way(&self) -> Duration {
        let rtt = self.rtt_ms.iter().copied().fold(0.0, f64::max);
        Duration::from_secs_f64((rtt / 2.0 + self.jitter_max_ms) / 1e3)
    }

    /// One-way delay: RTT / 2. Panics if a zone index is out of range.
    pub fn one_way(&self, from: usize, to: usize) -> Duration {
        Duration::from_secs_f64(self.rtt_ms(from, to) / 2.0 / 1e3)
    }

    /// One line for logs and reports, e.g. `gcp8 (8 zones, jitter exponential 0.1 ms, loss 0)`.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} zone{}, jitter {} {} ms, loss {})",
            self.name,
            self.zones.len(),
            if self.zones.len() == 1 { "" } else { "s" },
            match self.jitter_dist {
                JitterDist::Uniform => "uniform",
                JitterDist::Exponential => "exponential",
            },
            self.jitter_ms,
            self.loss
        )
    }
}
