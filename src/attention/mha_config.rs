//! The arguments of `torch.nn.MultiheadAttention`: the constructor's
//! ([`MultiheadAttentionConfig`], validated once when the module is built) and the
//! forward's non-tensor ones ([`MhaOptions`]). Apart from the module, so that its
//! input checks (`mha_check`) read them without importing the module.

use crate::attention::mask::Mask;
use crate::check;
use crate::error::Result;

/// `torch.nn.MultiheadAttention(embed_dim, num_heads, ...)`; device and dtype come from
/// the VarStore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiheadAttentionConfig {
    /// E: channels of the query and the output.
    pub embed_dim: i64,
    /// Heads; must divide `embed_dim`.
    pub num_heads: i64,
    /// Dropout on the attention weights in training. Default 0.0.
    pub dropout: f64,
    /// Biases in the in- and out-projections. Default true.
    pub bias: bool,
    /// Learned key and value appended to the sequence. Default false.
    pub add_bias_kv: bool,
    /// A zero key and value appended to the sequence. Default false.
    pub add_zero_attn: bool,
    /// Channels of the key; `None` = `embed_dim`.
    pub kdim: Option<i64>,
    /// Channels of the value; `None` = `embed_dim`.
    pub vdim: Option<i64>,
    /// Inputs and output are `(N, L, E)` instead of `(L, N, E)`. Default false.
    pub batch_first: bool,
}

impl MultiheadAttentionConfig {
    /// `nn.MultiheadAttention(embed_dim, num_heads)` with PyTorch's defaults for the rest;
    /// checked by [`MultiheadAttentionConfig::validate`] when the module is built.
    pub fn new(embed_dim: i64, num_heads: i64) -> Self {
        Self {
            embed_dim,
            num_heads,
            dropout: 0.0,
            bias: true,
            add_bias_kv: false,
            add_zero_attn: false,
            kdim: None,
            vdim: None,
            batch_first: false,
        }
    }
    /// `dropout`: the probability of zeroing an attention weight in training.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }
    /// `bias`: whether the in- and out-projections have biases.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }
    /// `add_bias_kv`: append the learned `bias_k`, `bias_v` to the keys and values.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_add_bias_kv(self, add_bias_kv: bool) -> Self {
        Self {
            add_bias_kv,
            ..self
        }
    }
    /// `add_zero_attn`: append a zero key and value (after `bias_k`, `bias_v`).
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_add_zero_attn(self, add_zero_attn: bool) -> Self {
        Self {
            add_zero_attn,
            ..self
        }
    }
    /// `kdim`: channels of the key input, for cross-attention.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_kdim(self, kdim: i64) -> Self {
        Self {
            kdim: Some(kdim),
            ..self
        }
    }
    /// `vdim`: channels of the value input, for cross-attention.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_vdim(self, vdim: i64) -> Self {
        Self {
            vdim: Some(vdim),
            ..self
        }
    }
    /// `batch_first`: inputs and output are `(N, L, E)` instead of `(L, N, E)`.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_batch_first(self, batch_first: bool) -> Self {
        Self {
            batch_first,
            ..self
        }
    }
    /// Channels of the key input: `kdim`, or `embed_dim` when unset.
    pub fn kdim(&self) -> i64 {
        self.kdim.unwrap_or(self.embed_dim)
    }
    /// Channels of the value input: `vdim`, or `embed_dim` when unset.
    pub fn vdim(&self) -> i64 {
        self.vdim.unwrap_or(self.embed_dim)
    }
    /// One packed `in_proj_weight` (PyTorch's `_qkv_same_embed_dim`).
    pub fn packed(&self) -> bool {
        self.kdim() == self.embed_dim && self.vdim() == self.embed_dim
    }
    /// Channels per head, `embed_dim / num_heads` (PyTorch's `head_dim`).
    pub fn head_dim(&self) -> i64 {
        self.embed_dim / self.num_heads
    }

    /// Checks what PyTorch's constructor asserts: positive sizes, `num_heads` dividing
    /// `embed_dim`, a dropout probability in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        check::positive("embed_dim", self.embed_dim)?;
        check::positive("num_heads", self.num_heads)?;
        check::positive("kdim", self.kdim())?;
        check::positive("vdim", self.vdim())?;
        check::dropout("dropout", self.dropout)?;
        check::divisible_by_heads("embed_dim", self.embed_dim, "num_heads", self.num_heads)?;
        Ok(())
    }
}

/// The forward's non-tensor arguments and masks, with PyTorch's defaults.
#[derive(Debug)]
pub struct MhaOptions {
    /// `key_padding_mask` `(N, S)` (`(S)` unbatched): a [`Mask::Block`] (true = ignore
    /// that key, PyTorch's bool convention), a [`Mask::Keep`], or a [`Mask::Bias`].
    pub key_padding_mask: Option<Mask>,
    /// `attn_mask` `(L, S)` or `(N * num_heads, L, S)`, any [`Mask`] kind.
    pub attn_mask: Option<Mask>,
    /// Return the attention weights. Default true.
    pub need_weights: bool,
    /// Average the weights over heads. Default true.
    pub average_attn_weights: bool,
    /// A hint that `attn_mask` is causal; needs `attn_mask`. Default false.
    pub is_causal: bool,
}

impl Default for MhaOptions {
    fn default() -> Self {
        Self {
            key_padding_mask: None,
            attn_mask: None,
            need_weights: true,
            average_attn_weights: true,
            is_causal: false,
        }
    }
}
