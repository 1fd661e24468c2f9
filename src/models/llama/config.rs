//! `transformers.LlamaConfig`: the sizes and the switches by which one decoder computes
//! every family (the fields after `sliding_window`; their defaults are Llama's), checked
//! once by [`LlamaConfig::validate`]. Reading it from a `config.json` or a GGUF is
//! `read_config.rs`'s, by the family's rules (`families.rs`; Gemma 3: `gemma.rs`).

use crate::error::{Error, Result};

/// The architecture of a Llama-family decoder (Hugging Face's `LlamaConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// `vocab_size` (default 32000).
    pub vocab_size: i64,
    /// `hidden_size`, E (default 4096).
    pub hidden_size: i64,
    /// `intermediate_size` of the SwiGLU MLP (default 11008).
    pub intermediate_size: i64,
    /// `num_hidden_layers` (default 32).
    pub num_hidden_layers: i64,
    /// `num_attention_heads`, the query heads H (default 32).
    pub num_attention_heads: i64,
    /// `num_key_value_heads`, Hkv (default: H); divides H (grouped-query attention).
    pub num_key_value_heads: i64,
    /// `head_dim`, D (default E / H).
    pub head_dim: i64,
    /// `rms_norm_eps` (default 1e-6).
    pub rms_norm_eps: f64,
    /// `rope_theta`, the rotary base (default 10000).
    pub rope_theta: f64,
    /// `max_position_embeddings` (default 2048): the longest context.
    pub max_position_embeddings: i64,
    /// `tie_word_embeddings` (default false): the output head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// `bos_token_id` (default 1).
    pub bos_token_id: Option<i64>,
    /// `eos_token_id` (default 2): generation stops after any of these.
    pub eos_token_ids: Vec<i64>,
    /// `initializer_range` (default 0.02): the standard deviation of fresh weights.
    pub initializer_range: f64,
    /// `sliding_window` W (default `None`): each token sees itself and the `W - 1`
    /// tokens before it; every layer's without `layer_types` (Mistral, Phi-3), the
    /// sliding layers' with them (Gemma, Qwen with `use_sliding_window`).
    pub sliding_window: Option<i64>,
    /// `general.architecture` (or `model_type`): `llama`, `mistral`, `qwen2`, `qwen3`,
    /// `gemma2`, `gemma3`, `phi3`; for messages, and for what a checkpoint stores
    /// differently (Phi-3's fused projections, llama.cpp's permuted `llama` rows).
    pub architecture: String,
    /// `hidden_act` of the gated MLP: SiLU (Llama) or the tanh GELU (Gemma).
    pub hidden_act: Activation,
    /// Gemma's RMSNorm: `normed * (1 + weight)` in float32, cast back after the scale.
    pub norm_unit_offset: bool,
    /// Gemma's embedding, scaled by `sqrt(hidden_size)` in the embedding's dtype.
    pub scale_embeddings: bool,
    /// Per-head RMSNorm of queries and keys before RoPE (`q_norm`, `k_norm`).
    pub qk_norm: bool,
    /// Gemma's four norms per layer: attention and MLP outputs are normed too
    /// (`post_attention_layernorm` then norms the attention's output, and
    /// `pre_feedforward_layernorm` / `post_feedforward_layernorm` wrap the MLP).
    pub sandwich_norms: bool,
    /// `query_pre_attn_scalar`: scores scaled by its `** -0.5` instead of `D ** -0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    /// `layer_types`: per layer, whether it is a sliding-window layer (`sliding_window`
    /// keys, rotary base `rope_local_theta`, a rolling cache) or a full one. `None`:
    /// every layer alike (full, or windowed by `sliding_window` as Mistral).
    pub layer_types: Option<Vec<LayerType>>,
    /// The rotary base of the sliding layers (`rope_parameters.sliding_attention`).
    pub rope_local_theta: Option<f64>,
    /// `attn_logit_softcapping`: scores through `c * tanh(s / c)` before the softmax.
    pub attn_logit_softcapping: Option<f64>,
    /// `final_logit_softcapping`: logits through `c * tanh(z / c)`.
    pub final_logit_softcapping: Option<f64>,
    /// Qwen2's biases on `q_proj`, `k_proj`, `v_proj` (not `o_proj`).
    pub qkv_bias: bool,
}

/// The activation of the gated MLP's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu` (SwiGLU).
    Silu,
    /// `gelu_pytorch_tanh`, `F.gelu(x, approximate="tanh")` (GeGLU).
    GeluTanh,
}

/// A layer's attention in `layer_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// `full_attention`: every earlier position.
    Full,
    /// `sliding_attention`: the last `sliding_window` positions.
    Sliding,
}

impl LlamaConfig {
    /// Whether layer `i` is a sliding layer of `layer_types`.
    pub fn is_sliding_layer(&self, i: usize) -> bool {
        self.layer_types
            .as_ref()
            .is_some_and(|t| t.get(i) == Some(&LayerType::Sliding))
    }

    /// The window of layer `i`: its `sliding_window` if it is a sliding layer of
    /// `layer_types`, or, without `layer_types`, every layer's.
    pub fn window_of_layer(&self, i: usize) -> Option<i64> {
        match &self.layer_types {
            Some(_) if self.is_sliding_layer(i) => self.sliding_window,
            Some(_) => None,
            None => self.sliding_window,
        }
    }
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            initializer_range: 0.02,
            sliding_window: None,
            architecture: "llama".into(),
            hidden_act: Activation::Silu,
            norm_unit_offset: false,
            scale_embeddings: false,
            qk_norm: false,
            sandwich_norms: false,
            query_pre_attn_scalar: None,
            layer_types: None,
            rope_local_theta: None,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            qkv_bias: false,
        }
    }
}

impl LlamaConfig {
    /// Checks that the sizes fit together: positive, H divisible by Hkv, D even.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v <= 0 {
                return Err(Error::config(field, format!("must be positive, got {v}")));
            }
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(Error::config(
                "num_key_value_heads",
                format!(
                    "must divide num_attention_heads {}, got {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            ));
        }
        if let Some(types) = &self.layer_types {
            if types.len() as i64 != self.num_hidden_layers {
                return Err(Error::config(
                    "layer_types",
                    format!(
                        "one per layer: expected {}, got {}",
                        self.num_hidden_layers,
                        types.len()
                    ),
                ));
            }
            if types.contains(&LayerType::Sliding) && self.sliding_window.is_none() {
                return Err(Error::config(
                    "sliding_window",
                    "sliding layers in layer_types need a window, got none",
                ));
            }
        }
        if self.head_dim % 2 != 0 {
            return Err(Error::config(
                "head_dim",
                format!("must be even for RoPE, got {}", self.head_dim),
            ));
        }
        if !(self.rms_norm_eps >= 0.0 && self.rope_theta > 0.0) {
            return Err(Error::config(
                "rms_norm_eps / rope_theta",
                format!(
                    "expected eps >= 0 and theta > 0, got {} and {}",
                    self.rms_norm_eps, self.rope_theta
                ),
            ));
        }
        Ok(())
    }
}
