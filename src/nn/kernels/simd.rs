//! What the x86 kernels share: the one step that differs between the AVX2 and the
//! AVX-512 VNNI sets ([`DotU8I8`]: unsigned bytes times signed bytes, summed four at a
//! time into 32-bit lanes), and the unpacking of 4-bit and 1-bit fields into bytes.
//!
//! Every helper is `#[inline]` with the features of its callers, so that it melts into
//! the `#[target_feature(enable = "avx2,fma")]` kernels (ggml's `mul_sum_us8_pairs_float`,
//! `bytes_from_nibbles_32`, `bytes_from_bits_32` and `hsum_float_8` do the same jobs).

use std::arch::x86_64::*;

/// Lane `i` of the result: `Σ_{k<4} u[4i+k] · s[4i+k]` (u unsigned, s signed bytes).
///
/// Exact for the kernels' operands: AVX2's `maddubs` saturates an i16 pair sum at
/// ±32767, which codes of at most 8 unsigned bits (`|u| ≤ 128`, Q8_0 by the sign trick)
/// times activations in `-127..=127` never reach (`2 · 128 · 127 = 32512`).
pub(crate) trait DotU8I8 {
    /// Whether an i16 pair sum saturates (AVX2's `maddubs`): then unsigned codes must
    /// stay below 129, and Q8_0 takes the sign trick rather than an offset of 128.
    const SATURATES: bool;

    /// The dot product of `u` and `s` in four-byte groups, as i32 lanes.
    ///
    /// # Safety
    /// The CPU must have the features of the implementing set.
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
}

/// AVX2: `maddubs` (pairs to i16) then `madd` with ones (pairs of i16 to i32).
pub(crate) struct Maddubs;

impl DotU8I8 for Maddubs {
    const SATURATES: bool = true;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(u, s);
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }
}

/// The horizontal sum of eight f32 lanes: lanes `i` and `i + 4` first, then pairs.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn hsum_ps(v: __m256) -> f32 {
    let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    let one = _mm_add_ss(pair, _mm_movehdup_ps(pair));
    _mm_cvtss_f32(one)
}

/// 32 bytes at `p`, unaligned. Safety: `p..p + 32` is readable.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// 32 signed bytes at `p`, unaligned. Safety: `p..p + 32` is readable.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load32_i8(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// The half at `p` (little-endian) as f32, by F16C's `vcvtph2ps`. Safety: `p..p + 2`
/// is readable.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn half_at(p: *const u8) -> f32 {
    let h = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// The 32 nibbles of the 16 bytes at `p` as bytes: the low nibbles first (elements
/// 0..16 of a legacy block), the high ones after (elements 16..32). Safety: `p..p + 16`
/// is readable.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn nibbles_32(p: *const u8) -> __m256i {
    let lo = _mm_loadu_si128(p as *const __m128i);
    let hi = _mm_srli_epi16(lo, 4);
    _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(15))
}

/// Byte `j` is 0xFF where bit `j` of `bits` is set, 0 elsewhere: each byte `j` takes
/// byte `j / 8` of `bits`, ORs in every bit but `j % 8`, and compares with all ones.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn bits_32(bits: u32) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1))
}

/// `Σ w·a` for signed codes `w` through an unsigned-by-signed product: `|w|` times `a`
/// with `w`'s sign moved onto it (ggml's sign trick; `|-128|` reads as 128 unsigned).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn dot_signed<D: DotU8I8>(w: __m256i, a: __m256i) -> __m256i {
    D::dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

/// How far ahead of the block being read the kernels ask for the weights: a dozen
/// cache lines, so that a row of a matrix too large for the caches streams in while
/// the previous blocks multiply.
pub(crate) const PREFETCH_BYTES: usize = 768;

/// A hint to bring the line at `p` into the caches. `p` may lie past the weights' end
/// (a prefetch never faults; `wrapping_add` makes no claim that it is in bounds).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn prefetch(p: *const u8) {
    _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
}
