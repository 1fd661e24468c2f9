//! Order statistics of the timed repeats, computed as `numpy.percentile` does (linear
//! interpolation between the two nearest ranks) so both sides of `make bench` agree.

/// The `q`-th percentile (`0..=100`) of `samples`; NaN when empty.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn matches_numpy_linear_interpolation() {
        // numpy.percentile([4, 1, 3, 2], [10, 50, 90]) == [1.3, 2.5, 3.7]
        let s = [4.0, 1.0, 3.0, 2.0];
        for (q, want) in [(10.0, 1.3), (50.0, 2.5), (90.0, 3.7)] {
            assert!((percentile(&s, q) - want).abs() < 1e-12, "{q}");
        }
        assert!(percentile(&[], 50.0).is_nan());
    }
}
