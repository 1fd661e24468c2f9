//! nanoGPT's `GPT` (Karpathy, nanoGPT `model.py`): token and position embeddings,
//! dropout, `n_layer` pre-norm [`Block`]s (`ln_1`, the crate's [`CausalSelfAttention`],
//! `ln_2`, the [`Mlp`]), a final [`LayerNorm`] and `lm_head`, whose weight is the token
//! embedding's (weight tying).
//!
//! VarStore names = the state_dict keys of `GPT(config)`: `transformer.wte.weight`
//! `[vocab_size, C]`, `transformer.wpe.weight` `[block_size, C]`,
//! `transformer.h.{i}.ln_1.{weight,bias}`, `transformer.h.{i}.attn.c_attn.{weight,bias}`
//! `[3C, C]`, `transformer.h.{i}.attn.c_proj.{weight,bias}`,
//! `transformer.h.{i}.ln_2.{weight,bias}`, `transformer.h.{i}.mlp.c_fc.{weight,bias}`
//! `[4C, C]`, `transformer.h.{i}.mlp.c_proj.{weight,bias}` `[C, 4C]`,
//! `transformer.ln_f.{weight,bias}` (every bias only when `bias`). PyTorch's state_dict
//! also lists `lm_head.weight`, the same tensor as `transformer.wte.weight`:
//! [`Gpt::state_dict`] gives both, the VarStore holds it once.
//!
//! Initialisation draws what PyTorch draws from the same seed, in its order: every
//! module's default init in construction order (`wte`, `wpe`: `normal_(0, 1)`; each
//! Linear's kaiming-uniform weight and uniform bias: `c_attn`, `attn.c_proj`, `c_fc`,
//! `mlp.c_proj` per block, then `lm_head`'s weight, drawn into the tied tensor);
//! then `self.apply(self._init_weights)` in post-order (`wte`, `wpe`, per block
//! `c_attn`, `attn.c_proj`, `c_fc`, `mlp.c_proj`, then `lm_head` = `wte` again):
//! `normal_(0, 0.02)`, biases zeroed; then every `c_proj.weight` in `named_parameters()`
//! order redrawn from `normal(0, 0.02 / sqrt(2 n_layer))`.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::{Kind, Tensor};

use super::{CausalSelfAttention, CausalSelfAttentionConfig};
use crate::attention::KvCache;
use crate::check;
use crate::error::{Error, Result};
use crate::io::strip_compile_prefix;
use crate::models::causal_lm::gpt_causal_lm;
use crate::models::token_ids;
use crate::nn::{kaiming_uniform_bound, linear, LayerNorm, Linear};

/// `F.layer_norm`'s eps in nanoGPT's `LayerNorm`.
const LN_EPS: f64 = 1e-5;
/// `_init_weights`' standard deviation.
const INIT_STD: f64 = 0.02;
/// GPT-2's 50257 tokens padded to a multiple of 64, nanoGPT's default `vocab_size`
/// (and `train.py`'s when the data has no `meta.pkl`).
pub const GPT2_PADDED_VOCAB: i64 = 50304;

/// nanoGPT's `GPTConfig`, with its defaults (GPT-2 124M with the padded vocabulary).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptConfig {
    /// `block_size`: the longest context. Default 1024.
    pub block_size: i64,
    /// `vocab_size`. Default [`GPT2_PADDED_VOCAB`].
    pub vocab_size: i64,
    /// `n_layer`: blocks. Default 12.
    pub n_layer: i64,
    /// `n_head`: heads per block; must divide `n_embd`. Default 12.
    pub n_head: i64,
    /// `n_embd` (C). Default 768.
    pub n_embd: i64,
    /// `dropout`: after the embeddings, on the attention weights, after each
    /// projection. Default 0.0.
    pub dropout: f64,
    /// `bias` in the Linears and LayerNorms. Default false.
    pub bias: bool,
}

impl Default for GptConfig {
    fn default() -> Self {
        Self {
            block_size: 1024,
            vocab_size: GPT2_PADDED_VOCAB,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            dropout: 0.0,
            bias: false,
        }
    }
}

impl GptConfig {
    /// Checks positive sizes, `n_head` dividing `n_embd` and `dropout` in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        check::positive("vocab_size", self.vocab_size)?;
        check::positive("n_layer", self.n_layer)?;
        self.attention().validate()
    }

    /// Each block's attention configuration.
    pub fn attention(&self) -> CausalSelfAttentionConfig {
        CausalSelfAttentionConfig::new(self.n_embd, self.n_head, self.block_size)
            .with_bias(self.bias)
            .with_dropout(self.dropout)
    }
}

/// nanoGPT's `MLP`: `c_fc`, GELU (exact, erf), `c_proj`, dropout.
#[derive(Debug)]
pub struct Mlp {
    /// `c_fc`: `Linear(C, 4C)`.
    pub c_fc: Linear,
    /// `c_proj`: `Linear(4C, C)`.
    pub c_proj: Linear,
    /// `dropout`'s probability.
    pub dropout: f64,
}

impl Mlp {
    /// `(*, C) -> (*, C)`; `train` enables the dropout.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.c_fc.f_forward(x)?.f_gelu("none")?; // (*, 4C)
        Ok(self.c_proj.f_forward(&h)?.f_dropout(self.dropout, train)?)
    }
}

/// nanoGPT's `Block`: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Debug)]
pub struct Block {
    /// `ln_1`.
    pub ln_1: LayerNorm,
    /// `attn`.
    pub attn: CausalSelfAttention,
    /// `ln_2`.
    pub ln_2: LayerNorm,
    /// `mlp`.
    pub mlp: Mlp,
}

impl Block {
    /// Builds `ln_1`, `attn`, `ln_2`, `mlp` in nanoGPT's order (and so its draws).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: &GptConfig) -> Result<Self> {
        let p = path.borrow();
        let (c, bias) = (config.n_embd, config.bias);
        let ln_1 = LayerNorm::new(p / "ln_1", c, LN_EPS, bias)?;
        let attn = CausalSelfAttention::new(p / "attn", config.attention())?;
        let ln_2 = LayerNorm::new(p / "ln_2", c, LN_EPS, bias)?;
        let m = p / "mlp";
        let mlp = Mlp {
            c_fc: linear(&m / "c_fc", c, 4 * c, bias)?,
            c_proj: linear(&m / "c_proj", 4 * c, c, bias)?,
            dropout: config.dropout,
        };
        Ok(Self {
            ln_1,
            attn,
            ln_2,
            mlp,
        })
    }

    /// `(B, T, C) -> (B, T, C)`; `train` enables every dropout.
    pub fn f_forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.f_add(&self.attn.f_forward_t(&self.ln_1.f_forward(x)?, train)?)?;
        Ok(x.f_add(&self.mlp.f_forward_t(&self.ln_2.f_forward(&x)?, train)?)?)
    }

    /// One eval-mode decoding step over the new positions `x (B, T, C)`, extending
    /// `cache`.
    pub fn f_forward_cached(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let x = x.f_add(
            &self
                .attn
                .f_forward_cached(&self.ln_1.f_forward(x)?, cache)?,
        )?;
        Ok(x.f_add(&self.mlp.f_forward_t(&self.ln_2.f_forward(&x)?, false)?)?)
    }
}

/// nanoGPT's `GPT`.
#[derive(Debug)]
pub struct Gpt {
    /// `transformer.wte.weight`, `[vocab_size, C]`; also `lm_head.weight` (tied).
    pub wte: Tensor,
    /// `transformer.wpe.weight`, `[block_size, C]`.
    pub wpe: Tensor,
    /// `transformer.h`.
    pub h: Vec<Block>,
    /// `transformer.ln_f`.
    pub ln_f: LayerNorm,
    /// The constructor's argument.
    pub config: GptConfig,
}

impl Gpt {
    /// `GPT(config)` under `path` (the model's root: its VarStore names are
    /// `transformer.*`), drawing PyTorch's initialisation (see the module docs).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: GptConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow() / "transformer";
        let c = config.n_embd;
        let wte = token_ids::embedding(&(&p / "wte"), config.vocab_size, c)?;
        let wpe = token_ids::embedding(&(&p / "wpe"), config.block_size, c)?;
        let h = (0..config.n_layer)
            .map(|i| Block::new(&p / "h" / i, &config))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::new(&p / "ln_f", c, LN_EPS, config.bias)?;
        // lm_head = nn.Linear(C, vocab_size, bias=False) draws its kaiming-uniform
        // weight; the tying then makes that tensor wte's, so it is drawn into wte.
        let bound = kaiming_uniform_bound(c);
        let _ = tch::no_grad(|| wte.shallow_clone().f_uniform_(-bound, bound))?;
        let model = Self {
            wte,
            wpe,
            h,
            ln_f,
            config,
        };
        model.init_weights()?;
        Ok(model)
    }

    /// `self.apply(self._init_weights)`, then the scaled `c_proj.weight` redraws.
    fn init_weights(&self) -> Result<()> {
        let mut normal = vec![&self.wte, &self.wpe];
        let mut biases = Vec::new();
        for b in &self.h {
            for l in [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj] {
                normal.push(&l.weight);
                biases.extend(l.bias.as_ref());
            }
        }
        normal.push(&self.wte); // lm_head, the same tensor
        let proj_std = INIT_STD / (2.0 * self.config.n_layer as f64).sqrt();
        tch::no_grad(|| -> Result<()> {
            for w in normal {
                let _ = w.shallow_clone().f_normal_(0.0, INIT_STD)?;
            }
            for b in biases {
                let _ = b.shallow_clone().f_zero_()?;
            }
            for b in &self.h {
                for w in [&b.attn.c_proj.weight, &b.mlp.c_proj.weight] {
                    let _ = w.shallow_clone().f_normal_(0.0, proj_std)?;
                }
            }
            Ok(())
        })
    }

    /// `model.named_parameters()`: the trainable tensors, each once (`lm_head.weight`
    /// is `transformer.wte.weight`), in registration order, sharing storage with the
    /// model. `configure_optimizers` and the optimizer's state numbering follow it.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "transformer.wte.weight".to_string(),
                self.wte.shallow_clone(),
            ),
            (
                "transformer.wpe.weight".to_string(),
                self.wpe.shallow_clone(),
            ),
        ];
        let mut push = |name: String, w: &Tensor, b: Option<&Tensor>| {
            out.push((format!("{name}.weight"), w.shallow_clone()));
            if let Some(b) = b {
                out.push((format!("{name}.bias"), b.shallow_clone()));
            }
        };
        for (i, b) in self.h.iter().enumerate() {
            let p = format!("transformer.h.{i}");
            push(format!("{p}.ln_1"), &b.ln_1.weight, b.ln_1.bias.as_ref());
            for (n, l) in [
                ("attn.c_attn", &b.attn.c_attn),
                ("attn.c_proj", &b.attn.c_proj),
            ] {
                push(format!("{p}.{n}"), &l.weight, l.bias.as_ref());
            }
            push(format!("{p}.ln_2"), &b.ln_2.weight, b.ln_2.bias.as_ref());
            for (n, l) in [("mlp.c_fc", &b.mlp.c_fc), ("mlp.c_proj", &b.mlp.c_proj)] {
                push(format!("{p}.{n}"), &l.weight, l.bias.as_ref());
            }
        }
        let ln_f = &self.ln_f;
        push("transformer.ln_f".into(), &ln_f.weight, ln_f.bias.as_ref());
        out
    }

    /// `model.state_dict()`'s keys and tensors in its order: [`Gpt::named_parameters`]
    /// then `lm_head.weight` (the tied `transformer.wte.weight`). No buffers: the
    /// attention is the flash variant, without nanoGPT's `attn.bias` mask.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = self.named_parameters();
        out.push(("lm_head.weight".into(), self.wte.shallow_clone()));
        out
    }

    /// `model.load_state_dict(state_dict)` (strict): every key of [`Gpt::state_dict`]
    /// once (`lm_head.weight` may be left out; when present it is copied last, as
    /// PyTorch copies it over the tied tensor), shapes as the model's, nothing else;
    /// torch.compile's `_orig_mod.` prefixes are removed first. Values are copied in
    /// (converted to the model's dtype and device); a wrong key or shape is an error
    /// naming it, before anything is copied.
    pub fn load_state_dict(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        let own = self.state_dict();
        let mut found: Vec<Option<&Tensor>> = vec![None; own.len()];
        for (key, t) in tensors {
            let key = strip_compile_prefix(key);
            let at = own
                .iter()
                .position(|(k, _)| *k == key)
                .ok_or_else(|| Error::invalid("state_dict", format!("unexpected key {key}")))?;
            if found[at].is_some() {
                return Err(Error::invalid(
                    "state_dict",
                    format!("{key} twice (with and without torch.compile's _orig_mod.)"),
                ));
            }
            if t.size() != own[at].1.size() {
                return Err(Error::shape(
                    key.clone(),
                    format!("{:?} as the model's", own[at].1.size()),
                    &t.size(),
                ));
            }
            found[at] = Some(t);
        }
        let lm_head = own.len() - 1;
        if let Some(i) = (0..lm_head).find(|&i| found[i].is_none()) {
            return Err(Error::invalid(
                "state_dict",
                format!("missing key {}", own[i].0),
            ));
        }
        tch::no_grad(|| -> Result<()> {
            for ((_, dst), src) in own.iter().zip(&found) {
                if let Some(src) = src {
                    dst.shallow_clone().f_copy_(src)?;
                }
            }
            Ok(())
        })
    }

    /// `idx (B, T) -> logits (B, T, vocab_size)`: `GPT.forward` with targets (every
    /// position through `lm_head`); `train` enables every dropout, drawing PyTorch's
    /// masks in its order.
    pub fn f_forward_t(&self, idx: &Tensor, train: bool) -> Result<Tensor> {
        let (_b, t) = self.check_idx("idx", idx, 0)?;
        let pos = Tensor::f_arange(t, (Kind::Int64, self.wte.device()))?; // (T)
        let tok = Tensor::f_embedding(&self.wte, idx, -1, false, false)?; // (B, T, C)
        let pos = Tensor::f_embedding(&self.wpe, &pos, -1, false, false)?; // (T, C)
        let mut x = tok.f_add(&pos)?.f_dropout(self.config.dropout, train)?;
        for block in &self.h {
            x = block.f_forward_t(&x, train)?;
        }
        let x = self.ln_f.f_forward(&x)?;
        Ok(x.f_linear(&self.wte, None::<Tensor>)?) // lm_head
    }

    /// `F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)`: the
    /// mean loss of `logits (B, T, V)` over the targets `(B, T)` that are not -1.
    pub fn f_loss(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        token_ids::cross_entropy(logits, targets, -1)
    }

    /// One empty [`KvCache`] per block, for [`Gpt::f_forward_cached`].
    pub fn new_caches(&self) -> Vec<KvCache> {
        self.h.iter().map(|_| KvCache::new()).collect()
    }

    /// Eval-mode logits `(B, T, vocab_size)` of the tokens `idx (B, T)` at positions
    /// `past..past + T` after those in `caches` (one per block), which it extends.
    pub fn f_forward_cached(&self, idx: &Tensor, caches: &mut [KvCache]) -> Result<Tensor> {
        if caches.len() != self.h.len() {
            return Err(Error::invalid(
                "caches",
                format!(
                    "expected one per block ({}), got {}",
                    self.h.len(),
                    caches.len()
                ),
            ));
        }
        let past = caches[0].len();
        let (_b, t) = self.check_idx("idx", idx, past)?;
        let pos = Tensor::f_arange_start(past, past + t, (Kind::Int64, self.wte.device()))?;
        let tok = Tensor::f_embedding(&self.wte, idx, -1, false, false)?; // (B, T, C)
        let mut x = tok.f_add(&Tensor::f_embedding(&self.wpe, &pos, -1, false, false)?)?;
        for (block, cache) in self.h.iter().zip(caches.iter_mut()) {
            x = block.f_forward_cached(&x, cache)?;
        }
        let x = self.ln_f.f_forward(&x)?;
        Ok(x.f_linear(&self.wte, None::<Tensor>)?)
    }

    /// `idx` must be int64 `(B, T)`, `1 <= past + T <= block_size`, ids in
    /// `[0, vocab_size)`, on the model's device. Returns `(B, T)`.
    fn check_idx(&self, arg: &str, idx: &Tensor, past: i64) -> Result<(i64, i64)> {
        let sizes = (self.config.block_size, self.config.vocab_size);
        token_ids::check_idx(arg, idx, past, sizes, self.wte.device())
    }
}

gpt_causal_lm!(Gpt, wte);
