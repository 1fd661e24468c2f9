//! [`LlamaConfig`] read from a Hugging Face `config.json` (serde, [`RawConfig`]) or from
//! a GGUF's `{arch}.*` metadata, as transformers' GGUF loader maps it, by the rules of
//! the model's family ([`Family`]); what a config asks for that is not implemented is
//! refused by name before any weight is read.

use std::path::Path;

use super::config::LlamaConfig;
use super::families::Family;
use super::raw_config::{EosIds, RawConfig};
use crate::error::{Error, Result};
use crate::io::Gguf;

/// The GGUF `general.architecture`s this decoder runs.
pub const SUPPORTED_ARCHITECTURES: [&str; 6] =
    ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"];

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
