//! The k-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations in 256-bit registers, the
//! technique of ggml's `ggml_vec_dot_q4_K_q8_K` and friends in arch/x86/quants.c:
//! codes unpacked to bytes in registers, `maddubs` with the activations, then `madd`
//! with the sub-block's scale, which widens to i32 and applies the scale in one step.
//!
//! Both x86 sets run these: with VNNI, `dpbusd` would need a separate 32-bit multiply
//! by the scale, no fewer instructions than `maddubs` + `madd`.
//!
//! Integer parts: a super-block's eight i32 lanes sum to the scalar reference's `sumi`
//! (Q6_K's offset of 32 is taken off in i16 pairs, `maddubs(q, a) − maddubs(32, a)`).
//! Float order: per super-block the lanes, as f32, times `d_w · d_a` into eight running
//! f32 lanes (one FMA), summed at the end; Q4_K's and Q5_K's minimum terms
//! `(dmin_w · d_a) · summ` in a separate scalar, subtracted last.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::half::f16_at;
use super::kquants::{mins_dot, scales_mins};
use super::simd::{hsum_ps, load32, load32_i8};

/// `Σ scale · q·a` over 32 bytes, as eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scaled_dot(q: __m256i, a: &[i8], scale: u8) -> __m256i {
    let pairs = _mm256_maddubs_epi16(q, load32_i8(a));
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(scale as i16))
}

/// Q4_K · Q8_K. Safety: the CPU has AVX2 and FMA; `w` holds whole super-blocks and `a`
/// at least as many.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q4_k(w: &[u8], a: Q8Row) -> f32 {
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0f32);
    let low = _mm256_set1_epi8(15);
    for (b, blk) in w.chunks_exact(144).enumerate() {
        let (sc, m) = scales_mins(&blk[4..16]);
        let qa = &a.qs[256 * b..256 * b + 256];
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = load32(&blk[16 + 32 * c..48 + 32 * c]);
            let lo = _mm256_and_si256(q, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            sumi = _mm256_add_epi32(sumi, scaled_dot(lo, &qa[64 * c..], sc[2 * c]));
            sumi = _mm256_add_epi32(sumi, scaled_dot(hi, &qa[64 * c + 32..], sc[2 * c + 1]));
        }
        let scale = _mm256_set1_ps(f16_at(blk, 0) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
        let summ = mins_dot(&m, &a.sums[16 * b..16 * b + 16]);
        mins += (f16_at(blk, 2) * a.d[b]) * summ as f32;
    }
    hsum_ps(acc) - mins
}

/// Q5_K · Q8_K: as Q4_K, with each sub-block's fifth bits moved from `qh` to bit 4.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q5_k(w: &[u8], a: Q8Row) -> f32 {
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0f32);
    let (low, one) = (_mm256_set1_epi8(15), _mm256_set1_epi8(1));
    for (b, blk) in w.chunks_exact(176).enumerate() {
        let (sc, m) = scales_mins(&blk[4..16]);
        let qa = &a.qs[256 * b..256 * b + 256];
        // Bits 2c and 2c+1 of each qh byte belong to sub-blocks 2c and 2c+1; shifting
        // the 16-bit lanes by 2 a step keeps both within their byte.
        let mut qh = load32(&blk[16..48]);
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = load32(&blk[48 + 32 * c..80 + 32 * c]);
            let h_lo = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            let h_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
            qh = _mm256_srli_epi16(qh, 2);
            let lo = _mm256_or_si256(_mm256_and_si256(q, low), h_lo);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), h_hi);
            sumi = _mm256_add_epi32(sumi, scaled_dot(lo, &qa[64 * c..], sc[2 * c]));
            sumi = _mm256_add_epi32(sumi, scaled_dot(hi, &qa[64 * c + 32..], sc[2 * c + 1]));
        }
        let scale = _mm256_set1_ps(f16_at(blk, 0) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
        let summ = mins_dot(&m, &a.sums[16 * b..16 * b + 16]);
        mins += (f16_at(blk, 2) * a.d[b]) * summ as f32;
    }
    hsum_ps(acc) - mins
}

/// Q6_K · Q8_K: per half of 128, four quarters of 32 codes (low nibbles of `ql`, high
/// pairs of bits of `qh`), each against two 16-element scales.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q6_k(w: &[u8], a: Q8Row) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (low, three, off) = (
        _mm256_set1_epi8(15),
        _mm256_set1_epi8(3),
        _mm256_set1_epi8(32),
    );
    for (b, blk) in w.chunks_exact(210).enumerate() {
        let qa = &a.qs[256 * b..256 * b + 256];
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let ql0 = load32(&blk[64 * h..64 * h + 32]);
            let ql1 = load32(&blk[64 * h + 32..64 * h + 64]);
            let mut qh = load32(&blk[128 + 32 * h..160 + 32 * h]);
            let lows = [
                _mm256_and_si256(ql0, low),
                _mm256_and_si256(ql1, low),
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
            ];
            for (s, lo) in lows.into_iter().enumerate() {
                let q = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, three), 4));
                qh = _mm256_srli_epi16(qh, 2);
                let x = load32_i8(&qa[128 * h + 32 * s..]);
                let pairs =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(q, x), _mm256_maddubs_epi16(off, x));
                let g = 192 + 8 * h + 2 * s;
                let scales = _mm256_set_m128i(
                    _mm_set1_epi16(blk[g + 1] as i8 as i16),
                    _mm_set1_epi16(blk[g] as i8 as i16),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pairs, scales));
            }
        }
        let scale = _mm256_set1_ps(f16_at(blk, 208) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
    }
    hsum_ps(acc)
}
