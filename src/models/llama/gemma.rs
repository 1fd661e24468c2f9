//! Gemma 3 (Gemma Team, "Gemma 3 Technical Report", 2025) as the Llama decoder's
//! config switches, read from a GGUF whose `general.architecture` is `gemma3` exactly
//! as transformers' GGUF loader reads it into `Gemma3TextConfig`: the `gemma3.*` keys
//! it maps, and `Gemma3TextConfig`'s defaults for what the file does not say (five
//! sliding layers then one full, rotary base 10000 on the sliding ones,
//! `query_pre_attn_scalar` 256, the tanh GELU, tied head, no soft-capping).

use super::config::{Activation, LayerType, LlamaConfig};
use crate::error::{Error, Result};
use crate::io::Gguf;

/// `Gemma3TextConfig`'s `_sliding_window_pattern`: every sixth layer is a full one.
const SLIDING_WINDOW_PATTERN: usize = 6;
/// `Gemma3TextConfig`'s `rope_local_base_freq`, the sliding layers' rotary base.
const ROPE_LOCAL_THETA: f64 = 10_000.0;
/// `Gemma3TextConfig`'s `query_pre_attn_scalar`.
const QUERY_PRE_ATTN_SCALAR: f64 = 256.0;
/// `Gemma3TextConfig`'s `sliding_window` when the file has none.
const DEFAULT_SLIDING_WINDOW: i64 = 4096;

impl LlamaConfig {
    /// The config of a `gemma3` GGUF. Metadata for what this decoder does not compute
    /// (scaled RoPE, a value size unlike the key size) is refused by name before any
    /// weight is read.
    pub fn from_gemma3_gguf(g: &Gguf) -> Result<Self> {
        let bad = |reason: String| Error::malformed(&g.source_name, reason);
        if let Some(key) = g
            .metadata
            .keys()
            .find(|k| k.starts_with("gemma3.rope.scaling."))
        {
            return Err(bad(format!(
                "{key}: scaled RoPE is not implemented for gemma3"
            )));
        }
        let int = |key: &str| -> Result<i64> {
            let v = g.get_u64(&format!("gemma3.{key}"))?;
            i64::try_from(v).map_err(|_| bad(format!("gemma3.{key}: {v} is too large")))
        };
        let has = |key: &str| g.metadata.contains_key(&format!("gemma3.{key}"));
        let head_dim = int("attention.key_length")?;
        if has("attention.value_length") && int("attention.value_length")? != head_dim {
            return Err(bad(format!(
                "gemma3.attention.value_length: values of another size than the keys \
                 ({head_dim}) are not implemented, got {}",
                int("attention.value_length")?
            )));
        }
        let layers = int("block_count")?;
        let heads = int("attention.head_count")?;
        let d = Self::default();
        let token = |key: &str| g.metadata.get(key).and_then(|v| v.as_i64());
        let config = Self {
            vocab_size: match has("vocab_size") {
                true => int("vocab_size")?,
                false => g.get_strings("tokenizer.ggml.tokens")?.len() as i64,
            },
            hidden_size: int("embedding_length")?,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: match has("attention.head_count_kv") {
                true => int("attention.head_count_kv")?,
                false => heads,
            },
            head_dim,
            rms_norm_eps: g.get_f64("gemma3.attention.layer_norm_rms_epsilon")?,
            rope_theta: g.get_f64("gemma3.rope.freq_base")?,
            max_position_embeddings: int("context_length")?,
            tie_word_embeddings: true,
            bos_token_id: token("tokenizer.ggml.bos_token_id").or(Some(2)),
            eos_token_ids: vec![token("tokenizer.ggml.eos_token_id").unwrap_or(1)],
            sliding_window: Some(match has("attention.sliding_window") {
                true => int("attention.sliding_window")?,
                false => DEFAULT_SLIDING_WINDOW,
            }),
            architecture: "gemma3".into(),
            hidden_act: Activation::GeluTanh,
            norm_unit_offset: true,
            scale_embeddings: true,
            qk_norm: true,
            sandwich_norms: true,
            query_pre_attn_scalar: Some(QUERY_PRE_ATTN_SCALAR),
            layer_types: Some(gemma3_layer_types(layers)),
            rope_local_theta: Some(ROPE_LOCAL_THETA),
            ..d
        };
        config.validate().map_err(|e| bad(e.to_string()))?;
        Ok(config)
    }
}

/// `Gemma3TextConfig`'s default `layer_types`: layer `i` is full when `(i + 1) % 6 == 0`.
pub fn gemma3_layer_types(layers: i64) -> Vec<LayerType> {
    (0..layers.max(0) as usize)
        .map(|i| match (i + 1) % SLIDING_WINDOW_PATTERN {
            0 => LayerType::Full,
            _ => LayerType::Sliding,
        })
        .collect()
}
