//! transformers' `LlamaDecoderLayer`: pre-norm attention and MLP, each added back to
//! the residual stream. With `config.sandwich_norms` it is `Gemma3DecoderLayer`: the
//! attention's and the MLP's outputs are normed too before they are added (four norms).

use std::borrow::Borrow;

use tch::nn::Path;
use tch::Tensor;

use super::attention::LlamaAttention;
use super::cache::LlamaCache;
use super::config::LlamaConfig;
use super::mlp::LlamaMlp;
use super::norm;
use crate::error::Result;
use crate::nn::{Projection, RmsNorm};

/// One decoder layer under `input_layernorm`, `self_attn`, `post_attention_layernorm`,
/// `mlp`.
#[derive(Debug)]
pub struct LlamaDecoderLayer {
    /// The RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// Grouped-query self-attention.
    pub self_attn: LlamaAttention,
    /// The RMSNorm before the MLP; with sandwich norms (Gemma), the one of the
    /// attention's output.
    pub post_attention_layernorm: RmsNorm,
    /// The gated MLP (SwiGLU, or GeGLU for Gemma).
    pub mlp: LlamaMlp,
    /// Gemma's `pre_feedforward_layernorm` and `post_feedforward_layernorm`: the norms
    /// before and after the MLP. `None` for Llama.
    pub feedforward_norms: Option<(RmsNorm, RmsNorm)>,
    /// Whether it is a sliding layer of `layer_types`, which uses the sliding layers'
    /// rotary base.
    pub sliding: bool,
}

impl LlamaDecoderLayer {
    /// Layer `layer_idx` under `path` (`model.layers.{i}`).
    pub fn new<'a>(
        path: impl Borrow<Path<'a>>,
        config: &LlamaConfig,
        layer_idx: usize,
    ) -> Result<Self> {
        let p = path.borrow();
        let e = config.hidden_size;
        Ok(Self {
            input_layernorm: norm(p / "input_layernorm", e, config)?,
            self_attn: LlamaAttention::new(p / "self_attn", config, layer_idx)?,
            post_attention_layernorm: norm(p / "post_attention_layernorm", e, config)?,
            mlp: LlamaMlp::new(p / "mlp", config)?,
            feedforward_norms: match config.sandwich_norms {
                true => Some((
                    norm(p / "pre_feedforward_layernorm", e, config)?,
                    norm(p / "post_feedforward_layernorm", e, config)?,
                )),
                false => None,
            },
            sliding: config.is_sliding_layer(layer_idx),
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
        self.f_around(x, |h| self.self_attn.f_forward(h, cos, sin, cache))
    }

    /// One new position for each of N sequences: `x` `(N, 1, E)` -> `(N, 1, E)`; `cos`,
    /// `sin` and `caches` as [`LlamaAttention::f_forward_ragged`].
    pub fn f_forward_ragged(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        caches: &[&LlamaCache],
    ) -> Result<Tensor> {
        self.f_around(x, |h| self.self_attn.f_forward_ragged(h, cos, sin, caches))
    }

    /// The layer around its attention `attend` (normed hidden states in, attention
    /// output out): the norms, the residual additions and the MLP.
    fn f_around(
        &self,
        x: &Tensor,
        attend: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.f_forward(x)?;
        let attn = attend(&h)?;
        let Some((pre_ff, post_ff)) = &self.feedforward_norms else {
            let x = x.f_add(&attn)?;
            let h = self.post_attention_layernorm.f_forward(&x)?;
            return Ok(x.f_add(&self.mlp.f_forward(&h)?)?);
        };
        let x = x.f_add(&self.post_attention_layernorm.f_forward(&attn)?)?;
        let h = self.mlp.f_forward(&pre_ff.f_forward(&x)?)?;
        Ok(x.f_add(&post_ff.f_forward(&h)?)?)
    }
}
