//! nanoGPT's attention block, from a checkpoint nanoGPT's `train.py` wrote, in a crate
//! that only depends on tch-attention: builds `CausalSelfAttention` under the GPT's
//! names in its own `VarStore`, loads block 1's weights, prints the output for
//! PyTorch's input and exits nonzero when it differs from PyTorch's output.
//!
//! The checkpoint and reference are the crate's committed fixtures
//! (`tests/fixtures/checkpoints/`, from `scripts/checkpoint_reference.py`, seed 2024).

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use tch::nn::VarStore;
use tch::{Device, Tensor};
use tch_attention::checkpoint::{load_checkpoint, state_dict, Layout};
use tch_attention::doctor::Diagnosis;
use tch_attention::io::read_safetensors;
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
use tch_attention::pretty::tensor_repr;

/// `torch.testing.assert_close`'s float32 tolerances.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("downstream: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/checkpoints");

    // GPTConfig(n_embd=8, n_head=2, block_size=6): block 1's attention, under the keys
    // of nanoGPT's model.state_dict().
    let vs = VarStore::new(Device::Cpu);
    let config = CausalSelfAttentionConfig::new(8, 2, 6);
    let attn = CausalSelfAttention::new(vs.root() / "transformer" / "h" / 1 / "attn", config)?;
    let ckpt = dir.join("nanogpt_ckpt.pt");
    load_checkpoint(&attn, &ckpt, "transformer.h.1.attn.", Layout::NanoGpt)?;
    for (key, t) in state_dict(&vs) {
        println!("{key:<34} {:?}", t.size());
    }

    let reference = read_safetensors(&dir.join("reference.safetensors"))?.tensors;
    let x = named(&reference, "x")?; // (B, T, C)
    let want = named(&reference, "nanogpt_ckpt.pt.output")?;
    let y = tch::no_grad(|| attn.f_forward_t(x, false))?; // eval: no dropout
    println!("{}", tensor_repr(&y.f_narrow(0, 0, 1)?)?); // the first sequence

    if y.size() != want.size() || !y.f_allclose(want, RTOL, ATOL, false)? {
        return Err(format!("output differs from PyTorch's for {}", ckpt.display()).into());
    }
    println!("matches PyTorch's output (rtol {RTOL:e}, atol {ATOL:e})");

    // What `attn doctor` reports is the library's: here, the libtorch this binary
    // started with (found through the runpath build.rs gave it), and whether its CUDA
    // backend, opened at run time from the same folder, loads (`collect` loads it).
    let d = Diagnosis::collect();
    let version = d.version.as_deref().unwrap_or("(unknown version)");
    let lib_dir = d.lib_dir.as_deref().unwrap_or(Path::new("(unknown)"));
    println!("libtorch {version} from {}", lib_dir.display());
    println!(
        "CUDA backend loaded: {}, CUDA devices: {}",
        d.cuda_backend_loaded, d.cuda_devices
    );
    Ok(())
}

fn named<'a>(
    tensors: &'a std::collections::BTreeMap<String, Tensor>,
    name: &str,
) -> Result<&'a Tensor, String> {
    tensors
        .get(name)
        .ok_or_else(|| format!("reference.safetensors lacks {name}"))
}
