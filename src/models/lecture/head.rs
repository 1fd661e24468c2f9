//! The lecture's single causal self-attention `Head` (Karpathy, "Let's build GPT",
//! `gpt.py`): the notebook's cell with a value projection and the `head_size ** -0.5`
//! scaling added.
//!
//! VarStore names = PyTorch state_dict keys: `key.weight`, `query.weight`,
//! `value.weight` (`[head_size, n_embd]`) and the `tril` buffer
//! (`[block_size, block_size]`, not trainable).
//!
//! Two paths compute the same thing. [`Head::f_forward_with_weights`] is the lecture's
//! cell line for line (the notebook replay and train-mode dropout parity rely on it).
//! [`Head::f_forward_t`] in eval takes a fast path: at the notebook's size
//! (B=4, T=8, C=32) the time goes to dispatching ~13 small ops, not to arithmetic, so it
//! issues 7 — one matmul against the key/query/value weights stacked, views, and
//! libtorch's fused causal attention kernel — when the `tril` buffer is the causal mask.

use std::borrow::Borrow;
use std::sync::Mutex;

use tch::nn::{ModuleT, Path};
use tch::{Kind, Tensor};

use crate::attention::functional::{Attention, MaskedRows};
use crate::check;
use crate::error::Result;
use crate::nn::{linear, Linear};

/// `Head(head_size)` with the lecture's globals `n_embd`, `block_size`, `dropout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadConfig {
    /// `n_embd`: channels C of the input.
    pub n_embd: i64,
    /// `head_size`: channels of keys, queries, values and the output.
    pub head_size: i64,
    /// `block_size`: the longest sequence; the size of the `tril` buffer.
    pub block_size: i64,
    /// `dropout` on the attention weights. Default 0.0.
    pub dropout: f64,
}

impl HeadConfig {
    /// `Head(head_size)` with `n_embd` and `block_size`; `dropout` 0.0.
    pub fn new(n_embd: i64, head_size: i64, block_size: i64) -> Self {
        Self {
            n_embd,
            head_size,
            block_size,
            dropout: 0.0,
        }
    }

    /// `dropout`: the probability of zeroing an attention weight in training.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// Checks that the sizes are positive and `dropout` is in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        check::positive("n_embd", self.n_embd)?;
        check::positive("head_size", self.head_size)?;
        check::positive("block_size", self.block_size)?;
        check::dropout("dropout", self.dropout)
    }
}

/// One head of causal self-attention.
#[derive(Debug)]
pub struct Head {
    /// `key`: `Linear(n_embd, head_size, bias=False)`.
    pub key: Linear,
    /// `query`: `Linear(n_embd, head_size, bias=False)`.
    pub query: Linear,
    /// `value`: `Linear(n_embd, head_size, bias=False)`.
    pub value: Linear,
    /// Lower-triangular ones `[block_size, block_size]`: 0 above the diagonal = masked.
    pub tril: Tensor,
    /// The constructor's arguments.
    pub config: HeadConfig,
    /// Rows with every key masked (only possible with a loaded `tril` that has a zero on
    /// its diagonal). Default NaN, as the lecture's plain softmax gives.
    pub masked_rows: MaskedRows,
    /// Whether `tril` is the causal mask, remembered with the `tril` it was computed for.
    tril_is_causal: Mutex<Option<TrilState>>,
}

/// Identifies one state of the `tril` tensor: its storage and libtorch's version counter,
/// which every in-place write (`copy_` when a checkpoint loads, `fill_`, ...) bumps, and
/// which `set_data` (a dtype or device change) replaces along with the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TrilState {
    data: usize,
    version: i64,
    causal: bool,
}

impl Head {
    /// Builds the head under `path`, drawing the weights as PyTorch does (key, query,
    /// value, in this order).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: HeadConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow();
        let (c, hs, bs) = (config.n_embd, config.head_size, config.block_size);
        let key = linear(p / "key", c, hs, false)?;
        let query = linear(p / "query", c, hs, false)?;
        let value = linear(p / "value", c, hs, false)?;
        let ones = Tensor::f_ones([bs, bs], (p.kind(), p.device()))?;
        let tril = p.add("tril", ones.f_tril(0)?, false);
        Ok(Self {
            key,
            query,
            value,
            tril,
            config,
            masked_rows: MaskedRows::Nan,
            tril_is_causal: Mutex::new(None),
        })
    }

    /// `x (B, T, n_embd) -> (B, T, head_size)`; `train` enables dropout.
    ///
    /// In eval (`!train`), in float32 or float64, with the causal `tril`, this is the
    /// fast path; otherwise the lecture's ops ([`Head::f_forward_with_weights`]). Both
    /// agree to rounding (`tests/head_fast_path.rs`). Half and bfloat16 keep the
    /// lecture's ops: PyTorch's Head rounds every intermediate (scores, softmax) to the
    /// half type, while the fused kernel accumulates in float32, and the two differ by
    /// more than the half-precision parity tolerances.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train || !self.fast_path_applies() {
            return Ok(self.f_forward_with_weights(x, train)?.output);
        }
        self.f_forward_fused(x)
    }

    /// Float32 or float64 with the causal `tril`: what the eval fast path needs (also
    /// for [`MultiHeadAttention`](crate::models::lecture::MultiHeadAttention)'s).
    pub(crate) fn fast_path_applies(&self) -> bool {
        matches!(self.key.weight.kind(), Kind::Float | Kind::Double) && self.tril_is_causal()
    }

    /// The eval fast path: `x @ [W_q; W_k; W_v]^T`, then fused causal attention.
    ///
    /// The stacked weight is built by one `cat` per call rather than cached: a cache
    /// would have to notice every change of the three Parameters (an optimizer step, a
    /// checkpoint load, a dtype change) and would have to be rebuilt with autograd
    /// whenever grad is on; the `cat` of three `[hs, C]` weights costs about 0.6 us of
    /// the ~11 us this path takes at the notebook's size, stays differentiable, and can
    /// never be stale.
    fn f_forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _c) = self.check_x(x)?;
        let hs = self.config.head_size;
        let w = Tensor::f_cat(
            &[&self.query.weight, &self.key.weight, &self.value.weight],
            0,
        )?; // (3 hs, C)
            // tril == 0 above the diagonal only, so `is_causal` masks exactly what
            // `masked_fill(tril[:T, :T] == 0, -inf)` masks, and no row is fully masked.
        let out = fused_causal_heads(x, &w, (b, t), 1, hs)?; // (B, 1, T, hs)
        Ok(out.f_squeeze_dim(1)?)
    }

    /// Whether `tril` masks exactly the future (`tril != 0` is the lower triangle), as
    /// built; a loaded buffer may say otherwise. Checked once per state of the tensor;
    /// anything libtorch refuses here (an inference-mode tensor has no version counter)
    /// answers false, which only means the lecture's path.
    fn tril_is_causal(&self) -> bool {
        let data = self.tril.data_ptr() as usize;
        let Ok(version) = self.tril.f_internal_version() else {
            return false;
        };
        let mut memo = self
            .tril_is_causal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(state) = *memo {
            if state.data == data && state.version == version {
                return state.causal;
            }
        }
        let bs = self.config.block_size;
        let causal = self.tril.size() == [bs, bs]
            && (|| -> Result<bool> {
                let lower = Tensor::f_ones([bs, bs], (Kind::Bool, self.tril.device()))?;
                Ok(self.tril.f_ne(0.0)?.f_equal(&lower.f_tril(0)?)?)
            })()
            .unwrap_or(false);
        *memo = Some(TrilState {
            data,
            version,
            causal,
        });
        causal
    }

    /// `x` must be `(B, T, n_embd)`, `T <= block_size`, like the weights. Returns
    /// `(B, T, C)`.
    fn check_x(&self, x: &Tensor) -> Result<(i64, i64, i64)> {
        let cfg = &self.config;
        check::sequence("x", x, cfg.n_embd, Some(cfg.block_size), &self.key.weight)
    }

    /// The forward pass, also returning the weights `(B, T, T)` after dropout.
    pub fn f_forward_with_weights(&self, x: &Tensor, train: bool) -> Result<Attention> {
        let (_b, t, _c) = self.check_x(x)?;
        let k = self.key.f_forward(x)?; // (B, T, hs)
        let q = self.query.f_forward(x)?; // (B, T, hs)
                                          // Scaled so that the scores keep unit variance and softmax does not saturate.
        let scale = (self.config.head_size as f64).powf(-0.5);
        let wei = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_mul_scalar(scale)?; // (B, T, hs) @ (B, hs, T) -> (B, T, T)
        let future = self.tril.f_narrow(0, 0, t)?.f_narrow(1, 0, t)?.f_eq(0.0)?; // (T, T)
        let wei = wei.f_masked_fill(&future, f64::NEG_INFINITY)?;
        let wei = match self.masked_rows {
            MaskedRows::Nan => wei.f_softmax(-1, None::<Kind>)?,
            MaskedRows::Zero => wei.f_internal_safe_softmax(-1, None::<Kind>)?,
        };
        let wei = wei.f_dropout(self.config.dropout, train)?;
        let v = self.value.f_forward(x)?; // (B, T, hs)
        let output = wei.f_matmul(&v)?; // (B, T, T) @ (B, T, hs) -> (B, T, hs)
        Ok(Attention {
            output,
            weights: wei,
        })
    }
}

/// `nh` causal heads of size `hs` over `x (B, T, C)`, with `w` the stacked projections
/// `[W_q; W_k; W_v]` `(3 nh hs, C)` (each block holding the heads in order): one matmul,
/// then libtorch's fused causal kernel with the lecture's `hs ** -0.5` scale.
/// Returns `(B, nh, T, hs)`.
pub(crate) fn fused_causal_heads(
    x: &Tensor,
    w: &Tensor,
    (b, t): (i64, i64),
    nh: i64,
    hs: i64,
) -> Result<Tensor> {
    let qkv = x
        .f_linear(w, None::<Tensor>)? // (B, T, 3 nh hs)
        .f_view([b, t, 3, nh, hs])?
        .f_permute([2, 0, 3, 1, 4])?; // (3, B, nh, T, hs)
    let qkv = qkv.f_unbind(0)?;
    let scale = (hs as f64).powf(-0.5);
    Ok(Tensor::f_scaled_dot_product_attention(
        &qkv[0],
        &qkv[1],
        &qkv[2],
        None::<Tensor>,
        0.0,
        true,
        Some(scale),
        false,
    )?)
}

impl ModuleT for Head {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train)
            .unwrap_or_else(|e| panic!("Head: {e}"))
    }
}
