//! `transformers.BertConfig`, read from a model folder's `config.json`: the fields a
//! BERT encoder needs, with BertConfig's defaults for those a file leaves out.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The architecture of a BERT encoder (Hugging Face's `BertConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// `vocab_size` (default 30522).
    pub vocab_size: i64,
    /// `hidden_size`, E (default 768).
    pub hidden_size: i64,
    /// `num_hidden_layers` (default 12).
    pub num_hidden_layers: i64,
    /// `num_attention_heads`, H (default 12); divides `hidden_size`.
    pub num_attention_heads: i64,
    /// `intermediate_size` of the feed-forward block (default 3072).
    pub intermediate_size: i64,
    /// `max_position_embeddings` (default 512): the longest input.
    pub max_position_embeddings: i64,
    /// `type_vocab_size` (default 2).
    pub type_vocab_size: i64,
    /// `layer_norm_eps` (default 1e-12).
    pub layer_norm_eps: f64,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }
}

impl BertConfig {
    /// Reads and validates `config.json`. Only what this encoder implements is accepted:
    /// `hidden_act` "gelu" (exact erf) and absolute position embeddings.
    pub fn from_file(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let text = crate::io::read_text(path)?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| Error::malformed(&name, format!("not valid JSON: {e}")))?;
        Self::from_json(&json).map_err(|e| match e {
            Error::Config { field, reason } => Error::malformed(name, format!("{field}: {reason}")),
            other => other,
        })
    }

    /// The config from the parsed `config.json`.
    pub fn from_json(json: &Value) -> Result<Self> {
        let d = Self::default();
        let int = |field: &str, default: i64| -> Result<i64> {
            match json.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| Error::config(field, format!("expected an integer, got {v}"))),
            }
        };
        let string = |field: &str, default: &str| -> Result<String> {
            match json.get(field) {
                None | Some(Value::Null) => Ok(default.to_string()),
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::config(field, format!("expected a string, got {v}"))),
            }
        };
        let eps = match json.get("layer_norm_eps") {
            None | Some(Value::Null) => d.layer_norm_eps,
            Some(v) => v.as_f64().ok_or_else(|| {
                Error::config("layer_norm_eps", format!("expected a number, got {v}"))
            })?,
        };
        let act = string("hidden_act", "gelu")?;
        if act != "gelu" {
            return Err(Error::config(
                "hidden_act",
                format!("only \"gelu\" (exact, erf) is implemented, got {act:?}"),
            ));
        }
        let pos = string("position_embedding_type", "absolute")?;
        if pos != "absolute" {
            return Err(Error::config(
                "position_embedding_type",
                format!("only \"absolute\" is implemented, got {pos:?}"),
            ));
        }
        let c = Self {
            vocab_size: int("vocab_size", d.vocab_size)?,
            hidden_size: int("hidden_size", d.hidden_size)?,
            num_hidden_layers: int("num_hidden_layers", d.num_hidden_layers)?,
            num_attention_heads: int("num_attention_heads", d.num_attention_heads)?,
            intermediate_size: int("intermediate_size", d.intermediate_size)?,
            max_position_embeddings: int("max_position_embeddings", d.max_position_embeddings)?,
            type_vocab_size: int("type_vocab_size", d.type_vocab_size)?,
            layer_norm_eps: eps,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks that every size is positive, the heads divide `hidden_size`, and
    /// `layer_norm_eps` is positive and finite.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v <= 0 {
                return Err(Error::config(field, format!("must be positive, got {v}")));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::config(
                "num_attention_heads",
                format!(
                    "must divide hidden_size {}, got {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::config(
                "layer_norm_eps",
                format!("must be positive, got {}", self.layer_norm_eps),
            ));
        }
        Ok(())
    }

    /// Channels per head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }
}
