//! `transformers.LlamaConfig`: read from a Hugging Face `config.json` (serde) or from a
//! GGUF's `{arch}.*` metadata, as transformers' GGUF loader maps it. The fields after
//! `sliding_window` are the switches by which one decoder computes the other families
//! (`families.rs`; Gemma 3: `gemma.rs`); their defaults are Llama's.

use std::path::Path;

use serde::Deserialize;

use super::families::Family;
use crate::error::{Error, Result};
use crate::io::Gguf;

/// The GGUF `general.architecture`s this decoder runs.
pub const SUPPORTED_ARCHITECTURES: [&str; 6] =
    ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"];

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

/// `config.json`'s keys that this decoder reads; every other key is tolerated. Options
/// this implementation does not have (biases, another activation, scaled RoPE) are
/// read so that they can be refused instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    vocab_size: Option<i64>,
    hidden_size: Option<i64>,
    intermediate_size: Option<i64>,
    num_hidden_layers: Option<i64>,
    num_attention_heads: Option<i64>,
    num_key_value_heads: Option<i64>,
    head_dim: Option<i64>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    pub(super) rope_parameters: Option<serde_json::Value>,
    pub(super) rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: Option<i64>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<EosIds>,
    initializer_range: Option<f64>,
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
    rope_local_base_freq: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(i64),
    Many(Vec<i64>),
}

impl LlamaConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let text = crate::io::read_text(path)?;
        let raw: RawConfig = serde_json::from_str(&text)
            .map_err(|e| Error::malformed(&name, format!("not a Llama config.json: {e}")))?;
        Self::from_raw(raw).map_err(|e| match e {
            Error::Config { field, reason } => Error::malformed(name, format!("{field}: {reason}")),
            e => e,
        })
    }

    fn from_raw(raw: RawConfig) -> Result<Self> {
        refuse_unimplemented(&raw)?;
        let family = Family::of(raw.model_type.as_deref().unwrap_or("llama"))?;
        let d = family.defaults();
        let hidden_size = raw.hidden_size.unwrap_or(d.hidden_size);
        let heads = raw.num_attention_heads.unwrap_or(d.num_attention_heads);
        // One `rope_parameters`, or one per layer type (Gemma 3's full and sliding).
        let rope = raw.rope_parameters.as_ref();
        let theta_of = |layer_type: &str| {
            let r = rope?;
            r.get(layer_type).unwrap_or(r).get("rope_theta")?.as_f64()
        };
        let rope_theta = theta_of("full_attention")
            .or(raw.rope_theta)
            .unwrap_or(d.rope_theta);
        let rope_local_theta = d.rope_local_theta.map(|t| {
            theta_of("sliding_attention")
                .or(raw.rope_local_base_freq)
                .unwrap_or(t)
        });
        let head_dim = match (raw.head_dim, family.default_head_dim()) {
            (Some(h), _) => h,
            (None, Some(h)) => h,
            (None, None) if heads > 0 => hidden_size / heads,
            (None, None) => 0,
        };
        let layers = raw.num_hidden_layers.unwrap_or(d.num_hidden_layers);
        let (sliding_window, layer_types) = family.windows(&raw, layers)?;
        // Gemma's keys: read for Gemma, ignored elsewhere.
        let gemma_key = |given: Option<f64>, default: Option<f64>| match d.sandwich_norms {
            true => given.or(default),
            false => None,
        };
        let config = Self {
            vocab_size: raw.vocab_size.unwrap_or(d.vocab_size),
            hidden_size,
            intermediate_size: raw.intermediate_size.unwrap_or(d.intermediate_size),
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(heads),
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(d.rms_norm_eps),
            rope_theta,
            max_position_embeddings: raw
                .max_position_embeddings
                .unwrap_or(d.max_position_embeddings),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(d.tie_word_embeddings),
            bos_token_id: raw.bos_token_id.or(d.bos_token_id),
            eos_token_ids: match raw.eos_token_id {
                Some(EosIds::One(id)) => vec![id],
                Some(EosIds::Many(ids)) => ids,
                None => d.eos_token_ids,
            },
            initializer_range: raw.initializer_range.unwrap_or(d.initializer_range),
            sliding_window,
            layer_types,
            rope_local_theta,
            query_pre_attn_scalar: gemma_key(raw.query_pre_attn_scalar, d.query_pre_attn_scalar),
            attn_logit_softcapping: gemma_key(raw.attn_logit_softcapping, d.attn_logit_softcapping),
            final_logit_softcapping: gemma_key(
                raw.final_logit_softcapping,
                d.final_logit_softcapping,
            ),
            ..d
        };
        config.validate()?;
        Ok(config)
    }

    /// The config of a GGUF whose `general.architecture` is `llama`, `qwen2`, `qwen3`,
    /// `gemma2` or `phi3`, from the keys transformers' GGUF loader reads
    /// (`{arch}.block_count`, `{arch}.embedding_length`, ...) and the family's config
    /// class defaults for the rest ([`Family::defaults`]); tied embeddings when the file
    /// has no `output.weight`. `general.architecture` `gemma3` is read by
    /// [`LlamaConfig::from_gemma3_gguf`]; any other architecture is refused by name, as
    /// is what the family's file asks for that is not implemented.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.get_str("general.architecture")?;
        if arch == "gemma3" {
            return Self::from_gemma3_gguf(g);
        }
        let Some(family) = Family::of_gguf(arch) else {
            return Err(Error::malformed(
                &g.source_name,
                format!(
                    "general.architecture: {arch} is not supported (supported: {})",
                    SUPPORTED_ARCHITECTURES.join(", ")
                ),
            ));
        };
        family.refuse_gguf(g)?;
        let int = |key: &str| -> Result<i64> {
            let v = g.get_u64(&format!("{arch}.{key}"))?;
            i64::try_from(v).map_err(|_| {
                Error::malformed(&g.source_name, format!("{arch}.{key}: {v} is too large"))
            })
        };
        let has = |key: &str| g.metadata.contains_key(&format!("{arch}.{key}"));
        let hidden_size = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let head_dim = match (has("attention.key_length"), family.default_head_dim()) {
            (true, _) => int("attention.key_length")?,
            (false, Some(d)) => d,
            (false, None) if heads > 0 => hidden_size / heads,
            (false, None) => 0,
        };
        let vocab_size = match has("vocab_size") {
            true => int("vocab_size")?,
            false => g.get_strings("tokenizer.ggml.tokens")?.len() as i64,
        };
        if has("rope.dimension_count") && int("rope.dimension_count")? != head_dim {
            return Err(Error::malformed(
                &g.source_name,
                format!(
                    "{arch}.rope.dimension_count: partial rotary embeddings are not implemented"
                ),
            ));
        }
        let d = family.defaults();
        let token = |key: &str| g.metadata.get(key).and_then(|v| v.as_i64());
        let mut config = Self {
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: match has("attention.head_count_kv") {
                true => int("attention.head_count_kv")?,
                false => heads,
            },
            head_dim,
            rms_norm_eps: g.get_f64(&format!("{arch}.attention.layer_norm_rms_epsilon"))?,
            rope_theta: match has("rope.freq_base") {
                true => g.get_f64(&format!("{arch}.rope.freq_base"))?,
                false => d.rope_theta,
            },
            max_position_embeddings: int("context_length")?,
            tie_word_embeddings: g.tensor_info("output.weight").is_err(),
            bos_token_id: token("tokenizer.ggml.bos_token_id").or(d.bos_token_id),
            eos_token_ids: token("tokenizer.ggml.eos_token_id")
                .map_or(d.eos_token_ids.clone(), |id| vec![id]),
            initializer_range: d.initializer_range,
            ..d
        };
        family.from_gguf_extras(g, &mut config)?;
        config
            .validate()
            .map_err(|e| Error::malformed(&g.source_name, e.to_string()))?;
        Ok(config)
    }

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

/// Options of `config.json` this implementation does not have, refused by name rather
/// than silently ignored: mixture of experts, another activation, biases the family does
/// not have, scaled or partial RoPE.
fn refuse_unimplemented<'a>(raw: &'a RawConfig) -> Result<()> {
    let family = Family::of(raw.model_type.as_deref().unwrap_or("llama"))?;
    for (field, n) in [
        ("num_experts", raw.num_experts),
        ("num_local_experts", raw.num_local_experts),
    ] {
        if n.is_some_and(|n| n > 0) {
            return Err(Error::config(
                field,
                format!(
                    "mixture of experts is not implemented, got {}",
                    n.unwrap_or(0)
                ),
            ));
        }
    }
    let act = raw
        .hidden_activation
        .as_deref()
        .or(raw.hidden_act.as_deref());
    if let Some(act) = act.filter(|a| *a != family.activation_name()) {
        return Err(Error::config(
            "hidden_act",
            format!(
                "only {} is implemented for {}, got {act}",
                family.activation_name(),
                family.name()
            ),
        ));
    }
    for (field, on) in [
        ("attention_bias", raw.attention_bias),
        ("mlp_bias", raw.mlp_bias),
    ] {
        if on == Some(true) {
            return Err(Error::config(field, "biases are not implemented, got true"));
        }
    }
    if raw.use_bidirectional_attention == Some(true) {
        return Err(Error::config(
            "use_bidirectional_attention",
            "bidirectional attention is not implemented, got true",
        ));
    }
    // Per layer type too (Gemma 3's `{"full_attention": {...}, "sliding_attention": ...}`).
    let per_type = |r: &'a serde_json::Value| {
        ["full_attention", "sliding_attention"]
            .into_iter()
            .filter_map(move |t| r.get(t))
    };
    let ropes: Vec<&serde_json::Value> = [&raw.rope_parameters, &raw.rope_scaling]
        .into_iter()
        .flatten()
        .flat_map(|r| std::iter::once(r).chain(per_type(r)))
        .collect();
    for rope in ropes {
        if let Some(t) = rope
            .get("rope_type")
            .or_else(|| rope.get("type"))
            .and_then(|t| t.as_str())
            .filter(|t| *t != "default")
        {
            return Err(Error::config(
                "rope_type",
                format!("only default RoPE is implemented, got {t}"),
            ));
        }
    }
    let partial = raw
        .rope_parameters
        .as_ref()
        .and_then(|r| r.get("partial_rotary_factor")?.as_f64());
    if let Some(f) = partial.or(raw.partial_rotary_factor).filter(|f| *f != 1.0) {
        return Err(Error::config(
            "partial_rotary_factor",
            format!("partial rotary embeddings are not implemented, got {f}"),
        ));
    }
    Ok(())
}
