//! Float32 matrix-vector (and small-batch) products for decoding: `y = x · Wᵀ`, PyTorch's
//! `F.linear(x, w)` without bias, with `W` `[N, K]` row-major float32 borrowed as it
//! lies (a libtorch tensor's data, no copy) and `x` `(M, K)` with `M` a few rows.
//!
//! Why the crate has its own: with `M = 1` libtorch's float32 `linear` goes to MKL's
//! sgemv/sgemm, which on AMD CPUs takes a slow path and reads the weights at half the
//! memory's speed; a decoding step is little else than reading every weight once. Here
//! each thread streams its rows four at a time, one accumulator per (row, input row), so
//! the loads run at memory bandwidth.
//!
//! Sets, chosen by [`KernelSet`] (by CPU feature, never by CPU name):
//! - `scalar`: the reference below, plain Rust, on every CPU;
//! - `avx2`, `avx512-vnni` and `avx512`: the AVX2 + FMA kernel (`x86_f32mv.rs`). No
//!   512-bit path: the product is bound by memory, which 256-bit FMAs outrun several
//!   times over.
//!
//! Summation order (the results differ from libtorch's and from transformers' in the
//! last bits, within the float32 tolerances the parity tests use): the scalar reference
//! adds `w[k] · x[k]` for `k = 0, 1, …` into one f32, a multiply then an add. The AVX2
//! kernel keeps 8 lanes, lane `l` taking `k ≡ l (mod 8)` with fused multiply-adds (the
//! last partial group zero-filled), then adds the lanes `i` and `i + 4`, then pairs
//! ([`super::simd::hsum_ps`]). Each output depends only on its own row and input row,
//! never on how rows are split over threads or blocked.

use super::split::useful_threads;
use super::{run_on_pool, KernelSet};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most input rows a call takes: the kernels are for decoding (one token per
/// sequence, a few sequences); more rows are a matrix product, libtorch's job.
pub const MAX_F32_ROWS: usize = 8;

/// Rows a kernel call computes together.
const ROW_BLOCK: usize = 4;

/// Rows a piece of work rounds to: 16 outputs are one 64-byte line, so no two threads
/// write the same cache line of `y`.
const PIECE_ALIGN: usize = 16;

/// Pieces of work a thread, as in `split.rs`: a late thread leaves its share to others.
const PIECES_PER_THREAD: usize = 4;

/// `y = x · wᵀ` with this CPU's fastest set: `w` `[rows, cols]` row-major, `x`
/// `(M, cols)` with `1 ≤ M ≤` [`MAX_F32_ROWS`], `y` `(M, rows)`; output rows split over
/// at most `threads` ([`useful_threads`]).
pub fn matmul_f32(w: &[f32], rows: usize, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
    matmul_f32_with(KernelSet::detect(), w, rows, x, y, threads)
}

/// [`matmul_f32`] with a chosen kernel set (an error where this CPU lacks it).
pub fn matmul_f32_with(
    set: KernelSet,
    w: &[f32],
    rows: usize,
    x: &[f32],
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    set.check_available()?;
    if rows == 0 || w.is_empty() || !w.len().is_multiple_of(rows) {
        return Err(Error::invalid(
            "w",
            format!(
                "expected rows x cols elements with rows, cols > 0, got {} for {rows} rows",
                w.len()
            ),
        ));
    }
    let cols = w.len() / rows;
    let m = x.len() / cols;
    if x.len() != m * cols || !(1..=MAX_F32_ROWS).contains(&m) {
        return Err(Error::invalid(
            "x",
            format!(
                "expected (M, {cols}) elements with 1 <= M <= {MAX_F32_ROWS}, got {}",
                x.len()
            ),
        ));
    }
    if y.len() != m * rows {
        return Err(Error::invalid(
            "y",
            format!(
                "expected (M, rows) = ({m}, {rows}) elements, got {}",
                y.len()
            ),
        ));
    }
    let kernel = Kernel::of(set);
    let threads = useful_threads(std::mem::size_of_val(w), m, threads);
    let pieces = if threads == 1 {
        1
    } else {
        threads * PIECES_PER_THREAD
    };
    let chunk = rows.div_ceil(pieces).next_multiple_of(PIECE_ALIGN);
    let out = OutPtr(y.as_mut_ptr());
    let next = AtomicUsize::new(0);
    run_on_pool(threads, &|| loop {
        let start = next.fetch_add(1, Ordering::Relaxed) * chunk;
        if start >= rows {
            return;
        }
        let end = (start + chunk).min(rows);
        // SAFETY: the features of `set` were checked above; each piece `start..end` is
        // taken by one thread only (the counter), so its outputs `y[i, start..end]` are
        // written by that thread alone, and `y` outlives the call (`run_on_pool` returns
        // when every thread is done).
        unsafe { kernel.rows(w, cols, x, m, start, end, &out, rows) };
    });
    Ok(())
}

/// `y`'s data, shared by the threads of one call: each writes only its own rows.
struct OutPtr(*mut f32);

// SAFETY: the threads write disjoint elements (see `matmul_f32_with`).
unsafe impl Sync for OutPtr {}

/// The kernels of one set: four rows at a time, and one for the last rows.
#[derive(Clone, Copy)]
struct Kernel {
    /// `out[r] = Σ_k w[r·K + k] · x[k]` for `r < 4`, `w` four rows of `K = x.len()`.
    four: unsafe fn(&[f32], &[f32], &mut [f32; ROW_BLOCK]),
    /// `Σ_k w[k] · x[k]` in the same order as `four` takes for each of its rows.
    one: unsafe fn(&[f32], &[f32]) -> f32,
}

impl Kernel {
    fn of(set: KernelSet) -> Kernel {
        match set {
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx2 | KernelSet::Avx512Vnni | KernelSet::Avx512 => Kernel {
                four: super::x86_f32mv::dot_four,
                one: super::x86_f32mv::dot_one,
            },
            _ => Kernel {
                four: dot_four,
                one: dot_one,
            },
        }
    }

    /// `y[i, r] = Σ_k w[r, k] · x[i, k]` for rows `start..end` and every `i < m`.
    ///
    /// # Safety
    /// The CPU has the set's features; `y` points to `(m, rows)` elements of which this
    /// call alone writes `y[i, start..end]`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows(
        self,
        w: &[f32],
        cols: usize,
        x: &[f32],
        m: usize,
        start: usize,
        end: usize,
        y: &OutPtr,
        rows: usize,
    ) {
        let mut r = start;
        let mut four = [0f32; ROW_BLOCK];
        while r + ROW_BLOCK <= end {
            let block = &w[r * cols..(r + ROW_BLOCK) * cols];
            for (i, xi) in x.chunks_exact(cols).enumerate().take(m) {
                (self.four)(block, xi, &mut four);
                for (j, v) in four.iter().enumerate() {
                    *y.0.add(i * rows + r + j) = *v;
                }
            }
            r += ROW_BLOCK;
        }
        for r in r..end {
            let row = &w[r * cols..(r + 1) * cols];
            for (i, xi) in x.chunks_exact(cols).enumerate().take(m) {
                *y.0.add(i * rows + r) = (self.one)(row, xi);
            }
        }
    }
}

/// [`dot`] on each of four rows (as [`Kernel::four`] wants it).
unsafe fn dot_four(w: &[f32], x: &[f32], out: &mut [f32; ROW_BLOCK]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
        *o = dot(row, x);
    }
}

/// [`dot`] (as [`Kernel::one`] wants it).
unsafe fn dot_one(w: &[f32], x: &[f32]) -> f32 {
    dot(w, x)
}

/// The reference: `Σ_k w[k] · x[k]` in order, one f32, a multiply then an add.
pub(crate) fn dot(w: &[f32], x: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        sum += a * b;
    }
    sum
}
