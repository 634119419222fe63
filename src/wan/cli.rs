//! `mpcomm wan list` and `mpcomm wan show NAME`: the built-in profiles, readable and copyable
//! (a shown profile is a valid `.wan` file to edit and pass back as `--wan FILE`).

use std::io::Write;
use std::process::ExitCode;

use super::{Profile, SHIPPED};

/// The built-in profiles: a table, or one JSON object per profile.
pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let out = crate::util::out::stdout();
    let mut out = out.lock();
    let profiles: Vec<Profile> = SHIPPED
        .iter()
        .map(|(name, _)| Profile::load(name))
        .collect::<Result<_, _>>()?;
    if !json {
        writeln!(
            out,
            "{:<8} {:>5} {:>15} {:>22} {:>6}",
            "name", "zones", "max one-way ms", "jitter ms", "loss"
        )?;
    }
    for p in &profiles {
        // Half the largest RTT plus the jitter cap: the longest a datagram is held.
        let max_one_way = p.max_one_way().as_secs_f64() * 1e3;
        let dist = match p.jitter_dist {
            super::JitterDist::Uniform => "uniform",
            super::JitterDist::Exponential => "exponential",
        };
        if json {
            let v = serde_json::json!({
                "name": p.name, "zones": p.zones, "max_one_way_ms": max_one_way,
                "jitter_ms": p.jitter_ms, "jitter_dist": dist, "loss": p.loss,
            });
            writeln!(out, "{v}")?;
        } else {
            let jitter = format!("{} {dist}", p.jitter_ms);
            writeln!(
                out,
                "{:<8} {:>5} {:>15.1} {:>22} {:>6}",
                p.name,
                p.zones.len(),
                max_one_way,
                jitter,
                p.loss
            )?;
        }
    }
    if !json {
        writeln!(
            out,
            "\n`mpcomm wan show NAME` prints one as a file to edit."
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A profile (a built-in name or a file) as a `.wan` file to edit.
pub fn show(name: &str) -> anyhow::Result<ExitCode> {
    let out = crate::util::out::stdout();
    let mut out = out.lock();
    // Parsed first, so a broken file is an error here rather than in a run.
    let p = Profile::load(name)?;
    let text = match SHIPPED.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => (*text).to_string(),
        None => std::fs::read_to_string(name)?,
    };
    writeln!(out, "# {}", p.summary())?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
