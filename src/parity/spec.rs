//! A case's `config` and `forward` metadata, typed per module (`docs/parity-cases.md`,
//! "Modules"). Unknown keys are refused, so a misspelt key fails instead of silently
//! running PyTorch's default; an absent (or null) key takes PyTorch's default.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::kind::ModuleKind;
use crate::attention::multihead_attention::MultiheadAttentionConfig;
use crate::models::lecture::{HeadConfig, MultiHeadConfig};
use crate::models::nanogpt::CausalSelfAttentionConfig;

/// `head`'s config: the lecture's `Head(head_size)` with its globals.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadArgs {
    /// `n_embd`, C.
    pub n_embd: i64,
    /// `head_size`.
    pub head_size: i64,
    /// `block_size`: the size of `tril`.
    pub block_size: i64,
    /// `dropout` (default 0.0).
    #[serde(default)]
    pub dropout: Option<f64>,
}

/// `multi_head`'s config: the lecture's `MultiHeadAttention(num_heads, head_size)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiHeadArgs {
    /// `n_embd`, C.
    pub n_embd: i64,
    /// `num_heads`.
    pub num_heads: i64,
    /// `head_size` of each head.
    pub head_size: i64,
    /// `block_size`: the size of each head's `tril`.
    pub block_size: i64,
    /// `dropout` (default 0.0).
    #[serde(default)]
    pub dropout: Option<f64>,
}

/// `causal_self_attention`'s config: nanoGPT's `GPTConfig` fields it reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CausalSelfAttentionArgs {
    /// `n_embd`, C.
    pub n_embd: i64,
    /// `n_head`; divides C.
    pub n_head: i64,
    /// `block_size`.
    pub block_size: i64,
    /// `bias` (default true).
    #[serde(default)]
    pub bias: Option<bool>,
    /// `dropout` (default 0.0).
    #[serde(default)]
    pub dropout: Option<f64>,
    /// `sliding_window` W (default null: none).
    #[serde(default)]
    pub sliding_window: Option<i64>,
    /// `softcap` (default null: none).
    #[serde(default)]
    pub softcap: Option<f64>,
    /// `sinks`: the `sinks` parameter `[n_head]` (default false).
    #[serde(default)]
    pub sinks: Option<bool>,
    /// `alibi`: ALiBi, with `input.alibi_slopes` or else BLOOM's slopes (default false).
    #[serde(default)]
    pub alibi: Option<bool>,
}

/// `multihead_attention`'s config: `torch.nn.MultiheadAttention`'s constructor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiheadAttentionArgs {
    /// `embed_dim`, E.
    pub embed_dim: i64,
    /// `num_heads`; divides E.
    pub num_heads: i64,
    /// `dropout` (default 0.0).
    #[serde(default)]
    pub dropout: Option<f64>,
    /// `bias` (default true).
    #[serde(default)]
    pub bias: Option<bool>,
    /// `add_bias_kv` (default false).
    #[serde(default)]
    pub add_bias_kv: Option<bool>,
    /// `add_zero_attn` (default false).
    #[serde(default)]
    pub add_zero_attn: Option<bool>,
    /// `kdim` (default null = E).
    #[serde(default)]
    pub kdim: Option<i64>,
    /// `vdim` (default null = E).
    #[serde(default)]
    pub vdim: Option<i64>,
    /// `batch_first` (default false).
    #[serde(default)]
    pub batch_first: Option<bool>,
}

/// `sdpa`'s config: it has none, so only `{}` is accepted.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The forward arguments of `head`, `multi_head` and `causal_self_attention`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainForward {
    /// `train`: training mode, dropout active (default false).
    #[serde(default)]
    pub train: Option<bool>,
}

/// `multihead_attention`'s non-tensor forward arguments.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiheadAttentionForward {
    /// `need_weights` (default true).
    #[serde(default)]
    pub need_weights: Option<bool>,
    /// `average_attn_weights` (default true).
    #[serde(default)]
    pub average_attn_weights: Option<bool>,
    /// `is_causal` (default false).
    #[serde(default)]
    pub is_causal: Option<bool>,
    /// `train` (default false).
    #[serde(default)]
    pub train: Option<bool>,
}

/// `scaled_dot_product_attention`'s non-tensor arguments.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdpaForward {
    /// `dropout_p` (default 0.0).
    #[serde(default)]
    pub dropout_p: Option<f64>,
    /// `is_causal` (default false).
    #[serde(default)]
    pub is_causal: Option<bool>,
    /// `scale` (default null = `1/sqrt(E)`).
    #[serde(default)]
    pub scale: Option<f64>,
    /// `enable_gqa` (default false).
    #[serde(default)]
    pub enable_gqa: Option<bool>,
    /// `train`: accepted for symmetry with the modules; a function has no mode.
    #[serde(default)]
    pub train: Option<bool>,
    /// `window`: flash-attention's `window_size` `[left, right]` (default null: none).
    #[serde(default, deserialize_with = "left_right")]
    pub window: Option<[i64; 2]>,
    /// `softcap`: Gemma 2's logit soft-capping (default null: none).
    #[serde(default)]
    pub softcap: Option<f64>,
    /// `alibi`: ALiBi, with `input.alibi_slopes` or else BLOOM's slopes (default false).
    #[serde(default)]
    pub alibi: Option<bool>,
}

/// What a case runs: its module, with that module's typed config and forward arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// `head`.
    Head(HeadArgs, TrainForward),
    /// `multi_head`.
    MultiHead(MultiHeadArgs, TrainForward),
    /// `causal_self_attention`.
    CausalSelfAttention(CausalSelfAttentionArgs, TrainForward),
    /// `multihead_attention`.
    MultiheadAttention(MultiheadAttentionArgs, MultiheadAttentionForward),
    /// `sdpa`.
    Sdpa(SdpaForward),
}

impl Spec {
    /// Parses the `config` and `forward` metadata (JSON objects; absent = `{}`) for
    /// `kind`. The error names the metadata key and what serde found wrong in it.
    pub fn parse(
        kind: ModuleKind,
        config: Option<&str>,
        forward: Option<&str>,
    ) -> Result<Spec, String> {
        let (c, f) = (config, forward);
        Ok(match kind {
            ModuleKind::Head => Spec::Head(json("config", c)?, json("forward", f)?),
            ModuleKind::MultiHead => Spec::MultiHead(json("config", c)?, json("forward", f)?),
            ModuleKind::CausalSelfAttention => {
                Spec::CausalSelfAttention(json("config", c)?, json("forward", f)?)
            }
            ModuleKind::MultiheadAttention => {
                Spec::MultiheadAttention(json("config", c)?, json("forward", f)?)
            }
            ModuleKind::Sdpa => {
                let NoArgs {} = json("config", c)?;
                Spec::Sdpa(json("forward", f)?)
            }
        })
    }

    /// The module it names.
    pub fn kind(&self) -> ModuleKind {
        match self {
            Spec::Head(..) => ModuleKind::Head,
            Spec::MultiHead(..) => ModuleKind::MultiHead,
            Spec::CausalSelfAttention(..) => ModuleKind::CausalSelfAttention,
            Spec::MultiheadAttention(..) => ModuleKind::MultiheadAttention,
            Spec::Sdpa(..) => ModuleKind::Sdpa,
        }
    }

    /// Whether the forward runs in training mode (`forward.train`, default false).
    pub fn train(&self) -> bool {
        let train = match self {
            Spec::Head(_, f) | Spec::MultiHead(_, f) | Spec::CausalSelfAttention(_, f) => f.train,
            Spec::MultiheadAttention(_, f) => f.train,
            Spec::Sdpa(f) => f.train,
        };
        train.unwrap_or(false)
    }
}

/// `window`: null, or exactly two integers. Anything else says what a window is, instead
/// of serde's "trailing characters" or "invalid type" for a fixed-size array.
fn left_right<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[i64; 2]>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    let Some(value) = value else {
        return Ok(None);
    };
    let pair = match value.as_array().map(Vec::as_slice) {
        Some([l, r]) => l.as_i64().zip(r.as_i64()),
        _ => None,
    };
    match pair {
        Some((l, r)) => Ok(Some([l, r])),
        None => Err(serde::de::Error::custom(format!(
            "window is [left, right], two integers (flash-attention's window_size, -1 = \
             unbounded), got {value}"
        ))),
    }
}

/// One metadata value parsed as `T`; absent is `{}`, so every key takes its default.
fn json<T: DeserializeOwned>(key: &str, text: Option<&str>) -> Result<T, String> {
    serde_json::from_str(text.unwrap_or("{}")).map_err(|e| format!("metadata {key:?}: {e}"))
}

impl HeadArgs {
    /// The crate's config for it.
    pub fn config(&self) -> HeadConfig {
        HeadConfig::new(self.n_embd, self.head_size, self.block_size)
            .with_dropout(self.dropout.unwrap_or(0.0))
    }
}

impl MultiHeadArgs {
    /// The crate's config for it.
    pub fn config(&self) -> MultiHeadConfig {
        MultiHeadConfig::new(self.n_embd, self.num_heads, self.head_size, self.block_size)
            .with_dropout(self.dropout.unwrap_or(0.0))
    }
}

impl CausalSelfAttentionArgs {
    /// The crate's config for it.
    pub fn config(&self) -> CausalSelfAttentionConfig {
        CausalSelfAttentionConfig {
            sliding_window: self.sliding_window,
            softcap: self.softcap,
            ..CausalSelfAttentionConfig::new(self.n_embd, self.n_head, self.block_size)
        }
        .with_bias(self.bias.unwrap_or(true))
        .with_dropout(self.dropout.unwrap_or(0.0))
        .with_sinks(self.sinks.unwrap_or(false))
        .with_alibi(self.alibi.unwrap_or(false))
    }
}

impl MultiheadAttentionArgs {
    /// The crate's config for it.
    pub fn config(&self) -> MultiheadAttentionConfig {
        MultiheadAttentionConfig {
            embed_dim: self.embed_dim,
            num_heads: self.num_heads,
            dropout: self.dropout.unwrap_or(0.0),
            bias: self.bias.unwrap_or(true),
            add_bias_kv: self.add_bias_kv.unwrap_or(false),
            add_zero_attn: self.add_zero_attn.unwrap_or(false),
            kdim: self.kdim,
            vdim: self.vdim,
            batch_first: self.batch_first.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ModuleKind, Spec};

    #[test]
    fn a_misspelt_key_is_refused_and_named() {
        let err = Spec::parse(
            ModuleKind::Head,
            Some(r#"{"n_embd": 4, "head_size": 2, "block_size": 8, "dropuot": 0.1}"#),
            None,
        )
        .unwrap_err();
        assert!(
            err.contains("\"config\"") && err.contains("dropuot"),
            "{err}"
        );
        let err = Spec::parse(ModuleKind::Sdpa, None, Some(r#"{"is_casual": true}"#)).unwrap_err();
        assert!(
            err.contains("\"forward\"") && err.contains("is_casual"),
            "{err}"
        );
        let err = Spec::parse(ModuleKind::Sdpa, Some(r#"{"n_embd": 4}"#), None).unwrap_err();
        assert!(err.contains("n_embd"), "{err}");
    }

    /// A window that is not two integers says what a window is, whatever is wrong with it
    /// (serde alone reports "trailing characters at line 1 column 19" for three values).
    #[test]
    fn a_window_must_be_left_and_right() {
        for bad in ["[1, 2, 3]", "[1]", "3", "[1.5, 0]", "\"1, 0\"", "[]"] {
            let forward = format!(r#"{{"is_causal": true, "window": {bad}}}"#);
            let err = Spec::parse(ModuleKind::Sdpa, None, Some(&forward)).unwrap_err();
            assert!(
                err.starts_with("metadata \"forward\": window is [left, right], two integers")
                    && !err.contains("trailing"),
                "{bad}: {err}"
            );
        }
        for (good, want) in [("[1, -1]", Some([1, -1])), ("null", None)] {
            let forward = format!(r#"{{"window": {good}}}"#);
            let Ok(Spec::Sdpa(f)) = Spec::parse(ModuleKind::Sdpa, None, Some(&forward)) else {
                panic!("{good}")
            };
            assert_eq!(f.window, want);
        }
    }

    #[test]
    fn absent_and_null_keys_take_pytorch_defaults() {
        let spec = Spec::parse(
            ModuleKind::CausalSelfAttention,
            Some(r#"{"n_embd": 4, "n_head": 2, "block_size": 8, "dropout": null}"#),
            None,
        )
        .unwrap();
        let Spec::CausalSelfAttention(args, _) = &spec else {
            panic!("{spec:?}")
        };
        assert!(args.config().bias);
        assert_eq!(args.config().dropout, 0.0);
        assert!(!spec.train());
        let err = Spec::parse(ModuleKind::Head, Some(r#"{"n_embd": 4}"#), None).unwrap_err();
        assert!(err.contains("head_size"), "{err}");
    }
}
