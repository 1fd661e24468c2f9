//! Root-mean-square layer norm (Zhang & Sennrich, 2019) as transformers'
//! `LlamaRMSNorm`, with its parameter name `weight`.

use std::borrow::Borrow;

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// `LlamaRMSNorm(E, eps)`: scales each vector by the reciprocal of its root mean square,
/// then by `weight`; no mean is subtracted and there is no bias. Built by [`rms_norm`];
/// `(*, E) -> (*, E)`.
#[derive(Debug)]
pub struct RmsNorm {
    /// `weight`, `[E]`, initialised to 1.
    pub weight: Tensor,
    /// `variance_epsilon`, added to the mean square before the root (Llama's
    /// `rms_norm_eps`, 1e-5 for SmolLM2; transformers' default 1e-6).
    pub eps: f64,
}

/// `LlamaRMSNorm(size, eps)` under `path`.
pub fn rms_norm<'a>(path: impl Borrow<Path<'a>>, size: i64, eps: f64) -> Result<RmsNorm> {
    let path = path.borrow();
    if size <= 0 || eps.is_nan() || eps < 0.0 {
        return Err(Error::config(
            path.path("weight"),
            format!("size must be positive and eps non-negative, got size {size}, eps {eps}"),
        ));
    }
    Ok(RmsNorm {
        weight: path.f_var("weight", &[size], Init::Const(1.0))?,
        eps,
    })
}

impl RmsNorm {
    /// `weight * (x / sqrt(mean(x^2) + eps))`: `(*, E) -> (*, E)`.
    ///
    /// As transformers does, the statistics are taken in float32 whatever `x`'s dtype,
    /// and the normalised value is cast back to it before the scale.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        let e = self.weight.size()[0];
        if x.dim() == 0 || x.size().last() != Some(&e) {
            return Err(Error::shape("x", format!("(*, E) with E = {e}"), &x.size()));
        }
        let kind = x.kind();
        let x32 = x.f_to_kind(Kind::Float)?;
        let variance = x32.f_pow_tensor_scalar(2)?.f_mean_dim(-1, true, None)?;
        let normed = x32.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(self.weight.f_mul(&normed.f_to_kind(kind)?)?)
    }
}
