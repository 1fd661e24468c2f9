//! `transformers.BertConfig`, read from a model folder's `config.json`: the fields a
//! BERT encoder needs, with BertConfig's defaults for those a file leaves out.

use std::path::Path;

use serde::Deserialize;
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

/// `config.json` as written by transformers: the keys this encoder reads, each absent
/// or null for BertConfig's default. Every other key (`architectures`, `model_type`,
/// `torch_dtype`, ...) is tolerated: real configs carry many that change nothing here.
#[derive(Debug, Default, Deserialize)]
struct ConfigJson {
    vocab_size: Option<i64>,
    hidden_size: Option<i64>,
    num_hidden_layers: Option<i64>,
    num_attention_heads: Option<i64>,
    intermediate_size: Option<i64>,
    max_position_embeddings: Option<i64>,
    type_vocab_size: Option<i64>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

impl BertConfig {
    /// Reads and validates `config.json`. Only what this encoder implements is accepted:
    /// `hidden_act` "gelu" (exact erf) and absolute position embeddings.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::io::read_text(path)?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The config from the parsed `config.json`.
    pub fn from_json(json: &Value) -> Result<Self> {
        Self::parse("config.json", &json.to_string())
    }

    /// The config from the text of a `config.json`; `name` (the file) starts every error,
    /// which then names the field.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let raw: ConfigJson = serde_json::from_str(text).map_err(|e| {
            let field = field_at(text, e.line(), e.column()).map(|f| format!("{f}: "));
            Error::malformed(name, format!("{}{e}", field.unwrap_or_default()))
        })?;
        Self::from_raw(raw).map_err(|e| match e {
            Error::Config { field, reason } => Error::malformed(name, format!("{field}: {reason}")),
            other => other,
        })
    }

    fn from_raw(raw: ConfigJson) -> Result<Self> {
        let act = raw.hidden_act.as_deref().unwrap_or("gelu");
        if act != "gelu" {
            return Err(Error::config(
                "hidden_act",
                format!("only \"gelu\" (exact, erf) is implemented, got {act:?}"),
            ));
        }
        let pos = raw.position_embedding_type.as_deref().unwrap_or("absolute");
        if pos != "absolute" {
            return Err(Error::config(
                "position_embedding_type",
                format!("only \"absolute\" is implemented, got {pos:?}"),
            ));
        }
        let d = Self::default();
        let c = Self {
            vocab_size: raw.vocab_size.unwrap_or(d.vocab_size),
            hidden_size: raw.hidden_size.unwrap_or(d.hidden_size),
            num_hidden_layers: raw.num_hidden_layers.unwrap_or(d.num_hidden_layers),
            num_attention_heads: raw.num_attention_heads.unwrap_or(d.num_attention_heads),
            intermediate_size: raw.intermediate_size.unwrap_or(d.intermediate_size),
            max_position_embeddings: raw
                .max_position_embeddings
                .unwrap_or(d.max_position_embeddings),
            type_vocab_size: raw.type_vocab_size.unwrap_or(d.type_vocab_size),
            layer_norm_eps: raw.layer_norm_eps.unwrap_or(d.layer_norm_eps),
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

/// The key whose value a JSON error at `line`:`column` (1-based) is in: the last
/// `"key":` before that point. Only for error messages; `None` when there is none.
fn field_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let before = text.get(..(start + column).min(text.len()))?;
    let colon = before.rfind("\":")?;
    let key = &before[..colon];
    Some(&key[key.rfind('"')? + 1..])
}

#[cfg(test)]
mod tests {
    use super::BertConfig;

    #[test]
    fn unknown_keys_are_tolerated_and_defaults_fill_in() {
        let c = BertConfig::parse(
            "config.json",
            r#"{"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 384,
                "num_attention_heads": 12, "layer_norm_eps": null, "torch_dtype": "float32"}"#,
        )
        .unwrap();
        assert_eq!(c.hidden_size, 384);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.vocab_size, 30522);
    }

    #[test]
    fn unsupported_or_mistyped_values_name_the_file_and_the_field() {
        for (json, field) in [
            (r#"{"hidden_act": "relu"}"#, "hidden_act"),
            (
                r#"{"position_embedding_type": "relative_key"}"#,
                "position_embedding_type",
            ),
            (
                r#"{"hidden_size": 100, "num_attention_heads": 12}"#,
                "num_attention_heads",
            ),
            (r#"{"num_hidden_layers": 0}"#, "num_hidden_layers"),
            (
                "{\"model_type\": \"bert\",\n \"vocab_size\": \"big\"}",
                "vocab_size",
            ),
            (
                r#"{"layer_norm_eps": true, "hidden_size": 8}"#,
                "layer_norm_eps",
            ),
            (r#"{"hidden_size": 1.5}"#, "hidden_size"),
        ] {
            let e = BertConfig::parse("m/config.json", json)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("m/config.json: {field}: ")),
                "{json}: {e}"
            );
        }
        let e = BertConfig::parse("m/config.json", "[1, 2]")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m/config.json: "), "{e}");
    }
}
