//! The scalar references for the legacy 32-element types (Q8_0, Q4_0, Q4_1, Q5_0)
//! against Q8_0 activations, written plainly as ggml-quants.c's `ggml_vec_dot_*_q8_0`
//! are: per block an integer dot product of the codes, then floats.
//!
//! Float order (every kernel set keeps the integer sums exactly; only this differs):
//! per block `sumi as f32 · (d_w · d_a)` (Q4_1 adds `m_w · (d_a · Σa)`) is added to one
//! running f32 sum, block after block.

use super::activations::Q8Row;
use super::half::f16_at;

/// Q8_0 · Q8_0: `Σ_b d_w d_a Σ_j q_j a_j`.
pub(crate) fn dot_q8_0(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(34).enumerate() {
        let qa = &a.qs[32 * b..32 * b + 32];
        let sumi: i32 = blk[2..34]
            .iter()
            .zip(qa)
            .map(|(&q, &x)| q as i8 as i32 * x as i32)
            .sum();
        sum += sumi as f32 * (f16_at(blk, 0) * a.d[b]);
    }
    sum
}

/// Q4_0 · Q8_0: `Σ_b d_w d_a Σ_j (q_j − 8) a_j`.
pub(crate) fn dot_q4_0(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(18).enumerate() {
        let qa = &a.qs[32 * b..32 * b + 32];
        let mut sumi = 0i32;
        for (j, &byte) in blk[2..18].iter().enumerate() {
            sumi += ((byte & 15) as i32 - 8) * qa[j] as i32;
            sumi += ((byte >> 4) as i32 - 8) * qa[j + 16] as i32;
        }
        sum += sumi as f32 * (f16_at(blk, 0) * a.d[b]);
    }
    sum
}

/// Q4_1 · Q8_0: `Σ_b (d_w d_a Σ_j q_j a_j + m_w d_a Σ_j a_j)`.
pub(crate) fn dot_q4_1(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(20).enumerate() {
        let qa = &a.qs[32 * b..32 * b + 32];
        let mut sumi = 0i32;
        for (j, &byte) in blk[4..20].iter().enumerate() {
            sumi += (byte & 15) as i32 * qa[j] as i32;
            sumi += (byte >> 4) as i32 * qa[j + 16] as i32;
        }
        // a.ds[2b + 1] = d_a · Σa, computed once with the activations.
        sum += sumi as f32 * (f16_at(blk, 0) * a.d[b]) + f16_at(blk, 2) * a.ds[2 * b + 1];
    }
    sum
}

/// Q5_0 · Q8_0: `Σ_b d_w d_a Σ_j (q_j − 16) a_j`, the fifth bit of `q_j` bit `j` of `qh`.
pub(crate) fn dot_q5_0(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(22).enumerate() {
        let qa = &a.qs[32 * b..32 * b + 32];
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let mut sumi = 0i32;
        for (j, &byte) in blk[6..22].iter().enumerate() {
            let lo = (byte & 15) as i32 | (((qh >> j) & 1) << 4) as i32;
            let hi = (byte >> 4) as i32 | (((qh >> (j + 16)) & 1) << 4) as i32;
            sumi += (lo - 16) * qa[j] as i32 + (hi - 16) * qa[j + 16] as i32;
        }
        sum += sumi as f32 * (f16_at(blk, 0) * a.d[b]);
    }
    sum
}
