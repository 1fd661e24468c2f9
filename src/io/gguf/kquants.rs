//! ggml's k-quants: super-blocks of 256 values ([`QK_K`]) split into sub-blocks of 16
//! or 32, each sub-block with a small integer scale (and minimum) that multiplies the
//! super-block's float16 `d` (and `dmin`). Dequantised value for value as gguf-py's
//! `quants.py` (gguf 0.19), which transformers' GGUF loader calls:
//!
//! 1. `d` and `dmin` widened from float16 to float32;
//! 2. each sub-block's `d * scale` (and `dmin * min`) rounded to float32 once;
//! 3. each value `dl * q` (`- ml`), each operation rounded, no fused multiply-add.
//!
//! The element order is that of ggml's `dequantize_row_q*_K` in `ggml-quants.c`; each
//! function below documents its block's bytes and which bits make element `i`, and
//! loops as ggml's does, a sub-block at a time. (Casts with `as` rather than
//! `f32::from`: a debug build calls the trait function for every value.)

use super::half::f16_at;
use super::types::QK_K;

/// `block_q2_K`, 84 bytes:
///
/// ```text
/// 0..16   scales  u8 per sub-block of 16: low nibble scale, high nibble min
/// 16..80  qs      2 bits per value: element i = 128h + 32s + l (l < 32) is
///                 bits 2s..2s+2 of qs[32h + l]
/// 80..82  d       f16
/// 82..84  dmin    f16
/// x[i] = (d * scale[i/16]) * q[i] - (dmin * min[i/16])
/// ```
pub(super) fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    // Sub-block k = 8h + 2s + half holds elements 128h + 32s + 16 half + (0..16).
    for k in 0..QK_K / 16 {
        let (h, s, half) = (k / 8, k / 2 % 4, k % 2);
        let dl = d * (scales[k] & 0x0f) as f32;
        let ml = dmin * (scales[k] >> 4) as f32;
        let q = &qs[32 * h + 16 * half..];
        for l in 0..16 {
            y[16 * k + l] = dl * ((q[l] >> (2 * s)) & 3) as f32 - ml;
        }
    }
}

/// `block_q3_K`, 110 bytes:
///
/// ```text
/// 0..32    hmask   the third bit: element i = 128h + 32j + l (l < 32) takes
///                  bit 4h + j of hmask[l]; a clear bit subtracts 4
/// 32..96   qs      the low 2 bits: bits 2j..2j+2 of qs[32h + l]
/// 96..108  scales  16 6-bit scales, offset by 32 (see `q3_k_scale`)
/// 108..110 d       f16
/// x[i] = (d * (scale[i/16] - 32)) * (q[i] - 4 * !hbit[i])
/// ```
pub(super) fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    // Sub-block k = 8h + 2j + half holds elements 128h + 32j + 16 half + (0..16).
    for k in 0..QK_K / 16 {
        let (h, j, half) = (k / 8, k / 2 % 4, k % 2);
        let dl = d * (q3_k_scale(scales, k) as i8 - 32) as f32;
        for l in 16 * half..16 * half + 16 {
            let low = ((qs[32 * h + l] >> (2 * j)) & 3) as i8;
            let high = (hmask[l] >> (4 * h + j)) & 1;
            let q = low - if high == 0 { 4 } else { 0 };
            y[128 * h + 32 * j + l] = dl * q as f32;
        }
    }
}

/// Q3_K's 6-bit scale `k` (0..16) from its 12 bytes: the low 4 bits from byte `k % 8`
/// (low nibble for `k < 8`, high nibble after), the high 2 bits from byte `8 + k % 4`,
/// bits `2 (k / 4)..2 (k / 4) + 2`.
fn q3_k_scale(scales: &[u8], k: usize) -> u8 {
    let low = (scales[k % 8] >> (4 * (k / 8))) & 0x0f;
    let high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
    low | (high << 4)
}

/// Q4_K's and Q5_K's 6-bit (scale, min) of sub-block `j` (0..8) from their 12 bytes
/// (ggml's `get_scale_min_k4`): for `j < 4` the low 6 bits of bytes `j` and `j + 4`;
/// after, a nibble of byte `j + 4` with the top 2 bits of bytes `j - 4` and `j`.
fn scale_min_k4(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 0x3f, scales[j + 4] & 0x3f)
    } else {
        let sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 2) & 0x30);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 2) & 0x30);
        (sc, m)
    }
}

/// `block_q4_K`, 144 bytes:
///
/// ```text
/// 0..2     d       f16
/// 2..4     dmin    f16
/// 4..16    scales  8 6-bit scales and 8 6-bit mins (see `scale_min_k4`)
/// 16..144  qs      4 bits per value: element i = 64g + 32s + l (l < 32) is
///                  nibble s of qs[32g + l]
/// x[i] = (d * scale[i/32]) * q[i] - (dmin * min[i/32])
/// ```
pub(super) fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (j, y) in y.chunks_exact_mut(32).enumerate().take(QK_K / 32) {
        let (sc, m) = scale_min_k4(scales, j);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let q = &qs[32 * (j / 2)..];
        let shift = 4 * (j % 2);
        for l in 0..32 {
            y[l] = dl * ((q[l] >> shift) & 0x0f) as f32 - ml;
        }
    }
}

/// `block_q5_K`, 176 bytes:
///
/// ```text
/// 0..2     d       f16
/// 2..4     dmin    f16
/// 4..16    scales  as Q4_K's
/// 16..48   qh      the fifth bit: element i = 32j + l takes bit j of qh[l]
/// 48..176  qs      the low 4 bits, as Q4_K's
/// x[i] = (d * scale[i/32]) * q[i] - (dmin * min[i/32])
/// ```
pub(super) fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (j, y) in y.chunks_exact_mut(32).enumerate().take(QK_K / 32) {
        let (sc, m) = scale_min_k4(scales, j);
        let (dl, ml) = (d * sc as f32, dmin * m as f32);
        let q = &qs[32 * (j / 2)..];
        let shift = 4 * (j % 2);
        for l in 0..32 {
            let low = (q[l] >> shift) & 0x0f;
            let high = (qh[l] >> j) & 1;
            y[l] = dl * (low | (high << 4)) as f32 - ml;
        }
    }
}

/// `block_q6_K`, 210 bytes:
///
/// ```text
/// 0..128    ql      the low 4 bits: element i = 128h + 64s + l (l < 64) is
///                   nibble s of ql[64h + l]
/// 128..192  qh      the high 2 bits: element i = 128h + 32j + l (l < 32) takes
///                   bits 2j..2j+2 of qh[32h + l]
/// 192..208  scales  i8 per sub-block of 16
/// 208..210  d       f16
/// x[i] = (d * scale[i/16]) * (q[i] - 32)
/// ```
pub(super) fn q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    // Sub-block k holds elements 16k..16k + 16: i = 128h + 64s + l' (l' < 64) for
    // `ql`, i = 128h + 32j + l (l < 32) for `qh`.
    for (k, &scale) in scales.iter().enumerate() {
        let dl = d * (scale as i8) as f32;
        let (h, s, j) = (k / 8, k / 4 % 2, k / 2 % 4);
        for i in 16 * k..16 * k + 16 {
            let low = (ql[64 * h + i % 64] >> (4 * s)) & 0x0f;
            let high = (qh[32 * h + i % 32] >> (2 * j)) & 3;
            y[i] = dl * ((low | (high << 4)) as i8 - 32) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_scales_and_mins_unpack_as_ggml() {
        // Scale j = j + 1 and min j = 40 + j, packed by hand as ggml's make_qkx
        // writers pack them.
        let (sc, mn): (Vec<u8>, Vec<u8>) = (0..8).map(|j| (j + 1, 40 + j)).unzip();
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
        }
        for j in 0..8 {
            assert_eq!(scale_min_k4(&s, j), (sc[j], mn[j]), "sub-block {j}");
        }
    }

    #[test]
    fn q3_k_scales_unpack_as_ggml() {
        // Scale k = 3k + 2 (6 bits), packed as ggml's quantize_row_q3_K_ref packs it.
        let l: Vec<u8> = (0..16).map(|k| 3 * k + 2).collect();
        let mut s = [0u8; 12];
        for j in 0..16 {
            if j < 8 {
                s[j] = l[j] & 0x0f;
            } else {
                s[j - 8] |= (l[j] & 0x0f) << 4;
            }
            s[j % 4 + 8] |= (l[j] >> 4) << (2 * (j / 4));
        }
        for (k, &want) in l.iter().enumerate() {
            assert_eq!(q3_k_scale(&s, k), want, "scale {k}");
        }
    }
}
