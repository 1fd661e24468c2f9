//! The lecture's `MultiHeadAttention` (Karpathy, "Let's build GPT", `gpt.py`): several
//! [`Head`]s side by side, concatenated, then a projection and dropout.
//!
//! VarStore names = PyTorch state_dict keys: `heads.{i}.key.weight`,
//! `heads.{i}.query.weight`, `heads.{i}.value.weight`, `heads.{i}.tril`, `proj.weight`
//! (`[n_embd, num_heads * head_size]`), `proj.bias`.
//!
//! In eval the heads run together, as one fused attention over `num_heads` heads (see
//! [`Head`]'s fast path); in train mode they run one by one, as the lecture's do, so
//! that dropout draws the same masks as PyTorch.

use std::borrow::Borrow;

use tch::nn::{ModuleT, Path};
use tch::Tensor;

use crate::attention::merge_heads;
use crate::check;
use crate::error::Result;
use crate::models::lecture::{fused_causal_heads, Head, HeadConfig};
use crate::nn::{linear, Linear};

/// `MultiHeadAttention(num_heads, head_size)` with the lecture's globals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultiHeadConfig {
    /// `n_embd`: channels C of the input and the output.
    pub n_embd: i64,
    /// `num_heads`: how many [`Head`]s run side by side.
    pub num_heads: i64,
    /// `head_size`: channels of each head; the heads' outputs concatenate to
    /// `num_heads * head_size`.
    pub head_size: i64,
    /// `block_size`: the longest sequence; the size of each head's `tril` buffer.
    pub block_size: i64,
    /// Dropout on each head's weights and after the projection. Default 0.0.
    pub dropout: f64,
}

impl MultiHeadConfig {
    /// `MultiHeadAttention(num_heads, head_size)` with `n_embd` and `block_size`;
    /// `dropout` 0.0.
    pub fn new(n_embd: i64, num_heads: i64, head_size: i64, block_size: i64) -> Self {
        Self {
            n_embd,
            num_heads,
            head_size,
            block_size,
            dropout: 0.0,
        }
    }

    /// `dropout`: the probability of zeroing a weight (in each head) and an output
    /// element (after `proj`) in training.
    #[must_use = "a with_* builder returns the changed value; it does not change it in place"]
    pub fn with_dropout(self, dropout: f64) -> Self {
        Self { dropout, ..self }
    }

    /// The configuration of each head.
    pub fn head(&self) -> HeadConfig {
        HeadConfig::new(self.n_embd, self.head_size, self.block_size).with_dropout(self.dropout)
    }

    /// Checks that the sizes are positive and `dropout` is in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        check::positive("num_heads", self.num_heads)?;
        self.head().validate()
    }
}

/// Multi-head attention as `num_heads` independent heads.
#[derive(Debug)]
pub struct MultiHeadAttention {
    /// `heads`: the [`Head`]s, under `heads.0.`, `heads.1.`, ...
    pub heads: Vec<Head>,
    /// `proj`: `Linear(num_heads * head_size, n_embd)`.
    pub proj: Linear,
    /// The constructor's arguments.
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
        if !train && self.heads.iter().all(Head::fast_path_applies) {
            return self.f_forward_fused(x);
        }
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

impl MultiHeadAttention {
    /// Every head at once: one matmul against all heads' query, key and value weights
    /// stacked (one `cat` per call, never stale; see `Head::f_forward_fused`), fused
    /// causal attention over nh heads, the heads side by side, then `proj`. The same
    /// values as concatenating the heads' outputs (`tests/multi_head_fast_path.rs`).
    fn f_forward_fused(&self, x: &Tensor) -> Result<Tensor> {
        let cfg = &self.config;
        let first = &self.heads[0];
        let (b, t, _c) =
            check::sequence("x", x, cfg.n_embd, Some(cfg.block_size), &first.key.weight)?;
        let (nh, hs) = (cfg.num_heads, cfg.head_size);
        let mut stacked: Vec<&Tensor> = Vec::with_capacity(3 * self.heads.len());
        stacked.extend(self.heads.iter().map(|h| &h.query.weight));
        stacked.extend(self.heads.iter().map(|h| &h.key.weight));
        stacked.extend(self.heads.iter().map(|h| &h.value.weight));
        let w = Tensor::f_cat(&stacked, 0)?; // (3 nh hs, C): all queries, all keys, all values
        let y = fused_causal_heads(x, &w, (b, t), nh, hs)?; // (B, nh, T, hs)
        let y = merge_heads(&y)?; // (B, T, nh * hs): torch.cat(heads, dim=-1)
        self.proj.f_forward(&y)
    }
}

impl ModuleT for MultiHeadAttention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.f_forward_t(xs, train)
            .unwrap_or_else(|e| panic!("MultiHeadAttention: {e}"))
    }
}
