//! Root-mean-square layer norm (Zhang & Sennrich, 2019) as transformers'
//! `LlamaRMSNorm`, with its parameter name `weight`; and Gemma's variant
//! (`Gemma3RMSNorm`), which scales by `1 + weight` in float32.

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
    /// Gemma's `(1 + weight)` scale, applied in float32 before the cast back (Llama
    /// casts first, then scales by `weight`).
    pub unit_offset: bool,
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
        unit_offset: false,
    })
}

/// `Gemma3RMSNorm(size, eps)` under `path`: `weight` initialised to 0, the scale
/// `1 + weight`.
pub fn rms_norm_unit_offset<'a>(
    path: impl Borrow<Path<'a>>,
    size: i64,
    eps: f64,
) -> Result<RmsNorm> {
    let path = path.borrow();
    let mut norm = rms_norm(path, size, eps)?;
    let _ = tch::no_grad(|| norm.weight.f_zero_())?;
    Ok(RmsNorm {
        unit_offset: true,
        ..norm
    })
}

impl RmsNorm {
    /// `weight * (x / sqrt(mean(x^2) + eps))` (or `(1 + weight) * ...` with
    /// `unit_offset`): `(*, E) -> (*, E)`.
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
        if self.unit_offset {
            // output * (1.0 + self.weight.float()), then .type_as(x)
            let scale = self.weight.f_to_kind(Kind::Float)?.f_add_scalar(1.0)?;
            return Ok(normed.f_mul(&scale)?.f_to_kind(kind)?);
        }
        Ok(self.weight.f_mul(&normed.f_to_kind(kind)?)?)
    }
}
