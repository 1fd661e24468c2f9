//! The one trait every causal language model implements, so that generation, training's
//! loss estimate and serving (the layers above) take any of them: the lecture's GPT,
//! nanoGPT's GPT and the Llama-family decoder.
//!
//! It lives here, beside the models, rather than in `generate/`: each model implements
//! it in its own file, and a model may not import a layer above it.

use tch::{Device, Tensor};

use crate::error::Result;

/// A decoder-only language model: token ids in, next-token logits out, with an
/// optional cache of earlier positions owned by the caller.
pub trait CausalLm {
    /// What the model keeps between cached steps.
    type Cache;

    /// The longest context the model takes, where a table of positions ends there
    /// (learned position embeddings: `block_size`); generation past it crops the
    /// context to its last `max_context` tokens, as `gpt.py` and nanoGPT's `sample.py`
    /// do. `None` where positions are not bounded by a table (rotary embeddings):
    /// nothing is cropped, as transformers' `generate` crops nothing.
    fn max_context(&self) -> Option<i64>;

    /// The device of the model's parameters (and of the token ids it takes).
    fn device(&self) -> Device;

    /// Eval-mode logits `(B, T, V)` of `idx (B, T)`, from scratch.
    fn f_logits(&self, idx: &Tensor) -> Result<Tensor>;

    /// An empty cache for `batch` sequences of up to `capacity` positions in all.
    fn new_cache(&self, batch: i64, capacity: i64) -> Result<Self::Cache>;

    /// Eval-mode logits `(B, T, V)` of `idx (B, T)`, the positions after those in
    /// `cache`, which it extends.
    fn f_logits_cached(&self, idx: &Tensor, cache: &mut Self::Cache) -> Result<Tensor>;

    /// The logits `(B, V)` of the last position of `idx (B, T)` only, extending `cache`;
    /// a model whose head is costly runs it on that position alone (transformers'
    /// `logits_to_keep=1`).
    fn f_last_logits_cached(&self, idx: &Tensor, cache: &mut Self::Cache) -> Result<Tensor> {
        Ok(self.f_logits_cached(idx, cache)?.f_select(1, -1)?)
    }
}

/// A [`CausalLm`] whose sequences decode together (continuous batching): one forward
/// for one new token of each of N sequences, each of its own length, in its own cache of
/// one sequence; and a cached prompt's prefix copied into a new cache, so that a request
/// that begins the same way does not recompute it.
pub trait RaggedLm: CausalLm {
    /// The logits `(N, V)` of `tokens` `(N)` int64: token `i` is the next position of
    /// `caches[i]`, which each then hold it too.
    fn f_logits_ragged(&self, tokens: &Tensor, caches: &mut [&mut Self::Cache]) -> Result<Tensor>;

    /// How many positions `cache` holds.
    fn cached_len(&self, cache: &Self::Cache) -> i64;

    /// Copies the first `len` positions of `from` into `into` (empty, from
    /// [`CausalLm::new_cache`]); `Ok(false)` where `from` no longer holds them all.
    fn f_copy_prefix(&self, from: &Self::Cache, len: i64, into: &mut Self::Cache) -> Result<bool>;
}

/// [`CausalLm`] for a GPT of learned positions (`block_size` of them) and one growing
/// `KvCache` per block: the lecture's `GPTLanguageModel` and nanoGPT's `GPT`, whose
/// `f_forward_t`, `new_caches` and `f_forward_cached` are the model's own; `$wte` is the
/// token embedding, whose device is the model's.
macro_rules! gpt_causal_lm {
    ($model:ty, $wte:ident) => {
        impl $crate::models::CausalLm for $model {
            type Cache = Vec<$crate::attention::KvCache>;

            fn max_context(&self) -> Option<i64> {
                Some(self.config.block_size)
            }

            fn device(&self) -> tch::Device {
                self.$wte.device()
            }

            fn f_logits(&self, idx: &tch::Tensor) -> $crate::error::Result<tch::Tensor> {
                self.f_forward_t(idx, false)
            }

            /// Caches that grow as they fill: `batch` and `capacity` are not needed.
            fn new_cache(&self, _batch: i64, _capacity: i64) -> $crate::error::Result<Self::Cache> {
                Ok(self.new_caches())
            }

            fn f_logits_cached(
                &self,
                idx: &tch::Tensor,
                cache: &mut Self::Cache,
            ) -> $crate::error::Result<tch::Tensor> {
                self.f_forward_cached(idx, cache)
            }
        }
    };
}
pub(crate) use gpt_causal_lm;
