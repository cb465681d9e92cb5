//! Pure statistics over measured samples: percentiles of latencies and medians across runs.

/// Nearest-rank percentile (`q` in `0.0..=1.0`) of an ascending slice; `None` when empty.
///
/// Nearest-rank never interpolates, so every reported value is one that was really measured
/// (p99.9 of 1,000 samples is the largest one, not an average of two).
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_no_samples_when_percentile_should_be_none() {
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn given_hundred_samples_when_percentile_should_pick_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.5), Some(50));
        assert_eq!(percentile(&samples, 0.99), Some(99));
        assert_eq!(percentile(&samples, 0.999), Some(100));
        assert_eq!(percentile(&samples, 1.0), Some(100));
        assert_eq!(percentile(&samples, 0.0), Some(1));
    }

    #[test]
    fn given_one_sample_when_percentile_should_return_it() {
        assert_eq!(percentile(&[7], 0.999), Some(7));
    }

    #[test]
    fn given_odd_and_even_counts_when_median_should_pick_middle() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
