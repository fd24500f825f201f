//! Order statistics over measured durations.

use std::time::Duration;

/// Summary of a sample of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

/// The value at quantile `q` (0..=1) of a sorted sample, nearest-rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median; for an even count, the mean of the two middle values.
pub fn median(sorted: &[Duration]) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

pub fn summarize(sample: &mut [Duration]) -> Summary {
    sample.sort_unstable();
    let n = sample.len();
    let total: Duration = sample.iter().sum();
    Summary {
        n,
        min: sample.first().copied().unwrap_or_default(),
        p50: median(sample),
        p90: quantile(sample, 0.90),
        p99: quantile(sample, 0.99),
        max: sample.last().copied().unwrap_or_default(),
        mean: if n == 0 { Duration::ZERO } else { total / n as u32 },
    }
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_median() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(&mut v);
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.p90, Duration::from_millis(90));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.p50, Duration::from_micros(50_500));
        assert_eq!(median(&[Duration::from_millis(3)]), Duration::from_millis(3));
        assert_eq!(summarize(&mut []).n, 0);
    }
}
