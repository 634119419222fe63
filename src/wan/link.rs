//! The sampler a peer owns: for each datagram, drop it or give its emulated one-way delay.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::profile::{JitterDist, Profile};

/// Seeded per-datagram delay and loss for one peer. Two `Link`s built from the same profile,
/// seed and arguments give the same sequence of answers for the same sequence of calls.
#[derive(Debug, Clone)]
pub struct Link {
    zones: usize,
    /// One-way delay per (from, to) in ns, already scaled; row-major.
    owd_ns: Vec<f64>,
    /// Jitter parameters in ns, already scaled.
    jitter_ns: f64,
    jitter_max_ns: f64,
    dist: JitterDist,
    /// Combined drop probability of the profile and the extra loss.
    loss: f64,
    rng: ChaCha8Rng,
}

impl Link {
    /// `time_scale` multiplies every delay (0.1 = ten times faster); a negative or non-finite
    /// scale is treated as 0 (validate user input with [`check_time_scale`] first).
    /// `extra_loss` (e.g. `--wan-loss`) is combined with the profile's loss as independent drops;
    /// it is clamped to 0..1.
    pub fn new(profile: &Profile, seed: u64, time_scale: f64, extra_loss: f64) -> Link {
        let scale = if time_scale.is_finite() && time_scale > 0.0 {
            time_scale
        } else {
            0.0
        };
        let zones = profile.zones.len();
        let mut owd_ns = Vec::with_capacity(zones * zones);
        for a in 0..zones {
            for b in 0..zones {
                owd_ns.push(profile.rtt_ms(a, b) / 2.0 * 1e6 * scale);
            }
        }
        let clamp = |p: f64| if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        let loss = 1.0 - (1.0 - clamp(profile.loss)) * (1.0 - clamp(extra_loss));
        Link {
            zones,
            owd_ns,
            jitter_ns: profile.jitter_ms * 1e6 * scale,
            jitter_max_ns: profile.jitter_max_ms * 1e6 * scale,
            dist: profile.jitter_dist,
            loss,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The drop probability this link applies.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The longest delay [`Link::delay`] can return: the largest one-way delay plus the jitter
    /// cap, scaled. Peers wait at least this long for stragglers.
    pub fn max_delay(&self) -> Duration {
        let owd = self.owd_ns.iter().copied().fold(0.0, f64::max);
        Duration::from_nanos((owd + self.jitter_max_ns).max(0.0).round() as u64)
    }

    /// `None`: the datagram is lost. `Some(d)`: deliver it `d` after it was sent, where
    /// `d = (RTT(from, to) / 2 + jitter) × time_scale`, jitter in `0..=jitter_max`.
    /// Panics if a zone index is out of range. Allocation-free.
    pub fn delay(&mut self, from: usize, to: usize) -> Option<Duration> {
        assert!(
            from < self.zones && to < self.zones,
            "zone out of range: {from}, {to} of {}",
            self.zones
        );
        // Draw the loss decision even when loss is 0 so that the jitter sequence does not depend
        // on the loss setting (a seed gives the same delays with and without --wan-loss).
        let lost = self.rng.gen::<f64>() < self.loss;
        let u: f64 = self.rng.gen();
        if lost {
            return None;
        }
        let jitter = match self.dist {
            JitterDist::Uniform => u * self.jitter_ns,
            // Inverse CDF; 1 - u is in (0, 1], so ln is finite.
            JitterDist::Exponential => -(1.0 - u).ln() * self.jitter_ns,
        }
        .min(self.jitter_max_ns)
        .max(0.0);
        let ns = (self.owd_ns[from * self.zones + to] + jitter).max(0.0);
        Some(Duration::from_nanos(ns.round() as u64))
    }
}

/// The range of `--time-scale`: a thousand times faster to a thousand times slower.
pub const TIME_SCALE_RANGE: std::ops::RangeInclusive<f64> = 1e-3..=1e3;

/// Validate a `--time-scale` value: finite and within [`TIME_SCALE_RANGE`].
pub fn check_time_scale(f: f64) -> Result<f64, String> {
    if TIME_SCALE_RANGE.contains(&f) {
        Ok(f)
    } else {
        Err(format!(
            "--time-scale {f} must be between {} and {} (e.g. 0.1 for ten times faster)",
            TIME_SCALE_RANGE.start(),
            TIME_SCALE_RANGE.end()
        ))
    }
}

/// Validate a `--wan-loss` value: a fraction in 0..1.
pub fn check_loss(p: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!(
            "--wan-loss {p}: the loss must be a fraction between 0 and 1 (e.g. 0.01)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcp8() -> Profile {
        Profile::load("gcp8").unwrap()
    }

    #[test]
    fn same_seed_same_sequence_other_seed_differs() {
        let p = gcp8();
        let draw = |seed| {
            let mut l = Link::new(&p, seed, 1.0, 0.1);
            (0..1000)
                .map(|i| l.delay(i % 8, (i * 3) % 8))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn delay_is_half_the_rtt_plus_small_bounded_jitter() {
        let p = gcp8();
        let mut l = Link::new(&p, 1, 1.0, 0.0);
        let (sa, as2) = (1, 6);
        let base = Duration::from_secs_f64(345.1e-3 / 2.0);
        let cap = Duration::from_secs_f64(p.jitter_max_ms / 1e3);
        let mut sum = Duration::ZERO;
        let n = 10_000;
        for _ in 0..n {
            let d = l.delay(sa, as2).expect("gcp8 has no loss");
            assert!(d >= base - Duration::from_nanos(1), "{d:?} < {base:?}");
            assert!(
                d <= base + cap + Duration::from_nanos(1),
                "{d:?} beyond the cap"
            );
            sum += d - base.min(d);
        }
        // Mean of the exponential term is jitter_ms (0.1 ms); allow sampling error.
        let mean_ms = sum.as_secs_f64() * 1e3 / n as f64;
        assert!(
            (mean_ms - p.jitter_ms).abs() < 0.01,
            "mean jitter {mean_ms} ms"
        );
        assert!(
            p.jitter_max_ms <= 2.0,
            "jitter must stay small next to the path delays"
        );
    }

    #[test]
    fn uniform_jitter_stays_in_range() {
        let p = Profile::parse("u", "zones A\njitter_ms 0.4\nrtt A -\n").unwrap();
        let mut l = Link::new(&p, 3, 1.0, 0.0);
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..10_000 {
            let d = l.delay(0, 0).unwrap();
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(hi <= Duration::from_micros(400));
        assert!(lo < Duration::from_micros(10) && hi > Duration::from_micros(390));
    }

    #[test]
    fn loss_rate_within_tolerance() {
        let p = Profile::parse("l", "zones A\nloss 0.05\nrtt A -\n").unwrap();
        let count = |extra| {
            let mut l = Link::new(&p, 42, 1.0, extra);
            (0..10_000).filter(|_| l.delay(0, 0).is_none()).count()
        };
        let alone = count(0.0);
        assert!(
            (400..=600).contains(&alone),
            "{alone} of 10000 lost, want ~500"
        );
        // Combined with --wan-loss 0.1: 1 - 0.95 × 0.9 = 14.5 %.
        let both = count(0.1);
        assert!(
            (1300..=1600).contains(&both),
            "{both} of 10000 lost, want ~1450"
        );
        assert_eq!(count(0.1), both, "seeded, so deterministic");
        let none = Profile::load("lan").unwrap();
        let mut l = Link::new(&none, 42, 1.0, 0.0);
        assert!((0..10_000).all(|_| l.delay(0, 0).is_some()));
    }

    #[test]
    fn time_scale_multiplies_delay_and_jitter() {
        let p = gcp8();
        let mut full = Link::new(&p, 9, 1.0, 0.0);
        let mut tenth = Link::new(&p, 9, 0.1, 0.0);
        for i in 0..100 {
            let (a, b) = (i % 8, (i / 8) % 8);
            let f = full.delay(a, b).unwrap().as_nanos() as f64;
            let t = tenth.delay(a, b).unwrap().as_nanos() as f64;
            assert!((f * 0.1 - t).abs() <= 1.0, "{a}->{b}: {f} vs {t}");
        }
        let mut zero = Link::new(&p, 9, f64::NAN, 0.0);
        assert_eq!(zero.delay(0, 7), Some(Duration::ZERO));
        assert!(check_time_scale(0.0).is_err() && check_time_scale(0.1).is_ok());
        assert!(check_loss(1.5).is_err() && check_loss(0.0).is_ok());
    }
}
