//! Durations on the command line: `500ms`, `2s`, `1m`, `1.5s`, `250us`; a bare number is
//! seconds unless the flag says otherwise.

use std::time::Duration;

/// Parse `N[unit]` with unit one of ns, us, ms, s, m, h; no unit means seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    parse_with_default_unit(s, 1.0)
}

/// Like [`parse`], but a bare number is milliseconds (for `--interval 10..100`).
pub fn parse_ms(s: &str) -> Result<Duration, String> {
    parse_with_default_unit(s, 1e-3)
}

fn parse_with_default_unit(s: &str, default_secs: f64) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 500ms, 2s, 1m"))?;
    let scale = match unit.trim() {
        "" => default_secs,
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ns, us, ms, s, m or h"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `MIN..MAX` (or one value for both); bare numbers are milliseconds.
pub fn parse_range_ms(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = match s.split_once("..") {
        Some((lo, hi)) => (parse_ms(lo)?, parse_ms(hi)?),
        None => {
            let d = parse_ms(s)?;
            (d, d)
        }
    };
    if lo > hi {
        return Err(format!("interval {s:?}: MIN is larger than MAX"));
    }
    Ok((lo, hi))
}

/// Render a duration the way users type them.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0s".into()
    } else if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else if ns % 1_000 == 0 {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_ms("10"), Ok(Duration::from_millis(10)));
        assert!(parse("abc").is_err());
        assert!(parse("5 parsecs").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn ranges() {
        let ms = Duration::from_millis;
        assert_eq!(parse_range_ms("10..100"), Ok((ms(10), ms(100))));
        assert_eq!(parse_range_ms("0"), Ok((ms(0), ms(0))));
        assert_eq!(parse_range_ms("1s..2s"), Ok((ms(1000), ms(2000))));
        assert!(parse_range_ms("100..10").is_err());
    }

    #[test]
    fn human_round_trips() {
        for s in ["0s", "2s", "500ms", "250us", "7ns"] {
            assert_eq!(human(parse(s).unwrap()), s);
        }
    }
}
