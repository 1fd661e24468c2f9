//! Activations quantised per block to 8 bits, as llama.cpp quantises them before its
//! integer dot products: `quantize_row_q8_0_ref` (blocks of 32, for the legacy types)
//! and `quantize_row_q8_K_ref` (blocks of 256, for the k-quants) in ggml-quants.c.

use super::block::BlockType;
use super::half::{f16_to_f32, f32_to_f16};
use crate::error::{Error, Result};

/// `N` rows of activations, each cut into blocks of 32 (Q8_0) or 256 (Q8_K) elements:
/// per block a float scale `d` and 8-bit codes `qs` in `-127..=127` with
/// `x ≈ d · qs`, and per 16 elements the codes' sum (Q8_K's `bsums`, which the
/// k-quants' minimums multiply); for the 32-element blocks also `d · Σ qs` (llama.cpp's
/// Q8_1 `s`), which the legacy types' offsets and minimums multiply.
///
/// Differences from llama.cpp's structs, none of which changes a code: Q8_0's `d` is
/// rounded to a half as there but kept here as the f32 of that half; `d · Σ qs` is kept
/// as an f32 (Q8_1 rounds it to a half); the 16-element sums are kept for both sizes.
#[derive(Clone, Debug)]
pub struct Q8Activations {
    block_len: usize,
    n: usize,
    cols: usize,
    d: Vec<f32>,
    qs: Vec<i8>,
    sums: Vec<i16>,
    ds: Vec<f32>,
}

/// One row of [`Q8Activations`], as the dot products read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Q8Row<'a> {
    /// One scale a block.
    pub d: &'a [f32],
    /// The codes, `cols` of them.
    pub qs: &'a [i8],
    /// The codes' sum per 16 elements.
    pub sums: &'a [i16],
    /// Q8_0 blocks only (empty for Q8_K): per block the pair `d`, `d · Σ codes`
    /// (llama.cpp's Q8_1 `d` and `s`), one 8-byte load in the SIMD kernels.
    pub ds: &'a [f32],
}

impl Q8Activations {
    /// Quantises `x` `(N, cols)` (row-major, `N = x.len() / cols`) for weights of type
    /// `block`: Q8_0 blocks for the legacy types, Q8_K blocks for the k-quants.
    pub fn quantize(block: BlockType, x: &[f32], cols: usize) -> Result<Self> {
        block.check_cols(cols)?;
        if x.is_empty() || !x.len().is_multiple_of(cols) {
            return Err(Error::invalid(
                "x",
                format!(
                    "expected (N, {cols}) elements with N ≥ 1, got {} elements",
                    x.len()
                ),
            ));
        }
        let block_len = if block.is_k_quant() { 256 } else { 32 };
        let mut qs = vec![0i8; x.len()];
        let d: Vec<f32> = x
            .chunks_exact(block_len)
            .zip(qs.chunks_exact_mut(block_len))
            .map(|(xb, qb)| {
                if block_len == 32 {
                    quantize_q8_0(xb, qb)
                } else {
                    quantize_q8_k(xb, qb)
                }
            })
            .collect();
        let sums: Vec<i16> = qs
            .chunks_exact(16)
            .map(|c| c.iter().map(|&q| q as i16).sum())
            .collect();
        let ds = if block_len == 32 {
            d.iter()
                .zip(sums.chunks_exact(2))
                .flat_map(|(&d, s)| [d, d * (s[0] as i32 + s[1] as i32) as f32])
                .collect()
        } else {
            Vec::new()
        };
        Ok(Q8Activations {
            block_len,
            n: x.len() / cols,
            cols,
            d,
            qs,
            sums,
            ds,
        })
    }

    /// Rows (`N`).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Elements a row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Elements a block: 32 (Q8_0) or 256 (Q8_K).
    pub fn block_len(&self) -> usize {
        self.block_len
    }

    /// Row `i` dequantised, `d · qs` (for tests and error bounds).
    pub fn dequantize_row(&self, i: usize) -> Vec<f32> {
        let row = self.row(i);
        row.qs
            .iter()
            .enumerate()
            .map(|(j, &q)| row.d[j / self.block_len] * q as f32)
            .collect()
    }

    /// The scales of row `i`, one a block.
    pub fn scales(&self, i: usize) -> &[f32] {
        self.row(i).d
    }

    /// The codes of row `i`, `cols` of them.
    pub fn codes(&self, i: usize) -> &[i8] {
        self.row(i).qs
    }

    /// The codes' sums over each 16 elements of row `i`.
    pub fn sums(&self, i: usize) -> &[i16] {
        self.row(i).sums
    }

    pub(crate) fn row(&self, i: usize) -> Q8Row<'_> {
        let (b, c) = (self.cols / self.block_len, self.cols);
        let ds = if self.ds.is_empty() {
            &self.ds[..]
        } else {
            &self.ds[2 * i * b..2 * (i + 1) * b]
        };
        Q8Row {
            d: &self.d[i * b..(i + 1) * b],
            qs: &self.qs[i * c..(i + 1) * c],
            sums: &self.sums[i * c / 16..(i + 1) * c / 16],
            ds,
        }
    }
}

/// [`quantize_q8_0_ref`], by the AVX2 quantiser where the CPU has AVX2 and the block
/// takes it (the same bits).
fn quantize_q8_0(x: &[f32], qs: &mut [i8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just checked; the sizes are checked inside.
        if let Some(d) = unsafe { super::x86_activations::quantize_q8_0(x, qs) } {
            return d;
        }
    }
    quantize_q8_0_ref(x, qs)
}

/// ggml's `quantize_row_q8_0_ref`: `d = amax / 127`, `q = round(x · (1/d))` (half away
/// from zero; within ±127 by construction, clamped to keep the kernels' bound), `d`
/// stored as a half. Returns the f32 of that half.
fn quantize_q8_0_ref(x: &[f32], qs: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_half_away(v * id).clamp(-127, 127) as i8;
    }
    f16_to_f32(f32_to_f16(d))
}

/// ggml's `quantize_row_q8_K_ref`: the element of largest magnitude `max` (sign kept)
/// maps to -127, `q = min(127, nearest_int(-127 / max · x))` (ties to even), and
/// `d = 1 / (-127 / max)`, an f32.
fn quantize_q8_k(x: &[f32], qs: &mut [i8]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        qs.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).clamp(-127, 127) as i8;
    }
    1.0 / iscale
}

/// C's `roundf` (half away from zero) for the quantisers' range, without the libm call
/// `f32::round` becomes on x86-64's baseline: `v − trunc(v)` is exact, and NaN gives 0.
#[inline(always)]
fn round_half_away(v: f32) -> i32 {
    let t = v as i32;
    let frac = v - t as f32;
    t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32
}

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5 · 2^23 so that
/// the integer lands in the mantissa's low bits; exact for |v| < 2^22 (the quantisers
/// give |v| ≤ 127; NaN gives a code the callers clamp).
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    let shifted = v + 12_582_912.0;
    (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}
