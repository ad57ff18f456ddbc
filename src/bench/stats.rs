//! Summary statistics of benchmark samples: median, mean, sample standard deviation, min and max.

use serde::Serialize;

/// Summary of a list of samples (tokens/s, GB/s, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Middle sample (mean of the two middle ones for an even count).
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator; 0 for fewer than two samples).
    pub stddev: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Stats {
    /// Summarizes `samples`; `None` when there are none or one is not finite.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let n = samples.len();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) };
        Some(Stats { median, mean, stddev: var.sqrt(), min: sorted[0], max: sorted[n - 1] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle_sample() {
        let s = Stats::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.mean, s.min, s.max), (2.0, 2.0, 1.0, 3.0));
        assert!((s.stddev - 1.0).abs() < 1e-12);
    }

    #[test]
    fn even_count_averages_the_two_middle_samples() {
        let s = Stats::of(&[10.0, 4.0, 2.0, 8.0]).unwrap();
        assert_eq!(s.median, 6.0);
        assert_eq!(s.mean, 6.0);
        // Σ(x − 6)² = 16 + 4 + 4 + 16 = 40 over n − 1 = 3.
        assert!((s.stddev - (40.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max), (2.0, 10.0));
    }

    #[test]
    fn one_sample_has_no_spread_and_none_gives_nothing() {
        let s = Stats::of(&[5.5]).unwrap();
        assert_eq!((s.median, s.stddev, s.min, s.max), (5.5, 0.0, 5.5, 5.5));
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn median_lies_within_min_and_max_for_any_order() {
        let samples = [7.0, 1.5, 9.25, 3.0, 3.0, 8.0, 0.5];
        let s = Stats::of(&samples).unwrap();
        assert!(s.min <= s.median && s.median <= s.max);
        assert_eq!(s.median, 3.0);
    }
}
