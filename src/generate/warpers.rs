//! transformers' sampling warpers, in the order `generate` applies them
//! (`_get_logits_processor`): temperature, then top-k, then top-p. Each takes and
//! returns scores `(N, V)`; a removed token's score becomes `-inf`.
//!
//! nanoGPT's `sample.py` (and the lecture's `gpt.py`, with temperature 1 and no top-k)
//! are the first two: `logits / temperature`, then
//! `logits[logits < torch.topk(logits, min(top_k, V))[0][:, [-1]]] = -inf`, which is
//! `TopKLogitsWarper`'s rule; a division by 1.0 changes no bit, so skipping it is exact.

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// The sampling settings, with `GenerationConfig`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// `temperature` (default 1.0, which skips the warper): scores are divided by it.
    pub temperature: f64,
    /// `top_k` (default `Some(50)`, `GenerationConfig`'s; `None` turns it off, as
    /// transformers' `top_k=0` and nanoGPT's `top_k=None` do): keep the k highest
    /// scores (and ties); at least 1.
    pub top_k: Option<i64>,
    /// `top_p` (default 1.0, which skips the warper): keep the smallest set of the
    /// highest-scoring tokens whose probabilities sum to more than `top_p`.
    pub top_p: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: Some(50),
            top_p: 1.0,
        }
    }
}

impl SamplingConfig {
    /// No warper: the model's own distribution (`gpt.py`'s sampling).
    pub fn none() -> Self {
        Self {
            temperature: 1.0,
            top_k: None,
            top_p: 1.0,
        }
    }

    /// Checks the values as the warpers' constructors do.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(
                "temperature",
                format!("must be a positive number, got {}", self.temperature),
            ));
        }
        if let Some(k) = self.top_k.filter(|&k| k < 1) {
            return Err(Error::invalid(
                "top_k",
                format!("must be at least 1, got {k}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(Error::invalid(
                "top_p",
                format!("must be in [0, 1], got {}", self.top_p),
            ));
        }
        Ok(())
    }

    /// `scores` `(N, V)` through the warpers this config turns on, in transformers' order.
    pub fn warp(&self, scores: &Tensor) -> Result<Tensor> {
        let mut s = scores.shallow_clone();
        if self.temperature != 1.0 {
            s = temperature(&s, self.temperature)?;
        }
        if let Some(k) = self.top_k {
            s = top_k(&s, k)?;
        }
        if self.top_p < 1.0 {
            s = top_p(&s, self.top_p)?;
        }
        Ok(s)
    }
}

/// `TemperatureLogitsWarper`: `scores / temperature`.
pub fn temperature(scores: &Tensor, temperature: f64) -> Result<Tensor> {
    Ok(scores.f_div_scalar(temperature)?)
}

/// `TopKLogitsWarper`: scores below the k-th highest become `-inf`.
pub fn top_k(scores: &Tensor, k: i64) -> Result<Tensor> {
    let v = scores.size().last().copied().unwrap_or(0);
    let k = k.max(1).min(v);
    let (values, _) = scores.f_topk(k, -1, true, true)?;
    let kth = values.f_narrow(-1, k - 1, 1)?; // (N, 1)
    Ok(scores.f_masked_fill(&scores.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?)
}

/// `TopPLogitsWarper`: sorted ascending, the tokens whose cumulative probability is at
/// most `1 - top_p` become `-inf`; the most likely token always stays.
pub fn top_p(scores: &Tensor, p: f64) -> Result<Tensor> {
    let (sorted, indices) = scores.f_sort(-1, false)?;
    let cumulative = sorted
        .f_softmax(-1, Kind::Float)?
        .f_cumsum(-1, Kind::Float)?;
    let remove_sorted = cumulative.f_le(1.0 - p)?;
    let v = remove_sorted.size().last().copied().unwrap_or(0);
    // Keep at least min_tokens_to_keep = 1: the last (highest) entry.
    let _ = remove_sorted.f_narrow(-1, v - 1, 1)?.f_fill_(0)?;
    let remove = remove_sorted.f_scatter(-1, &indices, &remove_sorted)?;
    Ok(scores.f_masked_fill(&remove, f64::NEG_INFINITY)?)
}
