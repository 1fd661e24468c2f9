//! Logit soft-capping (Gemma 2, `attn_logit_softcapping`): the scaled scores are squashed
//! into `(-cap, cap)` by `cap * tanh(scores / cap)` before any mask or bias is added, as
//! transformers' `modeling_gemma2.py` `eager_attention_forward` does (divide, tanh,
//! multiply, in that order).

use tch::Tensor;

use crate::error::{Error, Result};

/// `cap` must be positive and finite.
pub(crate) fn check(cap: f64) -> Result<()> {
    if !(cap > 0.0 && cap.is_finite()) {
        return Err(Error::invalid(
            "softcap",
            format!("must be positive and finite, got {cap}"),
        ));
    }
    Ok(())
}

/// `cap * tanh(scores / cap)`.
pub(crate) fn soft_cap(scores: &Tensor, cap: f64) -> Result<Tensor> {
    Ok(scores.f_div_scalar(cap)?.f_tanh()?.f_mul_scalar(cap)?)
}
