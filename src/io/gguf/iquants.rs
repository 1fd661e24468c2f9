//! ggml's non-linear 4-bit i-quants: each 4-bit code indexes a fixed table of 16
//! signed values ([`KVALUES`], ggml's `kvalues_iq4nl`) instead of standing for itself.
//! Dequantised value for value as gguf-py's `quants.py` (gguf 0.19): float16 `d`
//! widened to float32, a sub-block's `d * scale` rounded once, then `dl * table[q]`.
//! (Casts with `as` rather than `f32::from`: a debug build calls the trait function
//! for every value.)

use super::half::f16_at;
use super::types::QK_K;

/// ggml's `kvalues_iq4nl`: what each 4-bit code stands for.
const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// `block_iq4_nl`, 18 bytes, laid out as Q4_0's:
///
/// ```text
/// 0..2   d    f16
/// 2..18  qs   element j < 16 in the low nibble of qs[j], element j + 16 in its high
///             nibble
/// x[j] = d * KVALUES[q[j]]
/// ```
pub(super) fn iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * KVALUES[(qs[j] & 0x0f) as usize] as f32;
        y[j + 16] = d * KVALUES[(qs[j] >> 4) as usize] as f32;
    }
}

/// `block_iq4_xs`, 136 bytes: 8 sub-blocks of 32, each laid out as an IQ4_NL block's
/// values with a 6-bit scale offset by 32.
///
/// ```text
/// 0..2    d         f16
/// 2..4    scales_h  u16: bits 2k..2k+2 are the high 2 bits of scale k
/// 4..8    scales_l  the low 4 bits of scale k: nibble k % 2 of scales_l[k / 2]
/// 8..136  qs        element i = 32k + 16s + l (l < 16) is nibble s of qs[16k + l]
/// x[i] = (d * (scale[i/32] - 32)) * KVALUES[q[i]]
/// ```
pub(super) fn iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let (scales_l, qs) = (&b[4..8], &b[8..136]);
    for (k, y) in y.chunks_exact_mut(32).enumerate().take(QK_K / 32) {
        let low = (scales_l[k / 2] >> (4 * (k % 2))) & 0x0f;
        let high = ((scales_h >> (2 * k)) & 3) as u8;
        let dl = d * ((low | (high << 4)) as i8 - 32) as f32;
        let q = &qs[16 * k..];
        for l in 0..16 {
            y[l] = dl * KVALUES[(q[l] & 0x0f) as usize] as f32;
            y[l + 16] = dl * KVALUES[(q[l] >> 4) as usize] as f32;
        }
    }
}
