//! The scalar references for the k-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations,
//! as ggml-quants.c's `ggml_vec_dot_q4_K_q8_K` and friends: per super-block of 256 an
//! integer sum of scale × sub-block dot product, the minimums through the activations'
//! 16-element sums, then floats.
//!
//! Float order (the integer sums are exact in every kernel set): per super-block,
//! Q4_K/Q5_K add `d_a · (d_w · sumi − dmin_w · summ)` and Q6_K adds
//! `(d_w · d_a) · sumi` to one running f32 sum, super-block after super-block.

use super::activations::Q8Row;
use super::half::f16_at;

/// The eight 6-bit scales and eight 6-bit minimums packed in Q4_K's and Q5_K's 12 bytes
/// (ggml's `get_scale_min_k4`; gguf-py's `Q4_K.get_scale_min`): sub-blocks 0..4 in the
/// low six bits of bytes 0..4 (scales) and 4..8 (mins); sub-blocks 4..8 in the nibbles
/// of bytes 8..12 plus the top two bits of bytes 0..8.
#[inline(always)]
pub(crate) fn scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 15) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// `Σ_j m_j · (a's sum over sub-block j)`: the minimums' integer part.
#[inline(always)]
pub(crate) fn mins_dot(m: &[u8; 8], sums: &[i16]) -> i32 {
    (0..8)
        .map(|j| m[j] as i32 * (sums[2 * j] as i32 + sums[2 * j + 1] as i32))
        .sum()
}

/// Q4_K · Q8_K.
pub(crate) fn dot_q4_k(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(144).enumerate() {
        let (sc, m) = scales_mins(&blk[4..16]);
        let qs = &blk[16..144];
        let qa = &a.qs[256 * b..256 * b + 256];
        let mut sumi = 0i32;
        for j in 0..8 {
            let (chunk, shift) = (&qs[32 * (j / 2)..32 * (j / 2) + 32], 4 * (j % 2));
            let s: i32 = (0..32)
                .map(|l| ((chunk[l] >> shift) & 15) as i32 * qa[32 * j + l] as i32)
                .sum();
            sumi += sc[j] as i32 * s;
        }
        let summ = mins_dot(&m, &a.sums[16 * b..16 * b + 16]);
        sum += a.d[b] * (f16_at(blk, 0) * sumi as f32 - f16_at(blk, 2) * summ as f32);
    }
    sum
}

/// Q5_K · Q8_K.
pub(crate) fn dot_q5_k(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(176).enumerate() {
        let (sc, m) = scales_mins(&blk[4..16]);
        let (qh, qs) = (&blk[16..48], &blk[48..176]);
        let qa = &a.qs[256 * b..256 * b + 256];
        let mut sumi = 0i32;
        for j in 0..8 {
            let (chunk, shift) = (&qs[32 * (j / 2)..32 * (j / 2) + 32], 4 * (j % 2));
            let s: i32 = (0..32)
                .map(|l| {
                    let q = ((chunk[l] >> shift) & 15) | (((qh[l] >> j) & 1) << 4);
                    q as i32 * qa[32 * j + l] as i32
                })
                .sum();
            sumi += sc[j] as i32 * s;
        }
        let summ = mins_dot(&m, &a.sums[16 * b..16 * b + 16]);
        sum += a.d[b] * (f16_at(blk, 0) * sumi as f32 - f16_at(blk, 2) * summ as f32);
    }
    sum
}

/// Q6_K's code of element `e` of a super-block, in `0..64` (before the offset of 32).
#[inline(always)]
pub(crate) fn q6_code(ql: &[u8], qh: &[u8], e: usize) -> u8 {
    let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
    let lo = (ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 15;
    let hi = (qh[32 * h + l] >> (2 * s)) & 3;
    lo | (hi << 4)
}

/// Q6_K · Q8_K: `Σ_b d_w d_a Σ_g sc_g Σ_{e∈g} (q_e − 32) a_e`, groups of 16.
pub(crate) fn dot_q6_k(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(210).enumerate() {
        let (ql, qh, scales) = (&blk[0..128], &blk[128..192], &blk[192..208]);
        let qa = &a.qs[256 * b..256 * b + 256];
        let mut sumi = 0i32;
        for (g, &scale) in scales.iter().enumerate() {
            let s: i32 = (16 * g..16 * g + 16)
                .map(|e| (q6_code(ql, qh, e) as i32 - 32) * qa[e] as i32)
                .sum();
            sumi += scale as i8 as i32 * s;
        }
        sum += (f16_at(blk, 208) * a.d[b]) * sumi as f32;
    }
    sum
}
