//! One token's float32 operations on plain slices, beside the libtorch modules they
//! mirror: the decoding step of a model whose projections run on the crate's block
//! kernels (`models::llama::decode_step`) does the rest of its layer here rather than
//! in some hundred libtorch operators, each of which spends microseconds on dispatch
//! and allocation for a few hundred floats (about 6 of Gemma 3 270M's 23 ms a token on
//! one thread, before this path; llama.cpp's graph does the same work in place).
//!
//! [`rms_norm`] is [`super::RmsNorm`]'s forward, [`rotate`] is [`super::apply_rotary`]
//! (the same products and sums in the same order: bit for bit), [`attend`] one query's
//! `scaled_dot_product_attention` with grouped key/value heads. The mean square, the
//! scores and the softmax sum in their own order (eight lanes, then the lanes), so
//! results differ from libtorch's in the last bits; tests/token_ops.rs holds each to
//! float32's `assert_close` tolerances against the libtorch module.

use crate::error::{Error, Result};
use crate::nn::kernels;

/// `Σ x_i²` in float32, eight running lanes (summed pairwise at the end).
fn sum_squares(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v * v;
        }
    }
    for (l, v) in lanes.iter_mut().zip(tail) {
        *l += v * v;
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + e) + (b + f)) + ((c + g) + (d + h))
}

/// `LlamaRMSNorm` (or, with `unit_offset`, `Gemma3RMSNorm`) of each `E`-vector of `x`
/// into `out` (same length, a multiple of `E = weight.len()`): `x · r · w` with
/// `r = 1 / sqrt(mean(x²) + eps)` and `w` = `weight` or `1 + weight`, all in float32.
pub fn rms_norm(x: &[f32], weight: &[f32], unit_offset: bool, eps: f64, out: &mut [f32]) {
    let e = weight.len();
    debug_assert!(e > 0 && x.len() == out.len() && x.len().is_multiple_of(e));
    for (xs, ys) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        // mean(x²) + eps, rsqrt: the float32 ops of the module, eps as a float32 scalar.
        let r = 1.0 / (sum_squares(xs) / e as f32 + eps as f32).sqrt();
        for ((y, &v), &w) in ys.iter_mut().zip(xs).zip(weight) {
            let scale = if unit_offset { 1.0 + w } else { w };
            *y = v * r * scale;
        }
    }
}

/// [`rms_norm`] in place: each `E`-vector of `x` normed (a head's query or key, say).
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], unit_offset: bool, eps: f64) {
    let e = weight.len();
    debug_assert!(e > 0 && x.len().is_multiple_of(e));
    for xs in x.chunks_exact_mut(e) {
        let r = 1.0 / (sum_squares(xs) / e as f32 + eps as f32).sqrt();
        for (v, &w) in xs.iter_mut().zip(weight) {
            let scale = if unit_offset { 1.0 + w } else { w };
            *v = *v * r * scale;
        }
    }
}

/// `apply_rotary_pos_emb` of one position in place: each `D`-vector of `x` (a head)
/// becomes `x · cos + rotate_half(x) · sin`, `cos` and `sin` of length D.
pub fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let d = cos.len();
    let half = d / 2;
    debug_assert!(d.is_multiple_of(2) && sin.len() == d && x.len().is_multiple_of(d));
    for head in x.chunks_exact_mut(d) {
        let (x1, x2) = head.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            // rotate_half(x) = (-x2, x1); (-b)·s is -(b·s) exactly.
            x1[i] = a * cos[i] + (-b) * sin[i];
            x2[i] = b * cos[half + i] + a * sin[half + i];
        }
    }
}

/// `x += y`, element by element.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `x *= y`, element by element (the gated MLP's product).
pub fn mul_in_place(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (a, &b) in x.iter_mut().zip(y) {
        *a *= b;
    }
}

/// One key/value head's cached rows: `n` keys and `n` values of `D` floats each,
/// row-major (the first `n` slots of a cache buffer's head).
#[derive(Clone, Copy, Debug)]
pub struct KvHead<'a> {
    /// `(n, D)`.
    pub keys: &'a [f32],
    /// `(n, D)`.
    pub values: &'a [f32],
}

/// The scores' scale and soft-capping of [`attend`].
#[derive(Clone, Copy, Debug)]
pub struct AttendOptions {
    /// Multiplies `q · k`.
    pub scale: f32,
    /// `c · tanh(s / c)` of each scaled score (Gemma 2's `attn_logit_softcapping`).
    pub softcap: Option<f32>,
}

/// One query position's attention: `q` `(H, D)` over `heads.len()` = Hkv key/value
/// heads of `n` rows each, query head `h` reading key/value head `h / (H / Hkv)`
/// (`enable_gqa`); every row is visible (the caller passes the window's rows). Writes
/// `out` `(H, D)`; `scores` is scratch. The scores of a head's `G` queries come from
/// the crate's float32 matrix-vector kernel ([`kernels::matmul_f32`], its order), the
/// softmax subtracts the maximum, and the values are summed in row order (a value row
/// read once for the G queries), then divided by the weights' sum.
pub fn attend(
    q: &[f32],
    heads: &[KvHead<'_>],
    d: usize,
    options: AttendOptions,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) -> Result<()> {
    let hkv = heads.len();
    if d == 0 || hkv == 0 || !q.len().is_multiple_of(d * hkv) || out.len() != q.len() {
        return Err(Error::invalid(
            "q",
            format!(
                "expected (H, D) with D = {d} and H a multiple of Hkv = {hkv}, out alike; \
                 got {} and {} floats",
                q.len(),
                out.len()
            ),
        ));
    }
    let group = q.len() / d / hkv;
    for (g, head) in heads.iter().enumerate() {
        let n = head.keys.len() / d;
        if n == 0 || head.keys.len() != n * d || head.values.len() != n * d {
            return Err(Error::invalid(
                "heads",
                format!("expected n >= 1 keys and values of D = {d}, head {g}"),
            ));
        }
        let qs = &q[g * group * d..(g + 1) * group * d]; // (G, D)
        scores.clear();
        scores.resize(group * n, 0.0); // (G, n)
        for (qi, si) in qs
            .chunks(kernels::MAX_F32_ROWS * d)
            .zip(scores.chunks_mut(kernels::MAX_F32_ROWS * n))
        {
            kernels::matmul_f32(head.keys, n, qi, si, 1)?;
        }
        let outs = &mut out[g * group * d..(g + 1) * group * d];
        for s in scores.chunks_exact_mut(n) {
            softmax_weights(s, options);
        }
        outs.fill(0.0);
        weighted_values(scores, head.values, d, outs);
        for (s, y) in scores.chunks_exact(n).zip(outs.chunks_exact_mut(d)) {
            let total = s.iter().fold(0f32, |t, &p| t + p);
            for v in y.iter_mut() {
                *v /= total;
            }
        }
    }
    Ok(())
}

/// Scores in place -> `exp(s' - max s')` of the scaled (and capped) scores `s'`, not
/// yet divided by their sum.
fn softmax_weights(s: &mut [f32], options: AttendOptions) {
    let mut max = f32::NEG_INFINITY;
    for v in s.iter_mut() {
        *v *= options.scale;
        if let Some(c) = options.softcap {
            *v = c * (*v / c).tanh();
        }
        max = max.max(*v);
    }
    for v in s.iter_mut() {
        *v = (*v - max).exp();
    }
}

/// `y_j += Σ_s p_j[s] · v_s` for a head's G query rows `out` `(G, D)` with weights `p`
/// `(G, n)` over the value rows `values` `(n, D)`: each value row read once for all G,
/// each row's sum in row order (the same sums as one query row at a time).
fn weighted_values(p: &[f32], values: &[f32], d: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected just now.
        return unsafe { weighted_values_avx2(p, values, d, out) };
    }
    weighted_values_plain(p, values, d, out);
}

#[inline(always)]
fn weighted_values_plain(p: &[f32], values: &[f32], d: usize, out: &mut [f32]) {
    let n = values.len() / d;
    for (s, v) in values.chunks_exact(d).enumerate() {
        for (j, y) in out.chunks_exact_mut(d).enumerate() {
            let a = p[j * n + s];
            for (acc, &u) in y.iter_mut().zip(v) {
                *acc += a * u;
            }
        }
    }
}

/// [`weighted_values_plain`] compiled for AVX2 (eight lanes; the same products and sums).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weighted_values_avx2(p: &[f32], values: &[f32], d: usize, out: &mut [f32]) {
    weighted_values_plain(p, values, d, out)
}
