//! nanoGPT's `CausalSelfAttention` (Karpathy, nanoGPT `model.py`): one fused `c_attn`
//! projection for q, k, v, causal scaled-dot-product attention over `n_head` heads, and
//! the `c_proj` output projection with residual dropout.
//!
//! VarStore names = PyTorch state_dict keys: `c_attn.weight` `[3C, C]`, `c_attn.bias`,
//! `c_proj.weight` `[C, C]`, `c_proj.bias` (biases only when `bias`), and `sinks` `[nh]`
//! with attention sinks (gpt-oss's name). This is the flash variant: no `bias` mask
//! buffer; the causal mask is SDPA's `is_causal`.
//!
//! Beyond nanoGPT, the config switches on the attention options of current models, each
//! off by default (so the default block is nanoGPT's exactly): a sliding window
//! (Mistral's `sliding_window`), logit soft-capping (Gemma 2), attention sinks (gpt-oss),
//! ALiBi (BLOOM, MPT), and packed documents at forward time
//! ([`CausalSelfAttention::f_forward_documents_t`]). The window, ALiBi and documents are
//! masks or biases, so they stay on libtorch's fused kernel; soft-capping and sinks change
//! the softmax and run on the math path (see [`crate::attention::functional`]).

use std::borrow::Borrow;

use tch::nn::{ModuleT, Path};
use tch::Tensor;

use crate::attention::functional::{scaled_dot_product_attention, Backend, SdpaOptions};
use crate::attention::{merge_heads, split_heads, Alibi, Documents, Window};
use crate::check;
use crate::error::{Error, Result};
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
    /// `sliding_window` W (transformers' Mistral name): each token sees itself and the
    /// `W - 1` tokens before it, flash-attention's `window_size = (W - 1, 0)`; `W >= 1`.
    /// Default `None` (every earlier token).
    pub sliding_window: Option<i64>,
    /// `softcap` (Gemma 2's `attn_logit_softcapping`): the scaled scores become
    /// `cap * tanh(scores / cap)`; `cap > 0`. Default `None`.
    pub softcap: Option<f64>,
    /// `sinks` (gpt-oss): a learned logit per head, the parameter `sinks` `[nh]`, joins
    /// each row's softmax as an extra column that is then dropped. Default false.
    pub sinks: bool,
    /// `alibi`: ALiBi's bias `-slope_h * (i - j)` instead of position information, with
    /// BLOOM's slopes (other slopes: [`CausalSelfAttention::with_alibi_slopes`]).
    /// Default false.
    pub alibi: bool,
}

impl Default for CausalSelfAttentionConfig {
    fn default() -> Self {
        Self {
            n_embd: 768,
            n_head: 12,
            block_size: 1024,
            bias: true,
            dropout: 0.0,
            sliding_window: None,
            softcap: None,
            sinks: false,
            alibi: false,
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

    /// `sliding_window`: each token sees itself and the `w - 1` tokens before it.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_sliding_window(self, w: i64) -> Self {
        Self {
            sliding_window: Some(w),
            ..self
        }
    }

    /// `softcap`: Gemma 2's logit soft-capping at `cap`.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_softcap(self, cap: f64) -> Self {
        Self {
            softcap: Some(cap),
            ..self
        }
    }

    /// `sinks`: whether the block has gpt-oss's learned per-head sink logits.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_sinks(self, sinks: bool) -> Self {
        Self { sinks, ..self }
    }

    /// `alibi`: whether the scores get ALiBi's bias (BLOOM's slopes).
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_alibi(self, alibi: bool) -> Self {
        Self { alibi, ..self }
    }

    /// Checks what nanoGPT asserts: positive sizes, `n_head` dividing `n_embd`, and a
    /// `dropout` in `[0, 1]`; and the options: a `sliding_window >= 1`, a positive finite
    /// `softcap`.
    pub fn validate(&self) -> Result<()> {
        check::positive("n_embd", self.n_embd)?;
        check::positive("n_head", self.n_head)?;
        check::positive("block_size", self.block_size)?;
        check::dropout("dropout", self.dropout)?;
        check::divisible_by_heads("n_embd", self.n_embd, "n_head", self.n_head)?;
        self.window()?;
        if let Some(cap) = self.softcap {
            if !(cap > 0.0 && cap.is_finite()) {
                return Err(Error::invalid(
                    "softcap",
                    format!("must be positive and finite, got {cap}"),
                ));
            }
        }
        Ok(())
    }

    /// The sliding window as flash-attention's `(W - 1, 0)`; `None` without one.
    pub fn window(&self) -> Result<Option<Window>> {
        self.sliding_window.map(Window::sliding).transpose()
    }
}

/// nanoGPT's causal self-attention.
#[derive(Debug)]
pub struct CausalSelfAttention {
    /// `c_attn`: `Linear(C, 3C)`, the query, key and value projections stacked.
    pub c_attn: Linear,
    /// `c_proj`: `Linear(C, C)`, the output projection.
    pub c_proj: Linear,
    /// `sinks` `[nh]`: the learned sink logits, when `config.sinks`. Starts at zero
    /// (gpt-oss allocates it empty and its `_init_weights` draws it; a checkpoint sets it).
    pub sinks: Option<Tensor>,
    /// The ALiBi slopes, when `config.alibi`: BLOOM's, or those given to
    /// [`CausalSelfAttention::with_alibi_slopes`].
    pub alibi: Option<Alibi>,
    /// The constructor's arguments.
    pub config: CausalSelfAttentionConfig,
    /// [`Backend::Fused`] (nanoGPT's flash path, the default) or [`Backend::Math`]
    /// (nanoGPT's manual path: explicit mask, softmax, dropout).
    pub backend: Backend,
}

impl CausalSelfAttention {
    /// Builds the block under `path` (`c_attn`, then `c_proj`, drawing as PyTorch does,
    /// then `sinks` at zero) after [`CausalSelfAttentionConfig::validate`].
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: CausalSelfAttentionConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow();
        let c = config.n_embd;
        let c_attn = linear(p / "c_attn", c, 3 * c, config.bias)?;
        let c_proj = linear(p / "c_proj", c, c, config.bias)?;
        let sinks = if config.sinks {
            Some(p.f_zeros("sinks", &[config.n_head])?)
        } else {
            None
        };
        Ok(Self {
            c_attn,
            c_proj,
            sinks,
            alibi: config.alibi.then_some(Alibi::Bloom),
            config,
            backend: Backend::Fused,
        })
    }

    /// ALiBi with the given `slopes` `(nh,)` instead of BLOOM's: a floating tensor on the
    /// module's device. Errors when the config has no `alibi` or the slopes do not fit.
    pub fn with_alibi_slopes(self, slopes: Tensor) -> Result<Self> {
        if !self.config.alibi {
            return Err(Error::invalid(
                "alibi_slopes",
                "given to a block whose config has alibi = false",
            ));
        }
        let nh = self.config.n_head;
        let like = &self.c_attn.weight;
        let alibi = Alibi::Slopes(slopes);
        alibi.check(&[nh, 1, 1], like.device())?;
        Ok(Self {
            alibi: Some(alibi),
            ..self
        })
    }

    /// `x (B, T, C) -> (B, T, C)`; `train` enables both dropouts.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_inner(x, None, train)
    }

    /// Packed documents: `x (B, T, C) -> (B, T, C)` where token `t` attends only to the
    /// earlier tokens of its own document, `document_ids` `(T,)` or `(B, T)`, integer
    /// (FlexAttention's document mask with causal masking).
    pub fn f_forward_documents_t(
        &self,
        x: &Tensor,
        document_ids: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let documents = Documents::same(document_ids.shallow_clone())?;
        self.forward_inner(x, Some(documents), train)
    }

    fn forward_inner(
        &self,
        x: &Tensor,
        documents: Option<Documents>,
        train: bool,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (_, _, c) = self.check_x(x)?;
        let nh = cfg.n_head;
        let qkv = self.c_attn.f_forward(x)?.f_split(c, 2)?; // 3 x (B, T, C)
        let q = split_heads(&qkv[0], nh)?; // (B, nh, T, hs)
        let (k, v) = (split_heads(&qkv[1], nh)?, split_heads(&qkv[2], nh)?);
        let options = SdpaOptions {
            dropout_p: if train { cfg.dropout } else { 0.0 },
            is_causal: true,
            window: cfg.window()?,
            documents,
            ..self.options()
        };
        let y = scaled_dot_product_attention(&q, &k, &v, &options)?; // (B, nh, T, hs)
        let y = merge_heads(&y)?; // (B, T, C): re-assemble heads side by side
        Ok(self.c_proj.f_forward(&y)?.f_dropout(cfg.dropout, train)?)
    }

    /// The options every forward shares: backend, soft-cap, sinks and ALiBi.
    pub(super) fn options(&self) -> SdpaOptions {
        SdpaOptions {
            backend: self.backend,
            softcap: self.config.softcap,
            sinks: self.sinks.as_ref().map(Tensor::shallow_clone),
            alibi: self.alibi.as_ref().map(Alibi::shallow_clone),
            ..SdpaOptions::default()
        }
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
