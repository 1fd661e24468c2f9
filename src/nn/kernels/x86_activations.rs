//! The Q8_0 activation quantiser (`activations.rs`'s `quantize_q8_0`) in 256-bit
//! registers (AVX2), for every x86 set: the same operations lane by lane, so the same
//! bits. `amax` is a maximum (exact in any order), `x · (1/d)` the same IEEE product,
//! and the rounding half away from zero the scalar's own steps (`trunc`, the exact
//! fraction, ±1 where it reaches ±0.5). Blocks whose arithmetic leaves the plain case
//! (a NaN, an infinity, a subnormal `d`) are left to the scalar quantiser.

use std::arch::x86_64::*;

/// Quantises the 32 floats of `x` into `qs` as the scalar quantiser does and returns
/// the f32 of `d` rounded to a half, or `None` (nothing written) for a block with a NaN
/// or an infinity, or whose `d` is subnormal. Safety: the CPU has AVX2; `x` and `qs`
/// hold 32 elements (checked).
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_q8_0(x: &[f32], qs: &mut [i8]) -> Option<f32> {
    assert!(x.len() == 32 && qs.len() == 32);
    let v = [0, 8, 16, 24].map(|o| _mm256_loadu_ps(x.as_ptr().add(o)));
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (mut amax, mut nan) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for vi in v {
        amax = _mm256_max_ps(amax, _mm256_and_ps(vi, abs));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(vi, vi));
    }
    if _mm256_movemask_ps(nan) != 0 {
        return None;
    }
    let four = _mm_max_ps(
        _mm256_castps256_ps128(amax),
        _mm256_extractf128_ps::<1>(amax),
    );
    let two = _mm_max_ps(four, _mm_movehl_ps(four, four));
    let amax = _mm_cvtss_f32(_mm_max_ss(two, _mm_movehdup_ps(two)));
    let d = amax / 127.0;
    if d != 0.0 && !d.is_normal() {
        return None;
    }
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let q = v.map(|vi| {
        let t = _mm256_mul_ps(vi, id);
        let whole = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
        let frac = _mm256_sub_ps(t, whole);
        let up = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), one);
        let down = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_LE_OQ>(frac, _mm256_sub_ps(half, one)),
            one,
        );
        let r = _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(whole, up), down));
        _mm256_max_epi32(
            _mm256_min_epi32(r, _mm256_set1_epi32(127)),
            _mm256_set1_epi32(-127),
        )
    });
    // Saturating packs (values already within ±127) interleave 32-bit groups; the
    // permute puts the bytes back in order.
    let bytes = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, ordered);
    Some(super::half::f16_to_f32(super::half::f32_to_f16(d)))
}
