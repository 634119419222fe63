//! The page's geometry, pure: where a time, a peer, a delivery or a percentile lands in SVG
//! user units, and which colour a sender gets. No HTML here, so every number is testable.

/// Okabe–Ito: eight colours told apart with every common colour-vision deficiency. With more
/// than eight senders the colours repeat (the legend names the senders of each).
pub const PALETTE: [&str; 8] = [
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000",
];

/// The palette index of a sender.
pub fn sender_colour_index(sender: u16) -> usize {
    usize::from(sender) % PALETTE.len()
}

/// The colour of a sender's cells and curves.
pub fn sender_colour(sender: u16) -> &'static str {
    PALETTE[sender_colour_index(sender)]
}

/// Linear map of wall-clock nanoseconds [t0, t1] onto x in [x0, x1]; outside, clamped (a
/// forged or skewed time stays on the page).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale {
    t0: u64,
    t1: u64,
    x0: f64,
    x1: f64,
}

impl TimeScale {
    /// An empty or reversed span is widened to 1 ns so the map stays defined.
    pub fn new(t0: u64, t1: u64, x0: f64, x1: f64) -> TimeScale {
        TimeScale {
            t0,
            t1: t1.max(t0.saturating_add(1)),
            x0,
            x1,
        }
    }

    pub fn x(&self, ns: u64) -> f64 {
        let ns = ns.clamp(self.t0, self.t1);
        let f = (ns - self.t0) as f64 / (self.t1 - self.t0) as f64;
        self.x0 + f * (self.x1 - self.x0)
    }

    /// Milliseconds the whole span covers (for the axis label).
    pub fn span_ms(&self) -> f64 {
        (self.t1 - self.t0) as f64 / 1e6
    }
}

/// Horizontal lanes, one per peer, `gap` apart from `top`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lanes {
    pub top: f64,
    pub gap: f64,
}

impl Lanes {
    pub fn y(&self, peer: u16) -> f64 {
        self.top + f64::from(peer) * self.gap
    }

    /// Height that holds `peers` lanes and a margin of one gap below the last.
    pub fn height(&self, peers: u16) -> f64 {
        self.y(peers)
    }
}

/// A straight line from (x1, y1) to (x2, y2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// A delivery's arrow: from the sender's lane at its send time to the receiver's lane at its
/// delivery time.
pub fn delivery_arrow(
    scale: &TimeScale,
    lanes: &Lanes,
    sender: u16,
    send_ns: u64,
    receiver: u16,
    deliver_ns: u64,
) -> Segment {
    Segment {
        x1: scale.x(send_ns),
        y1: lanes.y(sender),
        x2: scale.x(deliver_ns),
        y2: lanes.y(receiver),
    }
}

/// What ordering held a delivery back: a bar on the receiver's lane from its arrival at the
/// ordering stage to its delivery (zero length when nothing held it).
pub fn hold_back_bar(
    scale: &TimeScale,
    lanes: &Lanes,
    receiver: u16,
    arrive_ns: u64,
    deliver_ns: u64,
) -> Segment {
    let y = lanes.y(receiver);
    Segment {
        x1: scale.x(arrive_ns.min(deliver_ns)),
        y1: y,
        x2: scale.x(deliver_ns),
        y2: y,
    }
}

/// "Nines" of a percentile: log10(1 / (1 − p)), the HdrHistogram plotter's x axis (90% → 1,
/// 99% → 2, 99.9% → 3). `p` is a fraction; p ≥ 1 is capped at `max_nines`.
pub fn nines(p: f64, max_nines: f64) -> f64 {
    if p >= 1.0 {
        return max_nines;
    }
    (-(1.0 - p.max(0.0)).log10()).min(max_nines)
}

/// Percentile curve of sorted values: `steps + 1` points `(p, value)` evenly spaced in nines
/// from 0 to log10(n) (what n values can resolve); empty without values.
pub fn percentile_points<T: Copy>(sorted: &[T], steps: u32) -> Vec<(f64, T)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let top = (n as f64).log10();
    (0..=steps.max(1))
        .map(|k| {
            let p = 1.0 - 10f64.powf(-top * f64::from(k) / f64::from(steps.max(1)));
            let i = ((p * n as f64) as usize).min(n - 1);
            (p, sorted[i])
        })
        .collect()
}

/// Linear map of [0, max] onto [bottom, top] (SVG y grows downwards); max 0 maps all to bottom.
pub fn value_y(v: f64, max: f64, bottom: f64, top: f64) -> f64 {
    if max <= 0.0 {
        return bottom;
    }
    bottom - (v / max).clamp(0.0, 1.0) * (bottom - top)
}

/// A "nice" axis maximum at or above `v`: 1, 2 or 5 × a power of ten.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * e >= v {
            return m * e;
        }
    }
    10.0 * e
}

/// Every `stride`-th message (by index sender × M + seq) is drawn: the smallest stride that
/// keeps `deliveries` arrows at or under `cap`.
pub fn arrow_stride(deliveries: u64, cap: u64) -> u32 {
    if cap == 0 {
        return u32::MAX;
    }
    u32::try_from(deliveries.div_ceil(cap).max(1)).unwrap_or(u32::MAX)
}

/// Cell width of a strip of `positions` cells in `width` units, never under `min`.
pub fn cell_width(positions: usize, width: f64, min: f64) -> f64 {
    if positions == 0 {
        return width;
    }
    (width / positions as f64).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_scale_maps_ends_and_clamps() {
        let s = TimeScale::new(1_000, 3_000, 100.0, 500.0);
        assert_eq!(s.x(1_000), 100.0);
        assert_eq!(s.x(2_000), 300.0);
        assert_eq!(s.x(3_000), 500.0);
        assert_eq!(s.x(0), 100.0);
        assert_eq!(s.x(u64::MAX), 500.0);
        assert!((s.span_ms() - 0.002).abs() < 1e-12);
    }

    #[test]
    fn empty_time_span_stays_defined() {
        let s = TimeScale::new(5, 5, 0.0, 10.0);
        assert_eq!(s.x(5), 0.0);
        assert_eq!(s.x(6), 10.0);
        let r = TimeScale::new(9, 2, 0.0, 10.0);
        assert!(r.x(9).is_finite());
    }

    #[test]
    fn lanes_are_evenly_spaced() {
        let l = Lanes {
            top: 20.0,
            gap: 30.0,
        };
        assert_eq!(l.y(0), 20.0);
        assert_eq!(l.y(3), 110.0);
        assert_eq!(l.height(4), 140.0);
    }

    #[test]
    fn arrow_goes_from_send_on_sender_to_delivery_on_receiver() {
        let s = TimeScale::new(0, 100, 0.0, 1000.0);
        let l = Lanes {
            top: 10.0,
            gap: 20.0,
        };
        let a = delivery_arrow(&s, &l, 2, 10, 0, 60);
        assert_eq!(
            a,
            Segment {
                x1: 100.0,
                y1: 50.0,
                x2: 600.0,
                y2: 10.0
            }
        );
        let b = hold_back_bar(&s, &l, 1, 40, 60);
        assert_eq!((b.x1, b.x2, b.y1, b.y2), (400.0, 600.0, 30.0, 30.0));
        // Arrived "after" delivery (clock noise): a bar of length 0, not a reversed one.
        let c = hold_back_bar(&s, &l, 1, 70, 60);
        assert_eq!(c.x1, c.x2);
    }

    #[test]
    fn palette_is_okabe_ito_and_repeats() {
        assert_eq!(PALETTE.len(), 8);
        assert_eq!(sender_colour(0), "#E69F00");
        assert_eq!(sender_colour(8), sender_colour(0));
        assert_eq!(sender_colour_index(13), 5);
        let mut unique = PALETTE.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 8);
    }

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0, 6.0), 0.0);
        assert!((nines(0.9, 6.0) - 1.0).abs() < 1e-9);
        assert!((nines(0.999, 6.0) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0, 4.0), 4.0);
        assert_eq!(nines(0.999_999_999, 4.0), 4.0);
    }

    #[test]
    fn percentile_points_span_what_the_data_resolves() {
        assert!(percentile_points::<u64>(&[], 10).is_empty());
        let v: Vec<u64> = (1..=1000).collect();
        let pts = percentile_points(&v, 30);
        assert_eq!(pts.len(), 31);
        assert_eq!(pts[0], (0.0, 1));
        assert_eq!(pts[30].1, 1000);
        assert!((pts[10].0 - 0.9).abs() < 1e-9, "{:?}", pts[10]);
        assert_eq!(pts[10].1, 901);
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(percentile_points(&[7], 5), vec![(0.0, 7); 6]);
    }

    #[test]
    fn value_axis_and_ceiling() {
        assert_eq!(value_y(0.0, 10.0, 200.0, 0.0), 200.0);
        assert_eq!(value_y(5.0, 10.0, 200.0, 0.0), 100.0);
        assert_eq!(value_y(20.0, 10.0, 200.0, 0.0), 0.0);
        assert_eq!(value_y(3.0, 0.0, 200.0, 0.0), 200.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(4_100.0), 5_000.0);
    }

    #[test]
    fn thinning_and_cells() {
        assert_eq!(arrow_stride(6_400, 20_000), 1);
        assert_eq!(arrow_stride(20_000, 20_000), 1);
        assert_eq!(arrow_stride(20_001, 20_000), 2);
        assert_eq!(arrow_stride(256_000, 20_000), 13);
        assert_eq!(arrow_stride(5, 0), u32::MAX);
        assert_eq!(cell_width(800, 1200.0, 1.0), 1.5);
        assert_eq!(cell_width(16_000, 1200.0, 1.0), 1.0);
        assert_eq!(cell_width(0, 1200.0, 1.0), 1200.0);
    }
}
