//! The legacy 32-element types (Q8_0, Q4_0, Q4_1, Q5_0) against Q8_0 activations in
//! 256-bit registers, one block per step, for either x86 set (`D` is the byte dot
//! product: AVX2's maddubs or AVX-512 VNNI's dpbusd). The technique is ggml's
//! `ggml_vec_dot_q4_0_q8_0` and friends in arch/x86/quants.c.
//!
//! Integer parts: a block's eight i32 lanes sum to the scalar reference's `sumi`
//! exactly. Float order: each block's lanes are converted to f32 and multiplied by
//! `d_w · d_a` into eight running f32 lanes (one FMA); the lanes are summed at the end
//! ([`hsum_ps`]); Q4_1's `m_w · (d_a · Σa)` goes into a separate scalar added last.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::half::f16_at;
use super::simd::{bits_32, dot_signed, hsum_ps, load32, load32_i8, nibbles_32, DotU8I8};

/// Q8_0 · Q8_0. Safety: the CPU has AVX2, FMA and `D`'s features; `w` holds whole
/// blocks and `a` at least as many.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q8_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, blk) in w.chunks_exact(34).enumerate() {
        let qw = load32(&blk[2..34]);
        let qa = load32_i8(&a.qs[32 * b..32 * b + 32]);
        let sumi = dot_signed::<D>(qw, qa);
        let scale = _mm256_set1_ps(f16_at(blk, 0) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
    }
    hsum_ps(acc)
}

/// Q4_0 · Q8_0: codes minus 8, then the sign trick.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q4_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let eight = _mm256_set1_epi8(8);
    for (b, blk) in w.chunks_exact(18).enumerate() {
        let qw = _mm256_sub_epi8(nibbles_32(&blk[2..18]), eight);
        let qa = load32_i8(&a.qs[32 * b..32 * b + 32]);
        let sumi = dot_signed::<D>(qw, qa);
        let scale = _mm256_set1_ps(f16_at(blk, 0) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
    }
    hsum_ps(acc)
}

/// Q4_1 · Q8_0: unsigned codes straight into the byte product; the minimum through the
/// activations' block sum.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q4_1<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (b, blk) in w.chunks_exact(20).enumerate() {
        let qw = nibbles_32(&blk[4..20]);
        let qa = load32_i8(&a.qs[32 * b..32 * b + 32]);
        let sumi = D::dot(qw, qa);
        let scale = _mm256_set1_ps(f16_at(blk, 0) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
        let sum_a = a.sums[2 * b] as i32 + a.sums[2 * b + 1] as i32;
        mins += f16_at(blk, 2) * (a.d[b] * sum_a as f32);
    }
    hsum_ps(acc) + mins
}

/// Q5_0 · Q8_0: the fifth bits spread from `qh` into bit 4 of each byte, minus 16, then
/// the sign trick.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_q5_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let (sixteen, bit4) = (_mm256_set1_epi8(16), _mm256_set1_epi8(0x10));
    for (b, blk) in w.chunks_exact(22).enumerate() {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let high = _mm256_and_si256(bits_32(qh), bit4);
        let qw = _mm256_sub_epi8(_mm256_or_si256(nibbles_32(&blk[6..22]), high), sixteen);
        let qa = load32_i8(&a.qs[32 * b..32 * b + 32]);
        let sumi = dot_signed::<D>(qw, qa);
        let scale = _mm256_set1_ps(f16_at(blk, 0) * a.d[b]);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc);
    }
    hsum_ps(acc)
}
