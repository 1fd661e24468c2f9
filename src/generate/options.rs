//! What one generation is asked for, and what it gives back.

use std::time::Duration;

use super::warpers::SamplingConfig;
use crate::error::{Error, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The highest logit (`do_sample=False`).
    Greedy,
    /// Sampled from the warped distribution (`do_sample=True`, `torch.multinomial` on
    /// libtorch's default generator); with a seed, the default generator is seeded
    /// first, as `torch.manual_seed(seed)` before `generate`.
    Sample {
        /// Temperature, top-k, top-p.
        config: SamplingConfig,
        /// The seed of libtorch's default CPU generator, if it is to be set.
        seed: Option<u64>,
    },
}

impl Decoding {
    /// `attn generate`'s and `attn serve`'s reading of the sampling settings: greedy
    /// unless one of them is given (a `temperature` of 0 counts as not given); the
    /// ones not given keep transformers' defaults ([`SamplingConfig::default`]), and a
    /// `top_k` of 0 turns top-k off, as transformers' `top_k=0`. Unchecked: see
    /// [`SamplingConfig::validate`].
    pub fn from_settings(
        temperature: Option<f64>,
        top_k: Option<i64>,
        top_p: Option<f64>,
        seed: Option<u64>,
    ) -> Self {
        let sampling = temperature.is_some_and(|t| t != 0.0)
            || top_k.is_some()
            || top_p.is_some()
            || seed.is_some();
        if !sampling {
            return Decoding::Greedy;
        }
        let d = SamplingConfig::default();
        Decoding::Sample {
            config: SamplingConfig {
                temperature: temperature.unwrap_or(d.temperature),
                top_k: top_k.map_or(d.top_k, |k| (k != 0).then_some(k)),
                top_p: top_p.unwrap_or(d.top_p),
            },
            seed,
        }
    }
}

/// The settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// `max_new_tokens`: the most tokens generated (EOS included); at least 0.
    pub max_new_tokens: i64,
    /// Greedy or sampled.
    pub decoding: Decoding,
    /// The tokens that end generation (kept in the output); empty never stops early
    /// (`--ignore-eos`). Only for one sequence at a time.
    pub eos_token_ids: Vec<i64>,
    /// Decode with the model's cache (default). `false` recomputes the whole context
    /// for every token, as the lecture's `gpt.py` does.
    pub kv_cache: bool,
}

impl GenerateOptions {
    /// `max_new_tokens` tokens, greedily, with the cache, stopping at nothing.
    pub fn greedy(max_new_tokens: i64) -> Self {
        Self {
            max_new_tokens,
            decoding: Decoding::Greedy,
            eos_token_ids: Vec::new(),
            kv_cache: true,
        }
    }

    /// `max_new_tokens` tokens sampled with `config` from the default generator as it
    /// stands (seed it first), with the cache, stopping at nothing.
    pub fn sampled(max_new_tokens: i64, config: SamplingConfig) -> Self {
        Self {
            decoding: Decoding::Sample { config, seed: None },
            ..Self::greedy(max_new_tokens)
        }
    }

    /// Checks `max_new_tokens >= 0` and the sampling settings.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens < 0 {
            return Err(Error::invalid(
                "max_new_tokens",
                format!("must not be negative, got {}", self.max_new_tokens),
            ));
        }
        if let Decoding::Sample { config, .. } = &self.decoding {
            config.validate()?;
        }
        Ok(())
    }
}

/// What [`super::generate`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens, after the prompt (the EOS that ended it included).
    pub ids: Vec<i64>,
    /// Whether an EOS token ended it.
    pub stopped_at_eos: bool,
    /// The time of the prompt's forward pass and the first token's choice.
    pub prefill: Duration,
    /// The time of every later step together.
    pub decode: Duration,
}

impl Generation {
    /// The mean time of one decoding step after the prefill, if there was one.
    pub fn decode_per_token(&self) -> Option<Duration> {
        let steps = self.ids.len().saturating_sub(1) as u32;
        (steps > 0).then(|| self.decode / steps)
    }
}
