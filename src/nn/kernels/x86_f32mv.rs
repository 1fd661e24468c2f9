//! The AVX2 + FMA float32 dot products of `f32mv.rs`: eight lanes, lane `l` summing
//! `w[k] · x[k]` for `k ≡ l (mod 8)` with fused multiply-adds, the last partial group of
//! eight loaded under a mask (zeros beyond `K`), then [`hsum_ps`]. Four rows share each
//! load of `x`; each row keeps its own accumulator, so a row's sum is the same whether
//! it is computed in a group of four ([`dot_four`]) or alone ([`dot_one`]).

use std::arch::x86_64::*;

use super::simd::hsum_ps;

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
    let mut j = 0;
    while j < whole {
        let xv = _mm256_loadu_ps(xp.add(j));
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w0.add(j)), xv, acc[0]);
        acc[1] = _mm256_fmadd_ps(_mm256_loadu_ps(w1.add(j)), xv, acc[1]);
        acc[2] = _mm256_fmadd_ps(_mm256_loadu_ps(w2.add(j)), xv, acc[2]);
        acc[3] = _mm256_fmadd_ps(_mm256_loadu_ps(w3.add(j)), xv, acc[3]);
        j += 8;
    }
    if whole < k {
        let mask = first_lanes(k - whole);
        let xv = _mm256_maskload_ps(xp.add(j), mask);
        for (a, p) in acc.iter_mut().zip([w0, w1, w2, w3]) {
            *a = _mm256_fmadd_ps(_mm256_maskload_ps(p.add(j), mask), xv, *a);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum_ps(a);
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
    let mut j = 0;
    while j < whole {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(j)), _mm256_loadu_ps(xp.add(j)), acc);
        j += 8;
    }
    if whole < k {
        let mask = first_lanes(k - whole);
        let (wv, xv) = (
            _mm256_maskload_ps(wp.add(j), mask),
            _mm256_maskload_ps(xp.add(j), mask),
        );
        acc = _mm256_fmadd_ps(wv, xv, acc);
    }
    hsum_ps(acc)
}
