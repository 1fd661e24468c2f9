//! `nn::BlockLinear`, a GGUF block weight on the crate's integer kernels, against its
//! math path: the blocks dequantised as gguf-py dequantises them (tests/kernels.rs
//! checks that), then `F.linear` in float64.
//!
//! Tolerance: the kernels quantise each block of 32 (legacy types) or 256 (k-quants)
//! activations to 8 bits, as llama.cpp does, so each product carries an error of at
//! most half a step, `max|x_block| / 254`, times `|w|`; summed over a row that bounds
//! `|y - y_ref|` by `Σ_k |w_k| · max|x_block(k)| / 254` plus float rounding. The test
//! asserts that bound per output element, so it holds for any input scale.

use tch::{Kind, Tensor};
use tch_attention::nn::kernels::{random_blocks, BlockType};
use tch_attention::nn::{BatchPath, BlockLinear};

fn layer(block: BlockType, rows: usize, cols: usize, seed: u64) -> BlockLinear {
    let n_blocks = rows * cols / block.block_len();
    BlockLinear::new(block, rows, cols, random_blocks(block, n_blocks, seed)).unwrap()
}

/// Per output element, the bound above: `(M, N)`.
fn bound(w: &Tensor, x: &Tensor, block_len: i64) -> Tensor {
    let (m, k) = (x.size()[0], x.size()[1]);
    let blocks = x
        .abs()
        .view([m, k / block_len, block_len])
        .amax(&[2][..], true);
    let step = blocks
        .expand([m, k / block_len, block_len], false)
        .reshape([m, k])
        / 254.0;
    step.matmul(&w.abs().transpose(0, 1)) * 1.001 + 1e-5
}

#[test]
fn every_block_type_matches_its_dequantised_math_path_within_the_activations_step() {
    tch::manual_seed(0);
    for (i, block) in BlockType::ALL.into_iter().enumerate() {
        let cols = block.block_len() * 3;
        let l = layer(block, 37, cols, i as u64);
        let x = Tensor::randn([5, cols as i64], (Kind::Float, tch::Device::Cpu));
        let y = l.f_forward(&x).unwrap();
        assert_eq!(y.size(), [5, 37]);
        let w = l.dequantized().unwrap().to_kind(Kind::Double);
        let x64 = x.to_kind(Kind::Double);
        let want = x64.matmul(&w.transpose(0, 1));
        let err = (y.to_kind(Kind::Double) - &want).abs();
        let over = err.gt_tensor(&bound(&w, &x64, block.block_len() as i64));
        assert_eq!(
            over.sum(Kind::Int64).int64_value(&[]),
            0,
            "{block}: max error {}",
            err.max().double_value(&[])
        );
    }
}

#[test]
fn leading_dims_dtype_and_row_order() {
    let l = layer(BlockType::Q4_K, 6, 256, 7);
    let x = Tensor::randn([2, 3, 256], (Kind::Float, tch::Device::Cpu));
    let y = l.f_forward(&x).unwrap();
    assert_eq!(y.size(), [2, 3, 6]);
    // A row of the input alone gives the same numbers as in the batch.
    let one = l.f_forward(&x.get(1).get(2)).unwrap();
    assert!(one.equal(&y.get(1).get(2)));
    // bfloat16 in, bfloat16 out.
    assert_eq!(
        l.f_forward(&x.to_kind(Kind::BFloat16)).unwrap().kind(),
        Kind::BFloat16
    );
    // Rows reordered move whole rows of blocks: the outputs reorder exactly.
    let order = [5usize, 0, 3, 1, 4, 2];
    let p = layer(BlockType::Q4_K, 6, 256, 7).with_rows(&order).unwrap();
    let idx = Tensor::from_slice(&order.map(|r| r as i64));
    assert!(p.f_forward(&x).unwrap().equal(&y.index_select(2, &idx)));
}

#[test]
fn bad_sizes_are_typed_errors() {
    let b = BlockType::Q8_0;
    assert!(BlockLinear::new(b, 2, 32, vec![0; 10]).is_err());
    assert!(BlockLinear::new(b, 2, 33, vec![0; 68]).is_err());
    let l = layer(b, 2, 64, 1);
    let wrong = Tensor::zeros([3, 63], (Kind::Float, tch::Device::Cpu));
    let err = l.f_forward(&wrong).unwrap_err().to_string();
    assert!(err.contains("x"), "{err}");
    assert!(l.with_rows(&[0, 0, 1]).is_err());
}

/// The tile path (`BatchPath::Tiles`: float32 tiles through libtorch's matmul) against
/// the math path in float64, within float32's accumulation bound: a dot product of `K`
/// terms summed in float32 is off by at most `K · 2^-24 · Σ|x||w|` (Higham's γ_K),
/// whatever the summation order libtorch's matmul takes.
#[test]
fn tiles_match_the_math_path_within_float32_accumulation() {
    tch::manual_seed(1);
    for (i, block) in BlockType::ALL.into_iter().enumerate() {
        let cols = block.block_len() * 3;
        // More rows than one tile holds, and not a multiple of it.
        let rows = tch_attention::nn::TILE_FLOATS / cols + 7;
        let l = layer(block, rows, cols, 100 + i as u64);
        let x = Tensor::randn([3, cols as i64], (Kind::Float, tch::Device::Cpu));
        let y = l.f_forward_on(&x, BatchPath::Tiles).unwrap();
        assert_eq!(y.size(), [3, rows as i64]);
        let w = l.dequantized().unwrap().to_kind(Kind::Double);
        let x64 = x.to_kind(Kind::Double);
        let want = x64.matmul(&w.transpose(0, 1));
        let err = (y.to_kind(Kind::Double) - &want).abs();
        let gamma = cols as f64 * 2f64.powi(-24) * 1.01;
        let bound = x64.abs().matmul(&w.abs().transpose(0, 1)) * gamma;
        let over = err.gt_tensor(&bound);
        assert_eq!(
            over.sum(Kind::Int64).int64_value(&[]),
            0,
            "{block}: max error {}",
            err.max().double_value(&[])
        );
    }
}

/// Prefill's choice (`tiles_from_rows`): the kernels against the tile path on M rows,
/// on SmolLM2's and Gemma 3's layer shapes, at 1 and 2 threads.
#[test]
#[ignore = "timing, not a check; meaningful only optimised: cargo test --release --test \
            block_linear -- --ignored --nocapture prefill"]
fn prefill_timing_kernels_against_tiles() {
    use tch_attention::nn::kernels::ns_per_call;
    use BlockType::*;
    let shapes = [
        ("SmolLM2 gate/up", Q4_1, 1536, 576),
        ("SmolLM2 down", Q4_1, 576, 1536),
        ("Gemma 3 gate/up", Q5_0, 2048, 640),
        ("Gemma 3 down", Q6_K, 640, 2048),
    ];
    println!("shape             type  threads   M   kernels ms   tiles ms");
    for threads in [1, 2] {
        tch::set_num_threads(threads);
        for (name, block, rows, cols) in shapes {
            let l = layer(block, rows, cols, 5);
            for m in [1, 8, 16, 32, 64, 128] {
                let x = Tensor::randn([m, cols as i64], (Kind::Float, tch::Device::Cpu));
                let k = ns_per_call(|| {
                    let _ = l.f_forward_on(&x, BatchPath::Kernels).unwrap();
                });
                let t = ns_per_call(|| {
                    let _ = l.f_forward_on(&x, BatchPath::Tiles).unwrap();
                });
                println!(
                    "{name:<17} {block:<5} {threads:>4} {m:>6} {:>10.3} {:>10.3}",
                    k / 1e6,
                    t / 1e6
                );
            }
        }
    }
}

/// An embedding lookup in the blocks equals the dequantised table's rows bit for bit,
/// and an id outside the table is an error.
#[test]
fn rows_are_the_dequantised_table_rows() {
    for (i, block) in BlockType::ALL.into_iter().enumerate() {
        let l = layer(block, 11, block.block_len() * 2, 200 + i as u64);
        let ids = Tensor::from_slice(&[3i64, 0, 10, 3, 7, 1]).view([2, 3]);
        let got = l.f_rows(&ids).unwrap();
        assert_eq!(got.size(), [2, 3, block.block_len() as i64 * 2]);
        let want = l.dequantized().unwrap().index_select(0, &ids.view([-1]));
        assert!(got.view_as(&want).equal(&want), "{block}");
        let e = l
            .f_rows(&Tensor::from_slice(&[11i64]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ids: ids must lie in 0..11, got 11"), "{e}");
    }
}
