//! A `torch.nn.MultiheadAttention` saved from PyTorch as a state_dict loads unchanged
//! into the crate's [`MultiheadAttention`] and gives PyTorch's outputs (the README's
//! example, as a program).
//!
//!     cargo run --example mha_state_dict
//!
//! `tests/fixtures/readme/` (from `scripts/make_fixtures.py`, seed 2024):
//! `mha_state_dict.safetensors` is `safetensors.torch.save_file(mha.state_dict(), ...)` of
//! `nn.MultiheadAttention(16, 4, batch_first=True)`; `mha_io.safetensors` holds an input
//! `x` `(N, L, E)` and what `mha(x, x, x)` returned in eval mode, `output` and
//! `attn_weights` (averaged over heads). Exits nonzero when either differs beyond
//! float32 `assert_close` tolerances.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use tch::nn::VarStore;
use tch::{Device, Tensor};
use tch_attention::attention::{MhaOptions, MultiheadAttention, MultiheadAttentionConfig};
use tch_attention::checkpoint::load_into;
use tch_attention::io::read_safetensors;

/// `torch.testing.assert_close`'s float32 tolerances.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/readme");

    // nn.MultiheadAttention(16, 4, batch_first=True), then load_state_dict(strict=True).
    let vs = VarStore::new(Device::Cpu);
    let config = MultiheadAttentionConfig::new(16, 4).with_batch_first(true);
    let mha = MultiheadAttention::new(vs.root(), config)?;
    let state = read_safetensors(&dir.join("mha_state_dict.safetensors"))?;
    load_into(&vs, &state.tensors, "mha_state_dict.safetensors")?; // every key, every shape
    for (key, t) in &state.tensors {
        println!("loaded {key:<16} {:?}", t.size());
    }

    let io = read_safetensors(&dir.join("mha_io.safetensors"))?.tensors;
    let x = get(&io, "x")?; // (N, L, E)
    let (out, weights) = tch::no_grad(|| mha.f_forward_t(x, x, x, &MhaOptions::default(), false))?;
    let weights = weights.context("need_weights is true by default, but no weights came")?;
    println!(
        "x {:?} (N, L, E) -> output {:?} (N, L, E), attn_weights {:?} (N, L, S)",
        x.size(),
        out.size(),
        weights.size()
    );
    check("output", &out, get(&io, "output")?)?;
    check("attn_weights", &weights, get(&io, "attn_weights")?)?;
    Ok(())
}

fn get<'a>(tensors: &'a BTreeMap<String, Tensor>, name: &str) -> anyhow::Result<&'a Tensor> {
    tensors
        .get(name)
        .with_context(|| format!("mha_io.safetensors lacks {name}"))
}

/// `torch.testing.assert_close(got, want)` for float32, printing the largest difference.
fn check(name: &str, got: &Tensor, want: &Tensor) -> anyhow::Result<()> {
    if got.size() != want.size() {
        bail!(
            "{name}: shape {:?}, PyTorch's {:?}",
            got.size(),
            want.size()
        );
    }
    let max_abs = got.f_sub(want)?.f_abs()?.f_max()?.f_double_value(&[])?;
    if !got.f_allclose(want, RTOL, ATOL, false)? {
        bail!("{name} differs from PyTorch's: max abs diff {max_abs:e}");
    }
    println!("{name} matches PyTorch's (max abs diff {max_abs:.1e})");
    Ok(())
}
