//! Text generation with a [`LlamaForCausalLM`] as transformers' `generate` does it for
//! one sequence: the prompt in one forward pass (prefill) into a static
//! [`LlamaCache`], then one token per step; greedy (argmax) or sampled (the warpers,
//! softmax, `torch.multinomial` on the default generator, so that the same seed set by
//! `torch.manual_seed` gives the same tokens); the EOS token ends it and is kept.

use std::time::{Duration, Instant};

use tch::{Kind, Tensor};

use super::cache::LlamaCache;
use super::model::LlamaForCausalLM;
use super::warpers::SamplingConfig;
use crate::error::{Error, Result};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The highest logit (`do_sample=False`).
    Greedy,
    /// Sampled from the warped distribution (`do_sample=True`); with a seed, the default
    /// generator is seeded first, as `torch.manual_seed(seed)` before `generate`.
    Sample {
        /// Temperature, top-k, top-p.
        config: SamplingConfig,
        /// The seed of libtorch's default CPU generator, if it is to be set.
        seed: Option<u64>,
    },
}

/// The settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// `max_new_tokens`: the most tokens generated (EOS included).
    pub max_new_tokens: i64,
    /// Greedy or sampled.
    pub decoding: Decoding,
    /// The tokens that end generation (kept in the output); empty never stops early
    /// (`--ignore-eos`).
    pub eos_token_ids: Vec<i64>,
}

/// What [`generate`] produced.
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

/// The continuation of `prompt` (token ids) under `options`; `on_token` sees each new
/// token as soon as it is chosen (for streaming).
pub fn generate(
    model: &LlamaForCausalLM,
    prompt: &[i64],
    options: &GenerateOptions,
    mut on_token: impl FnMut(i64),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::invalid("prompt", "needs at least one token"));
    }
    if options.max_new_tokens < 0 {
        return Err(Error::invalid(
            "max_new_tokens",
            format!("must be >= 0, got {}", options.max_new_tokens),
        ));
    }
    if let Decoding::Sample { config, seed } = options.decoding {
        config.validate()?;
        if let Some(seed) = seed {
            tch::manual_seed(seed as i64);
        }
    }
    let weights = &model.model.embed_tokens;
    let (kind, device) = (weights.kind(), weights.device());
    let capacity = prompt.len() as i64 + options.max_new_tokens.max(1);
    let mut cache = LlamaCache::new(&model.config, 1, capacity, kind, device)?;
    let mut out = Generation {
        ids: Vec::new(),
        stopped_at_eos: false,
        prefill: Duration::ZERO,
        decode: Duration::ZERO,
    };
    let mut input = Tensor::f_from_slice(prompt)?
        .f_view([1, -1])?
        .f_to_device(device)?;
    let start = Instant::now();
    tch::no_grad(|| -> Result<()> {
        for step in 0..options.max_new_tokens {
            let logits = model
                .f_forward_last(&input, Some(&mut cache))?
                .f_to_kind(Kind::Float)?; // (1, V)
            let next = choose(&logits, &options.decoding)?;
            out.ids.push(next);
            on_token(next);
            if step == 0 {
                out.prefill = start.elapsed();
            }
            if options.eos_token_ids.contains(&next) {
                out.stopped_at_eos = true;
                break;
            }
            input = Tensor::f_from_slice(&[next])?
                .f_view([1, 1])?
                .f_to_device(device)?;
        }
        Ok(())
    })?;
    out.decode = start.elapsed().saturating_sub(out.prefill);
    Ok(out)
}

/// The next token from the last position's logits `(1, V)`.
fn choose(logits: &Tensor, decoding: &Decoding) -> Result<i64> {
    let next = match decoding {
        Decoding::Greedy => logits.f_argmax(-1, false)?,
        Decoding::Sample { config, .. } => {
            let probs = config.warp(logits)?.f_softmax(-1, Kind::Float)?;
            probs.f_multinomial(1, false)?.f_squeeze_dim(1)?
        }
    };
    Ok(next.f_int64_value(&[0])?)
}
