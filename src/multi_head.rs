//! The lecture's `MultiHeadAttention` (Karpathy, "Let's build GPT", `gpt.py`): several
//! [`Head`]s side by side, concatenated, then a projection and dropout.
//!
//! VarStore names = PyTorch state_dict keys: `heads.{i}.key.weight`,
//! `heads.{i}.query.weight`, `heads.{i}.value.weight`, `heads.{i}.tril`, `proj.weight`
//! (`[n_embd, num_heads * head_size]`), `proj.bias`.

use std::borrow::Borrow;

use tch::nn::{ModuleT, Path};
use tch::Tensor;

use crate::check;
use crate::error::Result;
use crate::head::{Head, HeadConfig};
use crate::linear::{linear, Linear};

/// `MultiHeadAttention(num_heads, head_size)` with the lecture's globals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiHeadConfig {
    /// `n_embd`: channels C of the input and the output.
    pub n_embd: i64,
    pub num_heads: i64,
    pub head_size: i64,
    pub block_size: i64,
    /// Dropout on each head's weights and after the projection. Default 0.0.
    pub dropout: f64,
}

impl MultiHeadConfig {
    pub fn new(n_embd: i64, num_heads: i64, head_size: i64, block_size: i64) -> Self {
        Self {
            n_embd,
            num_heads,
            head_size,
            block_size,
            dropout: 0.0,
        }
    }

    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// The configuration of each head.
    pub fn head(&self) -> HeadConfig {
        HeadConfig::new(self.n_embd, self.head_size, self.block_size).with_dropout(self.dropout)
    }

    pub fn validate(&self) -> Result<()> {
        check::positive("num_heads", self.num_heads)?;
        self.head().validate()
    }
}

/// Multi-head attention as `num_heads` independent heads.
#[derive(Debug)]
pub struct MultiHeadAttention {
    pub heads: Vec<Head>,
    pub proj: Linear,
    pub config: MultiHeadConfig,
}

impl MultiHeadAttention {
    /// Builds the heads in order, then the projection, drawing as PyTorch does.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: MultiHeadConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow();
        let heads = (0..config.num_heads)
            .map(|i| Head::new(p / "heads" / i, config.head()))
            .collect::<Result<Vec<_>>>()?;
        let proj = linear(
            p / "proj",
            config.num_heads * config.head_size,
            config.n_embd,
            true,
        )?;
        Ok(Self {
            heads,
            proj,
            config,
        })
    }

    /// `x (B, T, n_embd) -> (B, T, n_embd)`; `train` enables dropout.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // Heads run in order, so their dropout draws follow PyTorch's.
        let outs = self
            .heads
            .iter()
            .map(|h| h.f_forward_t(x, train))
            .collect::<Result<Vec<_>>>()?;
        let out = Tensor::f_cat(&outs, -1)?; // (B, T, num_heads * head_size)
        Ok(self
            .proj
            .f_forward(&out)?
            .f_dropout(self.config.dropout, train)?)
    }
}

impl ModuleT for MultiHeadAttention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train)
            .unwrap_or_else(|e| panic!("MultiHeadAttention: {e}"))
    }
}
