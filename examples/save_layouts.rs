//! Loads the committed checkpoints into the crate's modules and saves each module in
//! every layout it can take, for scripts/checkpoint_reference.py to load into PyTorch
//! with `load_state_dict(strict=True)`.
//!
//!     cargo run --example save_layouts -- OUT_DIR
//!
//! Writes `OUT_DIR/<module>-as-<layout>.safetensors`, and prints one line per layout a
//! module refuses (with the reason).

use std::path::PathBuf;

use tch::nn::VarStore;
use tch::Device;
use tch_attention::attention::multihead_attention::{MultiheadAttention, MultiheadAttentionConfig};
use tch_attention::checkpoint::{save_checkpoint, FromCheckpoint, Layout, StateDict};
use tch_attention::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

const C: i64 = 8;
const NH: i64 = 2;
const BS: i64 = 6;

fn save_all(name: &str, module: &dyn StateDict, out: &std::path::Path) -> anyhow::Result<()> {
    for layout in Layout::ALL {
        let file = out.join(format!("{name}-as-{layout}.safetensors"));
        if let Err(e) = save_checkpoint(module, &file, layout, true) {
            println!("{name} refuses {layout}: {e}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: save_layouts OUT_DIR"),
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoints");
    let vs = VarStore::new(Device::Cpu);

    let csa = CausalSelfAttention::from_checkpoint(
        vs.root() / "csa",
        CausalSelfAttentionConfig::new(C, NH, BS),
        dir.join("nanogpt_ckpt.pt"),
        "transformer.h.1.attn.",
        Layout::NanoGpt,
    )?;
    save_all("nanogpt_ckpt.pt", &csa, &out)?;

    let lecture = MultiHeadAttention::from_checkpoint(
        vs.root() / "lecture",
        MultiHeadConfig::new(C, NH, C / NH, BS),
        dir.join("lecture.pt"),
        "",
        Layout::Lecture,
    )?;
    save_all("lecture.pt", &lecture, &out)?;

    let mha = MultiheadAttention::from_checkpoint(
        vs.root() / "mha",
        MultiheadAttentionConfig::new(C, NH).with_batch_first(true),
        dir.join("torch_mha.pth"),
        "",
        Layout::TorchMha,
    )?;
    save_all("torch_mha.pth", &mha, &out)?;
    Ok(())
}
