//! The AVX2 + FMA float32 dot products of `f32mv.rs`: eight lanes, lane `l` summing
//! `w[k] · x[k]` for `k ≡ l (mod 8)` with fused multiply-adds, the last partial group of
//! eight loaded under a mask (zeros beyond `K`), then the lanes summed as
//! [`super::simd::hsum_ps`] sums them. Four rows share each load of `x`; each row keeps
//! its own accumulator, so a row's sum is the same whether it is computed in a group of four ([`dot_four`]) or alone ([`dot_one`]).
//!
//! The main loops are inline assembly, the same instructions the intrinsics compile to
//! when optimised: unoptimised (the crate's tests, `cargo test` without `--release`),
//! every intrinsic is a function call and the loop ran 15 to 50 times slower than
//! libtorch's `linear`, when float32 decoding in every model test goes through it.

use std::arch::asm;
use std::arch::x86_64::*;

/// The horizontal sum of eight lanes in [`super::simd::hsum_ps`]'s order (lanes `i` and
/// `i + 4`, then `0 + 2` and `1 + 3`, then those two), its instructions written out so
/// that an unoptimised build makes one call a row rather than six.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum(mut v: __m256) -> f32 {
    asm!(
        "vextractf128 {t}, {v}, 1",
        "vaddps {v:x}, {v:x}, {t}",
        "vmovhlps {t}, {v:x}, {v:x}",
        "vaddps {v:x}, {v:x}, {t}",
        "vmovshdup {t}, {v:x}",
        "vaddss {v:x}, {v:x}, {t}",
        v = inout(ymm_reg) v,
        t = out(xmm_reg) _,
        options(pure, nomem, nostack, preserves_flags),
    );
    _mm256_cvtss_f32(v)
}

/// The mask of `_mm256_maskload_ps` that loads the first `n < 8` lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn first_lanes(n: usize) -> __m256i {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lane)
}

/// `out[r] = Σ_k w[r·K + k] · x[k]` for the four rows of `w` (`4 · K` elements,
/// `K = x.len()`).
///
/// While it reads its four rows it asks the L2 cache for the next four, the `16 · K`
/// bytes after `w`, two lines an iteration (`prefetcht1`; a prefetch past the weights'
/// end is a hint, never a fault): each row is too short (2.3 KB for SmolLM2) for the
/// hardware's stream prefetchers to learn before it ends, and a decoding step's rows
/// come from memory. One thread read 14 GB/s of a `[49152, 576]` weight without it, 21
/// with it (a plain sum: 22); two threads 20 and 37.
///
/// # Safety
/// The CPU has AVX2 and FMA. (The lengths are checked.)
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_four(w: &[f32], x: &[f32], out: &mut [f32; 4]) {
    let k = x.len();
    assert_eq!(w.len(), 4 * k, "four rows of x.len() elements");
    let (w0, w1, w2, w3) = (
        w.as_ptr(),
        w.as_ptr().add(k),
        w.as_ptr().add(2 * k),
        w.as_ptr().add(3 * k),
    );
    let xp = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let whole = k - k % 8;
    if whole > 0 {
        // acc[r] += w_r[j..j + 8] · x[j..j + 8] lane by lane (`vfmadd231ps`: acc + x·w,
        // one rounding, as `_mm256_fmadd_ps`), for j = 0, 8, … < whole.
        asm!(
            "2:",
            "vmovups {xv}, ymmword ptr [{xp} + {j} * 4]",
            "vfmadd231ps {a0}, {xv}, ymmword ptr [{w0} + {j} * 4]",
            "vfmadd231ps {a1}, {xv}, ymmword ptr [{w1} + {j} * 4]",
            "vfmadd231ps {a2}, {xv}, ymmword ptr [{w2} + {j} * 4]",
            "vfmadd231ps {a3}, {xv}, ymmword ptr [{w3} + {j} * 4]",
            "prefetcht1 [{pf}]",
            "prefetcht1 [{pf} + 64]",
            "add {pf}, 128",
            "add {j}, 8",
            "cmp {j}, {whole}",
            "jb 2b",
            xp = in(reg) xp,
            w0 = in(reg) w0,
            w1 = in(reg) w1,
            w2 = in(reg) w2,
            w3 = in(reg) w3,
            whole = in(reg) whole,
            j = inout(reg) 0usize => _,
            pf = inout(reg) w.as_ptr().add(4 * k) => _,
            xv = out(ymm_reg) _,
            a0 = inout(ymm_reg) acc[0],
            a1 = inout(ymm_reg) acc[1],
            a2 = inout(ymm_reg) acc[2],
            a3 = inout(ymm_reg) acc[3],
            options(nostack, readonly),
        );
    }
    if whole < k {
        let j = whole;
        let mask = first_lanes(k - whole);
        let xv = _mm256_maskload_ps(xp.add(j), mask);
        for (a, p) in acc.iter_mut().zip([w0, w1, w2, w3]) {
            *a = _mm256_fmadd_ps(_mm256_maskload_ps(p.add(j), mask), xv, *a);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum(a);
    }
}

/// `Σ_k w[k] · x[k]`, in the order [`dot_four`] takes for each of its rows.
///
/// # Safety
/// The CPU has AVX2 and FMA. (The lengths are checked.)
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn dot_one(w: &[f32], x: &[f32]) -> f32 {
    let k = x.len();
    assert_eq!(w.len(), k, "a row of x.len() elements");
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let whole = k - k % 8;
    if whole > 0 {
        // As in `dot_four`, one row.
        asm!(
            "2:",
            "vmovups {xv}, ymmword ptr [{xp} + {j} * 4]",
            "vfmadd231ps {acc}, {xv}, ymmword ptr [{wp} + {j} * 4]",
            "add {j}, 8",
            "cmp {j}, {whole}",
            "jb 2b",
            xp = in(reg) xp,
            wp = in(reg) wp,
            whole = in(reg) whole,
            j = inout(reg) 0usize => _,
            xv = out(ymm_reg) _,
            acc = inout(ymm_reg) acc,
            options(nostack, readonly),
        );
    }
    if whole < k {
        let j = whole;
        let mask = first_lanes(k - whole);
        let (wv, xv) = (
            _mm256_maskload_ps(wp.add(j), mask),
            _mm256_maskload_ps(xp.add(j), mask),
        );
        acc = _mm256_fmadd_ps(wv, xv, acc);
    }
    hsum(acc)
}
