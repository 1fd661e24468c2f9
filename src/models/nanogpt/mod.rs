//! nanoGPT's modules (Karpathy, `model.py`), under its state_dict names:
//! [`CausalSelfAttention`], with incremental decoding through a
//! [`KvCache`](crate::attention::KvCache), and the whole [`Gpt`].
//!
//! Configs are values: a `with_*` setter returns the changed config, and dropping it is
//! a warning (`#[must_use]`), here denied:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let config = tch_attention::models::nanogpt::CausalSelfAttentionConfig::new(8, 2, 6);
//! config.with_dropout(0.1); // the config with dropout is dropped; `config` is unchanged
//! ```

mod cached;
mod causal_self_attention;
mod gpt;

pub use causal_self_attention::{CausalSelfAttention, CausalSelfAttentionConfig};
pub use gpt::{Block, Gpt, GptConfig, Mlp, GPT2_PADDED_VOCAB};
