//! transformers' `LlamaDecoderLayer`: pre-norm attention and MLP, each added back to
//! the residual stream.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::Tensor;

use super::attention::LlamaAttention;
use super::cache::LlamaCache;
use super::config::LlamaConfig;
use super::mlp::LlamaMlp;
use crate::error::Result;
use crate::nn::{rms_norm, Projection, RmsNorm};

/// One decoder layer under `input_layernorm`, `self_attn`, `post_attention_layernorm`,
/// `mlp`.
#[derive(Debug)]
pub struct LlamaDecoderLayer {
    /// The RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// Grouped-query self-attention.
    pub self_attn: LlamaAttention,
    /// The RMSNorm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// The SwiGLU MLP.
    pub mlp: LlamaMlp,
}

impl LlamaDecoderLayer {
    /// Layer `layer_idx` under `path` (`model.layers.{i}`).
    pub fn new<'a>(
        path: impl Borrow<Path<'a>>,
        config: &LlamaConfig,
        layer_idx: usize,
    ) -> Result<Self> {
        let p = path.borrow();
        let (e, eps) = (config.hidden_size, config.rms_norm_eps);
        Ok(Self {
            input_layernorm: rms_norm(p / "input_layernorm", e, eps)?,
            self_attn: LlamaAttention::new(p / "self_attn", config, layer_idx)?,
            post_attention_layernorm: rms_norm(p / "post_attention_layernorm", e, eps)?,
            mlp: LlamaMlp::new(p / "mlp", config)?,
        })
    }

    /// The seven linear projections in the order a step runs them: `q_proj`, `k_proj`,
    /// `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`.
    pub fn projections(&self) -> [&Projection; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    /// `x` `(N, L, E)` -> `(N, L, E)`; `cos`, `sin` and `cache` as
    /// [`LlamaAttention::f_forward`].
    pub fn f_forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: Option<&LlamaCache>,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.f_forward(x)?;
        let x = x.f_add(&self.self_attn.f_forward(&h, cos, sin, cache)?)?;
        let h = self.post_attention_layernorm.f_forward(&x)?;
        Ok(x.f_add(&self.mlp.f_forward(&h)?)?)
    }
}
