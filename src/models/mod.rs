//! Models, one folder each, built from `crate::nn` and `crate::attention`, under the
//! state_dict names of the PyTorch code they follow:
//!
//! - [`lecture`]: Karpathy's "Let's build GPT" lecture (`gpt.py`): `Head`,
//!   `MultiHeadAttention`;
//! - [`nanogpt`]: nanoGPT's `model.py`: `CausalSelfAttention`;
//! - [`bert`]: a BERT encoder for sentence embeddings (all-MiniLM-L6-v2);
//! - [`llama`]: a Llama-family decoder LM (SmolLM2-135M-Instruct, from a GGUF).
//!
//! Every language model implements [`CausalLm`] beside itself, which is all that
//! generation and training need of it.

pub mod bert;
pub(crate) mod causal_lm;
pub mod lecture;
pub mod llama;
pub mod nanogpt;
pub(crate) mod token_ids;

pub use causal_lm::{CausalLm, RaggedLm};
