//! `torch.nn.LayerNorm(normalized_shape, eps, bias)` over the last dimension, with
//! PyTorch's parameter names `weight` and `bias` (BERT's checkpoints call the module
//! `LayerNorm`; nanoGPT's `LayerNorm(ndim, bias)` is the same module with `bias=False`
//! allowed).

use std::borrow::Borrow;

use tch::nn::{Init, Path};
use tch::Tensor;

use crate::error::Result;

/// `torch.nn.LayerNorm(E, eps)`: normalises the last dimension, then scales by `weight`
/// and shifts by `bias`. Built by [`layer_norm`]; `(*, E) -> (*, E)`.
#[derive(Debug)]
pub struct LayerNorm {
    /// `weight`, `[E]`, initialised to 1.
    pub weight: Tensor,
    /// `bias`, `[E]`, initialised to 0; `None` for `bias=False`.
    pub bias: Option<Tensor>,
    /// `eps`, added to the variance before the square root (PyTorch's default `1e-5`,
    /// BERT's `layer_norm_eps` `1e-12`).
    pub eps: f64,
}

/// `nn.LayerNorm(size, eps=eps)` under `path`.
pub fn layer_norm<'a>(path: impl Borrow<Path<'a>>, size: i64, eps: f64) -> Result<LayerNorm> {
    LayerNorm::new(path, size, eps, true)
}

impl LayerNorm {
    /// `nn.LayerNorm(size, eps=eps, bias=bias)` under `path` (no random draw).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, size: i64, eps: f64, bias: bool) -> Result<Self> {
        let path = path.borrow();
        Ok(LayerNorm {
            weight: path.f_var("weight", &[size], Init::Const(1.0))?,
            bias: match bias {
                true => Some(path.f_var("bias", &[size], Init::Const(0.0))?),
                false => None,
            },
            eps,
        })
    }

    /// `F.layer_norm(x, (E,), weight, bias, eps)`: `(*, E) -> (*, E)`.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        let e = self.weight.size();
        Ok(x.f_layer_norm(&e, Some(&self.weight), self.bias.as_ref(), self.eps, false)?)
    }
}
