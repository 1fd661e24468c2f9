//! The legacy 32-element types (Q8_0, Q4_0, Q4_1, Q5_0) against Q8_0 activations in
//! 512-bit registers (AVX-512 F, BW, VL and VNNI): two blocks a register, one
//! `vpdpbusd` for both, and one float step for both. The types are read as in
//! `x86_legacy.rs` (`w = d·q + m` with unsigned codes, `m` against the activations'
//! exact block sums; Q8_0 with `q = w + 128`), two blocks at a time:
//!
//! - the 4-bit codes of two blocks: each block's 16 bytes broadcast to both 128-bit
//!   halves of a 256-bit lane, the upper copy shifted right by 4 (one masked shift),
//!   then the low nibbles kept: block `b`'s 32 codes in bytes 0..32, `b + 1`'s in 32..64,
//!   matching the 64 activation bytes of the two blocks as they lie;
//! - Q5_0's fifth bits: the two `qh` words are a 64-bit mask, bit `j` byte `j`, added as
//!   16 to the codes of the bytes they select (one masked add);
//! - the scales: the two blocks' `(d, m)` pairs in one half-to-float conversion, times
//!   their `(d_a, d_a·Σa)` in one multiply; lane 0's product broadcast to the first
//!   eight integer lanes and lane 2's to the last eight (one permute), one FMA.
//!
//! One row at a time, and no software prefetch: measured on Zen 4 (Gemma 3's Q8_0 head,
//! 180 MB), both a prefetch a dozen lines ahead and two rows interleaved (sharing the
//! activation loads) read the weights more slowly than the hardware prefetcher alone
//! on one plain stream (about 17 against 13 GB/s; two interleaved rows 6 GB/s).
//!
//! A small batch (the server's sequences decoded together, a short prompt) takes its
//! activation rows four at a time against each weight row: each pair of blocks is
//! unpacked once for the four, each row's sums kept in its own registers in the order
//! below, so each product is bit for bit the one its row gets alone. Eight rows of
//! SmolLM2's `[1536, 576]` Q4_1 projection took 0.14 ms instead of 0.22.
//!
//! Safety of the pointer reads: [`rows`] checks once a call that every activation row
//! holds as many blocks as a weight row and every output as many elements as rows.
//!
//! Integer parts: a block's eight i32 lanes sum to `Σ q·a` exactly (as in
//! `x86_legacy.rs`). Float order, per weight row: each pair of blocks' lanes as f32
//! times their block's `d_w · d_a` into sixteen running f32 lanes (one FMA chain; lanes
//! 0..8 take the even blocks, 8..16 the odd ones); an odd last block into lanes 0..8;
//! the offset or minimum terms `m · (d_a · Σa)` into two running f32 (even and odd
//! blocks). At the end lanes `i` and `i + 8` are added, then those eight as
//! [`hsum_ps`] sums them, then the even offset sum plus the odd one is added.

use std::arch::x86_64::*;

use super::activations::Q8Row;
use super::simd::{hsum_ps, load32, load32_i8};
use super::x86_legacy::{Affine, Q8_0Offset, Q4_0, Q4_1, Q5_0};

/// An [`Affine`] type read two blocks at a time.
pub(crate) trait Wide: Affine {
    /// Whether the block starts with one half `d` (the offset `m = OFFSET · d`), rather
    /// than with the halves `d` and `m` (Q4_1).
    const D_ONLY: bool;

    /// `m / d` for the types with one half; 1 for Q4_1, whose `m` is its own.
    const OFFSET: f32;

    /// The 64 codes of the blocks at `blk` and `blk + BYTES` as unsigned bytes.
    /// Safety: AVX-512 F/BW/VL; both blocks readable.
    unsafe fn codes2(blk: *const u8) -> __m512i;
}

/// The nibbles of the 16 bytes at `p0` (block `b`) and at `p1` (block `b + 1`), each
/// block's low nibbles then its high ones.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn nibbles_64(p0: *const u8, p1: *const u8) -> __m512i {
    let b0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(p0 as *const __m128i));
    let b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(p1 as *const __m128i));
    let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(b0), b1);
    // 16-bit lanes 8..16 and 24..32: the upper 128 bits of each block's 256.
    let shifted = _mm512_mask_srli_epi16::<4>(both, 0xff00_ff00, both);
    _mm512_and_si512(shifted, _mm512_set1_epi8(15))
}

/// The four bytes at `p`, unaligned.
#[inline(always)]
unsafe fn read_u32(p: *const u8) -> u32 {
    u32::from_le((p as *const u32).read_unaligned())
}

/// A block's (or two blocks') leading halves as floats, `(d, m)` per block in lanes
/// 0, 1 (and 2, 3), `m = d` for the types with one half (their offset applied at the
/// end): `words` holds each block's first four bytes in its 32-bit lanes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn halves<B: Wide>(words: __m128i) -> __m128 {
    let f = _mm_cvtph_ps(words);
    if B::D_ONLY {
        _mm_moveldup_ps(f)
    } else {
        f
    }
}

impl Wide for Q4_0 {
    const D_ONLY: bool = true;
    const OFFSET: f32 = -8.0;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
    unsafe fn codes2(blk: *const u8) -> __m512i {
        nibbles_64(blk.add(2), blk.add(18 + 2))
    }
}

impl Wide for Q4_1 {
    const D_ONLY: bool = false;
    const OFFSET: f32 = 1.0;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
    unsafe fn codes2(blk: *const u8) -> __m512i {
        nibbles_64(blk.add(4), blk.add(20 + 4))
    }
}

impl Wide for Q5_0 {
    const D_ONLY: bool = true;
    const OFFSET: f32 = -16.0;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
    unsafe fn codes2(blk: *const u8) -> __m512i {
        let low = nibbles_64(blk.add(6), blk.add(22 + 6));
        let fifth = (read_u32(blk.add(22 + 2)) as u64) << 32 | read_u32(blk.add(2)) as u64;
        _mm512_mask_add_epi8(low, fifth, low, _mm512_set1_epi8(16))
    }
}

impl Wide for Q8_0Offset {
    const D_ONLY: bool = true;
    const OFFSET: f32 = -128.0;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
    unsafe fn codes2(blk: *const u8) -> __m512i {
        let both = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(load32(blk.add(2))),
            load32(blk.add(34 + 2)),
        );
        _mm512_xor_si512(both, _mm512_set1_epi8(-128))
    }
}

/// One row's running sums: sixteen lanes of scaled codes, and the offset terms (lane 1
/// the even blocks', lane 3 the odd ones').
#[derive(Clone, Copy)]
struct Acc {
    sum: __m512,
    offs: __m128,
}

/// What blocks `b` and `b + 1` of a row (at `blk`) give every activation row alike: their
/// 64 codes, and their leading halves as floats ([`halves`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,f16c")]
unsafe fn pair_of<B: Wide>(blk: *const u8) -> (__m512i, __m128) {
    let words = _mm_insert_epi32::<1>(
        _mm_cvtsi32_si128(read_u32(blk) as i32),
        read_u32(blk.add(B::BYTES)) as i32,
    );
    (B::codes2(blk), halves::<B>(words))
}

/// A pair of blocks ([`pair_of`]) against their activations `a` and
/// `ds = (d_a₀, d_a₀·Σa₀, d_a₁, d_a₁·Σa₁)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pair_step(acc: Acc, (codes, halves): (__m512i, __m128), a: __m512i, ds: __m128) -> Acc {
    let sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, a);
    let prod = _mm_mul_ps(halves, ds);
    let lanes = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    let scale = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(prod));
    Acc {
        sum: _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), scale, acc.sum),
        offs: _mm_add_ps(acc.offs, prod),
    }
}

/// A row's odd last block (at `blk`) against its 32 activations at `qa` and its
/// `(d_a, d_a·Σa)` at `ds`: into lanes 0..8 and the even offset sum.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn last_step<B: Wide>(acc: Acc, blk: *const u8, qa: *const i8, ds: *const f32) -> Acc {
    let sumi = _mm256_dpbusd_epi32(_mm256_setzero_si256(), B::codes(blk), load32_i8(qa));
    let ds = _mm_castsi128_ps(_mm_cvtsi64_si128((ds as *const i64).read_unaligned()));
    // (d_w·d_a, m·d_a·Σa, _, 0): the 8-byte load leaves lanes 2 and 3 zero.
    let prod = _mm_mul_ps(halves::<B>(_mm_cvtsi32_si128(read_u32(blk) as i32)), ds);
    let codes = _mm512_zextps256_ps512(_mm256_cvtepi32_ps(sumi));
    Acc {
        sum: _mm512_fmadd_ps(codes, _mm512_broadcastss_ps(prod), acc.sum),
        offs: _mm_add_ps(acc.offs, prod),
    }
}

/// The sum of sixteen f32 lanes: lanes `i` and `i + 8` first, then the eight as
/// [`hsum_ps`] adds them.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
pub(crate) unsafe fn hsum_ps16(v: __m512) -> f32 {
    // The upper eight lanes through a 64-bit view (`vextractf32x8` would need DQ).
    let upper = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
    hsum_ps(_mm256_add_ps(
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(upper),
    ))
}

/// The row's dot product from its running sums (the order in the module doc).
#[inline]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn finish<B: Wide>(acc: Acc) -> f32 {
    let offs = _mm_add_ps(acc.offs, _mm_movehl_ps(acc.offs, acc.offs));
    hsum_ps16(acc.sum) + B::OFFSET * _mm_cvtss_f32(_mm_movehdup_ps(offs))
}

/// The dot products of the row of `nb` blocks at `w` with the `G` activation rows `a`:
/// each pair of blocks unpacked once for all `G` (a small batch's rows, or one), each
/// row's sums in its own registers, so each product is the one its row gets alone.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dots<B: Wide, const G: usize>(w: *const u8, nb: usize, a: [&Q8Row; G]) -> [f32; G] {
    let mut acc = [Acc {
        sum: _mm512_setzero_ps(),
        offs: _mm_setzero_ps(),
    }; G];
    let mut b = 0;
    while b + 2 <= nb {
        let pair = pair_of::<B>(w.add(B::BYTES * b));
        for (acc, a) in acc.iter_mut().zip(a) {
            let x = _mm512_loadu_si512(a.qs.as_ptr().add(32 * b) as *const _);
            let d = _mm_loadu_ps(a.ds.as_ptr().add(2 * b));
            *acc = pair_step(*acc, pair, x, d);
        }
        b += 2;
    }
    if b < nb {
        for (acc, a) in acc.iter_mut().zip(a) {
            let (qa, ds) = (a.qs.as_ptr().add(32 * b), a.ds.as_ptr().add(2 * b));
            *acc = last_step::<B>(*acc, w.add(B::BYTES * b), qa, ds);
        }
    }
    acc.map(|acc| finish::<B>(acc))
}

/// The rows and blocks a row of `w` (blocks of `bytes`), after checking what the pointer
/// reads rely on: whole rows of whole blocks, every activation row long enough for `nb`
/// blocks (`fits(row, nb)`, the activations' layout), one output slice per activation
/// row, each with room for every row. Shared with `x86_zmm_k.rs`.
pub(super) fn checked(
    (w, row_bytes, bytes): (&[u8], usize, usize),
    acts: &[Q8Row],
    out: &[&mut [f32]],
    fits: impl Fn(&Q8Row, usize) -> bool,
) -> (usize, usize) {
    assert!(row_bytes > 0 && row_bytes.is_multiple_of(bytes) && w.len().is_multiple_of(row_bytes));
    let (rows, nb) = (w.len() / row_bytes, row_bytes / bytes);
    assert_eq!(acts.len(), out.len());
    for (a, o) in acts.iter().zip(out) {
        assert!(fits(a, nb) && o.len() >= rows);
    }
    (rows, nb)
}

/// The row-range kernel of type `B` ([`super::rows::RowsDot`]). Safety: the CPU has
/// AVX-512 F, BW, VL and VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn rows<B: Wide>(
    w: &[u8],
    row_bytes: usize,
    acts: &[Q8Row<'_>],
    out: &mut [&mut [f32]],
) {
    let (n_rows, nb) = checked((w, row_bytes, B::BYTES), acts, out, |a, nb| {
        a.qs.len() >= 32 * nb && a.ds.len() >= 2 * nb
    });
    for k in 0..n_rows {
        let row = w.as_ptr().add(k * row_bytes);
        // Four activation rows at a time, then the rest one by one (`checked`: as many
        // outputs as activation rows).
        let fours = acts.len() / 4 * 4;
        for i in (0..fours).step_by(4) {
            let y = dots::<B, 4>(
                row,
                nb,
                [&acts[i], &acts[i + 1], &acts[i + 2], &acts[i + 3]],
            );
            for (j, y) in y.into_iter().enumerate() {
                *out.get_unchecked_mut(i + j).get_unchecked_mut(k) = y;
            }
        }
        for (a, o) in acts[fours..].iter().zip(&mut out[fours..]) {
            *o.get_unchecked_mut(k) = dots::<B, 1>(row, nb, [a])[0];
        }
    }
}

/// The row-range kernels of the four legacy types: Q8_0's (as `w + 128`, offset −128).
pub(crate) const Q8_0_ROWS: super::rows::RowsDot = rows::<Q8_0Offset>;
/// Q4_0's.
pub(crate) const Q4_0_ROWS: super::rows::RowsDot = rows::<Q4_0>;
/// Q4_1's.
pub(crate) const Q4_1_ROWS: super::rows::RowsDot = rows::<Q4_1>;
/// Q5_0's.
pub(crate) const Q5_0_ROWS: super::rows::RowsDot = rows::<Q5_0>;
