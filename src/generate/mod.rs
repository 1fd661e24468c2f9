//! Sampling from a trained language model: `gpt.py`'s `generate` (Karpathy, "Let's build
//! GPT"), with nanoGPT `sample.py`'s temperature and top-k, in eval mode.
//!
//! Each new token: the logits of the last position, divided by the temperature, cut to
//! the `top_k` largest, softmax, `torch.multinomial(probs, num_samples=1)` on the default
//! generator, appended. With temperature 1 and no top-k this is `gpt.py`'s `generate`
//! (a division by 1.0 changes no bit).
//!
//! `gpt.py` recomputes the whole context (cut to the last `block_size` tokens) for every
//! token. Here, while the context fits in `block_size`, the model runs only on the new
//! token against a KV cache of the earlier ones ([`CausalLm::f_logits_cached`]); once it
//! no longer fits, every position's embedding shifts with the window, nothing cached
//! stays valid, and each token recomputes the window as `gpt.py` does. The cached
//! logits equal the recomputed ones to float32 rounding, which moves a sampled token
//! only if two of the draws `multinomial` compares tie to the last bit.

use tch::{Kind, Tensor};

pub mod nanogpt;

use crate::attention::KvCache;
use crate::error::{Error, Result};
use crate::models::lecture::GptLanguageModel;

/// A causal language model that generation can drive.
pub trait CausalLm {
    /// What the model keeps between cached steps.
    type Cache;

    /// The longest context the model takes.
    fn block_size(&self) -> i64;

    /// Eval-mode logits `(B, T, V)` of `idx (B, T)`, `T <= block_size`, from scratch.
    fn f_logits(&self, idx: &Tensor) -> Result<Tensor>;

    /// An empty cache.
    fn new_cache(&self) -> Self::Cache;

    /// Eval-mode logits `(B, T, V)` of `idx (B, T)`, the positions after those in
    /// `cache`, which it extends; cached plus new must fit in `block_size`.
    fn f_logits_cached(&self, idx: &Tensor, cache: &mut Self::Cache) -> Result<Tensor>;
}

impl CausalLm for GptLanguageModel {
    type Cache = Vec<KvCache>;

    fn block_size(&self) -> i64 {
        self.config.block_size
    }

    fn f_logits(&self, idx: &Tensor) -> Result<Tensor> {
        self.f_forward_t(idx, false)
    }

    fn new_cache(&self) -> Vec<KvCache> {
        self.new_caches()
    }

    fn f_logits_cached(&self, idx: &Tensor, cache: &mut Vec<KvCache>) -> Result<Tensor> {
        self.f_forward_cached(idx, cache)
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleConfig {
    /// `max_new_tokens`. Default 500 (the lecture's).
    pub max_new_tokens: i64,
    /// Logits are divided by it: below 1 sharper, above 1 flatter. Default 1.0.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens. Default `None` (all).
    pub top_k: Option<i64>,
    /// Decode with the KV cache while the context fits. Default true; false recomputes
    /// the whole context every token, as `gpt.py` does.
    pub kv_cache: bool,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 500,
            temperature: 1.0,
            top_k: None,
            kv_cache: true,
        }
    }
}

impl SampleConfig {
    /// Checks `max_new_tokens >= 0`, a finite positive temperature and `top_k >= 1`.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens < 0 {
            return Err(Error::config(
                "max_new_tokens",
                format!("must not be negative, got {}", self.max_new_tokens),
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config(
                "temperature",
                format!("must be a positive number, got {}", self.temperature),
            ));
        }
        match self.top_k {
            Some(k) if k < 1 => Err(Error::config(
                "top_k",
                format!("must be at least 1, got {k}"),
            )),
            _ => Ok(()),
        }
    }
}

/// `model.generate(idx, max_new_tokens)`: `idx (B, T)` int64 followed by the sampled
/// tokens, `(B, T + max_new_tokens)`. Draws from the default generator: seed it first.
pub fn generate<M: CausalLm>(model: &M, idx: &Tensor, config: &SampleConfig) -> Result<Tensor> {
    config.validate()?;
    let size = idx.size();
    if size.len() != 2 || size[0] < 1 || size[1] < 1 {
        return Err(Error::shape("idx", "(B, T) with B, T >= 1", &size));
    }
    let bs = model.block_size();
    tch::no_grad(|| {
        let mut idx = idx.shallow_clone();
        let mut cache = model.new_cache();
        let mut cached = 0; // positions of idx already in the cache
        for _ in 0..config.max_new_tokens {
            let t = idx.size()[1];
            let logits = if config.kv_cache && t <= bs {
                let new = idx.f_narrow(1, cached, t - cached)?;
                cached = t;
                model.f_logits_cached(&new, &mut cache)?
            } else {
                // idx_cond = idx[:, -block_size:]
                let start = (t - bs).max(0);
                model.f_logits(&idx.f_narrow(1, start, t - start)?)?
            };
            let next = sample_next(&logits.f_select(1, -1)?, config)?; // (B, 1)
            idx = Tensor::f_cat(&[&idx, &next], 1)?;
        }
        Ok(idx)
    })
}

/// One token per row from the last position's logits `(B, V)`: `(B, 1)`.
fn sample_next(logits: &Tensor, config: &SampleConfig) -> Result<Tensor> {
    let mut logits = logits.f_div_scalar(config.temperature)?;
    if let Some(k) = config.top_k {
        // v, _ = torch.topk(logits, min(top_k, V)); logits[logits < v[:, [-1]]] = -inf
        let k = k.min(logits.size()[1]);
        let (v, _) = logits.f_topk(k, -1, true, true)?;
        let kth = v.f_narrow(1, k - 1, 1)?; // (B, 1)
        logits = logits.f_masked_fill(&logits.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    let probs = logits.f_softmax(-1, None::<Kind>)?; // (B, V)
    Ok(probs.f_multinomial(1, false)?)
}
