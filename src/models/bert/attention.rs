//! `BertAttention` of transformers' `modeling_bert.py`: `BertSelfAttention` (query, key,
//! value projections, scaled dot-product attention over all tokens with padding masked
//! out) then `BertSelfOutput` (dense, residual, LayerNorm).
//!
//! The projections are the crate's [`Linear`](crate::nn::Linear) and the attention
//! is the crate's [`functional`](crate::attention::functional) SDPA: the fused kernel when only the
//! output is needed, the notebook's math path when the weights are asked for.
//!
//! VarStore names (under `encoder.layer.<i>.attention`): `self.query.{weight,bias}`,
//! `self.key.*`, `self.value.*`, `output.dense.*`, `output.LayerNorm.*`.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::Tensor;

use super::config::BertConfig;
use crate::attention::functional::{
    scaled_dot_product_attention, scaled_dot_product_attention_with_weights, Backend, SdpaOptions,
};
use crate::attention::mask::Mask;
use crate::error::Result;
use crate::nn::{layer_norm, LayerNorm};
use crate::nn::{linear, Linear};

/// transformers' `BertAttention`: self-attention over the whole sequence (no causal
/// mask), then the output projection, residual and LayerNorm. `(N, L, E) -> (N, L, E)`.
#[derive(Debug)]
pub struct BertAttention {
    /// `self.query`: `Linear(E, E)`.
    pub query: Linear,
    /// `self.key`: `Linear(E, E)`.
    pub key: Linear,
    /// `self.value`: `Linear(E, E)`.
    pub value: Linear,
    /// `output.dense`: `Linear(E, E)`, the projection after the heads are joined.
    pub output_dense: Linear,
    /// `output.LayerNorm`: `LayerNorm(E)` over `dense(context) + x`.
    pub output_layer_norm: LayerNorm,
    /// H, `num_attention_heads`; each head has `E / H` channels.
    pub num_heads: i64,
}

impl BertAttention {
    /// Builds the block under `path` (`self.*`, then `output.*`) for `c`'s sizes; the
    /// weights are random until a checkpoint is loaded.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, c: &BertConfig) -> Result<Self> {
        let p = path.borrow();
        let (s, o, e) = (p / "self", p / "output", c.hidden_size);
        Ok(Self {
            query: linear(&s / "query", e, e, true)?,
            key: linear(&s / "key", e, e, true)?,
            value: linear(&s / "value", e, e, true)?,
            output_dense: linear(&o / "dense", e, e, true)?,
            output_layer_norm: layer_norm(&o / "LayerNorm", e, c.layer_norm_eps)?,
            num_heads: c.num_attention_heads,
        })
    }

    /// `x (N, L, E)`, `keep (N, 1, 1, L)` bool (true = a real token, false = padding) ->
    /// `(N, L, E)`, and the weights `(N, H, L, L)` when `with_weights`.
    pub fn f_forward(
        &self,
        x: &Tensor,
        keep: &Tensor,
        with_weights: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let size = x.size();
        let (n, l, e) = (size[0], size[1], size[2]);
        let (h, d) = (self.num_heads, e / self.num_heads);
        let heads = |t: Tensor| -> Result<Tensor> {
            Ok(t.f_view([n, l, h, d])?.f_transpose(1, 2)?) // (N, L, E) -> (N, H, L, d)
        };
        let q = heads(self.query.f_forward(x)?)?;
        let k = heads(self.key.f_forward(x)?)?;
        let v = heads(self.value.f_forward(x)?)?;
        let options = SdpaOptions {
            attn_mask: Some(Mask::keep(keep.shallow_clone())?),
            backend: if with_weights {
                Backend::Math
            } else {
                Backend::Fused
            },
            ..SdpaOptions::default()
        };
        let (context, weights) = if with_weights {
            let a = scaled_dot_product_attention_with_weights(&q, &k, &v, &options)?;
            (a.output, Some(a.weights))
        } else {
            (scaled_dot_product_attention(&q, &k, &v, &options)?, None)
        };
        let context = context.f_transpose(1, 2)?.f_reshape([n, l, e])?; // (N, H, L, d) -> (N, L, E)
        let out = self.output_dense.f_forward(&context)?.f_add(x)?; // residual
        Ok((self.output_layer_norm.f_forward(&out)?, weights))
    }
}
