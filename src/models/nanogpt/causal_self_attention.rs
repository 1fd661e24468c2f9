//! nanoGPT's `CausalSelfAttention` (Karpathy, nanoGPT `model.py`): one fused `c_attn`
//! projection for q, k, v, causal scaled-dot-product attention over `n_head` heads, and
//! the `c_proj` output projection with residual dropout.
//!
//! VarStore names = PyTorch state_dict keys: `c_attn.weight` `[3C, C]`, `c_attn.bias`,
//! `c_proj.weight` `[C, C]`, `c_proj.bias` (biases only when `bias`). This is the flash
//! variant: no `bias` mask buffer; the causal mask is SDPA's `is_causal`.

use std::borrow::Borrow;

use tch::nn::{ModuleT, Path};
use tch::Tensor;

use crate::attention::functional::{scaled_dot_product_attention, Backend, SdpaOptions};
use crate::attention::{merge_heads, split_heads};
use crate::check;
use crate::error::Result;
use crate::nn::{linear, Linear};

/// The fields of nanoGPT's `GPTConfig` that the attention uses, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CausalSelfAttentionConfig {
    /// `n_embd` (C). Default 768.
    pub n_embd: i64,
    /// `n_head`; must divide `n_embd`. Default 12.
    pub n_head: i64,
    /// `block_size`: the longest sequence. Default 1024.
    pub block_size: i64,
    /// `bias` in the Linears. Default true.
    pub bias: bool,
    /// `dropout` on the attention weights and after `c_proj`. Default 0.0.
    pub dropout: f64,
}

impl Default for CausalSelfAttentionConfig {
    fn default() -> Self {
        Self {
            n_embd: 768,
            n_head: 12,
            block_size: 1024,
            bias: true,
            dropout: 0.0,
        }
    }
}

impl CausalSelfAttentionConfig {
    /// `GPTConfig(n_embd=, n_head=, block_size=)`; `bias` true, `dropout` 0.0 as in
    /// nanoGPT's defaults.
    pub fn new(n_embd: i64, n_head: i64, block_size: i64) -> Self {
        Self {
            n_embd,
            n_head,
            block_size,
            ..Self::default()
        }
    }

    /// `bias`: whether `c_attn` and `c_proj` have biases (nanoGPT's `bias=False` makes
    /// GPT-2-size models a little faster and better).
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }

    /// `dropout`: the probability of zeroing an attention weight and an output element
    /// (after `c_proj`) in training.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// Checks what nanoGPT asserts: positive sizes, `n_head` dividing `n_embd`, and a
    /// `dropout` in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        check::positive("n_embd", self.n_embd)?;
        check::positive("n_head", self.n_head)?;
        check::positive("block_size", self.block_size)?;
        check::dropout("dropout", self.dropout)?;
        check::divisible_by_heads("n_embd", self.n_embd, "n_head", self.n_head)?;
        Ok(())
    }
}

/// nanoGPT's causal self-attention.
#[derive(Debug)]
pub struct CausalSelfAttention {
    /// `c_attn`: `Linear(C, 3C)`, the query, key and value projections stacked.
    pub c_attn: Linear,
    /// `c_proj`: `Linear(C, C)`, the output projection.
    pub c_proj: Linear,
    /// The constructor's arguments.
    pub config: CausalSelfAttentionConfig,
    /// [`Backend::Fused`] (nanoGPT's flash path, the default) or [`Backend::Math`]
    /// (nanoGPT's manual path: explicit mask, softmax, dropout).
    pub backend: Backend,
}

impl CausalSelfAttention {
    /// Builds the block under `path` (`c_attn`, then `c_proj`, drawing as PyTorch does)
    /// after [`CausalSelfAttentionConfig::validate`].
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: CausalSelfAttentionConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow();
        let c = config.n_embd;
        let c_attn = linear(p / "c_attn", c, 3 * c, config.bias)?;
        let c_proj = linear(p / "c_proj", c, c, config.bias)?;
        Ok(Self {
            c_attn,
            c_proj,
            config,
            backend: Backend::Fused,
        })
    }

    /// `x (B, T, C) -> (B, T, C)`; `train` enables both dropouts.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let cfg = &self.config;
        let (_, _, c) = self.check_x(x)?;
        let nh = cfg.n_head;
        let qkv = self.c_attn.f_forward(x)?.f_split(c, 2)?; // 3 x (B, T, C)
        let q = split_heads(&qkv[0], nh)?; // (B, nh, T, hs)
        let (k, v) = (split_heads(&qkv[1], nh)?, split_heads(&qkv[2], nh)?);
        let options = SdpaOptions {
            dropout_p: if train { cfg.dropout } else { 0.0 },
            is_causal: true,
            backend: self.backend,
            ..SdpaOptions::default()
        };
        let y = scaled_dot_product_attention(&q, &k, &v, &options)?; // (B, nh, T, hs)
        let y = merge_heads(&y)?; // (B, T, C): re-assemble heads side by side
        Ok(self.c_proj.f_forward(&y)?.f_dropout(cfg.dropout, train)?)
    }
}

impl CausalSelfAttention {
    /// `x` must be `(B, T, n_embd)`, `T <= block_size`, like the weights. Returns
    /// `(B, T, C)`.
    pub(super) fn check_x(&self, x: &Tensor) -> Result<(i64, i64, i64)> {
        let cfg = &self.config;
        check::sequence(
            "x",
            x,
            cfg.n_embd,
            Some(cfg.block_size),
            &self.c_attn.weight,
        )
    }
}

impl ModuleT for CausalSelfAttention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train)
            .unwrap_or_else(|e| panic!("CausalSelfAttention: {e}"))
    }
}
