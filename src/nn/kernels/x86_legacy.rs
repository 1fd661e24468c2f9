//! The legacy 32-element types (Q8_0, Q4_0, Q4_1, Q5_0) against Q8_0 activations in
//! 256-bit registers, for either x86 set (`D` is the byte dot product: AVX2's maddubs
//! or AVX-512 VNNI's dpbusd). The technique is ggml's `ggml_vec_dot_q4_0_q8_0` and
//! friends in arch/x86/quants.c.
//!
//! Q4_0, Q4_1 and Q5_0 are all `w = d·q + m` with unsigned codes `q` (`m` = −8d,
//! Q4_1's own `m`, −16d), so their codes go straight into the unsigned-by-signed
//! product and `m` meets the activations through their exact block sum:
//! `Σ w·a = d·Σ q·a + m·Σ a`. (Measured here: the sign trick took Q4_0 about half again
//! the time of this path.) Q8_0 takes the same path with `q = w + 128` and `m = −128d`
//! where the byte product does not saturate (VNNI), and the sign trick under AVX2's
//! `maddubs`, whose i16 pair sums would overflow at `q = 255`.
//!
//! Safety of the pointer reads: each kernel checks once a row that `a` holds as many
//! blocks as `w` ([`blocks`]).
//!
//! Integer parts: a block's eight i32 lanes sum to `Σ q·a` exactly: under the sign
//! trick the reference's `sumi`, otherwise the reference's `sumi` less the offset times
//! the exact `Σ a`. Float order: per block, the lanes as f32 times `d_w · d_a` into
//! eight running f32 lanes (one FMA), even blocks into one set and odd blocks into
//! another (two FMA chains, so that a block need not wait for the last); the offset or
//! minimum term `m · (d_a · Σa)` likewise in two scalar chains; at the end the lanes
//! are summed ([`hsum_ps`]) and the offset chains added.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::simd::{
    bits_32, dot_signed, hsum_ps, load32, load32_i8, nibbles_32, prefetch, DotU8I8, PREFETCH_BYTES,
};

/// A type `w = d·q + m` with unsigned codes: how to read a block's codes and `(d, m)`.
pub(crate) trait Affine {
    /// Bytes a block.
    const BYTES: usize;

    /// The 32 codes of the block at `blk` as unsigned bytes. Safety: AVX2; readable.
    unsafe fn codes(blk: *const u8) -> __m256i;

    /// `(d, m, _, _)` of the block at `blk`. Safety: AVX2 and F16C; readable.
    unsafe fn dm(blk: *const u8) -> __m128;
}

pub(crate) struct Q4_0;
pub(crate) struct Q4_1;
pub(crate) struct Q5_0;
/// Q8_0 as `d·(u − 128)` with `u = w + 128`: for byte products that do not saturate.
pub(crate) struct Q8_0Offset;

/// `(d, d · offset, _, _)` from the block's one half `d` at `blk`: one conversion of the
/// half twice, times `(1, offset)` (exact: the offsets are powers of two).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn d_and_offset(blk: *const u8, offset: f32) -> __m128 {
    let h = (blk as *const u16).read_unaligned() as u32;
    let dd = _mm_cvtph_ps(_mm_cvtsi32_si128((h * 0x10001) as i32));
    _mm_mul_ps(dd, _mm_set_ps(0.0, 0.0, offset, 1.0))
}

impl Affine for Q4_0 {
    const BYTES: usize = 18;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes(blk: *const u8) -> __m256i {
        nibbles_32(blk.add(2))
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn dm(blk: *const u8) -> __m128 {
        d_and_offset(blk, -8.0)
    }
}

impl Affine for Q4_1 {
    const BYTES: usize = 20;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes(blk: *const u8) -> __m256i {
        nibbles_32(blk.add(4))
    }

    /// `d` and `m` are adjacent halves: one conversion.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn dm(blk: *const u8) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128((blk as *const i32).read_unaligned()))
    }
}

impl Affine for Q5_0 {
    const BYTES: usize = 22;

    /// The low nibbles, with the fifth bits spread from `qh` into bit 4 of each byte.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes(blk: *const u8) -> __m256i {
        let qh = u32::from_le((blk.add(2) as *const u32).read_unaligned());
        let high = _mm256_and_si256(bits_32(qh), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles_32(blk.add(6)), high)
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn dm(blk: *const u8) -> __m128 {
        d_and_offset(blk, -16.0)
    }
}

impl Affine for Q8_0Offset {
    const BYTES: usize = 34;

    /// `w + 128` is `w` with its sign bit flipped, read unsigned.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn codes(blk: *const u8) -> __m256i {
        _mm256_xor_si256(load32(blk.add(2)), _mm256_set1_epi8(-128))
    }

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn dm(blk: *const u8) -> __m128 {
        d_and_offset(blk, -128.0)
    }
}

/// The blocks in `w` (of `bytes` each), after checking that `a` has as many: the one
/// bounds check a row, which makes the pointer reads below sound.
#[inline(always)]
fn blocks(w: &[u8], bytes: usize, a: &Q8Row) -> usize {
    let nb = w.len() / bytes;
    assert!(a.qs.len() >= 32 * nb && a.d.len() >= nb && a.ds.len() >= 2 * nb);
    nb
}

/// One block's float step: `(d_w, m)` times `(d_a, d_a·Σa)` gives the codes' scale
/// (lane 0, broadcast into the FMA) and the offset term (lane 1, added to `offs`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn affine_into<B: Affine, D: DotU8I8>(
    (acc, offs): (__m256, __m128),
    w: &[u8],
    a: &Q8Row,
    b: usize,
) -> (__m256, __m128) {
    let blk = w.as_ptr().add(B::BYTES * b);
    prefetch(blk.wrapping_add(PREFETCH_BYTES));
    let sumi = D::dot(B::codes(blk), load32_i8(a.qs.as_ptr().add(32 * b)));
    // `(d_a, d_a·Σa)`: eight bytes, read unaligned (the f32 array guarantees only 4).
    let ds_bits = (a.ds.as_ptr().add(2 * b) as *const i64).read_unaligned();
    let ds = _mm_castsi128_ps(_mm_cvtsi64_si128(ds_bits));
    let prod = _mm_mul_ps(B::dm(blk), ds);
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_broadcastss_ps(prod), acc);
    (acc, _mm_add_ps(offs, prod))
}

/// `Σ_b (d_w d_a Σq·a + m (d_a Σa))` over the row, two blocks a step.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_affine<B: Affine, D: DotU8I8>(w: &[u8], a: &Q8Row) -> f32 {
    let nb = blocks(w, B::BYTES, a);
    let mut even = (_mm256_setzero_ps(), _mm_setzero_ps());
    let mut odd = even;
    let mut b = 0;
    while b + 1 < nb {
        even = affine_into::<B, D>(even, w, a, b);
        odd = affine_into::<B, D>(odd, w, a, b + 1);
        b += 2;
    }
    if b < nb {
        even = affine_into::<B, D>(even, w, a, b);
    }
    let offs = _mm_add_ps(even.1, odd.1);
    hsum_ps(_mm256_add_ps(even.0, odd.0)) + _mm_cvtss_f32(_mm_movehdup_ps(offs))
}

/// One Q8_0 block into `acc`: the sign trick, then `d_w · d_a`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_into<D: DotU8I8>(acc: __m256, w: &[u8], a: &Q8Row, b: usize) -> __m256 {
    let blk = w.as_ptr().add(34 * b);
    prefetch(blk.wrapping_add(PREFETCH_BYTES));
    let sumi = dot_signed::<D>(load32(blk.add(2)), load32_i8(a.qs.as_ptr().add(32 * b)));
    let d_w = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        (blk as *const u16).read_unaligned() as i32,
    )));
    let scale = _mm256_set1_ps(d_w * *a.d.get_unchecked(b));
    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), scale, acc)
}

/// Q8_0 · Q8_0: with a byte product that does not saturate (VNNI), as the affine types
/// with an offset of 128; otherwise the sign trick, two blocks a step. Safety: the CPU
/// has AVX2, FMA, F16C and `D`'s features.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    if !D::SATURATES {
        return dot_affine::<Q8_0Offset, D>(w, &a);
    }
    let nb = blocks(w, 34, &a);
    let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut b = 0;
    while b + 1 < nb {
        even = q8_0_into::<D>(even, w, &a, b);
        odd = q8_0_into::<D>(odd, w, &a, b + 1);
        b += 2;
    }
    if b < nb {
        even = q8_0_into::<D>(even, w, &a, b);
    }
    hsum_ps(_mm256_add_ps(even, odd))
}

/// Q4_0 · Q8_0 (same safety as [`dot_q8_0`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    dot_affine::<Q4_0, D>(w, &a)
}

/// Q4_1 · Q8_0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_1<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    dot_affine::<Q4_1, D>(w, &a)
}

/// Q5_0 · Q8_0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q5_0<D: DotU8I8>(w: &[u8], a: Q8Row) -> f32 {
    dot_affine::<Q5_0, D>(w, &a)
}
