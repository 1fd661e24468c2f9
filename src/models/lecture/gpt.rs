//! The lecture's whole model, `GPTLanguageModel` (Karpathy, "Let's build GPT",
//! `gpt.py` in karpathy/ng-video-lecture): token and position embeddings, `n_layer`
//! pre-norm [`Block`]s (the lecture's [`MultiHeadAttention`] of [`Head`]s, then
//! [`FeedForward`]), a final LayerNorm and the `lm_head` over the vocabulary.
//!
//! VarStore names = the state_dict keys of `GPTLanguageModel()`:
//! `token_embedding_table.weight` `[vocab_size, n_embd]`,
//! `position_embedding_table.weight` `[block_size, n_embd]`,
//! `blocks.{i}.sa.heads.{h}.{key,query,value}.weight`, `blocks.{i}.sa.heads.{h}.tril`,
//! `blocks.{i}.sa.proj.{weight,bias}`, `blocks.{i}.ffwd.net.0.{weight,bias}`
//! (`Linear(C, 4C)`), `blocks.{i}.ffwd.net.2.{weight,bias}` (`Linear(4C, C)`),
//! `blocks.{i}.ln1.{weight,bias}`, `blocks.{i}.ln2.{weight,bias}`, `ln_f.{weight,bias}`,
//! `lm_head.{weight,bias}`.
//!
//! Initialisation draws what PyTorch draws from the same seed: every module's default
//! init first, in construction order (`nn.Embedding`: `normal_(0, 1)`; `nn.Linear`:
//! kaiming-uniform weight and uniform bias), then `self.apply(self._init_weights)`,
//! which visits the modules post-order — for the leaves, the construction order again —
//! and redraws every Linear and Embedding weight from `normal(0, 0.02)` and zeroes the
//! biases.
//!
//! [`GptLanguageModel::f_forward_t`] runs the lecture's ops in train and in eval mode
//! (each head on its own, dropout where the lecture has it, in its order), so losses
//! and dropout masks are PyTorch's bit for bit. [`GptLanguageModel::f_forward_cached`]
//! is the decoding path: eval mode, every head of a block in one fused attention over
//! a [`KvCache`]; it agrees with the lecture's path to float32 rounding.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::{Kind, Tensor};

use crate::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use crate::attention::kv_cache::causal_mask;
use crate::attention::KvCache;
use crate::check;
use crate::error::{Error, Result};
use crate::models::causal_lm::gpt_causal_lm;
use crate::models::lecture::{Head, MultiHeadAttention, MultiHeadConfig};
use crate::models::token_ids;
use crate::nn::{layer_norm, linear, LayerNorm, Linear};

/// `nn.LayerNorm`'s default `eps`, which the lecture keeps.
const LN_EPS: f64 = 1e-5;
/// `_init_weights`' standard deviation for every Linear and Embedding weight.
const INIT_STD: f64 = 0.02;

/// The lecture's hyperparameters that shape the model (`gpt.py`'s globals).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptConfig {
    /// `vocab_size`: the number of distinct characters of the text.
    pub vocab_size: i64,
    /// `block_size`: the longest context. The lecture's default 256.
    pub block_size: i64,
    /// `n_embd`: channels C of the residual stream. Default 384.
    pub n_embd: i64,
    /// `n_head`: heads per block; `head_size = n_embd / n_head`. Default 6.
    pub n_head: i64,
    /// `n_layer`: blocks. Default 6.
    pub n_layer: i64,
    /// `dropout`: on the attention weights, after `proj` and after the feed-forward.
    /// Default 0.2.
    pub dropout: f64,
}

impl GptConfig {
    /// The number of trainable parameters a model of this config has (the `tril`
    /// buffers not counted); `None` when it overflows `u64`. A checkpoint must hold at
    /// least this many elements: loaders compare before building anything.
    pub fn parameter_count(&self) -> Option<u64> {
        let [v, b, c, l] = [self.vocab_size, self.block_size, self.n_embd, self.n_layer]
            .map(|x| u64::try_from(x).unwrap_or(u64::MAX));
        let linear = |i: u64, o: u64, bias: bool| i.checked_mul(o)?.checked_add(bias as u64 * o);
        let norm = c.checked_mul(2)?;
        // heads' key/query/value (no bias), proj, the feed-forward, two LayerNorms
        let attention = linear(c, c, false)?
            .checked_mul(3)?
            .checked_add(linear(c, c, true)?)?;
        let c4 = c.checked_mul(4)?;
        let ffwd = linear(c, c4, true)?.checked_add(linear(c4, c, true)?)?;
        let block = attention
            .checked_add(ffwd)?
            .checked_add(norm.checked_mul(2)?)?;
        let embeddings = v.checked_add(b)?.checked_mul(c)?;
        embeddings
            .checked_add(block.checked_mul(l)?)?
            .checked_add(norm)?
            .checked_add(linear(c, v, true)?)
    }

    /// The lecture's model for a vocabulary of `vocab_size`: block 256, n_embd 384,
    /// 6 heads, 6 layers, dropout 0.2.
    pub fn new(vocab_size: i64) -> Self {
        Self {
            vocab_size,
            block_size: 256,
            n_embd: 384,
            n_head: 6,
            n_layer: 6,
            dropout: 0.2,
        }
    }

    /// `head_size = n_embd // n_head`, as `Block` computes it.
    pub fn head_size(&self) -> i64 {
        self.n_embd / self.n_head.max(1)
    }

    /// Checks that every size is positive, `n_embd` divides into `n_head` heads (the
    /// lecture would silently drop channels otherwise: `proj` takes
    /// `head_size * num_heads`) and `dropout` is in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        check::positive("vocab_size", self.vocab_size)?;
        check::positive("block_size", self.block_size)?;
        check::positive("n_embd", self.n_embd)?;
        check::positive("n_head", self.n_head)?;
        check::positive("n_layer", self.n_layer)?;
        check::dropout("dropout", self.dropout)?;
        if self.n_embd % self.n_head != 0 {
            return Err(Error::config(
                "n_embd",
                format!(
                    "must be divisible by n_head = {}, got {}",
                    self.n_head, self.n_embd
                ),
            ));
        }
        Ok(())
    }

    /// The configuration of each block's `MultiHeadAttention(n_head, head_size)`.
    pub fn attention(&self) -> MultiHeadConfig {
        MultiHeadConfig::new(self.n_embd, self.n_head, self.head_size(), self.block_size)
            .with_dropout(self.dropout)
    }
}

/// The lecture's `FeedFoward`: `nn.Sequential(Linear(C, 4C), ReLU(), Linear(4C, C),
/// Dropout)`, whose state_dict keys are `net.0.*` and `net.2.*`.
#[derive(Debug)]
pub struct FeedForward {
    /// `net.0`: `Linear(n_embd, 4 * n_embd)`.
    pub net_0: Linear,
    /// `net.2`: `Linear(4 * n_embd, n_embd)`.
    pub net_2: Linear,
    /// `net.3`: the dropout probability.
    pub dropout: f64,
}

impl FeedForward {
    /// Builds `net.0` then `net.2` under `path`, drawing PyTorch's default init.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, n_embd: i64, dropout: f64) -> Result<Self> {
        let net = path.borrow() / "net";
        Ok(Self {
            net_0: linear(&net / 0, n_embd, 4 * n_embd, true)?,
            net_2: linear(&net / 2, 4 * n_embd, n_embd, true)?,
            dropout,
        })
    }

    /// `(*, C) -> (*, C)`; `train` enables the dropout.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.net_0.f_forward(x)?.f_relu()?; // (*, 4C)
        Ok(self.net_2.f_forward(&h)?.f_dropout(self.dropout, train)?)
    }
}

/// The lecture's `Block`: `x + sa(ln1(x))`, then `x + ffwd(ln2(x))`.
#[derive(Debug)]
pub struct Block {
    /// `sa`: `MultiHeadAttention(n_head, head_size)`.
    pub sa: MultiHeadAttention,
    /// `ffwd`: `FeedFoward(n_embd)`.
    pub ffwd: FeedForward,
    /// `ln1`: `LayerNorm(n_embd)` before the attention.
    pub ln1: LayerNorm,
    /// `ln2`: `LayerNorm(n_embd)` before the feed-forward.
    pub ln2: LayerNorm,
}

impl Block {
    /// Builds `sa`, `ffwd`, `ln1`, `ln2` in the lecture's order.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: &GptConfig) -> Result<Self> {
        let p = path.borrow();
        Ok(Self {
            sa: MultiHeadAttention::new(p / "sa", config.attention())?,
            ffwd: FeedForward::new(p / "ffwd", config.n_embd, config.dropout)?,
            ln1: layer_norm(p / "ln1", config.n_embd, LN_EPS)?,
            ln2: layer_norm(p / "ln2", config.n_embd, LN_EPS)?,
        })
    }

    /// `(B, T, C) -> (B, T, C)` with the lecture's ops; `train` enables dropout.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.f_add(&self.f_attend(&self.ln1.f_forward(x)?, train)?)?;
        x.f_add(&self.ffwd.f_forward_t(&self.ln2.f_forward(&x)?, train)?)
            .map_err(Into::into)
    }

    /// `MultiHeadAttention.forward` as the lecture writes it, in eval too: each head's
    /// own matmul, mask and softmax (`Head::f_forward_with_weights`), not the fused
    /// kernel `MultiHeadAttention::f_forward_t` takes in eval, so that `estimate_loss`
    /// gives PyTorch's bits rather than values equal to rounding.
    fn f_attend(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let outs = self
            .sa
            .heads
            .iter()
            .map(|h| Ok(h.f_forward_with_weights(x, train)?.output))
            .collect::<Result<Vec<_>>>()?;
        let out = Tensor::f_cat(&outs, -1)?; // (B, T, nh * hs)
        Ok(self
            .sa
            .proj
            .f_forward(&out)?
            .f_dropout(self.sa.config.dropout, train)?)
    }

    /// One eval-mode step over `x (B, T, C)`, the new positions after the `cache`'s:
    /// every head at once against the cached keys and values, which it extends.
    pub fn f_forward_cached(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let cfg = &self.sa.config;
        let (nh, hs) = (cfg.num_heads, cfg.head_size);
        let like = &self.sa.proj.weight;
        let (b, t, _c) = check::sequence("x", x, cfg.n_embd, None, like)?;
        let past = cache.check_step("x", x, b, (nh, hs), like.kind(), like.device())?;
        let h = self.ln1.f_forward(x)?;
        let qkv = h
            .f_linear(&stacked_qkv(&self.sa.heads)?, None::<Tensor>)? // (B, T, 3 nh hs)
            .f_view([b, t, 3, nh, hs])?
            .f_permute([2, 0, 3, 1, 4])?; // (3, B, nh, T, hs)
        let qkv = qkv.f_unbind(0)?;
        let (k, v) = cache.extended(&qkv[1], &qkv[2])?; // (B, nh, past + T, hs)
        let (attn_mask, is_causal) = causal_mask(past, t, x.device())?;
        let options = SdpaOptions {
            attn_mask,
            is_causal,
            scale: Some((hs as f64).powf(-0.5)),
            ..SdpaOptions::default()
        };
        let y = scaled_dot_product_attention(&qkv[0], &k, &v, &options)?; // (B, nh, T, hs)
        let y = y.f_transpose(1, 2)?.f_reshape([b, t, nh * hs])?; // torch.cat(heads, dim=-1)
        let x = x.f_add(&self.sa.proj.f_forward(&y)?)?;
        let x = x.f_add(&self.ffwd.f_forward_t(&self.ln2.f_forward(&x)?, false)?)?;
        cache.store(k, v);
        Ok(x)
    }
}

/// Every head's query weights, then every key, then every value: `(3 nh hs, C)`.
fn stacked_qkv(heads: &[Head]) -> Result<Tensor> {
    let mut stacked: Vec<&Tensor> = Vec::with_capacity(3 * heads.len());
    stacked.extend(heads.iter().map(|h| &h.query.weight));
    stacked.extend(heads.iter().map(|h| &h.key.weight));
    stacked.extend(heads.iter().map(|h| &h.value.weight));
    Ok(Tensor::f_cat(&stacked, 0)?)
}

/// The lecture's `GPTLanguageModel`: a character-level GPT.
#[derive(Debug)]
pub struct GptLanguageModel {
    /// `token_embedding_table`: `nn.Embedding(vocab_size, n_embd)`'s weight.
    pub token_embedding_table: Tensor,
    /// `position_embedding_table`: `nn.Embedding(block_size, n_embd)`'s weight.
    pub position_embedding_table: Tensor,
    /// `blocks`: `n_layer` [`Block`]s under `blocks.0.`, `blocks.1.`, ...
    pub blocks: Vec<Block>,
    /// `ln_f`: the final `LayerNorm(n_embd)`.
    pub ln_f: LayerNorm,
    /// `lm_head`: `Linear(n_embd, vocab_size)`.
    pub lm_head: Linear,
    /// The constructor's arguments.
    pub config: GptConfig,
}

impl GptLanguageModel {
    /// `GPTLanguageModel()` under `path`: the default init of every module in
    /// construction order, then `_init_weights` over them (see the module docs).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: GptConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow();
        let c = config.n_embd;
        let model = Self {
            token_embedding_table: token_ids::embedding(
                &(p / "token_embedding_table"),
                config.vocab_size,
                c,
            )?,
            position_embedding_table: token_ids::embedding(
                &(p / "position_embedding_table"),
                config.block_size,
                c,
            )?,
            blocks: (0..config.n_layer)
                .map(|i| Block::new(p / "blocks" / i, &config))
                .collect::<Result<Vec<_>>>()?,
            ln_f: layer_norm(p / "ln_f", c, LN_EPS)?,
            lm_head: linear(p / "lm_head", c, config.vocab_size, true)?,
            config,
        };
        model.init_weights()?;
        Ok(model)
    }

    /// `self.apply(self._init_weights)`: `normal_(0, 0.02)` on every Linear and
    /// Embedding weight, `zeros_` on their biases, in the post-order `apply` visits.
    fn init_weights(&self) -> Result<()> {
        let mut linears: Vec<&Linear> = Vec::new();
        for block in &self.blocks {
            for head in &block.sa.heads {
                linears.extend([&head.key, &head.query, &head.value]);
            }
            linears.extend([&block.sa.proj, &block.ffwd.net_0, &block.ffwd.net_2]);
        }
        linears.push(&self.lm_head);
        let mut normal = vec![&self.token_embedding_table, &self.position_embedding_table];
        normal.extend(linears.iter().map(|l| &l.weight));
        tch::no_grad(|| -> Result<()> {
            for w in normal {
                let _ = w.shallow_clone().f_normal_(0.0, INIT_STD)?;
            }
            for b in linears.iter().filter_map(|l| l.bias.as_ref()) {
                let _ = b.shallow_clone().f_zero_()?;
            }
            Ok(())
        })
    }

    /// The trainable parameters in `model.parameters()` order (registration order), with
    /// their state_dict keys relative to the model: what `torch.optim.AdamW` numbers
    /// 0, 1, 2, ... in its `state_dict()`. The tensors share storage with the model.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "token_embedding_table.weight".to_string(),
                self.token_embedding_table.shallow_clone(),
            ),
            (
                "position_embedding_table.weight".to_string(),
                self.position_embedding_table.shallow_clone(),
            ),
        ];
        let push_linear = |out: &mut Vec<(String, Tensor)>, name: String, l: &Linear| {
            out.push((format!("{name}.weight"), l.weight.shallow_clone()));
            if let Some(b) = &l.bias {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            for (h, head) in block.sa.heads.iter().enumerate() {
                for (n, l) in [
                    ("key", &head.key),
                    ("query", &head.query),
                    ("value", &head.value),
                ] {
                    push_linear(&mut out, format!("{p}.sa.heads.{h}.{n}"), l);
                }
            }
            push_linear(&mut out, format!("{p}.sa.proj"), &block.sa.proj);
            push_linear(&mut out, format!("{p}.ffwd.net.0"), &block.ffwd.net_0);
            push_linear(&mut out, format!("{p}.ffwd.net.2"), &block.ffwd.net_2);
            for (n, ln) in [("ln1", &block.ln1), ("ln2", &block.ln2)] {
                out.push((format!("{p}.{n}.weight"), ln.weight.shallow_clone()));
                out.extend(
                    ln.bias
                        .iter()
                        .map(|b| (format!("{p}.{n}.bias"), b.shallow_clone())),
                );
            }
        }
        out.push(("ln_f.weight".into(), self.ln_f.weight.shallow_clone()));
        out.extend(
            self.ln_f
                .bias
                .iter()
                .map(|b| ("ln_f.bias".into(), b.shallow_clone())),
        );
        push_linear(&mut out, "lm_head".into(), &self.lm_head);
        out
    }

    /// `idx (B, T) -> logits (B, T, vocab_size)` with the lecture's ops; `train` enables
    /// dropout, drawing PyTorch's masks in PyTorch's order.
    pub fn f_forward_t(&self, idx: &Tensor, train: bool) -> Result<Tensor> {
        let (_b, t) = self.check_idx("idx", idx, 0)?;
        let mut x = self.embed(idx, 0, t)?; // (B, T, C)
        for block in &self.blocks {
            x = block.f_forward_t(&x, train)?;
        }
        let x = self.ln_f.f_forward(&x)?;
        self.lm_head.f_forward(&x) // (B, T, vocab_size)
    }

    /// `F.cross_entropy(logits.view(B*T, C), targets.view(B*T))`: the mean loss of
    /// `logits (B, T, V)` against `targets (B, T)`.
    pub fn f_loss(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        token_ids::cross_entropy(logits, targets, -100)
    }

    /// One empty [`KvCache`] per block, for [`GptLanguageModel::f_forward_cached`].
    pub fn new_caches(&self) -> Vec<KvCache> {
        self.blocks.iter().map(|_| KvCache::new()).collect()
    }

    /// Eval-mode logits `(B, T, vocab_size)` of `idx (B, T)`, the tokens at positions
    /// `past..past + T` after the `past` already in `caches` (one per block), which it
    /// extends. `past + T` must not exceed `block_size`: the position table ends there.
    pub fn f_forward_cached(&self, idx: &Tensor, caches: &mut [KvCache]) -> Result<Tensor> {
        if caches.len() != self.blocks.len() {
            return Err(Error::invalid(
                "caches",
                format!(
                    "expected one per block ({}), got {}",
                    self.blocks.len(),
                    caches.len()
                ),
            ));
        }
        let past = caches[0].len();
        let (_b, t) = self.check_idx("idx", idx, past)?;
        let mut x = self.embed(idx, past, t)?; // (B, T, C)
        for (block, cache) in self.blocks.iter().zip(caches.iter_mut()) {
            x = block.f_forward_cached(&x, cache)?;
        }
        let x = self.ln_f.f_forward(&x)?;
        self.lm_head.f_forward(&x)
    }

    /// `token_embedding_table(idx) + position_embedding_table(arange(past, past + T))`.
    fn embed(&self, idx: &Tensor, past: i64, t: i64) -> Result<Tensor> {
        let w = &self.token_embedding_table;
        let tok = Tensor::f_embedding(w, idx, -1, false, false)?; // (B, T, C)
        let pos = Tensor::f_arange_start(past, past + t, (Kind::Int64, w.device()))?;
        let pos = Tensor::f_embedding(&self.position_embedding_table, &pos, -1, false, false)?; // (T, C)
        Ok(tok.f_add(&pos)?)
    }

    /// `idx` must be int64 `(B, T)` with `1 <= past + T <= block_size` and every id in
    /// `[0, vocab_size)`. Returns `(B, T)`.
    fn check_idx(&self, arg: &str, idx: &Tensor, past: i64) -> Result<(i64, i64)> {
        let sizes = (self.config.block_size, self.config.vocab_size);
        token_ids::check_idx(arg, idx, past, sizes, self.token_embedding_table.device())
    }
}

gpt_causal_lm!(GptLanguageModel, token_embedding_table);
