//! Q4_K and Q6_K against Q8_K activations in 512-bit registers (AVX-512 F, BW and VL),
//! for the `avx512` set: the technique of `x86_kquants.rs` (codes unpacked to bytes,
//! `maddubs` with the activations, `madd` with the sub-block scales) on 64 codes an
//! instruction.
//!
//! Q6_K: each half's 64 `ql` bytes are one register whose low nibbles are quarters 0 | 1
//! and high nibbles quarters 2 | 3, the 32 `qh` bytes broadcast to both 256-bit halves
//! and shifted by 0 | 2 (4 | 6) to give each quarter its two high bits; the codes go in
//! unsigned and the offset of 32 comes off as `32 · Σ_g sc_g · (a's sum over group g)`
//! (the activations' 16-element sums, one `madd`).
//!
//! A super-block's 128 code bytes are two registers; each register's low nibbles hold
//! sub-blocks `4h` and `4h + 2`, its high nibbles `4h + 1` and `4h + 3` (bytes
//! `32c..32c + 32` hold sub-block `2c` low and `2c + 1` high). Two 128-bit-lane shuffles
//! put sub-blocks `4h, 4h + 1` and `4h + 2, 4h + 3` side by side, matching the
//! activations as they lie (64 bytes each); the scales, widened to 16 bits once a
//! super-block, are spread to `[sc_j × 16, sc_{j+1} × 16]` by one permute. The 6-bit
//! scales and minimums are unpacked four at a time in 32-bit words, and the minimums
//! meet the activations' sub-block sums in one `madd`.
//!
//! Safety of the pointer reads: [`rows`] checks once a call that every activation row
//! holds as many super-blocks as a weight row and every output as many elements as rows.
//!
//! Integer parts: a super-block's sixteen i32 lanes sum to the scalar reference's `sumi`
//! (`maddubs` pair sums reach at most 2 · 63 · 127, no saturation). Float order, per
//! weight row: each super-block's lanes as f32 times `d_w · d_a` into sixteen running
//! f32 lanes (one FMA); Q4_K's minimum terms `(dmin_w · d_a) · summ` into one running f32.
//! At the end lanes `i` and `i + 8` are added, those eight summed as `hsum_ps` does, and
//! Q4_K's minimums' sum subtracted.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::simd::half_at;
use super::x86_zmm::{checked, hsum_ps16};

/// The eight 6-bit scales and eight 6-bit minimums of the 12 bytes at `s`, as the bytes
/// of two words (scale or minimum `j` byte `j`): `kquants::scales_mins` on 32-bit words,
/// four sub-blocks a step (ggml's `utmp` and `kmask1..3` in `ggml_vec_dot_q4_K_q8_K`).
#[inline(always)]
unsafe fn scales_mins(s: *const u8) -> (u64, u64) {
    let word = |i: usize| u32::from_le((s.add(4 * i) as *const u32).read_unaligned());
    let (s0, s1, s2) = (word(0), word(1), word(2));
    let (six, four, two) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x0303_0303);
    let sc_hi = (s2 & four) | ((s0 >> 6) & two) << 4;
    let m_hi = ((s2 >> 4) & four) | ((s1 >> 6) & two) << 4;
    let sc = (s0 & six) as u64 | (sc_hi as u64) << 32;
    (sc, (s1 & six) as u64 | (m_hi as u64) << 32)
}

/// `Σ_j m_j · (a's sum over sub-block j)` from the minimums `m` (byte `j`) and the 16
/// sums of 16 at `sums`, exactly, as `kquants::mins_dot`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn mins_dot(m: u64, sums: *const i16) -> i32 {
    let m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(m as i64));
    let (lo, hi) = (
        _mm_loadu_si128(sums as *const __m128i),
        _mm_loadu_si128(sums.add(8) as *const __m128i),
    );
    // Sub-block sums: two 16-element sums of at most 16 · 127 each, within i16.
    let four = _mm_madd_epi16(m16, _mm_hadd_epi16(lo, hi));
    let two = _mm_add_epi32(four, _mm_unpackhi_epi64(four, four));
    _mm_cvtsi128_si32(_mm_add_epi32(two, _mm_shuffle_epi32::<1>(two)))
}

/// `Σ_j sc_j · Σ q·a` over sub-block `j` of the super-block at `blk` against its 256
/// activations at `qa`, as sixteen i32 lanes; `sc` holds scale `j` in byte `j`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn q4_k_block(blk: *const u8, qa: *const i8, sc: u64) -> __m512i {
    let low = _mm512_set1_epi8(15);
    let scales = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    // Word index `j` in the first 16 lanes, `j + 1` in the last 16.
    let pair = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(1));
    let mut sumi = _mm512_setzero_si512();
    for h in 0..2 {
        let q = _mm512_loadu_si512(blk.add(16 + 64 * h) as *const _);
        let lo = _mm512_and_si512(q, low);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), low);
        let first = _mm512_shuffle_i64x2::<0b01_00_01_00>(lo, hi);
        let second = _mm512_shuffle_i64x2::<0b11_10_11_10>(lo, hi);
        for (k, codes) in [first, second].into_iter().enumerate() {
            let j = 4 * h + 2 * k;
            let x = _mm512_loadu_si512(qa.add(32 * j) as *const _);
            let idx = _mm512_add_epi16(pair, _mm512_set1_epi16(j as i16));
            let s = _mm512_permutexvar_epi16(idx, scales);
            let pairs = _mm512_maddubs_epi16(codes, x);
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(pairs, s));
        }
    }
    sumi
}

/// Q4_K · Q8_K for the row of `nb` super-blocks at `w`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn dot_q4_k(w: *const u8, nb: usize, a: &Q8Row) -> f32 {
    let (mut acc, mut mins) = (_mm512_setzero_ps(), 0f32);
    for b in 0..nb {
        let blk = w.add(144 * b);
        let (sc, m) = scales_mins(blk.add(4));
        let d_a = *a.d.get_unchecked(b);
        let sumi = q4_k_block(blk, a.qs.as_ptr().add(256 * b), sc);
        let scale = _mm512_set1_ps(half_at(blk) * d_a);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), scale, acc);
        let summ = mins_dot(m, a.sums.as_ptr().add(16 * b));
        mins += (half_at(blk.add(2)) * d_a) * summ as f32;
    }
    hsum_ps16(acc) - mins
}

/// Word `i` is `i / 8`: a Q6_K register's four 16-element scale groups, eight i16
/// pair sums each.
const GROUPS: [i16; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
];

/// Q6_K's `Σ_g sc_g · Σ (q − 32)·a` over the 16-element groups `g` of the super-block at
/// `blk` against its 256 activations at `qa` and their 16 group sums at `sums`, as
/// sixteen i32 lanes: the codes unsigned against the activations, then
/// `32 · Σ_g sc_g · (a's sum over g)` taken off in one `madd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn q6_k_block(blk: *const u8, qa: *const i8, sums: *const i16) -> __m512i {
    let (low, three) = (_mm512_set1_epi8(15), _mm512_set1_epi8(3));
    let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192) as *const __m128i));
    let scales = _mm512_castsi256_si512(sc16);
    let groups = _mm512_loadu_si512(GROUPS.as_ptr() as *const _);
    // Shifts of `qh` for quarters 0 | 1 (bits 0-1 | 2-3) and 2 | 3 (bits 4-5 | 6-7).
    let sh01 = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(2));
    let sh23 = _mm512_add_epi16(sh01, _mm512_set1_epi16(4));
    let mut sumi = _mm512_setzero_si512();
    for h in 0..2 {
        let ql = _mm512_loadu_si512(blk.add(64 * h) as *const _);
        let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.add(128 + 32 * h) as *const _));
        let quarters = [
            (_mm512_and_si512(ql, low), sh01),
            (_mm512_and_si512(_mm512_srli_epi16::<4>(ql), low), sh23),
        ];
        for (k, (lo4, sh)) in quarters.into_iter().enumerate() {
            let hi2 = _mm512_and_si512(_mm512_srlv_epi16(qh, sh), three);
            let codes = _mm512_or_si512(lo4, _mm512_slli_epi16::<4>(hi2));
            let x = _mm512_loadu_si512(qa.add(128 * h + 64 * k) as *const _);
            let idx = _mm512_add_epi16(groups, _mm512_set1_epi16((8 * h + 4 * k) as i16));
            let s = _mm512_permutexvar_epi16(idx, scales);
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_maddubs_epi16(codes, x), s));
        }
    }
    let group_sums = _mm256_loadu_si256(sums as *const __m256i);
    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sc16, group_sums));
    _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(offset))
}

/// Q6_K · Q8_K for the row of `nb` super-blocks at `w`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn dot_q6_k(w: *const u8, nb: usize, a: &Q8Row) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for b in 0..nb {
        let blk = w.add(210 * b);
        let (qa, sums) = (a.qs.as_ptr().add(256 * b), a.sums.as_ptr().add(16 * b));
        let sumi = q6_k_block(blk, qa, sums);
        let scale = _mm512_set1_ps(half_at(blk.add(208)) * *a.d.get_unchecked(b));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), scale, acc);
    }
    hsum_ps16(acc)
}

/// [`checked`] for Q8_K activations: 256 codes, one scale and 16 sums a super-block.
fn fits_q8_k(a: &Q8Row, nb: usize) -> bool {
    a.qs.len() >= 256 * nb && a.d.len() >= nb && a.sums.len() >= 16 * nb
}

/// The row-range kernel of Q4_K ([`super::rows::RowsDot`]). Safety: the CPU has
/// AVX-512 F, BW and VL, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn q4_k_rows(
    w: &[u8],
    row_bytes: usize,
    acts: &[Q8Row<'_>],
    out: &mut [&mut [f32]],
) {
    let (n_rows, nb) = checked((w, row_bytes, 144), acts, out, fits_q8_k);
    for k in 0..n_rows {
        let row = w.as_ptr().add(k * row_bytes);
        for (a, o) in acts.iter().zip(out.iter_mut()) {
            *o.get_unchecked_mut(k) = dot_q4_k(row, nb, a);
        }
    }
}

/// The row-range kernel of Q6_K (as [`q4_k_rows`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn q6_k_rows(
    w: &[u8],
    row_bytes: usize,
    acts: &[Q8Row<'_>],
    out: &mut [&mut [f32]],
) {
    let (n_rows, nb) = checked((w, row_bytes, 210), acts, out, fits_q8_k);
    for k in 0..n_rows {
        let row = w.as_ptr().add(k * row_bytes);
        for (a, o) in acts.iter().zip(out.iter_mut()) {
            *o.get_unchecked_mut(k) = dot_q6_k(row, nb, a);
        }
    }
}
