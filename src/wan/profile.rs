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

use std::path::Path;
use std::time::Duration;

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

/// One matrix value as written: `None` for the diagonal's `-`.
type Cell = (Option<f64>, Source);

struct Parser<'a> {
    name: &'a str,
    zones: Option<(usize, Vec<String>)>,
    same_zone: Option<f64>,
    jitter: Option<f64>,
    dist: Option<JitterDist>,
    jitter_max: Option<f64>,
    loss: Option<f64>,
    /// Per zone: the line it was given on and its values.
    rows: Vec<Option<(usize, Vec<Cell>)>>,
}

impl<'a> Parser<'a> {
    fn new(name: &'a str) -> Self {
        Parser {
            name,
            zones: None,
            same_zone: None,
            jitter: None,
            dist: None,
            jitter_max: None,
            loss: None,
            rows: Vec::new(),
        }
    }

    fn err(&self, line: usize, msg: impl Into<String>) -> WanError {
        WanError::Parse {
            name: self.name.to_string(),
            line,
            msg: msg.into(),
        }
    }

    fn run(mut self, text: &str) -> Result<Profile, WanError> {
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("");
            let mut tokens = content.split_whitespace();
            let Some(key) = tokens.next() else { continue };
            let args: Vec<&str> = tokens.collect();
            match key {
                "zones" => self.zones_stmt(line, &args)?,
                "same_zone_rtt_ms" => {
                    let v = self.one_ms(line, key, &args)?;
                    self.set(line, key, |p| &mut p.same_zone, v)?
                }
                "jitter_ms" => {
                    let v = self.one_ms(line, key, &args)?;
                    self.set(line, key, |p| &mut p.jitter, v)?
                }
                "jitter_max_ms" => {
                    let v = self.one_ms(line, key, &args)?;
                    self.set(line, key, |p| &mut p.jitter_max, v)?
                }
                "jitter_dist" => {
                    let d = match args.as_slice() {
                        ["uniform"] => JitterDist::Uniform,
                        ["exponential"] => JitterDist::Exponential,
                        _ => {
                            return Err(
                                self.err(line, "jitter_dist takes `uniform` or `exponential`")
                            )
                        }
                    };
                    if self.dist.replace(d).is_some() {
                        return Err(self.err(line, "jitter_dist given twice"));
                    }
                }
                "loss" => {
                    let v = self.one_number(line, key, &args)?;
                    if !(0.0..=1.0).contains(&v) {
                        return Err(self.err(line, format!("loss {v} is not a fraction in 0..1")));
                    }
                    self.set(line, key, |p| &mut p.loss, v)?
                }
                "rtt" => self.rtt_stmt(line, &args)?,
                other => {
                    return Err(self.err(
                        line,
                        format!(
                            "unknown statement {other:?}: expected zones, same_zone_rtt_ms, \
                             jitter_ms, jitter_dist, jitter_max_ms, loss or rtt"
                        ),
                    ))
                }
            }
        }
        self.finish()
    }

    fn set(
        &mut self,
        line: usize,
        key: &str,
        field: impl Fn(&mut Self) -> &mut Option<f64>,
        v: f64,
    ) -> Result<(), WanError> {
        if field(self).replace(v).is_some() {
            return Err(self.err(line, format!("{key} given twice")));
        }
        Ok(())
    }

    fn one_number(&self, line: usize, key: &str, args: &[&str]) -> Result<f64, WanError> {
        let [v] = args else {
            return Err(self.err(line, format!("{key} takes exactly one number")));
        };
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(self.err(line, format!("{key}: {v:?} is not a number"))),
        }
    }

    fn one_ms(&self, line: usize, key: &str, args: &[&str]) -> Result<f64, WanError> {
        let v = self.one_number(line, key, args)?;
        self.delay(line, v, key)
    }

    /// A delay in ms within 0..=[`MAX_DELAY_MS`]; `what` names it in the message.
    fn delay(&self, line: usize, v: f64, what: &str) -> Result<f64, WanError> {
        if v < 0.0 {
            return Err(self.err(line, format!("{what}: negative delay {v} ms")));
        }
        if v > MAX_DELAY_MS {
            return Err(self.err(
                line,
                format!("{what}: {v} ms is over the limit of {MAX_DELAY_MS} ms"),
            ));
        }
        Ok(v)
    }

    fn zones_stmt(&mut self, line: usize, args: &[&str]) -> Result<(), WanError> {
        if let Some((first, _)) = &self.zones {
            return Err(self.err(line, format!("zones given twice (first on line {first})")));
        }
        if args.is_empty() {
            return Err(self.err(line, "zones needs at least one zone name"));
        }
        for (k, z) in args.iter().enumerate() {
            if args[..k].contains(z) {
                return Err(self.err(line, format!("zone {z:?} listed twice")));
            }
            if z == &"-" || z.parse::<f64>().is_ok() {
                return Err(self.err(line, format!("{z:?} is not a usable zone name")));
            }
        }
        self.zones = Some((line, args.iter().map(|s| s.to_string()).collect()));
        self.rows = vec![None; args.len()];
        Ok(())
    }

    fn rtt_stmt(&mut self, line: usize, args: &[&str]) -> Result<(), WanError> {
        let Some((_, zones)) = &self.zones else {
            return Err(self.err(
                line,
                "rtt row before the `zones` line: list the zones first",
            ));
        };
        let n = zones.len();
        let Some((zone, values)) = args.split_first() else {
            return Err(self.err(line, "rtt needs a zone name and one value per zone"));
        };
        let Some(row) = zones.iter().position(|z| z == zone) else {
            return Err(self.err(
                line,
                format!("unknown zone {zone:?}: zones are {}", zones.join(" ")),
            ));
        };
        if values.len() != n {
            return Err(self.err(
                line,
                format!(
                    "row {zone} has {} values, expected {n} (one per zone: {})",
                    values.len(),
                    zones.join(" ")
                ),
            ));
        }
        let mut parsed = Vec::with_capacity(n);
        for (col, tok) in values.iter().enumerate() {
            if *tok == "-" {
                if col != row {
                    return Err(self.err(
                        line,
                        format!("`-` is only allowed on the diagonal ({zone} to {zone})"),
                    ));
                }
                parsed.push((None, Source::Measured));
                continue;
            }
            if col == row {
                return Err(self.err(
                    line,
                    format!("the diagonal ({zone} to {zone}) must be `-`: set same_zone_rtt_ms"),
                ));
            }
            let (num, source) = match tok.as_bytes().last() {
                Some(b'P' | b'p') => (&tok[..tok.len() - 1], Source::Proxied),
                Some(b'E' | b'e') => (&tok[..tok.len() - 1], Source::Estimated),
                _ => (*tok, Source::Measured),
            };
            let v: f64 = match num.parse() {
                Ok(v) if f64::is_finite(v) => v,
                _ => {
                    return Err(self.err(
                        line,
                        format!("{tok:?} ({zone} to {}) is not an RTT in ms", zones[col]),
                    ))
                }
            };
            let v = self.delay(line, v, &format!("rtt {zone} to {}", zones[col]))?;
            parsed.push((Some(v), source));
        }
        if let Some((first, _)) = &self.rows[row] {
            return Err(self.err(
                line,
                format!("row {zone} given twice (first on line {first})"),
            ));
        }
        self.rows[row] = Some((line, parsed));
        Ok(())
    }

    fn finish(self) -> Result<Profile, WanError> {
        let Some((zones_line, zones)) = self.zones.clone() else {
            return Err(WanError::Invalid {
                name: self.name.to_string(),
                msg: "no `zones` line".into(),
            });
        };
        let n = zones.len();
        let missing: Vec<&str> = zones
            .iter()
            .zip(&self.rows)
            .filter(|(_, r)| r.is_none())
            .map(|(z, _)| z.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(self.err(
                zones_line,
                format!(
                    "wrong row count: {} of {n} zones have an `rtt` row; missing: {}",
                    n - missing.len(),
                    missing.join(" ")
                ),
            ));
        }
        let same_zone = self.same_zone.unwrap_or(0.0);
        let mut rtt_ms = vec![0.0; n * n];
        let mut source = vec![Source::Measured; n * n];
        for (r, row) in self.rows.iter().enumerate() {
            let (_, vals) = row.as_ref().expect("checked above");
            for (c, (v, s)) in vals.iter().enumerate() {
                rtt_ms[r * n + c] = v.unwrap_or(same_zone);
                source[r * n + c] = *s;
            }
        }
        // Symmetry: report the later of the two lines, where the user most likely erred.
        for r in 0..n {
            for c in r + 1..n {
                let (a, b) = (rtt_ms[r * n + c], rtt_ms[c * n + r]);
                if (a - b).abs() > 1e-9 {
                    let line_r = self.rows[r].as_ref().map_or(0, |x| x.0);
                    let line_c = self.rows[c].as_ref().map_or(0, |x| x.0);
                    return Err(self.err(
                        line_r.max(line_c),
                        format!(
                            "asymmetric matrix: {} to {} is {a} ms but {} to {} is {b} ms",
                            zones[r], zones[c], zones[c], zones[r]
                        ),
                    ));
                }
            }
        }
        let jitter_ms = self.jitter.unwrap_or(0.0);
        let jitter_max_ms = self
            .jitter_max
            .unwrap_or((10.0 * jitter_ms).min(MAX_DELAY_MS));
        Ok(Profile {
            name: self.name.to_string(),
            zones,
            rtt_ms,
            source,
            same_zone_rtt_ms: same_zone,
            jitter_ms,
            jitter_dist: self.dist.unwrap_or(JitterDist::Uniform),
            jitter_max_ms,
            loss: self.loss.unwrap_or(0.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> (usize, String) {
        match Profile::parse("t", text) {
            Err(WanError::Parse { line, msg, .. }) => (line, msg),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    const GOOD: &str = "# two zones\nzones A B\nsame_zone_rtt_ms 1\nrtt A - 10\nrtt B 10 -\n";

    #[test]
    fn parses_a_small_profile() {
        let p = Profile::parse("t", GOOD).unwrap();
        assert_eq!(p.zones, ["A", "B"]);
        assert_eq!(p.rtt_ms(0, 1), 10.0);
        assert_eq!(p.rtt_ms(1, 1), 1.0);
        assert_eq!(p.one_way(0, 1), Duration::from_millis(5));
        assert_eq!(p.one_way(0, 0), Duration::from_micros(500));
        assert_eq!(p.loss, 0.0);
        assert_eq!(p.jitter_ms, 0.0);
    }

    #[test]
    fn asymmetric_matrix_names_the_line() {
        let (line, msg) = parse_err("zones A B\nrtt A - 10\nrtt B 11 -\n");
        assert_eq!(line, 3);
        assert!(msg.contains("asymmetric"), "{msg}");
    }

    #[test]
    fn wrong_value_count_names_the_line() {
        let (line, msg) = parse_err("zones A B C\nrtt A - 10\n");
        assert_eq!(line, 2);
        assert!(msg.contains("expected 3"), "{msg}");
    }

    #[test]
    fn missing_row_names_the_zones_line() {
        let (line, msg) = parse_err("# x\nzones A B\nrtt A - 10\n");
        assert_eq!(line, 2);
        assert!(
            msg.contains("wrong row count") && msg.contains("missing: B"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_row_is_an_error() {
        let (line, msg) = parse_err("zones A B\nrtt A - 10\nrtt A - 10\nrtt B 10 -\n");
        assert_eq!(line, 3);
        assert!(msg.contains("twice"), "{msg}");
    }

    #[test]
    fn unknown_zone_names_the_line() {
        let (line, msg) = parse_err("zones A B\nrtt A - 10\n\nrtt X 10 -\n");
        assert_eq!(line, 4);
        assert!(msg.contains("unknown zone \"X\""), "{msg}");
    }

    #[test]
    fn negative_delays_are_refused() {
        let (line, msg) = parse_err("zones A B\nrtt A - -10\nrtt B -10 -\n");
        assert_eq!(line, 2);
        assert!(msg.contains("negative"), "{msg}");
        let (line, msg) = parse_err("zones A\nsame_zone_rtt_ms -1\nrtt A -\n");
        assert_eq!(line, 2);
        assert!(msg.contains("negative"), "{msg}");
        let (line, _) = parse_err("zones A\njitter_ms -0.5\nrtt A -\n");
        assert_eq!(line, 2);
    }

    #[test]
    fn absurd_delays_are_refused_with_the_line() {
        // Found in issue 11: an RTT of 1e9 ms was accepted and the lab then hung.
        let (line, msg) = parse_err("zones A B\n\nrtt A - 1e9\nrtt B 1e9 -\n");
        assert_eq!(line, 3);
        assert!(msg.contains("over the limit of 10000 ms"), "{msg}");
        assert!(msg.contains("rtt A to B"), "{msg}");
        for stmt in ["same_zone_rtt_ms", "jitter_ms", "jitter_max_ms"] {
            let (line, msg) = parse_err(&format!("zones A\n{stmt} 10000.5\nrtt A -\n"));
            assert_eq!(line, 2, "{stmt}");
            assert!(
                msg.contains(stmt) && msg.contains("over the limit"),
                "{msg}"
            );
        }
        for bad in ["inf", "NaN", "-inf"] {
            assert_eq!(
                parse_err(&format!("zones A\njitter_ms {bad}\nrtt A -\n")).0,
                2
            );
            assert_eq!(
                parse_err(&format!("zones A B\nrtt A - {bad}\nrtt B 1 -\n")).0,
                2
            );
            assert_eq!(parse_err(&format!("zones A\nloss {bad}\nrtt A -\n")).0, 2);
        }
        assert_eq!(parse_err("zones A\nloss -0.1\nrtt A -\n").0, 2);
        // The limits themselves are allowed, and the default jitter cap stays within them.
        let p = Profile::parse(
            "t",
            "zones A B\njitter_ms 10000\nloss 1\nrtt A - 10000\nrtt B 10000 -\n",
        )
        .unwrap();
        assert_eq!(p.jitter_max_ms, MAX_DELAY_MS);
        assert_eq!(p.max_one_way(), Duration::from_secs(15));
    }

    #[test]
    fn other_mistakes_name_the_line() {
        assert_eq!(parse_err("zones A\nrtt A x\n").0, 2);
        assert_eq!(parse_err("rtt A -\nzones A\n").0, 1);
        assert_eq!(parse_err("zones A\nfoo 1\n").0, 2);
        assert_eq!(parse_err("zones A A\n").0, 1);
        assert_eq!(parse_err("zones A B\nrtt A 1 10\nrtt B 10 -\n").0, 2);
        assert_eq!(parse_err("zones A\nloss 1.5\nrtt A -\n").0, 2);
        assert_eq!(parse_err("zones A\njitter_dist normal\nrtt A -\n").0, 2);
        assert!(matches!(
            Profile::parse("t", "# empty\n"),
            Err(WanError::Invalid { .. })
        ));
    }

    #[test]
    fn gcp8_matches_the_issue_table() {
        let p = Profile::load("gcp8").unwrap();
        assert_eq!(p.name, "gcp8");
        assert_eq!(
            p.zones,
            ["NA", "SA", "USW", "EN", "EW9", "ME", "AS2", "AE1"]
        );
        // Upper triangle of issue 4's table, row by row.
        let upper: [&[f64]; 7] = [
            &[128.5, 61.0, 115.6, 85.0, 140.0, 236.0, 179.3],
            &[169.3, 216.8, 192.0, 250.0, 345.1, 286.6],
            &[158.3, 132.0, 190.0, 218.8, 119.4],
            &[35.0, 80.0, 185.1, 276.3],
            &[57.0, 157.0, 250.0],
            &[210.0, 300.0],
            &[107.2],
        ];
        for (r, row) in upper.iter().enumerate() {
            for (k, want) in row.iter().enumerate() {
                let c = r + 1 + k;
                assert_eq!(p.rtt_ms(r, c), *want, "{} to {}", p.zones[r], p.zones[c]);
                assert_eq!(p.rtt_ms(c, r), *want);
            }
        }
        for z in 0..8 {
            assert_eq!(p.rtt_ms(z, z), 0.5);
        }
        let (ew9, me, na, sa) = (4, 5, 0, 1);
        assert_eq!(p.source(na, ew9), Source::Proxied);
        assert_eq!(p.source(ew9, me), Source::Estimated);
        assert_eq!(p.source(na, sa), Source::Measured);
        assert_eq!(p.source(me, na), Source::Estimated);
        assert_eq!(p.one_way(1, 6), Duration::from_secs_f64(0.34510 / 2.0));
        assert_eq!(p.zone_index("AS2"), Some(6));
        assert_eq!(p.zone_index("XX"), None);
        assert_eq!(p.round_robin(10), [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]);
    }

    #[test]
    fn lan_is_one_zone_without_delay() {
        let p = Profile::load("lan").unwrap();
        assert_eq!(p.zones.len(), 1);
        assert_eq!(p.one_way(0, 0), Duration::ZERO);
        assert_eq!(p.round_robin(3), [0, 0, 0]);
    }

    #[test]
    fn load_reads_a_path_and_refuses_unknown_names() {
        let dir = std::env::temp_dir().join(format!("mpcomm-wan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mine.wan");
        std::fs::write(&file, GOOD).unwrap();
        let p = Profile::load(file.to_str().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(p.unwrap().name, "mine");
        assert!(matches!(
            Profile::load("no-such-profile"),
            Err(WanError::Unknown(_))
        ));
        assert!(matches!(
            Profile::load("/no/such/file.wan"),
            Err(WanError::Io { .. })
        ));
    }
}
