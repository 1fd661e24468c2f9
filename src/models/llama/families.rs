//! The decoder families besides Llama and Gemma 3 as the one decoder's config switches,
//! each as transformers' own modeling file computes it and its config class defaults it:
//!
//! - `mistral` (`MistralForCausalLM`): Llama with `sliding_window` over every layer.
//! - `qwen2` (`Qwen2ForCausalLM`): biases on the query, key and value projections;
//!   sliding layers only with `use_sliding_window` (from `max_window_layers` on).
//! - `qwen3` (`Qwen3ForCausalLM`): RMSNorm per head on queries and keys before RoPE,
//!   `head_dim` 128 unless the config says otherwise.
//! - `gemma2` (`Gemma2ForCausalLM`): Gemma's `(1 + weight)` norms, four per layer, the
//!   embedding scaled by `sqrt(hidden)`, GeGLU, `query_pre_attn_scalar`, attention and
//!   final logit soft-capping, sliding and full layers alternating; one rotary base.
//! - `gemma3_text` (`Gemma3ForCausalLM`): Gemma 2's switches without soft-capping, with
//!   query/key norms and a second rotary base for the sliding layers (as `gemma.rs`
//!   reads a `gemma3` GGUF).
//! - `phi3` (`Phi3ForCausalLM`): Llama's computation with `sliding_window` over every
//!   layer; its checkpoints fuse `qkv_proj` and `gate_up_proj`, split at load
//!   (`weights.rs`).
//!
//! What a family's config asks for that the decoder does not compute (mixture of
//! experts, scaled or partial RoPE, another activation) is refused by name before any
//! weight is read (`config.rs`, [`Family::refuse_gguf`]).

use super::config::{Activation, LayerType, LlamaConfig};
use super::gemma::gemma3_layer_types;
use super::raw_config::RawConfig;
use crate::error::{Error, Result};
use crate::io::Gguf;

/// The `model_type`s a `config.json` may name.
pub const SUPPORTED_MODEL_TYPES: [&str; 7] = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "phi3",
];

/// `Gemma2Config`'s `query_pre_attn_scalar`.
const GEMMA2_QUERY_PRE_ATTN_SCALAR: f64 = 256.0;
/// `Gemma2Config`'s `attn_logit_softcapping` and `final_logit_softcapping`.
const GEMMA2_SOFTCAPS: (f64, f64) = (50.0, 30.0);
/// `Gemma2Config`'s and `Qwen2Config`'s `sliding_window`.
const DEFAULT_SLIDING_WINDOW: i64 = 4096;
/// `Qwen2Config`'s `max_window_layers`: the first layers that stay full.
const QWEN_MAX_WINDOW_LAYERS: i64 = 28;

/// A decoder family: which switches of [`LlamaConfig`] it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `llama`.
    Llama,
    /// `mistral` (a GGUF calls it `llama`).
    Mistral,
    /// `qwen2`.
    Qwen2,
    /// `qwen3`.
    Qwen3,
    /// `gemma2`.
    Gemma2,
    /// `gemma3_text` (a GGUF's `gemma3` is read by `gemma.rs`).
    Gemma3,
    /// `phi3`.
    Phi3,
}

impl Family {
    /// The family of a `config.json`'s `model_type`; any other is refused by name.
    pub fn of(model_type: &str) -> Result<Self> {
        Ok(match model_type {
            "llama" => Self::Llama,
            "mistral" => Self::Mistral,
            "qwen2" => Self::Qwen2,
            "qwen3" => Self::Qwen3,
            "gemma2" => Self::Gemma2,
            "gemma3_text" => Self::Gemma3,
            "phi3" => Self::Phi3,
            other => {
                return Err(Error::config(
                    "model_type",
                    format!(
                        "{other} is not supported in a config.json (supported: {})",
                        SUPPORTED_MODEL_TYPES.join(", ")
                    ),
                ))
            }
        })
    }

    /// The family of a GGUF's `general.architecture` (not `gemma3`: `gemma.rs`).
    pub fn of_gguf(architecture: &str) -> Option<Self> {
        match architecture {
            // llama.cpp writes Mistral as `llama`; `gemma3` is gemma.rs's.
            "mistral" | "gemma3_text" => None,
            a => Self::of(a).ok(),
        }
    }

    /// Its `model_type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma2 => "gemma2",
            Self::Gemma3 => "gemma3_text",
            Self::Phi3 => "phi3",
        }
    }

    /// The one `hidden_act` (`hidden_activation`) implemented for it.
    pub fn activation_name(self) -> &'static str {
        match self {
            Self::Gemma2 | Self::Gemma3 => "gelu_pytorch_tanh",
            _ => "silu",
        }
    }

    /// `head_dim` when the config has none, where the config class fixes one rather
    /// than dividing the hidden size.
    pub fn default_head_dim(self) -> Option<i64> {
        match self {
            Self::Qwen3 => Some(128),
            Self::Gemma2 | Self::Gemma3 => Some(256),
            _ => None,
        }
    }

    /// The config class's defaults for what the file does not say, with the family's
    /// switches set.
    pub fn defaults(self) -> LlamaConfig {
        let d = LlamaConfig {
            architecture: self.name().into(),
            ..LlamaConfig::default()
        };
        match self {
            Self::Llama | Self::Mistral => d,
            Self::Qwen2 => LlamaConfig {
                qkv_bias: true,
                ..d
            },
            Self::Qwen3 => LlamaConfig { qk_norm: true, ..d },
            Self::Phi3 => LlamaConfig {
                rms_norm_eps: 1e-5,
                ..d
            },
            Self::Gemma2 => LlamaConfig {
                hidden_act: Activation::GeluTanh,
                norm_unit_offset: true,
                scale_embeddings: true,
                sandwich_norms: true,
                query_pre_attn_scalar: Some(GEMMA2_QUERY_PRE_ATTN_SCALAR),
                attn_logit_softcapping: Some(GEMMA2_SOFTCAPS.0),
                final_logit_softcapping: Some(GEMMA2_SOFTCAPS.1),
                tie_word_embeddings: true,
                bos_token_id: Some(2),
                eos_token_ids: vec![1],
                ..d
            },
            // `Gemma3TextConfig`'s, as `gemma.rs` reads a GGUF: no soft-capping, query and
            // key norms, a second rotary base for the sliding layers.
            Self::Gemma3 => LlamaConfig {
                architecture: "gemma3".into(),
                qk_norm: true,
                attn_logit_softcapping: None,
                final_logit_softcapping: None,
                rope_theta: 1_000_000.0,
                rope_local_theta: Some(10_000.0),
                ..Self::Gemma2.defaults()
            },
        }
    }

    /// `sliding_window` and `layer_types` of a `config.json` of `layers` layers, as the
    /// config class's `__post_init__` completes them.
    pub(super) fn windows(
        self,
        raw: &RawConfig,
        layers: i64,
    ) -> Result<(Option<i64>, Option<Vec<LayerType>>)> {
        let window = match self {
            Self::Llama => None,
            Self::Mistral | Self::Phi3 => raw.sliding_window,
            Self::Qwen2 | Self::Qwen3 => match raw.use_sliding_window {
                Some(true) => Some(raw.sliding_window.unwrap_or(DEFAULT_SLIDING_WINDOW)),
                _ => None,
            },
            Self::Gemma2 | Self::Gemma3 => {
                Some(raw.sliding_window.unwrap_or(DEFAULT_SLIDING_WINDOW))
            }
        };
        let given = raw
            .layer_types
            .as_ref()
            .map(|types| {
                types
                    .iter()
                    .map(|t| layer_type(t))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let types = match self {
            Self::Llama | Self::Mistral | Self::Phi3 => given,
            Self::Qwen2 | Self::Qwen3 => Some(given.unwrap_or_else(|| {
                let from = raw.max_window_layers.unwrap_or(QWEN_MAX_WINDOW_LAYERS);
                (0..layers)
                    .map(|i| match window.is_some() && i >= from {
                        true => LayerType::Sliding,
                        false => LayerType::Full,
                    })
                    .collect()
            })),
            Self::Gemma2 => Some(given.unwrap_or_else(|| alternating(layers))),
            Self::Gemma3 => Some(given.unwrap_or_else(|| gemma3_layer_types(layers))),
        };
        Ok((window, types))
    }

    /// Refuses, by name, what a GGUF of this family asks for that is not implemented:
    /// scaled RoPE, LongRoPE's factor tensors, experts.
    pub fn refuse_gguf(self, g: &Gguf) -> Result<()> {
        let arch = self.name();
        let bad = |reason: String| Err(Error::malformed(&g.source_name, reason));
        if let Some(key) = g
            .metadata
            .keys()
            .find(|k| k.starts_with(&format!("{arch}.rope.scaling.")))
        {
            return bad(format!("{key}: scaled RoPE is not implemented for {arch}"));
        }
        if let Some(t) = g
            .tensors
            .iter()
            .find(|t| t.name.starts_with("rope_factors"))
        {
            return bad(format!(
                "{}: LongRoPE (rope factors) is not implemented for {arch}",
                t.name
            ));
        }
        let experts = format!("{arch}.expert_count");
        if g.metadata
            .get(&experts)
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            > 0
        {
            return bad(format!("{experts}: mixture of experts is not implemented"));
        }
        Ok(())
    }

    /// What a GGUF says of this family beyond Llama's keys, as transformers' GGUF loader
    /// reads it: Gemma 2's window (`gemma2.attention.sliding_window`) and alternating
    /// layers, its soft-capping from llama.cpp's keys (`Gemma2Config`'s 50 and 30, which
    /// transformers keeps, when absent).
    pub fn from_gguf_extras(self, g: &Gguf, config: &mut LlamaConfig) -> Result<()> {
        if self != Self::Gemma2 {
            return Ok(());
        }
        let get = |key: &str| g.metadata.get(&format!("gemma2.{key}"));
        config.sliding_window = Some(match get("attention.sliding_window") {
            Some(_) => {
                i64::try_from(g.get_u64("gemma2.attention.sliding_window")?).map_err(|_| {
                    Error::malformed(&g.source_name, "gemma2.attention.sliding_window: too large")
                })?
            }
            None => DEFAULT_SLIDING_WINDOW,
        });
        for (key, cap) in [
            ("attn_logit_softcapping", &mut config.attn_logit_softcapping),
            (
                "final_logit_softcapping",
                &mut config.final_logit_softcapping,
            ),
        ] {
            if get(key).is_some() {
                *cap = Some(g.get_f64(&format!("gemma2.{key}"))?);
            }
        }
        config.layer_types = Some(alternating(config.num_hidden_layers));
        Ok(())
    }
}

/// `Gemma2Config`'s default `layer_types`: sliding, full, sliding, ...
fn alternating(layers: i64) -> Vec<LayerType> {
    (0..layers.max(0))
        .map(|i| match i % 2 {
            0 => LayerType::Sliding,
            _ => LayerType::Full,
        })
        .collect()
}

/// One entry of `layer_types`.
fn layer_type(name: &str) -> Result<LayerType> {
    match name {
        "full_attention" => Ok(LayerType::Full),
        "sliding_attention" => Ok(LayerType::Sliding),
        other => Err(Error::config(
            "layer_types",
            format!("{other} is not implemented (full_attention, sliding_attention)"),
        )),
    }
}
