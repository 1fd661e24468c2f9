//! viridis, the perceptually uniform colormap that matplotlib uses by default: dark
//! purple for 0 through blue and green to yellow for 1, readable in greyscale and by
//! colour-blind readers. Ten evenly spaced stops (viridisLite's `viridis(10)`),
//! interpolated linearly in RGB.

const STOPS: [[u8; 3]; 10] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x28, 0x78],
    [0x3E, 0x4A, 0x89],
    [0x31, 0x68, 0x8E],
    [0x26, 0x82, 0x8E],
    [0x1F, 0x9E, 0x89],
    [0x35, 0xB7, 0x79],
    [0x6D, 0xCD, 0x59],
    [0xB4, 0xDE, 0x2C],
    [0xFD, 0xE7, 0x25],
];

/// The colour of `t` in `[0, 1]` (clamped).
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_monotone_lightness() {
        assert_eq!(viridis(0.0), STOPS[0]);
        assert_eq!(viridis(1.0), STOPS[9]);
        assert_eq!(viridis(7.0), STOPS[9]);
        let luma = |c: [u8; 3]| 0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64;
        let mut last = -1.0;
        for i in 0..=100 {
            let l = luma(viridis(i as f64 / 100.0));
            assert!(l >= last - 1.0, "lightness falls at {i}");
            last = l;
        }
    }
}
