//! Hugging Face `GPT2Attention`: nanoGPT's keys ([`super::nanogpt`]) with `c_attn` and
//! `c_proj` stored transposed, `[in, out]` (its `Conv1D` computes `x @ W + b`), all
//! biases present, and the old checkpoints' buffers `bias` (a bool causal mask) and
//! `masked_bias`.

use tch::Tensor;

use super::block::Block;
use super::nanogpt::{emit_c_attn, extract_c_attn};
use super::{Attn, ConvertOptions, Layout};
use crate::error::Result;

/// Reads GPT-2's keys.
pub(super) fn extract(b: &mut Block) -> Result<Attn> {
    extract_c_attn(b, Layout::HfGpt2)
}

/// Writes GPT-2's keys (every bias: `Conv1D` always has one).
pub(super) fn emit(a: &Attn, opts: &ConvertOptions) -> Result<Vec<(String, Tensor)>> {
    emit_c_attn(a, Layout::HfGpt2, opts, true)
}
