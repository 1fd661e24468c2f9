//! Generating text with any [`CausalLm`]: one loop (prefill, then a token per step,
//! greedy or sampled, stop tokens, a streaming callback) and one set of
//! transformers-ordered warpers, for the lecture's GPT, nanoGPT's GPT and the
//! Llama-family decoder alike.
//!
//! - [`generate`]: one prompt of token ids, streamed, as transformers' `generate` does
//!   it for one sequence;
//! - [`generate_batch`]: `model.generate(idx, max_new_tokens)` of the lecture's `gpt.py`
//!   and nanoGPT's `model.py` on a `(B, T)` batch (see [`decode`] on the cropped
//!   window);
//! - [`nanogpt`]: sampling from a nanoGPT `ckpt.pt` as `sample.py` does;
//! - [`Batcher`]: continuous batching for a [`RaggedLm`] (the Llama family): sequences
//!   join and leave between steps, one batched forward per step, cached prompt
//!   prefixes reused.

pub mod argmax;
pub mod batcher;
pub mod decode;
pub mod nanogpt;
mod options;
pub mod warpers;

pub use crate::models::{CausalLm, RaggedLm};
pub use batcher::{Batcher, FinishReason, SeqId, StepToken};
pub use decode::{generate, generate_batch};
pub use options::{Decoding, GenerateOptions, Generation};
pub use warpers::{temperature, top_k, top_p, SamplingConfig};
