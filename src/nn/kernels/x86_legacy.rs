//! The legacy 32-element types (Q8_0, Q4_0, Q4_1, Q5_0) against Q8_0 activations in
//! 256-bit registers, one block per step, for either x86 set (`D` is the byte dot
//! product: AVX2's maddubs or AVX-512 VNNI's dpbusd). The technique is ggml's
//! `ggml_vec_dot_q4_0_q8_0` and friends in arch/x86/quants.c.
//!
//! Safety of the pointer reads: each kernel checks once a row that `a` holds as many
//! blocks as `w` ([`blocks`]); `w` is whole blocks by construction.
//!
//! Integer parts: a block's eight i32 lanes sum to the scalar reference's `sumi`
//! exactly. Float order: each block's lanes are converted to f32 and multiplied by
//! `d_w · d_a` into eight running f32 lanes (one FMA), even blocks into one set of
//! lanes and odd blocks into another (two chains of FMAs, so that one block's FMA need
//! not wait for the last's); the two are added and the lanes summed at the end
//! ([`hsum_ps`]). Q4_1's `m_w · (d_a · Σa)` is summed in a scalar, block after block,
//! and added last.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::simd::{bits_32, dot_signed, half_at, hsum_ps, load32, load32_i8, nibbles_32, DotU8I8};

/// A legacy block type: its size, and its integer dot product with 32 activations.
trait Legacy {
    /// Bytes a block; the half scale `d` is always its first two.
    const BYTES: usize;

    /// The block at `blk` times the 32 activations at `qa`, as eight i32 lanes whose sum
    /// is the reference's `sumi`. Safety: AVX2 and `D`'s features; both readable.
    unsafe fn sumi<D: DotU8I8>(blk: *const u8, qa: __m256i) -> __m256i;
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;

impl Legacy for Q8_0 {
    const BYTES: usize = 34;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn sumi<D: DotU8I8>(blk: *const u8, qa: __m256i) -> __m256i {
        dot_signed::<D>(load32(blk.add(2)), qa)
    }
}

impl Legacy for Q4_0 {
    const BYTES: usize = 18;

    /// Codes minus 8, then the sign trick.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn sumi<D: DotU8I8>(blk: *const u8, qa: __m256i) -> __m256i {
        let qw = _mm256_sub_epi8(nibbles_32(blk.add(2)), _mm256_set1_epi8(8));
        dot_signed::<D>(qw, qa)
    }
}

impl Legacy for Q4_1 {
    const BYTES: usize = 20;

    /// Unsigned codes straight into the byte product (the minimum is added apart).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn sumi<D: DotU8I8>(blk: *const u8, qa: __m256i) -> __m256i {
        D::dot(nibbles_32(blk.add(4)), qa)
    }
}

impl Legacy for Q5_0 {
    const BYTES: usize = 22;

    /// The fifth bits spread from `qh` into bit 4 of each byte, minus 16, then the sign
    /// trick.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn sumi<D: DotU8I8>(blk: *const u8, qa: __m256i) -> __m256i {
        let qh = u32::from_le((blk.add(2) as *const u32).read_unaligned());
        let high = _mm256_and_si256(bits_32(qh), _mm256_set1_epi8(0x10));
        let qw = _mm256_or_si256(nibbles_32(blk.add(6)), high);
        dot_signed::<D>(_mm256_sub_epi8(qw, _mm256_set1_epi8(16)), qa)
    }
}

/// The blocks in `w` (of `bytes` each), after checking that `a` has as many: the one
/// bounds check a row, which makes the pointer reads below sound.
#[inline(always)]
fn blocks(w: &[u8], bytes: usize, a: &Q8Row) -> usize {
    let nb = w.len() / bytes;
    assert!(a.qs.len() >= 32 * nb && a.d.len() >= nb && a.sums.len() >= 2 * nb);
    nb
}

/// `acc + sumi · (d_w · d_a)` for block `b`: a block's one float step.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_into<B: Legacy, D: DotU8I8>(acc: __m256, w: &[u8], a: &Q8Row, b: usize) -> __m256 {
    let blk = w.as_ptr().add(B::BYTES * b);
    let sumi = B::sumi::<D>(blk, load32_i8(a.qs.as_ptr().add(32 * b)));
    let scale = _mm256_set1_ps(half_at(blk) * *a.d.get_unchecked(b));
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc)
}

/// `Σ_b d_w d_a sumi_b` over the row, two blocks a step.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_blocks<B: Legacy, D: DotU8I8>(w: &[u8], a: &Q8Row) -> f32 {
    let nb = blocks(w, B::BYTES, a);
    let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut b = 0;
    while b + 1 < nb {
        even = block_into::<B, D>(even, w, a, b);
        odd = block_into::<B, D>(odd, w, a, b + 1);
        b += 2;
    }
    if b < nb {
        even = block_into::<B, D>(even, w, a, b);
    }
    hsum_ps(_mm256_add_ps(even, odd))
}

/// Q8_0 · Q8_0. Safety: the CPU has AVX2, FMA, F16C and `D`'s features.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    dot_blocks::<Q8_0, D>(w, &a)
}

/// Q4_0 · Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    dot_blocks::<Q4_0, D>(w, &a)
}

/// Q4_1 · Q8_0: the codes' part, then the minimum through the activations' block sums.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_1<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    let codes = dot_blocks::<Q4_1, D>(w, &a);
    let mut mins = 0f32;
    for (b, blk) in w.chunks_exact(Q4_1::BYTES).enumerate() {
        let sum_a = a.sums[2 * b] as i32 + a.sums[2 * b + 1] as i32;
        mins += half_at(blk.as_ptr().add(2)) * (a.d[b] * sum_a as f32);
    }
    codes + mins
}

/// Q5_0 · Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q5_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    dot_blocks::<Q5_0, D>(w, &a)
}
