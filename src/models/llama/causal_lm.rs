//! [`LlamaForCausalLM`] as a [`CausalLm`] (what the generation loop drives) and a
//! [`RaggedLm`] (what continuous batching drives).

use tch::{Device, Kind, Tensor};

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
        let h = self.model.f_forward_ragged(tokens, caches)?; // (N, E)
        self.f_ragged_head(&h)
    }

    fn cached_len(&self, cache: &LlamaCache) -> i64 {
        cache.len()
    }

    fn f_copy_prefix(&self, from: &LlamaCache, len: i64, into: &mut LlamaCache) -> Result<bool> {
        from.f_copy_prefix_into(len, into)
    }
}

impl LlamaForCausalLM {
    /// The logits `(N, V)` of the ragged step's hidden states `h` `(N, E)`: the model's
    /// own head, except for a float32 head over several rows, whose product runs with
    /// the head on the left. MKL's float32 GEMM of a few rows against the `(V, E)` head
    /// costs about twice its one-row GEMV (it repacks the head on every call, measured
    /// on Zen 4 with one thread: 21.5 against 9.3 ms for 4 rows of SmolLM2's head),
    /// while `W h^T` reads the head once (10 ms for 4 rows). Each logit is still one
    /// dot product of length E, in float32; the order of its additions may differ from
    /// the one-row product's, as any GEMM's with another row count does.
    fn f_ragged_head(&self, h: &Tensor) -> Result<Tensor> {
        let weight = self.lm_head_weight();
        let plain = self.quantized_head.is_none() && self.config.final_logit_softcapping.is_none();
        if !plain || h.size()[0] == 1 || h.kind() != Kind::Float || weight.kind() != Kind::Float {
            return self.head(h);
        }
        // (V, E) @ (E, N) -> (V, N) -> (N, V)
        let logits = weight.f_matmul(&h.f_transpose(0, 1)?)?;
        Ok(logits.f_transpose(0, 1)?.f_contiguous()?)
    }
}
