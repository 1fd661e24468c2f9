//! [`LlamaForCausalLM`] as a [`CausalLm`] (what the generation loop drives) and a
//! [`RaggedLm`] (what continuous batching drives).

use tch::{Device, Tensor};

use super::cache::LlamaCache;
use super::model::LlamaForCausalLM;
use crate::error::Result;
use crate::models::{CausalLm, RaggedLm};

impl CausalLm for LlamaForCausalLM {
    type Cache = LlamaCache;

    /// Rotary positions have no table to run past: transformers' `generate` crops
    /// nothing, and neither does the crate.
    fn max_context(&self) -> Option<i64> {
        None
    }

    fn device(&self) -> Device {
        self.model.embed_tokens.device()
    }

    fn f_logits(&self, idx: &Tensor) -> Result<Tensor> {
        self.f_forward(idx, None)
    }

    /// A static cache in the weights' dtype, as transformers' `StaticCache`.
    fn new_cache(&self, batch: i64, capacity: i64) -> Result<LlamaCache> {
        let weights = &self.model.embed_tokens;
        LlamaCache::new(
            &self.config,
            batch,
            capacity,
            weights.kind(),
            weights.device(),
        )
    }

    fn f_logits_cached(&self, idx: &Tensor, cache: &mut LlamaCache) -> Result<Tensor> {
        self.f_forward(idx, Some(cache))
    }

    fn f_last_logits_cached(&self, idx: &Tensor, cache: &mut LlamaCache) -> Result<Tensor> {
        self.f_forward_last(idx, Some(cache))
    }
}

impl RaggedLm for LlamaForCausalLM {
    fn f_logits_ragged(&self, tokens: &Tensor, caches: &mut [&mut LlamaCache]) -> Result<Tensor> {
        let applies = {
            let shared: Vec<&LlamaCache> = caches.iter().map(|c| &**c).collect();
            tokens.size() == [caches.len() as i64] && self.step_applies(caches.len(), &shared)
        };
        let h = match applies {
            // Block kernels: the step on plain buffers (decode_step.rs), each row's
            // arithmetic that of the same sequence decoded alone.
            true => self.f_step(tokens, caches)?,
            false => self.model.f_forward_ragged(tokens, caches)?,
        }; // (N, E)

        // The model's own head: a float32 one over a few rows is the crate's matvec
        // kernel (nn::f_decode_linear), which reads the head once for all of them (MKL's
        // GEMM of 4 rows repacked SmolLM2's head on every call: 21.5 ms against 9.3 for
        // one row on Zen 4).
        self.head(&h)
    }

    fn cached_len(&self, cache: &LlamaCache) -> i64 {
        cache.len()
    }

    fn f_copy_prefix(&self, from: &LlamaCache, len: i64, into: &mut LlamaCache) -> Result<bool> {
        from.f_copy_prefix_into(len, into)
    }
}
