//! The one generation loop, for every [`CausalLm`]: the prompt in one forward pass
//! (prefill) into the model's cache, then one token per step; greedy (argmax) or
//! sampled (the warpers, softmax, `torch.multinomial` on the default generator, so the
//! same seed set by `torch.manual_seed` gives the same tokens).
//!
//! While the context fits the model's [`CausalLm::max_context`], each step runs only
//! the new token against the cache. Past it (learned position tables only), every
//! position's embedding shifts with the window, nothing cached stays valid, and each
//! token recomputes the cropped window, as `gpt.py` and nanoGPT's `sample.py` do. The
//! cached logits equal the recomputed ones to float32 rounding, which moves a sampled
//! token only if two of the draws `multinomial` compares tie to the last bit.

use std::ops::ControlFlow;
use std::time::Instant;

use tch::{Kind, Tensor};

use super::options::{Decoding, GenerateOptions, Generation};
use crate::error::{Error, Result};
use crate::models::CausalLm;

/// `model.generate(idx, max_new_tokens)`: `idx (B, T)` int64 followed by the new
/// tokens, `(B, T + max_new_tokens)` (fewer where a stop token of a single sequence
/// ended it).
pub fn generate_batch<M: CausalLm>(
    model: &M,
    idx: &Tensor,
    options: &GenerateOptions,
) -> Result<Tensor> {
    f_decode(model, idx, options, |next| {
        let stop = !options.eos_token_ids.is_empty()
            && options
                .eos_token_ids
                .contains(&next.f_int64_value(&[0, 0])?);
        Ok(if stop {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
}

/// The continuation of one `prompt` (token ids) under `options`; `on_token` sees each
/// new token as soon as it is chosen (for streaming). An EOS token ends it and is kept.
pub fn generate<M: CausalLm>(
    model: &M,
    prompt: &[i64],
    options: &GenerateOptions,
    mut on_token: impl FnMut(i64),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::invalid("prompt", "needs at least one token"));
    }
    let idx = Tensor::f_from_slice(prompt)?
        .f_view([1, -1])?
        .f_to_device(model.device())?;
    let mut out = Generation {
        ids: Vec::new(),
        stopped_at_eos: false,
        prefill: Default::default(),
        decode: Default::default(),
    };
    let start = Instant::now();
    let _ = f_decode(model, &idx, options, |next| {
        let id = next.f_int64_value(&[0, 0])?;
        out.ids.push(id);
        on_token(id);
        if out.ids.len() == 1 {
            out.prefill = start.elapsed();
        }
        out.stopped_at_eos = options.eos_token_ids.contains(&id);
        Ok(if out.stopped_at_eos {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    out.decode = start.elapsed().saturating_sub(out.prefill);
    Ok(out)
}

/// Extends `idx (B, T)` by up to `max_new_tokens` tokens; `on_step` sees each step's
/// tokens `(B, 1)` and may end the generation after them.
fn f_decode<M: CausalLm>(
    model: &M,
    idx: &Tensor,
    options: &GenerateOptions,
    mut on_step: impl FnMut(&Tensor) -> Result<ControlFlow<()>>,
) -> Result<Tensor> {
    options.validate()?;
    let size = idx.size();
    let &[b, t0] = size.as_slice() else {
        return Err(Error::shape("idx", "(B, T) with B, T >= 1", &size));
    };
    if b < 1 || t0 < 1 {
        return Err(Error::shape("idx", "(B, T) with B, T >= 1", &size));
    }
    if !options.eos_token_ids.is_empty() && b != 1 {
        return Err(Error::invalid(
            "eos_token_ids",
            format!("stop tokens need one sequence (B = 1), got B = {b}"),
        ));
    }
    if let Decoding::Sample {
        seed: Some(seed), ..
    } = options.decoding
    {
        tch::manual_seed(seed as i64);
    }
    let capacity = t0 + options.max_new_tokens.max(1);
    tch::no_grad(|| {
        let mut idx = idx.shallow_clone();
        let mut cache = match options.kv_cache {
            true => Some(model.new_cache(b, capacity)?),
            false => None,
        };
        let mut cached = 0; // positions of idx already in the cache
        for _ in 0..options.max_new_tokens {
            let t = idx.size()[1];
            let fits = model.max_context().is_none_or(|m| t <= m);
            let logits = match cache.as_mut().filter(|_| fits) {
                Some(cache) => {
                    let new = idx.f_narrow(1, cached, t - cached)?;
                    cached = t;
                    model.f_last_logits_cached(&new, cache)?
                }
                None => {
                    // idx_cond = idx[:, -block_size:]
                    let start = model.max_context().map_or(0, |m| (t - m).max(0));
                    let window = idx.f_narrow(1, start, t - start)?;
                    model.f_logits(&window)?.f_select(1, -1)?
                }
            };
            let next = choose(&logits.f_to_kind(Kind::Float)?, &options.decoding)?; // (B, 1)
            idx = Tensor::f_cat(&[&idx, &next], 1)?;
            if on_step(&next)?.is_break() {
                break;
            }
        }
        Ok(idx)
    })
}

/// The next token of each row from the last position's logits `(B, V)` (float32):
/// `(B, 1)`. The one rule of choosing, shared with the batcher's steps.
pub(super) fn choose(logits: &Tensor, decoding: &Decoding) -> Result<Tensor> {
    Ok(match decoding {
        Decoding::Greedy => super::argmax::f_argmax_last(logits)?,
        Decoding::Sample { config, .. } => {
            let probs = config.warp(logits)?.f_softmax(-1, Kind::Float)?;
            probs.f_multinomial(1, false)?
        }
    })
}
