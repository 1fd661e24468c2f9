//! nanoGPT's attention block, loaded from the checkpoint nanoGPT's `train.py` writes,
//! computes what PyTorch computed.
//!
//!     cargo run --example gpt_block
//!
//! `tests/fixtures/checkpoints/nanogpt_ckpt.pt` is `torch.save({"model": ..., "iter_num":
//! ...})` of a torch.compile'd GPT (keys `_orig_mod.transformer.h.1.attn.c_attn.weight`,
//! ...); `reference.safetensors` beside it holds an input `x` and the output PyTorch's
//! `CausalSelfAttention` gave for it (both from `scripts/checkpoint_reference.py`, seed
//! 2024). Exits nonzero when the output differs beyond float32 `assert_close` tolerances.

use std::path::Path;

use anyhow::{bail, Context};
use tch::nn::VarStore;
use tch::Device;
use tch_attention::checkpoint::{state_dict, FromCheckpoint, Layout};
use tch_attention::io::read_safetensors;
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

/// `torch.testing.assert_close`'s float32 tolerances.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints");

    // GPTConfig(n_embd=8, n_head=2, block_size=6); the checkpoint's block 1.
    let vs = VarStore::new(Device::Cpu);
    let config = CausalSelfAttentionConfig::new(8, 2, 6);
    let attn = CausalSelfAttention::from_checkpoint(
        vs.root(),
        config,
        dir.join("nanogpt_ckpt.pt"),
        "transformer.h.1.attn.",
        Layout::NanoGpt,
    )?;
    for (key, t) in state_dict(&vs) {
        println!("loaded {key:<16} {:?}", t.size());
    }

    let reference = read_safetensors(&dir.join("reference.safetensors"))?.tensors;
    let x = reference
        .get("x")
        .context("reference.safetensors lacks x")?; // (B, T, C)
    let want = reference
        .get("nanogpt_ckpt.pt.output")
        .context("reference.safetensors lacks nanogpt_ckpt.pt.output")?;
    let y = tch::no_grad(|| attn.f_forward_t(x, false))?; // eval: no dropout
    println!("x {:?} (B, T, C) -> y {:?}", x.size(), y.size());

    if y.size() != want.size() {
        bail!("output shape {:?}, PyTorch's {:?}", y.size(), want.size());
    }
    let max_abs = y.f_sub(want)?.f_abs()?.f_max()?.f_double_value(&[])?;
    if !y.f_allclose(want, RTOL, ATOL, false)? {
        bail!("output differs from PyTorch's: max abs diff {max_abs:e}");
    }
    println!("matches PyTorch's output (max abs diff {max_abs:.1e}, rtol {RTOL:e}, atol {ATOL:e})");
    Ok(())
}
