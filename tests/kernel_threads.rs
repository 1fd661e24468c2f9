//! The kernels' thread setting apart from libtorch's (`kernels::dedicate_threads`, what
//! `--quant gguf` sets): products and prefill's dequantised tiles on the kernels'
//! threads, libtorch's operators on one; each result the same, bit for bit, as on one
//! thread. Alone in its own test binary: it changes process-wide settings.

use tch::{Kind, Tensor};
use tch_attention::nn::kernels::{self, random_blocks, BlockType};
use tch_attention::nn::{f_decode_linear, BatchPath, BlockLinear};

fn layer(block: BlockType, rows: usize, cols: usize, seed: u64) -> BlockLinear {
    let n_blocks = rows * cols / block.block_len();
    BlockLinear::new(block, rows, cols, random_blocks(block, n_blocks, seed)).unwrap()
}

#[test]
fn dedicated_threads_give_the_one_thread_results_and_restore() {
    tch::manual_seed(0);
    tch::set_num_threads(1);
    kernels::set_threads(1);
    // Odd row counts: the last tile is short; Gemma's k-quant and SmolLM2's legacy type.
    let cases = [(BlockType::Q4_1, 1531, 576), (BlockType::Q6_K, 1029, 768)];
    let mut one = Vec::new();
    for (i, &(block, rows, cols)) in cases.iter().enumerate() {
        let w = layer(block, rows, cols, 7 + i as u64);
        let x = Tensor::randn([37, cols as i64], (Kind::Float, tch::Device::Cpu));
        let tiles = w.f_forward_on(&x, BatchPath::Tiles).unwrap();
        let kern = w
            .f_forward_on(&x.narrow(0, 0, 3), BatchPath::Kernels)
            .unwrap();
        one.push((w, x, tiles, kern));
    }
    let before = kernels::dedicate_threads(2);
    assert_eq!((kernels::threads(), tch::get_num_threads()), (2, 1));
    for (w, x, tiles, kern) in &one {
        let t2 = w.f_forward_on(x, BatchPath::Tiles).unwrap();
        let k2 = w
            .f_forward_on(&x.narrow(0, 0, 3), BatchPath::Kernels)
            .unwrap();
        assert!(
            t2.equal(tiles),
            "tiles on two threads differ from one thread's"
        );
        assert!(
            k2.equal(kern),
            "kernels on two threads differ from one thread's"
        );
    }
    // A prompt's float32 projection (more rows than the matvec kernel takes): its
    // output columns in blocks over the kernels' threads, each block libtorch's linear.
    let w = Tensor::randn([1531, 576], (Kind::Float, tch::Device::Cpu));
    let b = Tensor::randn([1531], (Kind::Float, tch::Device::Cpu));
    let x = Tensor::randn([2, 37, 576], (Kind::Float, tch::Device::Cpu));
    let split = f_decode_linear(&x, &w, Some(&b)).unwrap();
    before.restore();
    assert_eq!((kernels::threads(), tch::get_num_threads()), (1, 1));
    let whole = x.linear(&w, Some(&b));
    assert_eq!(split.size(), whole.size());
    // assert_close's float32 tolerances (rtol 1.3e-6, atol 1e-5): each block is libtorch's
    // own product, but its GEMM may block a narrower matrix differently.
    let err = (&split - &whole).abs() - (whole.abs() * 1.3e-6 + 1e-5);
    assert!(
        err.max().double_value(&[]) <= 0.0,
        "split linear differs from libtorch's"
    );
}
