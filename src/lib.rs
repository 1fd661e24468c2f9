//! Transformers on tch (libtorch 2.13.0), checked against the numbers PyTorch and
//! transformers compute: the attention modules (the lecture's `Head` and
//! `MultiHeadAttention`, nanoGPT's `CausalSelfAttention`, `torch.nn.MultiheadAttention`,
//! functional SDPA with the 2025 options); whole models (a BERT encoder, the lecture's
//! GPT and nanoGPT trained step for step as PyTorch trains them, and the Llama-family
//! decoders — SmolLM2, Gemma 3 — from a GGUF or a Hugging Face folder with transformers'
//! tokens, float or on the GGUF's own quantised blocks); one generation loop with
//! continuous batching; and the file formats (safetensors, `torch.save`, GGUF) to load
//! them from PyTorch and llama.cpp and save them back.
//!
//! # Quick start
//!
//! A module lives in a tch `VarStore` under PyTorch's state_dict keys, so a checkpoint
//! loads by name (see [`checkpoint`]). nanoGPT's attention, under the keys of a GPT's
//! block 1:
//!
//! ```
//! use tch::{nn::VarStore, Device, Kind, Tensor};
//! use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let vs = VarStore::new(Device::Cpu);
//! let config = CausalSelfAttentionConfig::new(8, 2, 6); // n_embd C, n_head, block_size
//! let attn = CausalSelfAttention::new(vs.root() / "transformer" / "h" / 1 / "attn", config)?;
//! let x = Tensor::f_randn([4, 6, 8], (Kind::Float, Device::Cpu))?; // (B, T, C)
//! let y = attn.f_forward_t(&x, false)?; // eval mode: no dropout
//! assert_eq!(y.size(), [4, 6, 8]); // (B, T, C)
//! // The VarStore's names are the keys of nanoGPT's model.state_dict():
//! let keys: Vec<String> = tch_attention::checkpoint::state_dict(&vs).into_keys().collect();
//! assert_eq!(keys, [
//!     "transformer.h.1.attn.c_attn.bias", "transformer.h.1.attn.c_attn.weight",
//!     "transformer.h.1.attn.c_proj.bias", "transformer.h.1.attn.c_proj.weight",
//! ]);
//! // A sequence longer than block_size is an error naming `x`, not a libtorch abort:
//! let too_long = Tensor::f_zeros([4, 7, 8], (Kind::Float, Device::Cpu))?;
//! let err = attn.f_forward_t(&too_long, false).unwrap_err();
//! assert!(matches!(err, tch_attention::Error::Shape { .. }), "{err}");
//! # Ok(())
//! # }
//! ```
//!
//! Every fallible call returns the one [`Error`], which names the argument, what was
//! expected and what came.
//!
//! Depending on it from your own crate takes two dependency lines and a short
//! `build.rs` (so your binaries find libtorch without `LD_LIBRARY_PATH`): see
//! [Use it in your crate](#use-it-in-your-crate) below.
//!
//! # Modules
//!
//! Layers, every import pointing down: [`error`] and printing at the ground; then
//! [`io`] and [`nn`]; [`attention`]; [`models`]; [`data`], [`train`] and [`generate`];
//! [`bench`](mod@bench); the binaries.
//!
//! - [`nn`]: building blocks under PyTorch's names and init (`Linear`, `LayerNorm`,
//!   `RMSNorm`, rotary embeddings, quantised linears) and strict state_dict loading;
//! - [`attention`]: functional scaled dot-product attention with typed masks and the
//!   2025 options, the KV cache, `torch.nn.MultiheadAttention`;
//! - [`models`]: whole blocks and models, one folder per family: `lecture`, `nanogpt`,
//!   `bert`, `llama` (the Llama-family decoder, from a GGUF or a Hugging Face folder);
//!   every language model implements [`models::CausalLm`];
//! - [`io`]: file formats: safetensors, `torch.save` archives (without Python), GGUF
//!   with every ggml block type, atomic writes;
//! - [`checkpoint`]: what a checkpoint's tensors mean: attention layouts, lossless
//!   conversion between them, saving modules;
//! - [`parity`]: parity cases (a module, its inputs and PyTorch's outputs in one file)
//!   and `assert_close` comparison;
//! - [`data`]: training data as the PyTorch scripts read and write it (the lecture's
//!   characters, nanoGPT's token files and `meta.pkl`);
//! - [`train`]: training as PyTorch does it, step for step (the lecture's `gpt.py`,
//!   nanoGPT's `train.py`, `torch.optim.AdamW`); [`generate`]: one generation loop and
//!   transformers' warpers for every [`models::CausalLm`];
//! - `serve` (feature `serve`, on by default): `attn serve`, an OpenAI-compatible HTTP
//!   server on the generation loop's pieces;
//! - [`heatmap`]: attention weights drawn as PNG heatmaps;
//! - [`bench`](mod@bench): benchmark configurations, workloads and timing, the same as
//!   the PyTorch side's;
//! - [`notebook`], [`pretty`], [`doctor`]: the notebook replay, PyTorch's tensor
//!   printing, the install diagnosis; [`installed`]: where the packages `make setup`
//!   installs keep their models and data; [`device`]: loading libtorch's CUDA backend on
//!   demand; [`cpu`]: the CPU's SIMD extensions and libtorch's kernel class;
//!   [`error`]: the one typed error.
//!
//! Runnable programs are in `examples/` (`cargo run --example gpt_block`,
//! `mha_state_dict`, `notebook`); the README follows.
//!
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]
pub mod attention;
pub mod bench;
mod check;
pub mod checkpoint;
pub mod cpu;
pub mod data;
pub mod device;
pub mod doctor;
pub mod error;
pub mod explain;
pub mod generate;
pub mod heatmap;
pub mod installed;
pub mod io;
pub mod memory;
pub mod models;
pub mod nn;
pub mod notebook;
pub mod parity;
pub mod pretty;
#[cfg(feature = "serve")]
pub mod serve;
pub mod train;
pub use error::{Error, Result};
