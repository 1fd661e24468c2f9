//! `BertLayer` of transformers' `modeling_bert.py`: attention, then the feed-forward
//! block `BertIntermediate` (dense to `intermediate_size`, exact erf GELU) and
//! `BertOutput` (dense back, residual, LayerNorm). Post-norm, as BERT is.
//!
//! VarStore names (under `encoder.layer.<i>`): `attention.*` (see
//! [`BertAttention`]), `intermediate.dense.{weight,bias}`, `output.dense.*`,
//! `output.LayerNorm.*`.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::Tensor;

use super::attention::BertAttention;
use super::config::BertConfig;
use crate::error::Result;
use crate::nn::{layer_norm, LayerNorm};
use crate::nn::{linear, Linear};

/// transformers' `BertLayer`: one encoder layer, `(N, L, E) -> (N, L, E)`.
#[derive(Debug)]
pub struct BertLayer {
    /// `attention`: self-attention with its output projection and LayerNorm.
    pub attention: BertAttention,
    /// `intermediate.dense`: `Linear(E, intermediate_size)`, followed by GELU.
    pub intermediate_dense: Linear,
    /// `output.dense`: `Linear(intermediate_size, E)`.
    pub output_dense: Linear,
    /// `output.LayerNorm`: `LayerNorm(E)` over `dense(h) + attention output`.
    pub output_layer_norm: LayerNorm,
}

impl BertLayer {
    /// Builds the layer under `path` for `c`'s sizes; the weights are random until a
    /// checkpoint is loaded.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, c: &BertConfig) -> Result<Self> {
        let p = path.borrow();
        let (e, i) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            attention: BertAttention::new(p / "attention", c)?,
            intermediate_dense: linear(p / "intermediate" / "dense", e, i, true)?,
            output_dense: linear(p / "output" / "dense", i, e, true)?,
            output_layer_norm: layer_norm(p / "output" / "LayerNorm", e, c.layer_norm_eps)?,
        })
    }

    /// `x (N, L, E)`, `keep (N, 1, 1, L)` -> `(N, L, E)` and, when asked, the attention
    /// weights `(N, H, L, L)`.
    pub fn f_forward(
        &self,
        x: &Tensor,
        keep: &Tensor,
        with_weights: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (a, weights) = self.attention.f_forward(x, keep, with_weights)?;
        let hidden = self.intermediate_dense.f_forward(&a)?.f_gelu("none")?; // (N, L, I)
        let out = self.output_dense.f_forward(&hidden)?.f_add(&a)?; // residual
        Ok((self.output_layer_norm.f_forward(&out)?, weights))
    }
}
