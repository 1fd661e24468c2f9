//! AVX-512 VNNI's byte dot product, `vpdpbusd` on 256-bit registers (EVEX-encoded,
//! so it needs AVX512_VNNI and AVX512VL): one instruction where AVX2 needs three
//! (`maddubs`, `madd`, and the ones it multiplies by). ggml's `mul_sum_us8_pairs_float`
//! takes the same path when `__AVX512VNNI__ && __AVX512VL__`.
//!
//! Written as inline assembly rather than `_mm256_dpbusd_epi32`: the intrinsic needs
//! `#[target_feature(enable = "avx512vnni,avx512vl")]`, and a function with more
//! features than its caller is not inlined into it, while the kernels that call this
//! are the AVX2 ones shared with [`Maddubs`](super::simd::Maddubs) (a call per block
//! would cost more than the instruction saves). The instruction runs only where
//! [`super::KernelSet::detect`] found the features at run time.

use std::arch::asm;
use std::arch::x86_64::*;

use super::simd::DotU8I8;

/// `vpdpbusd ymm`: lane `i` = `Σ_{k<4} u[4i+k] · s[4i+k]`, no saturation.
pub(crate) struct Dpbusd;

impl DotU8I8 for Dpbusd {
    const SATURATES: bool = false;

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        let mut acc = _mm256_setzero_si256();
        asm!(
            "vpdpbusd {acc}, {u}, {s}",
            acc = inout(ymm_reg) acc,
            u = in(ymm_reg) u,
            s = in(ymm_reg) s,
            options(pure, nomem, nostack, preserves_flags),
        );
        acc
    }
}
