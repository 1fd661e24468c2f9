//! Random blocks with sane scales, and the time of one matrix-vector product: for the
//! kernels' tests and for `attn bench`.

use std::time::{Duration, Instant};

use super::block::{BlockType, QuantMatrix};
use super::half::f32_to_f16;
use super::{matmul_with, KernelSet};
use crate::error::Result;

/// SplitMix64: a small deterministic generator, so a seed names the same blocks on
/// every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// `n_blocks` blocks of type `block` from `seed`: every code byte random, every scale a
/// random half in `[0.001, 0.05)` (a minimum, Q4_1's `m`, of either sign), so that no
/// scale is NaN or infinite.
pub fn random_blocks(block: BlockType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut bytes: Vec<u8> = (0..n_blocks * block.block_bytes())
        .map(|_| rng.next() as u8)
        .collect();
    // Offsets of the half scales in a block: (offset, may be negative).
    let halves: &[(usize, bool)] = match block {
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 => &[(0, false)],
        BlockType::Q4_1 => &[(0, false), (2, true)],
        BlockType::Q4_K | BlockType::Q5_K => &[(0, false), (2, false)],
        BlockType::Q6_K => &[(208, false)],
    };
    for blk in bytes.chunks_exact_mut(block.block_bytes()) {
        for &(at, signed) in halves {
            let mut v = rng.uniform(0.001, 0.05);
            if signed && rng.next() & 1 == 1 {
                v = -v;
            }
            blk[at..at + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
        }
    }
    bytes
}

/// Nanoseconds per call of `f`: three calls to warm up, then batches of calls (each
/// batch at least about a millisecond) for about 0.3 s, and the fastest batch's time per
/// call. The fastest rather than the mean, because other processes on the machine can
/// only slow a batch down.
pub fn ns_per_call(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let once = Instant::now();
    f();
    let per_batch = (1_000_000 / once.elapsed().as_nanos().max(1)).clamp(1, 10_000) as u32;
    let (start, mut best) = (Instant::now(), f64::INFINITY);
    while start.elapsed() < Duration::from_millis(300) {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    best
}

/// Nanoseconds per call ([`ns_per_call`]) of `y = W x` with `W` `[rows, cols]` of
/// random `block` blocks, activations quantised inside each call, on `threads` threads
/// with `set`.
pub fn bench_matvec(
    set: KernelSet,
    block: BlockType,
    rows: usize,
    cols: usize,
    threads: usize,
) -> Result<f64> {
    let n_blocks = rows * (cols / block.block_len().max(1));
    let data = random_blocks(block, n_blocks, 0x5eed);
    let w = QuantMatrix::new(block, rows, cols, &data)?;
    let mut rng = SplitMix(7);
    let x: Vec<f32> = (0..cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut y = vec![0f32; rows];
    // Checked once, so that the timed calls cannot fail.
    matmul_with(set, &w, &x, &mut y, threads)?;
    Ok(ns_per_call(|| {
        let _ = matmul_with(set, &w, &x, &mut y, threads);
    }))
}
