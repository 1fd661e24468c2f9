//! The lecture's single causal self-attention `Head` (Karpathy, "Let's build GPT",
//! `gpt.py`): the notebook's cell with a value projection and the `head_size ** -0.5`
//! scaling added.
//!
//! VarStore names = PyTorch state_dict keys: `key.weight`, `query.weight`,
//! `value.weight` (`[head_size, n_embd]`) and the `tril` buffer
//! (`[block_size, block_size]`, not trainable).

use std::borrow::Borrow;

use tch::nn::{ModuleT, Path};
use tch::{Kind, Tensor};

use crate::check;
use crate::error::Result;
use crate::functional::{Attention, MaskedRows};
use crate::linear::{linear, Linear};

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
    pub fn new(n_embd: i64, head_size: i64, block_size: i64) -> Self {
        Self {
            n_embd,
            head_size,
            block_size,
            dropout: 0.0,
        }
    }

    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

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
    pub key: Linear,
    pub query: Linear,
    pub value: Linear,
    /// Lower-triangular ones `[block_size, block_size]`: 0 above the diagonal = masked.
    pub tril: Tensor,
    pub config: HeadConfig,
    /// Rows with every key masked (only possible with a loaded `tril` that has a zero on
    /// its diagonal). Default NaN, as the lecture's plain softmax gives.
    pub masked_rows: MaskedRows,
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
        })
    }

    /// `x (B, T, n_embd) -> (B, T, head_size)`; `train` enables dropout.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.f_forward_with_weights(x, train)?.output)
    }

    /// The forward pass, also returning the weights `(B, T, T)` after dropout.
    pub fn f_forward_with_weights(&self, x: &Tensor, train: bool) -> Result<Attention> {
        let (_b, t, _c) = check::sequence(
            "x",
            x,
            self.config.n_embd,
            Some(self.config.block_size),
            &self.key.weight,
        )?;
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

impl ModuleT for Head {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train)
            .unwrap_or_else(|e| panic!("Head: {e}"))
    }
}
