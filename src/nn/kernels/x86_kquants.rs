//! The k-quants (Q4_K, Q5_K, Q6_K) against Q8_K activations in 256-bit registers, the
//! technique of ggml's `ggml_vec_dot_q4_K_q8_K` and friends in arch/x86/quants.c:
//! codes unpacked to bytes in registers, `maddubs` with the activations, then `madd`
//! with the sub-block's scale, which widens to i32 and applies the scale in one step.
//!
//! Both x86 sets run these: with VNNI, `dpbusd` would need a separate 32-bit multiply
//! by the scale, no fewer instructions than `maddubs` + `madd`.
//!
//! Pointer reads are sound by one check a row that `a` holds as many super-blocks as
//! `w` ([`blocks`]).
//!
//! Integer parts: a super-block's eight i32 lanes sum to the scalar reference's `sumi`
//! (Q6_K's offset of 32 is taken off in i16 pairs, `maddubs(q, a) − maddubs(32, a)`).
//! Float order: per super-block the lanes, as f32, times `d_w · d_a` into eight running
//! f32 lanes (one FMA), summed at the end; Q4_K's and Q5_K's minimum terms
//! `(dmin_w · d_a) · summ` in a separate scalar, subtracted last.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::kquants::{mins_dot, scales_mins};
use super::simd::{half_at, hsum_ps, load32, load32_i8, prefetch, PREFETCH_BYTES};

/// The super-blocks in `w` (of `bytes` each), after checking that `a` has as many.
#[inline(always)]
fn blocks(w: &[u8], bytes: usize, a: &Q8Row) -> usize {
    let nb = w.len() / bytes;
    assert!(a.qs.len() >= 256 * nb && a.d.len() >= nb && a.sums.len() >= 16 * nb);
    nb
}

/// Asks for the super-block `bytes` long that lies [`PREFETCH_BYTES`] ahead of `blk`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn prefetch_ahead(blk: *const u8, bytes: usize) {
    for line in (0..bytes).step_by(64) {
        prefetch(blk.wrapping_add(PREFETCH_BYTES + line));
    }
}

/// `Σ scale · q·a` over the 32 bytes `q` and the 32 activations at `a`, as i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scaled_dot(q: __m256i, a: *const i8, scale: u8) -> __m256i {
    let pairs = _mm256_maddubs_epi16(q, load32_i8(a));
    _mm256_madd_epi16(pairs, _mm256_set1_epi16(scale as i16))
}

/// `acc + sumi · (d_w · d_a)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale_into(acc: __m256, sumi: __m256i, d_w: *const u8, d_a: f32) -> __m256 {
    let scale = _mm256_set1_ps(half_at(d_w) * d_a);
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc)
}

/// `(dmin_w · d_a) · Σ_j m_j · (a's sum over sub-block j)`: Q4_K's and Q5_K's minimums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mins_term(blk: &[u8], m: &[u8; 8], a: &Q8Row, b: usize) -> f32 {
    let summ = mins_dot(m, &a.sums[16 * b..16 * b + 16]);
    (half_at(blk.as_ptr().add(2)) * a.d[b]) * summ as f32
}

/// Q4_K · Q8_K. Safety: the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn dot_q4_k(w: &[u8], a: Q8Row) -> f32 {
    let nb = blocks(w, 144, &a);
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0f32);
    let low = _mm256_set1_epi8(15);
    for b in 0..nb {
        let blk = &w[144 * b..144 * b + 144];
        prefetch_ahead(blk.as_ptr(), 144);
        let (sc, m) = scales_mins(&blk[4..16]);
        let (qs, qa) = (blk.as_ptr().add(16), a.qs.as_ptr().add(256 * b));
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = load32(qs.add(32 * c));
            let lo = _mm256_and_si256(q, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            sumi = _mm256_add_epi32(sumi, scaled_dot(lo, qa.add(64 * c), sc[2 * c]));
            sumi = _mm256_add_epi32(sumi, scaled_dot(hi, qa.add(64 * c + 32), sc[2 * c + 1]));
        }
        acc = scale_into(acc, sumi, blk.as_ptr(), a.d[b]);
        mins += mins_term(blk, &m, &a, b);
    }
    hsum_ps(acc) - mins
}

/// Q5_K · Q8_K: as Q4_K, with each sub-block's fifth bits moved from `qh` to bit 4.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn dot_q5_k(w: &[u8], a: Q8Row) -> f32 {
    let nb = blocks(w, 176, &a);
    let (mut acc, mut mins) = (_mm256_setzero_ps(), 0f32);
    let (low, one) = (_mm256_set1_epi8(15), _mm256_set1_epi8(1));
    for b in 0..nb {
        let blk = &w[176 * b..176 * b + 176];
        prefetch_ahead(blk.as_ptr(), 176);
        let (sc, m) = scales_mins(&blk[4..16]);
        let (qs, qa) = (blk.as_ptr().add(48), a.qs.as_ptr().add(256 * b));
        // Bits 2c and 2c+1 of each qh byte belong to sub-blocks 2c and 2c+1; shifting
        // the 16-bit lanes by 2 a step keeps both within their byte.
        let mut qh = load32(blk.as_ptr().add(16));
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = load32(qs.add(32 * c));
            let h_lo = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            let h_hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
            qh = _mm256_srli_epi16(qh, 2);
            let lo = _mm256_or_si256(_mm256_and_si256(q, low), h_lo);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low), h_hi);
            sumi = _mm256_add_epi32(sumi, scaled_dot(lo, qa.add(64 * c), sc[2 * c]));
            sumi = _mm256_add_epi32(sumi, scaled_dot(hi, qa.add(64 * c + 32), sc[2 * c + 1]));
        }
        acc = scale_into(acc, sumi, blk.as_ptr(), a.d[b]);
        mins += mins_term(blk, &m, &a, b);
    }
    hsum_ps(acc) - mins
}

/// One half (128 codes) of a Q6_K super-block against its activations `qa`: four
/// quarters of 32 codes (low nibbles of `ql`, pairs of bits of `qh`), each against two
/// 16-element scales from `scales`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q6_half(ql: *const u8, qh: *const u8, scales: *const u8, qa: *const i8) -> __m256i {
    let (low, three, off) = (
        _mm256_set1_epi8(15),
        _mm256_set1_epi8(3),
        _mm256_set1_epi8(32),
    );
    let (ql0, ql1, mut qh) = (load32(ql), load32(ql.add(32)), load32(qh));
    let lows = [
        _mm256_and_si256(ql0, low),
        _mm256_and_si256(ql1, low),
        _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
        _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
    ];
    let mut sumi = _mm256_setzero_si256();
    for (s, lo) in lows.into_iter().enumerate() {
        let q = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, three), 4));
        qh = _mm256_srli_epi16(qh, 2);
        let x = load32_i8(qa.add(32 * s));
        let pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(q, x), _mm256_maddubs_epi16(off, x));
        let (s0, s1) = (*scales.add(2 * s) as i8, *scales.add(2 * s + 1) as i8);
        let pair_scales = _mm256_set_m128i(_mm_set1_epi16(s1 as i16), _mm_set1_epi16(s0 as i16));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pairs, pair_scales));
    }
    sumi
}

/// Q6_K · Q8_K. Safety: the CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn dot_q6_k(w: &[u8], a: Q8Row) -> f32 {
    let nb = blocks(w, 210, &a);
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        let blk = w.as_ptr().add(210 * b);
        prefetch_ahead(blk, 210);
        let qa = a.qs.as_ptr().add(256 * b);
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let (ql, qh, sc) = (blk.add(64 * h), blk.add(128 + 32 * h), blk.add(192 + 8 * h));
            sumi = _mm256_add_epi32(sumi, q6_half(ql, qh, sc, qa.add(128 * h)));
        }
        acc = scale_into(acc, sumi, blk.add(208), *a.d.get_unchecked(b));
    }
    hsum_ps(acc)
}
