//! The crate's own matrix-vector (and small-batch matrix) kernels over GGUF's block
//! types as stored: llama.cpp's technique (ggml-cpu's `quants.c` and
//! `arch/x86/quants.c`) in Rust with `std::arch`.
//!
//! The weight stays in the file's blocks ([`QuantMatrix`] borrows them); the
//! activations are quantised per block to 8 bits ([`Q8Activations`]: Q8_0 blocks of 32
//! for the legacy types, Q8_K blocks of 256 with 16-element sums for the k-quants);
//! each block's codes multiply as integers, and one float multiply-add a block applies
//! the scales. Four kernel sets, chosen at run time by CPU feature, never by CPU name
//! ([`KernelSet::detect`]):
//!
//! - `scalar`: plain Rust, the reference (`legacy.rs`, `kquants.rs`), on every CPU;
//! - `avx2`: AVX2 + FMA + F16C, `maddubs` (`x86_legacy.rs`, `x86_kquants.rs`);
//! - `avx512-vnni`: AVX-512 VNNI + VL, `vpdpbusd` on 256-bit registers for the legacy
//!   types (`avx512.rs`), the AVX2 k-quant kernels;
//! - `avx512`: AVX-512 F + BW + VL + VNNI, the legacy types two blocks a 512-bit
//!   register (`x86_zmm.rs`), Q4_K and Q6_K 64 codes a register (`x86_zmm_k.rs`), the
//!   AVX2 kernel for Q5_K.
//!
//! Each kernel takes a range of rows in one call (`rows.rs`: the loop over the rows
//! inside the `#[target_feature]` function, no call through a pointer per row).
//! Every set computes each block's integer sums exactly (a SIMD kernel may split the
//! reference's `Σ (q − 8)·a` into `Σ q·a` and `8·Σ a`, both exact); the sets differ
//! only in the order of the float accumulation, documented in each file.
//! Rows are split across the threads of a persistent pool (`split.rs`, `pool.rs`: parked
//! workers woken per product, no thread spawned per call); the caller passes the
//! kernels' thread setting ([`threads()`]: libtorch's unless set apart from it by
//! [`dedicate_threads`], as `--quant gguf` does).
//!
//! Beside them, float32 weights as they lie (`f32mv.rs`, [`matmul_f32`]): decoding's
//! float32 matrix-vector products, on the same sets and the same pool.

mod activations;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod bench;
mod block;
mod dequant;
mod f32mv;
mod half;
mod huge_pages;
mod kquants;
mod legacy;
mod pool;
mod rows;
#[cfg(target_arch = "x86_64")]
mod simd;
mod split;
mod threads;
#[cfg(target_arch = "x86_64")]
mod x86_activations;
#[cfg(target_arch = "x86_64")]
mod x86_f32mv;
#[cfg(target_arch = "x86_64")]
mod x86_kquants;
#[cfg(target_arch = "x86_64")]
mod x86_legacy;
#[cfg(target_arch = "x86_64")]
mod x86_zmm;
#[cfg(target_arch = "x86_64")]
mod x86_zmm_k;

pub use activations::Q8Activations;
pub use bench::{bench_matvec, ns_per_call, random_blocks};
pub use block::{BlockType, QuantMatrix};
pub use dequant::dequantize;
pub use f32mv::{matmul_f32, matmul_f32_with, MAX_F32_ROWS};
pub use half::{f16_to_f32, f32_to_f16};
pub use huge_pages::{HugePageBytes, COPY_CHUNK};
pub use split::{map_on_pool, useful_threads, MIN_BYTES_PER_THREAD};
pub use threads::{dedicate_threads, set_threads, threads, ThreadSettings};

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use activations::Q8Row;
use rows::RowsDot;

/// A family of kernels, one for each [`BlockType`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSet {
    /// Plain Rust: the reference, on every CPU.
    Scalar,
    /// x86 AVX2 with FMA and F16C (every AVX2 CPU has both).
    Avx2,
    /// x86 AVX-512 with VNNI and VL (256-bit `vpdpbusd`), plus what
    /// [`Avx2`](Self::Avx2) needs.
    Avx512Vnni,
    /// x86 AVX-512 F, BW, VL and VNNI in 512-bit registers for the legacy types (two
    /// blocks a register), plus what [`Avx512Vnni`](Self::Avx512Vnni) needs.
    Avx512,
}

impl KernelSet {
    /// Every set, slowest first.
    pub const ALL: [KernelSet; 4] = [
        KernelSet::Scalar,
        KernelSet::Avx2,
        KernelSet::Avx512Vnni,
        KernelSet::Avx512,
    ];

    /// The name `attn doctor` prints: `"scalar"`, `"avx2"`, `"avx512-vnni"`, `"avx512"`.
    pub fn name(self) -> &'static str {
        match self {
            KernelSet::Scalar => "scalar",
            KernelSet::Avx2 => "avx2",
            KernelSet::Avx512Vnni => "avx512-vnni",
            KernelSet::Avx512 => "avx512",
        }
    }

    /// Whether this CPU has the set's features (checked at run time).
    pub fn is_available(self) -> bool {
        match self {
            KernelSet::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx512Vnni => {
                KernelSet::Avx2.is_available()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx512 => {
                KernelSet::Avx512Vnni.is_available() && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// `Ok` where this CPU has the set's features, else the typed error every product
    /// that takes a chosen set gives (argument `set`).
    pub(crate) fn check_available(self) -> Result<()> {
        if self.is_available() {
            Ok(())
        } else {
            Err(Error::invalid(
                "set",
                format!("this CPU lacks the features of the {self} kernels"),
            ))
        }
    }

    /// The sets this CPU runs, slowest (scalar) first.
    pub fn available() -> Vec<KernelSet> {
        KernelSet::ALL
            .into_iter()
            .filter(|s| s.is_available())
            .collect()
    }

    /// The fastest set this CPU runs, no faster than [`limit_kernel_set`]'s.
    pub fn detect() -> KernelSet {
        let limit = LIMIT.load(Ordering::Relaxed);
        KernelSet::ALL
            .into_iter()
            .rev()
            .find(|s| *s as usize <= limit && s.is_available())
            .unwrap_or(KernelSet::Scalar)
    }

    /// The set of this [`KernelSet::name`], if any.
    pub fn from_name(name: &str) -> Option<KernelSet> {
        KernelSet::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The row-range kernel of this set for `block`.
    fn rows_dot(self, block: BlockType) -> RowsDot {
        match self {
            KernelSet::Scalar => scalar_rows(block),
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx2 => x86_rows::<simd::Maddubs>(block),
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx512Vnni => x86_rows::<avx512::Dpbusd>(block),
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx512 => match block {
                BlockType::Q8_0 => x86_zmm::Q8_0_ROWS,
                BlockType::Q4_0 => x86_zmm::Q4_0_ROWS,
                BlockType::Q4_1 => x86_zmm::Q4_1_ROWS,
                BlockType::Q5_0 => x86_zmm::Q5_0_ROWS,
                BlockType::Q4_K => x86_zmm_k::q4_k_rows,
                BlockType::Q6_K => x86_zmm_k::q6_k_rows,
                _ => x86_rows::<avx512::Dpbusd>(block),
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => scalar_rows(block),
        }
    }
}

impl std::fmt::Display for KernelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The fastest set [`KernelSet::detect`] may choose, as its place in [`KernelSet::ALL`]
/// (the sets are declared in that order): the last, unless [`limit_kernel_set`] lowered it.
static LIMIT: AtomicUsize = AtomicUsize::new(KernelSet::ALL.len() - 1);

/// Makes [`KernelSet::detect`] (so every product that does not name its set) choose
/// `set` or a slower one, process-wide: `attn bench --kernels avx2` times an AVX2-only
/// CPU's kernels on an AVX-512 one. Still by feature: an error where this CPU lacks
/// `set`'s.
pub fn limit_kernel_set(set: KernelSet) -> Result<()> {
    set.check_available()?;
    LIMIT.store(set as usize, Ordering::Relaxed);
    Ok(())
}

/// The name of the kernel set this CPU gets, for `attn doctor`.
pub fn describe() -> &'static str {
    KernelSet::detect().name()
}

fn scalar_rows(block: BlockType) -> RowsDot {
    match block {
        BlockType::Q8_0 => rows::scalar_q8_0,
        BlockType::Q4_0 => rows::scalar_q4_0,
        BlockType::Q4_1 => rows::scalar_q4_1,
        BlockType::Q5_0 => rows::scalar_q5_0,
        BlockType::Q4_K => rows::scalar_q4_k,
        BlockType::Q5_K => rows::scalar_q5_k,
        BlockType::Q6_K => rows::scalar_q6_k,
    }
}

#[cfg(target_arch = "x86_64")]
fn x86_rows<D: simd::DotU8I8>(block: BlockType) -> RowsDot {
    match block {
        BlockType::Q8_0 => rows::x86_q8_0::<D>,
        BlockType::Q4_0 => rows::x86_q4_0::<D>,
        BlockType::Q4_1 => rows::x86_q4_1::<D>,
        BlockType::Q5_0 => rows::x86_q5_0::<D>,
        BlockType::Q4_K => rows::x86_q4_k,
        BlockType::Q5_K => rows::x86_q5_k,
        BlockType::Q6_K => rows::x86_q6_k,
    }
}

/// Runs `job` on the caller's thread and on up to `threads - 1` parked workers of the
/// kernels' persistent pool woken for it (the caller's alone when the pool is busy, as
/// inside another call's job); `job` shares the work out itself. Returns when every
/// run has finished.
pub fn run_on_pool(threads: usize, job: &(dyn Fn() + Sync)) {
    pool::Pool::global().run(threads, job);
}

/// `y = x · wᵀ` with this CPU's fastest kernels: `x` `(N, cols)` row-major, `y`
/// `(N, rows)` (PyTorch's `F.linear(x, w)`), output rows split over at most `threads`
/// ([`useful_threads`]: no more than the work pays for).
pub fn matmul(w: &QuantMatrix, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
    matmul_with(KernelSet::detect(), w, x, y, threads)
}

/// [`matmul`] with `N = 1`: `x` `(cols,)`, `y` `(rows,)`.
pub fn matvec(w: &QuantMatrix, x: &[f32], y: &mut [f32], threads: usize) -> Result<()> {
    if x.len() != w.cols() {
        return Err(Error::invalid(
            "x",
            format!("expected {} elements (cols), got {}", w.cols(), x.len()),
        ));
    }
    matmul(w, x, y, threads)
}

/// [`matmul`] with a chosen kernel set (an error where this CPU lacks it); at most
/// `threads`, as [`useful_threads`] finds worth spawning.
pub fn matmul_with(
    set: KernelSet,
    w: &QuantMatrix,
    x: &[f32],
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    let acts = Q8Activations::quantize(w.block(), x, w.cols())?;
    let threads = useful_threads(w.data().len(), acts.n(), threads);
    matmul_quantized(set, w, &acts, y, threads)
}

/// `y` `(N, rows)` from activations already quantised (with [`Q8Activations::quantize`]
/// for `w`'s block type): the integer kernels alone, on exactly `threads` threads (one
/// range of rows each; the caller's thread takes the first).
pub fn matmul_quantized(
    set: KernelSet,
    w: &QuantMatrix,
    acts: &Q8Activations,
    y: &mut [f32],
    threads: usize,
) -> Result<()> {
    set.check_available()?;
    let act_block = if w.block().is_k_quant() { 256 } else { 32 };
    if acts.cols() != w.cols() || acts.block_len() != act_block {
        return Err(Error::invalid(
            "acts",
            format!(
                "expected activations of {} elements in blocks of {act_block} (for {}), \
                 got {} in blocks of {}",
                w.cols(),
                w.block(),
                acts.cols(),
                acts.block_len()
            ),
        ));
    }
    if y.len() != acts.n() * w.rows() {
        return Err(Error::invalid(
            "y",
            format!(
                "expected (N, rows) = ({}, {}) elements, got {}",
                acts.n(),
                w.rows(),
                y.len()
            ),
        ));
    }
    let kernel = set.rows_dot(w.block());
    let act_rows: Vec<Q8Row> = (0..acts.n()).map(|i| acts.row(i)).collect();
    let row_bytes = w.row_bytes();
    split::for_rows(w.rows(), y, threads, |start, parts| {
        let len = parts.first().map_or(0, |p| p.len());
        let rows = &w.data()[start * row_bytes..(start + len) * row_bytes];
        // SAFETY: the set's features were checked above (the kernels check the sizes).
        unsafe { kernel(rows, row_bytes, &act_rows, parts) }
    });
    Ok(())
}
