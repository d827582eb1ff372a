//! Latency histograms (HDR, in µs) and their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::control::Buckets;

/// An empty histogram for latencies from 1 µs to an hour, 3 significant digits; [`record`]
/// clamps what falls outside.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records a latency in µs (clamped into the histogram's range).
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.max(1));
}

/// The recorded values of a histogram as (value, count) pairs, for sending to the
/// coordinator; empty buckets are left out.
pub fn to_buckets(histogram: &Histogram<u64>) -> Buckets {
    histogram
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds buckets from a worker to a histogram; [`merge`] of [`to_buckets`] loses nothing
/// beyond the histogram's own precision.
pub fn merge(histogram: &mut Histogram<u64>, buckets: &Buckets) {
    for &(value, count) in buckets {
        histogram.saturating_record_n(value, count);
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarizes a histogram of µs; every figure is 0 when nothing was recorded.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        #[allow(clippy::cast_precision_loss)]
        Self {
            count: histogram.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: histogram.max() as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_between_processes() {
        let mut worker = histogram();
        for micros in 1..=1000 {
            record(&mut worker, micros * 100);
        }
        let mut total = histogram();
        merge(&mut total, &to_buckets(&worker));
        merge(&mut total, &to_buckets(&worker));
        let summary = Latency::of(&total);
        assert_eq!(summary.count, 2000);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
    }
}
