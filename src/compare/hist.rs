//! Latency histograms on disk, in the formats HdrHistogram's own tools read:
//!
//! * `.hgrm`: the percentile distribution text of Java's `outputPercentileDistribution`
//!   (`Value Percentile TotalCount 1/(1-Percentile)`, values in ms, `#[Mean …]`, `#[Max …]`,
//!   `#[Buckets …]` footer) — the hdrhistogram crate has no writer for it;
//! * `.hlog`: an interval log, format version 1.3, V2 deflate-compressed histograms, one tag per
//!   sender → receiver pair (`s3-r5`) plus an untagged histogram of all deliveries.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use super::peerlog::{new_hist, PeerLog, MAX_PAIR_HIST_PEERS, NS_PER_MS, SIGFIG};
use super::report::Report;

/// Percentile ticks per half distance, as Java's default.
const TICKS_PER_HALF: u32 = 5;

/// Sub-buckets per bucket for `SIGFIG` significant digits (what Java prints as `SubBuckets`).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(u32::from(sigfig));
    largest_single_unit.next_power_of_two()
}

/// Write `h` (ns) as a `.hgrm` percentile distribution in ms.
pub fn write_hgrm(h: &Histogram<u64>, w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / NS_PER_MS;
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                // The iterator yields quantile 1.0 twice; the table has it once, last.
                writeln!(w, "{value:12.3} {q:2.12} {total:10}")?;
                break;
            }
        }
    }
    writeln!(
        w,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / NS_PER_MS,
        h.stdev() / NS_PER_MS
    )?;
    writeln!(
        w,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / NS_PER_MS,
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(SIGFIG)
    )
}

/// Interval log text of tagged histograms (all one interval: the run).
pub fn hlog_bytes(
    start_ns: u64,
    duration: Duration,
    hists: &[(Option<String>, &Histogram<u64>)],
) -> io::Result<Vec<u8>> {
    let start_s = start_ns as f64 / 1e9;
    let mut out = Vec::new();
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(out, "#[StartTime: {start_s:.3} (seconds since epoch)]")?;
    writeln!(out, "#[BaseTime: {start_s:.3} (seconds since epoch)]")?;
    let mut body = Vec::new();
    {
        let mut ser = V2DeflateSerializer::new();
        let mut log = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(NS_PER_MS)
            .begin_log_with(&mut body, &mut ser)?;
        for (tag, h) in hists {
            let tag = tag.as_deref().and_then(Tag::new);
            log.write_histogram(h, Duration::ZERO, duration, tag)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
    }
    // The builder's first line is its `#[MaxValueDivisor …]` comment; the legend follows it.
    let split = body.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    out.extend_from_slice(&body[..split]);
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    out.extend_from_slice(&body[split..]);
    Ok(out)
}

/// Write the run's histograms into `dir`: `run-ID.hgrm` (all deliveries), `run-ID-sS-rR.hgrm`
/// per sender → receiver pair with deliveries (per receiver, `-rR`, above 64 peers) and
/// `run-ID.hlog`. Returns the files written.
pub fn write_run(dir: &Path, logs: &[PeerLog], report: &Report) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let base = format!("run-{:016x}", report.run_id);
    let mut seen = vec![false; usize::from(report.peers)];
    let duration = Duration::from_secs_f64(report.duration_ms.max(0.0) / 1e3);
    // Pair histograms are built one at a time from the logs' latency codes; only their
    // compressed interval-log lines are kept.
    let mut overall = new_hist();
    let mut start_ns = u64::MAX;
    let mut files = Vec::new();
    let mut text = Vec::new();
    let put = |name: String, bytes: &[u8], files: &mut Vec<PathBuf>| -> io::Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes)?;
        files.push(p);
        Ok(())
    };
    let mut tagged: Vec<(String, Vec<u8>)> = Vec::new();
    let mut pair = |tag: String, h: &Histogram<u64>, files: &mut Vec<PathBuf>| -> io::Result<()> {
        let mut text = Vec::new();
        write_hgrm(h, &mut text)?;
        put(format!("{base}-{tag}.hgrm"), &text, files)?;
        // The interval line of this histogram alone (the last line of its own log).
        let one = hlog_bytes(0, duration, &[(Some(tag.clone()), h)])?;
        let body = one.strip_suffix(b"\n").unwrap_or(&one);
        let from = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        tagged.push((tag, one[from..].to_vec()));
        Ok(())
    };
    for log in logs.iter().filter(|l| {
        (l.header.run_id, l.header.peers, l.header.msgs)
            == (report.run_id, report.peers, report.msgs_per_peer)
    }) {
        let r = usize::from(log.header.peer_id);
        if std::mem::replace(&mut seen[r], true) {
            continue;
        }
        start_ns = start_ns.min(log.header.start_ns);
        let total = log.latency.total();
        overall.add(&total).expect("auto-resizing histograms add");
        if report.peers <= MAX_PAIR_HIST_PEERS {
            let mut result = Ok(());
            log.for_each_pair_hist(|s, h| {
                if result.is_ok() {
                    result = pair(format!("s{s}-r{r}"), h, &mut files);
                }
            });
            result?;
        } else if !total.is_empty() {
            pair(format!("r{r}"), &total, &mut files)?;
        }
    }
    write_hgrm(&overall, &mut text)?;
    put(format!("{base}.hgrm"), &text, &mut files)?;
    let start_ns = if start_ns == u64::MAX { 0 } else { start_ns };
    let mut all = hlog_bytes(start_ns, duration, &[(None, &overall)])?;
    for (_, line) in &tagged {
        all.extend_from_slice(line);
    }
    put(format!("{base}.hlog"), &all, &mut files)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    /// Standard base64 (the crate's own dependency is not ours to name).
    fn base64_decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
        for c in s.bytes().filter(|&c| c != b'=') {
            acc = (acc << 6) | u32::from(val(c));
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out
    }

    fn sample() -> Histogram<u64> {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap(); // 1 µs .. 1 ms
        }
        h
    }

    #[test]
    fn hgrm_layout() {
        let mut out = Vec::new();
        write_hgrm(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        let rows: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .skip(1)
            .collect();
        // Exactly one 1.0 row, last, with three columns and the full count.
        let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
        assert_eq!(last.len(), 3, "{text}");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        assert_eq!(
            rows.iter()
                .filter(|r| r.contains(" 1.000000000000 "))
                .count(),
            1
        );
        for r in &rows[..rows.len() - 1] {
            assert_eq!(r.split_whitespace().count(), 4, "{r}");
        }
        assert!(text.contains("#[Mean    =        0.50"), "{text}");
        assert!(
            text.contains("#[Max     =        1.000, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn hlog_reads_back() {
        let h = sample();
        let bytes = hlog_bytes(
            1_700_000_000_000_000_000,
            Duration::from_secs(5),
            &[(None, &h), (Some("s0-r1".into()), &h)],
        )
        .unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("#[Histogram log format version 1.3]\n"),
            "{text}"
        );
        assert!(text.contains("\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"));
        let mut tags = Vec::new();
        for e in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(ih) = e.unwrap() {
                tags.push(ih.tag().map(|t| t.as_str().to_owned()));
                assert_eq!(ih.duration(), Duration::from_secs(5));
                assert!((ih.max() - 1.0).abs() < 0.01, "max in ms: {}", ih.max());
                let raw = base64_decode(ih.encoded_histogram());
                let back: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut raw.as_slice())
                    .unwrap();
                assert_eq!(back, h);
            }
        }
        assert_eq!(tags, vec![None, Some("s0-r1".to_owned())]);
    }
}
