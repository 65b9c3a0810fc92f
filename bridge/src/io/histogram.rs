//! A latency histogram of atomics: the publisher records every JetStream
//! ack without a lock, and a scrape reads it without stopping the publisher.
//!
//! (`prometheus-client`'s own histogram takes a lock per observation; the
//! bridge keeps its hot path lock-free and hands the buckets to the encoder
//! at scrape time, as it does for every other counter.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from a local server's sub-ms
/// acks to the default 5 s ack timeout and beyond.
pub(crate) const BOUNDS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Observations per bucket (not cumulative), plus the ones above the last
/// bound, their count and their sum in microseconds.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// What a scrape reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// Sum of all observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
    /// Observations per upper bound, not cumulative (the encoder adds them
    /// up), the last bound being `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramSnapshot {
    /// Observations at or below `bound`.
    #[cfg(test)]
    pub(crate) fn at_or_below(&self, bound: f64) -> u64 {
        self.buckets
            .iter()
            .take_while(|(b, _)| *b <= bound)
            .map(|(_, n)| n)
            .sum()
    }
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The buckets as they stand. Read without a lock, a snapshot taken
    /// during an observation may count it in a bucket but not yet in
    /// `count`; `count` is then raised to the buckets' total, so the series
    /// stays consistent (`_count` equals the `+Inf` bucket).
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(bound, n)| (bound, n.load(Relaxed)))
            .collect();
        let total = buckets.iter().map(|(_, n)| n).sum::<u64>();
        let count = self.count.load(Relaxed).max(total);
        #[allow(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds; f64 is exact up to 2^53 µs (285 years)"
        )]
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        HistogramSnapshot {
            sum,
            count,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert!((s.sum - 60.0313).abs() < 1e-9, "{}", s.sum);
        let at = |bound: f64| s.at_or_below(bound);
        assert_eq!(at(0.0005), 1);
        assert_eq!(at(0.001), 2, "a bound is inclusive (le)");
        assert_eq!(at(0.025), 2);
        assert_eq!(at(0.05), 3);
        assert_eq!(at(10.0), 3);
        assert_eq!(at(f64::INFINITY), 4);
        assert_eq!(s.buckets.len(), BOUNDS.len() + 1);
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn empty() {
        let s = Histogram::default().snapshot();
        assert_eq!((s.count, s.sum), (0, 0.0));
        assert!(s.buckets.iter().all(|(_, n)| *n == 0));
    }
}
