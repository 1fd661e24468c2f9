//! The block kernels (src/nn/kernels): every SIMD set this CPU runs against the scalar
//! reference (integer parts exactly, floats within the rounding of their documented
//! order), the scalar reference against a plain f32 dequantise-then-dot, the
//! dequantiser and the Q8_0 activation quantiser against gguf-py
//! (tests/fixtures/kernels, made by scripts/kernels_reference.py), thread and batch
//! splits, and the size checks.
//!
//! Every test that compares sets iterates over `KernelSet::available()` and prints the
//! sets it ran: scalar and AVX2 run on any x86 CPU with AVX2, AVX-512 VNNI where the CPU
//! has it, and the printed line says which.

use std::path::PathBuf;

use tch_attention::nn::kernels::{
    self, dequantize, f16_to_f32, f32_to_f16, random_blocks, BlockType, HugePageBytes, KernelSet,
    Q8Activations, QuantMatrix,
};

/// Rows not a multiple of anything, and 1.
const ROWS: [usize; 4] = [1, 5, 13, 37];

/// Blocks a row: for the legacy types up to 7 (tails of every SIMD step), for the
/// k-quants up to 3.
fn blocks_per_row(block: BlockType) -> &'static [usize] {
    if block.is_k_quant() {
        &[1, 2, 3]
    } else {
        &[1, 2, 3, 7]
    }
}

/// SplitMix64, seeded per case, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
}

fn sets_run() -> Vec<KernelSet> {
    let sets = KernelSet::available();
    let names: Vec<_> = sets.iter().map(|s| s.name()).collect();
    println!("kernel sets run on this CPU: {}", names.join(", "));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(sets.contains(&KernelSet::Avx2), "AVX2 present but not run");
    }
    sets
}

/// The byte ranges of a block's codes (everything but the half scales, and for the
/// k-quants but the 6- or 8-bit sub-block scales too).
fn code_bytes(block: BlockType) -> std::ops::Range<usize> {
    match block {
        BlockType::Q8_0 => 2..34,
        BlockType::Q4_0 => 2..18,
        BlockType::Q4_1 => 4..20,
        BlockType::Q5_0 => 2..22,
        BlockType::Q4_K => 16..144,
        BlockType::Q5_K => 16..176,
        BlockType::Q6_K => 0..192,
    }
}

/// Offsets of the half scales in a block.
fn half_scales(block: BlockType) -> &'static [usize] {
    match block {
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q5_0 => &[0],
        BlockType::Q4_1 | BlockType::Q4_K | BlockType::Q5_K => &[0, 2],
        BlockType::Q6_K => &[208],
    }
}

fn dequantized(block: BlockType, data: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; data.len() / block.block_bytes() * block.block_len()];
    dequantize(block, data, &mut out).expect("whole blocks");
    out
}

/// Per element, the size of the terms the kernels add: `|ŵ| + |ẑ|` with `ẑ` the block's
/// weights at codes zero (its minimum or offset), since a kernel sums the code part and
/// the minimum part separately and they may cancel.
fn magnitudes(block: BlockType, data: &[u8]) -> Vec<f32> {
    let mut zeroed = data.to_vec();
    for blk in zeroed.chunks_exact_mut(block.block_bytes()) {
        blk[code_bytes(block)].fill(0);
    }
    let (w, z) = (dequantized(block, data), dequantized(block, &zeroed));
    w.iter().zip(&z).map(|(a, b)| a.abs() + b.abs()).collect()
}

/// Random floats `(n, cols)`, one row in three scaled by 1000 so that blocks differ in
/// range.
fn random_x(rng: &mut Rng, n: usize, cols: usize) -> Vec<f32> {
    (0..n * cols)
        .map(|i| {
            let v = rng.uniform(-1.0, 1.0);
            if (i / cols) % 3 == 2 {
                v * 1000.0
            } else {
                v
            }
        })
        .collect()
}

fn run(set: KernelSet, w: &QuantMatrix, acts: &Q8Activations, threads: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; acts.n() * w.rows()];
    kernels::matmul_quantized(set, w, acts, &mut y, threads).expect("valid sizes");
    y
}

/// With every half scale a power of two and activations whose blocks each hold ±127
/// (so `d_a = ±1`), every float step of every set is exact: the results are the
/// integer sums times powers of two, and must be equal bit for bit. Codes are random
/// over their whole range; activations small elsewhere (|a| ≤ 3) and Q6_K's 8-bit
/// scales within ±16, so that no partial sum passes 2^24.
#[test]
fn integer_parts_equal_the_scalar_reference_exactly() {
    let sets = sets_run();
    for block in BlockType::ALL {
        for &nb in blocks_per_row(block) {
            for rows in ROWS {
                let seed = (block.ggml_type() as u64) << 32 | (nb as u64) << 16 | rows as u64;
                let mut rng = Rng(seed);
                let cols = nb * block.block_len();
                let mut data = random_blocks(block, rows * nb, seed);
                for blk in data.chunks_exact_mut(block.block_bytes()) {
                    for &at in half_scales(block) {
                        let v = 2f32.powi(-rng.int(0, 6))
                            * if rng.next() & 1 == 1 { -1.0 } else { 1.0 };
                        blk[at..at + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
                    }
                    if block == BlockType::Q6_K {
                        for s in &mut blk[192..208] {
                            *s = rng.int(-16, 16) as i8 as u8;
                        }
                    }
                }
                let act_block = if block.is_k_quant() { 256 } else { 32 };
                let mut x: Vec<f32> = (0..2 * cols).map(|_| rng.int(-3, 3) as f32).collect();
                for b in x.chunks_exact_mut(act_block) {
                    b[rng.int(0, act_block as i32 - 1) as usize] =
                        if rng.next() & 1 == 1 { 127.0 } else { -127.0 };
                }
                let w = QuantMatrix::new(block, rows, cols, &data).unwrap();
                let acts = Q8Activations::quantize(block, &x, cols).unwrap();
                assert!(acts.scales(0).iter().all(|d| d.abs() == 1.0));
                let reference = run(KernelSet::Scalar, &w, &acts, 1);
                for &set in &sets {
                    let y = run(set, &w, &acts, 1);
                    assert_eq!(
                        y, reference,
                        "{set} {block} rows {rows} cols {cols} seed {seed:#x}"
                    );
                }
            }
        }
    }
}

/// Random blocks and floats: every set within the rounding of its float order of the
/// scalar reference. Both add the same exact integers times the same scales; each
/// rounds a few times per block at f32's 2^-24 relative, so the bound is
/// `1e-5 · Σ (|ŵ| + |ẑ|)·|x̂|` (about 80 roundings' worth).
#[test]
fn every_set_matches_the_scalar_reference_on_random_blocks() {
    let sets = sets_run();
    for block in BlockType::ALL {
        for &nb in blocks_per_row(block) {
            for rows in ROWS {
                let seed =
                    0xabc0_0000 ^ (block.ggml_type() as u64) << 24 ^ (nb as u64) << 8 ^ rows as u64;
                let mut rng = Rng(seed);
                let cols = nb * block.block_len();
                let data = random_blocks(block, rows * nb, seed);
                let w = QuantMatrix::new(block, rows, cols, &data).unwrap();
                let x = random_x(&mut rng, 3, cols);
                let acts = Q8Activations::quantize(block, &x, cols).unwrap();
                let mag = magnitudes(block, &data);
                let reference = run(KernelSet::Scalar, &w, &acts, 1);
                for &set in &sets {
                    let y = run(set, &w, &acts, 2);
                    for i in 0..3 {
                        let xq = acts.dequantize_row(i);
                        for r in 0..rows {
                            let m = &mag[r * cols..(r + 1) * cols];
                            let s: f32 = m.iter().zip(&xq).map(|(a, b)| a * b.abs()).sum();
                            let (got, want) = (y[i * rows + r], reference[i * rows + r]);
                            assert!(
                                (got - want).abs() <= 1e-5 * s,
                                "{set} {block} rows {rows} cols {cols} (n {i}, row {r}): {got} vs {want}, bound {}",
                                1e-5 * s
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The scalar reference against `Σ ŵ·x` in plain f32 on the unquantised activations:
/// the difference is the activations' quantisation, `|x − x̂| ≤ 0.6·|d_a|` per element
/// (half a step, plus Q8_0's rounding of `d` to a half: 127 · 2^-11 of a step), so the
/// bound is `Σ |ŵ|·0.6·|d_a| + 1e-5 · Σ (|ŵ| + |ẑ|)·|x|`.
#[test]
fn scalar_reference_matches_dequantise_then_dot() {
    for block in BlockType::ALL {
        for &nb in blocks_per_row(block) {
            let (rows, cols) = (13, nb * block.block_len());
            let seed = 0x5ca1 ^ (block.ggml_type() as u64) << 20 ^ nb as u64;
            let mut rng = Rng(seed);
            let data = random_blocks(block, rows * nb, seed);
            let w = QuantMatrix::new(block, rows, cols, &data).unwrap();
            let x = random_x(&mut rng, 3, cols);
            let acts = Q8Activations::quantize(block, &x, cols).unwrap();
            let (wd, mag) = (dequantized(block, &data), magnitudes(block, &data));
            let y = run(KernelSet::Scalar, &w, &acts, 1);
            for i in 0..3 {
                let (xi, d) = (&x[i * cols..(i + 1) * cols], acts.scales(i));
                let step = |j: usize| 0.6 * d[j / acts.block_len()].abs();
                for r in 0..rows {
                    let wr = &wd[r * cols..(r + 1) * cols];
                    let want: f32 = wr.iter().zip(xi).map(|(a, b)| a * b).sum();
                    let quant: f32 = wr.iter().enumerate().map(|(j, a)| a.abs() * step(j)).sum();
                    let m = &mag[r * cols..(r + 1) * cols];
                    let round: f32 = m.iter().zip(xi).map(|(a, b)| a * b.abs()).sum();
                    let bound = quant + 1e-5 * round;
                    let got = y[i * rows + r];
                    assert!(
                        (got - want).abs() <= bound,
                        "{block} cols {cols} (n {i}, row {r}): {got} vs {want}, bound {bound}"
                    );
                }
            }
        }
    }
}

fn fixture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kernels/gguf_blocks.safetensors");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The dequantiser equals gguf-py's `gguf.quants.dequantize` on 12 random blocks of
/// each type: exactly, since both compute the same f32 products in the same order.
#[test]
fn dequantize_equals_gguf_py() {
    let bytes = fixture();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for block in BlockType::ALL {
        let blocks = st.tensor(&format!("{block}.blocks")).unwrap();
        let want = f32s(st.tensor(&format!("{block}.dequant")).unwrap().data());
        let got = dequantized(block, blocks.data());
        assert_eq!(got.len(), 12 * block.block_len(), "{block}");
        let bad = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(bad, None, "{block}: first difference at element {bad:?}");
    }
}

/// The Q8_0 activation quantiser gives gguf-py's `Q8_0.quantize` codes and half scale
/// (bit-exact with ggml's `quantize_row_q8_0_ref`), an all-zero block and ties included.
#[test]
fn q8_0_activations_equal_gguf_py() {
    let bytes = fixture();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let x = f32s(st.tensor("q8_0.x").unwrap().data());
    let want = st.tensor("q8_0.quantized").unwrap();
    let acts = Q8Activations::quantize(BlockType::Q4_0, &x, 32).unwrap();
    for (i, blk) in want.data().chunks_exact(34).enumerate() {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        assert_eq!(acts.scales(i), [d], "block {i}: d");
        let codes: Vec<i8> = blk[2..].iter().map(|&q| q as i8).collect();
        assert_eq!(acts.codes(i), codes, "block {i}: codes");
    }
}

/// Q8_K (ggml's `quantize_row_q8_K_ref`): the element of largest magnitude maps to
/// -127, every element within half a step of `d·q`, the sums are the codes' sums, and
/// an all-zero block has `d = 0` and zero codes.
/// The Q8_0 quantiser (SIMD where the CPU has it) against ggml's
/// `quantize_row_q8_0_ref` written out here: random blocks, exact ties at ±0.5 of a
/// step (`d = 1`), and the blocks a SIMD quantiser hands back to the scalar one (a NaN,
/// an infinity, a subnormal `d`, all zeros, negative zeros).
#[test]
fn q8_0_activations_equal_the_reference_formula() {
    fn reference(x: &[f32]) -> (f32, Vec<i8>) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = x
            .iter()
            .map(|&v| {
                let t = v * id;
                let w = t as i32;
                let frac = t - w as f32;
                (w + (frac >= 0.5) as i32 - (frac <= -0.5) as i32).clamp(-127, 127) as i8
            })
            .collect();
        (f16_to_f32(f32_to_f16(d)), q)
    }
    let mut rng = Rng(0x9_0a7);
    let mut x = random_x(&mut rng, 3, 8 * 32);
    let ties: Vec<f32> = (0..32)
        .map(|j| {
            if j == 0 {
                127.0
            } else {
                (j as f32 - 16.0) + 0.5
            }
        })
        .collect();
    x.extend(&ties);
    let mut special = vec![1.0f32; 32];
    special[3] = f32::NAN;
    x.extend(&special);
    special[3] = f32::INFINITY;
    x.extend(&special);
    x.extend((0..32).map(|j| j as f32 * 127.0 * 2f32.powi(-127) / 31.0));
    x.extend([0.0f32; 32]);
    x.extend([-0.0f32; 32]);
    let acts = Q8Activations::quantize(BlockType::Q8_0, &x, 32).unwrap();
    for (b, block) in x.chunks_exact(32).enumerate() {
        let (d, q) = reference(block);
        assert_eq!(acts.codes(b), &q[..], "block {b}");
        assert_eq!(acts.scales(b)[0].to_bits(), d.to_bits(), "block {b}");
    }
}

#[test]
fn q8_k_activations_round_to_nearest_step() {
    let mut rng = Rng(11);
    let mut x = random_x(&mut rng, 1, 768);
    x[256..512].fill(0.0);
    x[600] = -5000.0;
    let acts = Q8Activations::quantize(BlockType::Q6_K, &x, 768).unwrap();
    assert_eq!(acts.block_len(), 256);
    let (d, q) = (acts.scales(0), acts.codes(0));
    assert_eq!(d[1], 0.0);
    assert!(q[256..512].iter().all(|&c| c == 0));
    assert_eq!(q[600], -127);
    assert!(d[2] > 0.0, "a negative extreme gives a positive d");
    for (j, (&v, &c)) in x.iter().zip(q).enumerate() {
        assert!(
            (v - d[j / 256] * c as f32).abs() <= 0.5 * d[j / 256].abs() * (1.0 + 1e-6),
            "element {j}"
        );
    }
    for (k, &s) in acts.sums(0).iter().enumerate() {
        assert_eq!(
            s as i32,
            q[16 * k..16 * k + 16]
                .iter()
                .map(|&c| c as i32)
                .sum::<i32>()
        );
    }
    // max = 127 makes the scale -1 exactly: ties go to even (ggml's nearest_int).
    let mut x = vec![0f32; 256];
    x[..6].copy_from_slice(&[127.0, 2.5, -2.5, 3.5, 0.5, -1.5]);
    let acts = Q8Activations::quantize(BlockType::Q4_K, &x, 256).unwrap();
    assert_eq!(acts.scales(0), [-1.0]);
    assert_eq!(acts.codes(0)[..6], [-127, -2, 2, -4, 0, 2]);
}

/// Every finite half survives f16 → f32 → f16, and f32 → f16 rounds to nearest with
/// ties to even, overflowing to infinity past 65520.
#[test]
fn half_conversions_round_trip_and_round_to_even() {
    for h in 0..=u16::MAX {
        let v = f16_to_f32(h);
        if !v.is_nan() {
            assert_eq!(f32_to_f16(v), h, "{h:#06x}");
        }
    }
    assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), f32_to_f16(1.0));
    assert_eq!(
        f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)),
        f32_to_f16(1.0 + 2f32.powi(-9))
    );
    assert_eq!(f32_to_f16(65519.0), 0x7bff);
    assert_eq!(f32_to_f16(65520.0), 0x7c00);
    assert_eq!(
        f32_to_f16(2f32.powi(-25)),
        0,
        "a tie below the smallest subnormal: to even, 0"
    );
    assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 2);
    assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
}

/// Threads split rows, batches reuse each weight row: neither changes a single bit
/// (each output is one row's dot product, computed the same way wherever it runs).
/// Rows are independent, so the pool's split cannot change a bit: every type, every set,
/// 1 to 64 parts (more than the rows: the split clamps).
#[test]
fn threads_and_batches_change_no_bit() {
    let sets = sets_run();
    for block in BlockType::ALL {
        let (rows, cols) = (37, 2 * block.block_len());
        let data = random_blocks(block, rows * 2, 3);
        let w = QuantMatrix::new(block, rows, cols, &data).unwrap();
        let x = random_x(&mut Rng(5), 4, cols);
        let acts = Q8Activations::quantize(block, &x, cols).unwrap();
        for &set in &sets {
            let one = run(set, &w, &acts, 1);
            for threads in [2, 3, 8, 64] {
                assert_eq!(
                    run(set, &w, &acts, threads),
                    one,
                    "{set} {block} {threads} threads"
                );
            }
            for i in 0..4 {
                let mut y = vec![0f32; rows];
                let xi = &x[i * cols..(i + 1) * cols];
                kernels::matmul_with(set, &w, xi, &mut y, 3).unwrap();
                assert_eq!(
                    y,
                    one[i * rows..(i + 1) * rows],
                    "{set} {block} row {i} alone"
                );
            }
        }
    }
}

/// The row-range kernels with 1 to 16 activation rows (decoding and batched serve
/// steps): each output is bit for bit the product of that activation row alone, on 1
/// and 3 threads (ranges of rows starting anywhere), and within the float-order bound
/// of the scalar reference; rows odd and blocks a row with tails.
#[test]
fn every_batch_size_gives_each_rows_own_product() {
    let sets = sets_run();
    for block in BlockType::ALL {
        let nb = if block.is_k_quant() { 3 } else { 7 };
        let (rows, cols) = (29, nb * block.block_len());
        let data = random_blocks(block, rows * nb, 0xba7c ^ block.ggml_type() as u64);
        let w = QuantMatrix::new(block, rows, cols, &data).unwrap();
        let x = random_x(&mut Rng(0xba7c), 16, cols);
        let mag = magnitudes(block, &data);
        for &set in &sets {
            let alone: Vec<Vec<f32>> = (0..16)
                .map(|i| {
                    let xi = &x[i * cols..(i + 1) * cols];
                    let acts = Q8Activations::quantize(block, xi, cols).unwrap();
                    run(set, &w, &acts, 1)
                })
                .collect();
            for n in 1..=16 {
                let acts = Q8Activations::quantize(block, &x[..n * cols], cols).unwrap();
                let reference = run(KernelSet::Scalar, &w, &acts, 1);
                for threads in [1, 3] {
                    let y = run(set, &w, &acts, threads);
                    for i in 0..n {
                        assert_eq!(
                            y[i * rows..(i + 1) * rows],
                            alone[i][..],
                            "{set} {block} N {n} row {i} threads {threads}"
                        );
                        let xq = acts.dequantize_row(i);
                        for r in 0..rows {
                            let m = &mag[r * cols..(r + 1) * cols];
                            let s: f32 = m.iter().zip(&xq).map(|(a, b)| a * b.abs()).sum();
                            let (got, want) = (y[i * rows + r], reference[i * rows + r]);
                            assert!(
                                (got - want).abs() <= 1e-5 * s,
                                "{set} {block} N {n} (n {i}, row {r}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Products from several threads at once, and a product inside a worker's part, find
/// the pool busy and run on their own thread: the same bits, no deadlock.
#[test]
fn concurrent_and_nested_products_change_no_bit() {
    let block = BlockType::Q4_0;
    let (rows, cols) = (301, 4 * block.block_len());
    let data = random_blocks(block, rows * 4, 11);
    let w = QuantMatrix::new(block, rows, cols, &data).unwrap();
    let x = random_x(&mut Rng(12), 3, cols);
    let acts = Q8Activations::quantize(block, &x, cols).unwrap();
    let set = KernelSet::detect();
    let one = run(set, &w, &acts, 1);
    std::thread::scope(|s| {
        let (w, acts) = (&w, &acts);
        let runs: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    (0..50)
                        .map(|_| run(set, w, acts, 2 + t % 3))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for r in runs {
            for y in r.join().unwrap() {
                assert_eq!(y, one);
            }
        }
    });
    // Products inside a pool's job (on a worker too, where it came in time).
    let small = QuantMatrix::new(block, 3, cols, &data[..3 * w.row_bytes()]).unwrap();
    let inner = run(set, &small, &acts, 1);
    let nested = std::sync::Mutex::new(Vec::new());
    kernels::run_on_pool(2, &|| {
        nested.lock().unwrap().push(run(set, &small, &acts, 2));
    });
    for y in nested.into_inner().unwrap() {
        assert_eq!(y, inner);
    }
}

/// Small products stay on the caller's thread; large ones get the threads asked for.
#[test]
fn threads_are_woken_only_for_enough_work() {
    use kernels::{useful_threads, MIN_BYTES_PER_THREAD as M};
    assert_eq!(
        useful_threads(192 * 576 / 32 * 20, 1, 8),
        1,
        "SmolLM2's Q4_1 key projection: one thread"
    );
    assert_eq!(
        useful_threads(576 * 576 / 32 * 20, 1, 2),
        2,
        "SmolLM2's Q4_1 query projection: two threads"
    );
    assert_eq!(useful_threads(4 * M, 1, 8), 4);
    assert_eq!(
        useful_threads(4 * M, 3, 8),
        8,
        "work grows with the activation rows"
    );
    assert_eq!(useful_threads(178_257_920, 1, 2), 2, "Gemma's Q8_0 head");
    assert_eq!(useful_threads(0, 1, 0), 1);
}

/// Bad sizes are typed errors that name the argument, never a panic.
#[test]
fn bad_sizes_are_errors() {
    let data = vec![0u8; 3 * 2 * 18];
    let err = |r: tch_attention::Result<QuantMatrix>| r.unwrap_err().to_string();
    assert!(err(QuantMatrix::new(BlockType::Q4_0, 3, 48, &data))
        .starts_with("cols: expected a positive multiple of Q4_0's block of 32"));
    assert!(err(QuantMatrix::new(BlockType::Q4_0, 0, 64, &data)).starts_with("rows:"));
    assert!(err(QuantMatrix::new(BlockType::Q4_0, 3, 64, &data[1..]))
        .starts_with("data: expected 108 bytes"));
    assert!(err(QuantMatrix::new(BlockType::Q4_K, 3, 64, &data)).starts_with("cols:"));
    assert!(err(QuantMatrix::new(BlockType::Q4_0, usize::MAX, 64, &data)).starts_with("rows:"));
    let w = QuantMatrix::new(BlockType::Q4_0, 3, 64, &data).unwrap();
    let mut y = vec![0f32; 3];
    let e = kernels::matvec(&w, &[0.0; 63], &mut y, 1)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x: expected 64"), "{e}");
    let e = kernels::matmul(&w, &[0.0; 128], &mut y, 1)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("y: expected (N, rows) = (2, 3)"), "{e}");
    let e = kernels::matmul(&w, &[0.0; 100], &mut y, 1)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x: expected (N, 64)"), "{e}");
    let k_acts = Q8Activations::quantize(BlockType::Q4_K, &[0.0; 256], 256).unwrap();
    let e = kernels::matmul_quantized(KernelSet::Scalar, &w, &k_acts, &mut y, 1)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("acts:"), "{e}");
    let e = dequantize(BlockType::Q8_0, &[0u8; 35], &mut [0.0; 32])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("blocks:"), "{e}");
    for set in KernelSet::ALL.into_iter().filter(|s| !s.is_available()) {
        let e = kernels::matmul_with(set, &w, &[0.0; 64], &mut y, 1)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("set: this CPU lacks"), "{e}");
    }
}

#[test]
fn describe_names_the_detected_set() {
    let name = kernels::describe();
    println!("kernels::describe() = {name}");
    assert_eq!(name, KernelSet::detect().name());
    assert!(KernelSet::detect().is_available());
    for block in BlockType::ALL {
        assert_eq!(BlockType::from_ggml_type(block.ggml_type()), Some(block));
    }
    assert_eq!(BlockType::from_ggml_type(7), None, "Q5_1 is not taken");
}

/// Nanoseconds per call of `F.linear(x, w)` in libtorch, float32, `x` `(1, cols)`,
/// timed as the kernels are.
fn torch_linear_ns(rows: usize, cols: usize) -> f64 {
    let w = tch::Tensor::randn(
        [rows as i64, cols as i64],
        (tch::Kind::Float, tch::Device::Cpu),
    );
    let x = tch::Tensor::randn([1, cols as i64], (tch::Kind::Float, tch::Device::Cpu));
    kernels::ns_per_call(|| {
        let _ = x.linear::<tch::Tensor>(&w, None);
    })
}

/// The kernels' time per matrix-vector product (activation quantisation included)
/// beside libtorch's float32 `linear` on the same shape: SmolLM2's gate/up `[1536, 576]`
/// in the legacy types, its down projection `[576, 1536]` in the k-quants (576 is not a
/// multiple of 256), and Gemma 3's Q8_0 head `[262144, 640]`.
#[test]
#[ignore = "timing, not a check; meaningful only optimised: cargo test --test kernels \
            --config 'profile.dev.package.tch-attention.opt-level=3' -- --ignored --nocapture"]
fn timing_against_libtorch_f32() {
    use BlockType::*;
    let shapes = [
        (Q4_1, 192, 576),
        (Q4_1, 576, 576),
        (Q4_0, 1536, 576),
        (Q4_1, 1536, 576),
        (Q5_0, 1536, 576),
        (Q8_0, 1536, 576),
        (Q4_K, 576, 1536),
        (Q5_K, 576, 1536),
        (Q6_K, 576, 1536),
        (Q8_0, 262144, 640),
    ];
    // The memory floor of the largest shape: one pass over as many bytes, summed.
    let bytes = vec![1u64; 262144 * 640 / 32 * 34 / 8];
    let stream = kernels::ns_per_call(|| {
        std::hint::black_box(bytes.iter().fold(0u64, |a, &b| a.wrapping_add(b)));
    });
    println!(
        "one pass over the Q8_0 head's {} MB (sum of u64): {:.1} µs",
        bytes.len() * 8 / 1_000_000,
        stream / 1e3
    );
    println!("type  rows x cols     threads (used)  set          µs/call   torch f32 µs/call");
    for threads in [1, 2] {
        tch::set_num_threads(threads as i32);
        for (block, rows, cols) in shapes {
            let torch = torch_linear_ns(rows, cols) / 1e3;
            let bytes = rows * cols / block.block_len() * block.block_bytes();
            let used = kernels::useful_threads(bytes, 1, threads);
            for set in KernelSet::available() {
                let ns = kernels::bench_matvec(set, block, rows, cols, threads).unwrap();
                println!(
                    "{block:<5} {rows:>6} x {cols:<6} {threads:>3} ({used})      {:<12} {:>8.1}   {torch:>8.1}",
                    set.name(),
                    ns / 1e3
                );
            }
        }
    }
}

/// The kernels' throughput on the decoding shapes of Gemma 3 270M (Q4_K_M) and SmolLM2
/// 135M (Q4_1), in GB/s of weights read, for every set and 1 and 2 threads (issue 24).
#[test]
#[ignore = "timing, not a check: cargo test --release --test kernels -- --ignored \
            --nocapture model_shapes_throughput"]
fn model_shapes_throughput() {
    use BlockType::*;
    let shapes = [
        ("gemma head", Q8_0, 262144, 640),
        ("gemma q", Q5_0, 1024, 640),
        ("gemma k", Q5_0, 256, 640),
        ("gemma v", Q8_0, 256, 640),
        ("gemma gate/up", Q5_0, 2048, 640),
        ("gemma o", Q4_K, 640, 1024),
        ("gemma down", Q4_K, 640, 2048),
        ("gemma down", Q6_K, 640, 2048),
        ("smollm2 head", Q8_0, 49152, 576),
        ("smollm2 q/o", Q4_1, 576, 576),
        ("smollm2 k/v", Q4_1, 192, 576),
        ("smollm2 gate/up", Q4_1, 1536, 576),
        ("smollm2 down", Q4_1, 576, 1536),
    ];
    // KERNEL_BENCH=head: only the shapes whose name contains "head".
    let only = std::env::var("KERNEL_BENCH").unwrap_or_default();
    for cols in [576, 640, 2048] {
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
        for block in [Q8_0, Q4_K]
            .into_iter()
            .filter(|b| cols % b.block_len() == 0)
        {
            let ns = kernels::ns_per_call(|| {
                std::hint::black_box(Q8Activations::quantize(block, &x, cols).unwrap());
            });
            println!(
                "quantise {cols} activations for {block}: {:.2} µs",
                ns / 1e3
            );
        }
    }
    println!("shape            type  rows x cols   threads  set            µs/call   GB/s");
    for threads in [1, 2] {
        for (name, block, rows, cols) in shapes {
            if !name.contains(&only) {
                continue;
            }
            let bytes = rows * cols / block.block_len() * block.block_bytes();
            for set in KernelSet::available().into_iter().skip(1) {
                let ns = kernels::bench_matvec(set, block, rows, cols, threads).unwrap();
                println!(
                    "{name:<16} {block:<5} {rows:>6} x {cols:<5} {threads:>3}     {:<12} {:>9.1} {:>6.1}",
                    set.name(),
                    ns / 1e3,
                    bytes as f64 / ns
                );
            }
        }
    }
    // The largest matrix from 4 KiB pages (a plain buffer) and from 2 MiB ones.
    let (block, rows, cols) = (Q8_0, 262144, 640);
    let data = random_blocks(block, rows * cols / 32, 0x5eed);
    let huge = HugePageBytes::copy_of(&data);
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![0f32; rows];
    for _ in 0..2 {
        for (pages, bytes) in [("4 KiB pages", &data[..]), ("huge pages", &huge[..])] {
            let w = QuantMatrix::new(block, rows, cols, bytes).unwrap();
            let ns = kernels::ns_per_call(|| kernels::matvec(&w, &x, &mut y, 1).unwrap());
            println!(
                "gemma head from {pages}, one thread: {:.1} GB/s",
                data.len() as f64 / ns
            );
        }
    }
}

/// A huge-page copy holds the same bytes (and an empty one none).
#[test]
fn huge_page_copies_equal_their_source() {
    let data = random_blocks(BlockType::Q8_0, 70_000, 9);
    let copy = HugePageBytes::copy_of(&data);
    assert_eq!(&copy[..], &data[..]);
    assert_eq!(copy.as_ref().len(), data.len());
    println!("{copy:?}");
    assert!(HugePageBytes::copy_of(&[]).is_empty());
    let small = HugePageBytes::copy_of(&[1, 2, 3]);
    assert_eq!(&small[..], &[1, 2, 3]);
}

/// A copy that releases its source as it goes calls back with consecutive ranges that
/// cover the source exactly once, each after its bytes are in the copy.
#[test]
fn huge_page_copies_report_each_copied_range_once_in_order() {
    let data = random_blocks(BlockType::Q8_0, 600_000, 11); // 20.4 MB: three chunks
    let mut seen = Vec::new();
    let copy = HugePageBytes::copy_of_releasing(&data, |r| seen.push(r));
    assert_eq!(&copy[..], &data[..]);
    assert_eq!(seen.first().map(|r| r.start), Some(0));
    assert_eq!(seen.last().map(|r| r.end), Some(data.len()));
    assert!(seen.windows(2).all(|w| w[0].end == w[1].start));
    assert!(seen
        .iter()
        .all(|r| r.len() <= kernels::COPY_CHUNK && !r.is_empty()));
    assert_eq!(seen.len(), data.len().div_ceil(kernels::COPY_CHUNK));
}
