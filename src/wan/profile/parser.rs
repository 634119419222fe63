//! The profile's text format, read line by line; every error names its line.

use super::{JitterDist, Profile, Source, WanError, MAX_DELAY_MS};

/// One matrix value as written: `None` for the diagonal's `-`.
type Cell = (Option<f64>, Source);

pub(super) struct Parser<'a> {
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
    pub(super) fn new(name: &'a str) -> Self {
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

    pub(super) fn run(mut self, text: &str) -> Result<Profile, WanError> {
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
