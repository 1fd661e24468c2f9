//! transformers' `LlamaMLP`: the SwiGLU feed-forward block (Shazeer, "GLU Variants
//! Improve Transformer", 2020), `down_proj(silu(gate_proj(x)) * up_proj(x))`; with
//! the tanh GELU for the gate it is Gemma's GeGLU.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::Tensor;

use super::config::{Activation, LlamaConfig};
use super::projection;
use crate::error::{Error, Result};
use crate::nn::Projection;

/// The SwiGLU MLP under `gate_proj`, `up_proj`, `down_proj` (no biases).
#[derive(Debug)]
pub struct LlamaMlp {
    /// `gate_proj`: E -> I, through SiLU.
    pub gate_proj: Projection,
    /// `up_proj`: E -> I.
    pub up_proj: Projection,
    /// `down_proj`: I -> E.
    pub down_proj: Projection,
    /// The gate's activation.
    pub act: Activation,
}

impl LlamaMlp {
    /// The MLP of `config` under `path` (`model.layers.{i}.mlp`), with fresh weights
    /// drawn from N(0, initializer_range) as transformers initialises them.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: &LlamaConfig) -> Result<Self> {
        let p = path.borrow();
        let (e, i, std) = (
            config.hidden_size,
            config.intermediate_size,
            config.initializer_range,
        );
        Ok(Self {
            gate_proj: projection(&(p / "gate_proj"), e, i, std)?,
            up_proj: projection(&(p / "up_proj"), e, i, std)?,
            down_proj: projection(&(p / "down_proj"), i, e, std)?,
            act: config.hidden_act,
        })
    }

    /// `(*, E) -> (*, E)`.
    pub fn f_forward(&self, x: &Tensor) -> Result<Tensor> {
        let e = self.gate_proj.in_features();
        if x.size().last() != Some(&e) {
            return Err(Error::shape("x", format!("(*, E) with E = {e}"), &x.size()));
        }
        let gate = self.gate_proj.f_forward(x)?;
        let gate = match self.act {
            Activation::Silu => gate.f_silu()?,
            Activation::GeluTanh => gate.f_gelu("tanh")?,
        };
        let up = self.up_proj.f_forward(x)?;
        self.down_proj.f_forward(&gate.f_mul(&up)?)
    }
}
