//! `config.json` as serde reads it: the keys the decoder reads, and those it refuses.

use serde::Deserialize;

/// `config.json`'s keys that this decoder reads; every other key is tolerated. Options
/// this implementation does not have (biases, another activation, scaled RoPE) are
/// read so that they can be refused instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    pub(super) vocab_size: Option<i64>,
    pub(super) hidden_size: Option<i64>,
    pub(super) intermediate_size: Option<i64>,
    pub(super) num_hidden_layers: Option<i64>,
    pub(super) num_attention_heads: Option<i64>,
    pub(super) num_key_value_heads: Option<i64>,
    pub(super) head_dim: Option<i64>,
    pub(super) rms_norm_eps: Option<f64>,
    pub(super) rope_theta: Option<f64>,
    pub(super) rope_parameters: Option<serde_json::Value>,
    pub(super) rope_scaling: Option<serde_json::Value>,
    pub(super) max_position_embeddings: Option<i64>,
    pub(super) tie_word_embeddings: Option<bool>,
    pub(super) bos_token_id: Option<i64>,
    pub(super) eos_token_id: Option<EosIds>,
    pub(super) initializer_range: Option<f64>,
    pub(super) hidden_act: Option<String>,
    pub(super) hidden_activation: Option<String>,
    pub(super) attention_bias: Option<bool>,
    pub(super) mlp_bias: Option<bool>,
    pub(super) model_type: Option<String>,
    pub(super) sliding_window: Option<i64>,
    pub(super) use_sliding_window: Option<bool>,
    pub(super) max_window_layers: Option<i64>,
    pub(super) layer_types: Option<Vec<String>>,
    pub(super) query_pre_attn_scalar: Option<f64>,
    pub(super) attn_logit_softcapping: Option<f64>,
    pub(super) final_logit_softcapping: Option<f64>,
    pub(super) partial_rotary_factor: Option<f64>,
    pub(super) num_experts: Option<i64>,
    pub(super) num_local_experts: Option<i64>,
    pub(super) use_bidirectional_attention: Option<bool>,
    /// transformers 4's name of Gemma 3's sliding layers' rotary base.
    pub(super) rope_local_base_freq: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum EosIds {
    One(i64),
    Many(Vec<i64>),
}
