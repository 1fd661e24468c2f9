//! A drop-in for `torch.nn.MultiheadAttention` (PyTorch 2.13,
//! `torch/nn/modules/activation.py` and `F.multi_head_attention_forward`): the same
//! constructor arguments and defaults, the same parameter names, the same results as
//! PyTorch's Python path (its native fast path disabled).
//!
//! VarStore names = PyTorch state_dict keys: `in_proj_weight` `[3E, E]` when
//! `kdim == vdim == E`, otherwise `q_proj_weight` `[E, E]`, `k_proj_weight` `[E, kdim]`,
//! `v_proj_weight` `[E, vdim]`; `in_proj_bias` `[3E]` and `out_proj.bias` when `bias`;
//! `out_proj.weight` `[E, E]`; `bias_k`, `bias_v` `[1, 1, E]` when `add_bias_kv`.
//!
//! Fully masked rows: PyTorch returns NaN there when it computes the weights
//! (`need_weights`, plain softmax) and 0 otherwise (SDPA); `masked_rows` overrides it.

use std::borrow::Borrow;

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use crate::attention::functional::{scaled_dot_product_attention, MaskedRows, SdpaOptions};
use crate::attention::mask::Mask;
use crate::attention::mha_check;
use crate::attention::mha_masks::Masks;
use crate::attention::{merge_heads, merge_heads_seq_first};
use crate::error::{Error, Result};
use crate::nn::{linear, Linear};

pub use crate::attention::mha_config::{MhaOptions, MultiheadAttentionConfig};

/// `torch.nn.MultiheadAttention`.
#[derive(Debug)]
pub struct MultiheadAttention {
    /// `in_proj_weight` (packed) or `None`.
    pub in_proj_weight: Option<Tensor>,
    /// `q_proj_weight`, `k_proj_weight`, `v_proj_weight` (not packed).
    pub qkv_proj_weight: Option<[Tensor; 3]>,
    /// `in_proj_bias`, `[3E]`: the query, key and value biases stacked (when `bias`).
    pub in_proj_bias: Option<Tensor>,
    /// `out_proj`: `Linear(E, E)`, under `out_proj.weight`, `out_proj.bias`.
    pub out_proj: Linear,
    /// `bias_k`, `[1, 1, E]`, appended to the keys (when `add_bias_kv`).
    pub bias_k: Option<Tensor>,
    /// `bias_v`, `[1, 1, E]`, appended to the values (when `add_bias_kv`).
    pub bias_v: Option<Tensor>,
    /// The constructor's arguments.
    pub config: MultiheadAttentionConfig,
    /// Fully masked rows; `None` = PyTorch's (NaN with weights, 0 without).
    pub masked_rows: Option<MaskedRows>,
}

/// `xavier_uniform_` for a weight with these fans, in PyTorch's order of operations so
/// the doubles match.
fn xavier_uniform(fan_in: i64, fan_out: i64) -> Init {
    let a = 3f64.sqrt() * xavier_std(fan_in, fan_out);
    Init::Uniform { lo: -a, up: a }
}

fn xavier_std(fan_in: i64, fan_out: i64) -> f64 {
    (2.0 / (fan_in + fan_out) as f64).sqrt()
}

/// `xavier_normal_` on a `[1, 1, E]` tensor (fan_in = fan_out = E). PyTorch calls
/// `normal_(0, std)`, which rounds differently from tch's `randn * std`.
fn xavier_normal_var(p: &Path, name: &str, e: i64) -> Result<Tensor> {
    let mut t = p.f_var(name, &[1, 1, e], Init::Const(0.0))?;
    let _ = tch::no_grad(|| t.f_normal_(0.0, xavier_std(e, e)))?;
    Ok(t)
}

impl MultiheadAttention {
    /// Builds the module, drawing in PyTorch's order: `out_proj` (a Linear), the
    /// in-projection (xavier uniform), then `bias_k`, `bias_v` (xavier normal); the
    /// biases start at zero.
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: MultiheadAttentionConfig) -> Result<Self> {
        config.validate()?;
        let p = path.borrow();
        let e = config.embed_dim;
        let out_proj = linear(p / "out_proj", e, e, config.bias)?;
        let (in_proj_weight, qkv_proj_weight) = if config.packed() {
            (
                Some(p.f_var("in_proj_weight", &[3 * e, e], xavier_uniform(e, 3 * e))?),
                None,
            )
        } else {
            let q = p.f_var("q_proj_weight", &[e, e], xavier_uniform(e, e))?;
            let k = p.f_var(
                "k_proj_weight",
                &[e, config.kdim()],
                xavier_uniform(config.kdim(), e),
            )?;
            let v = p.f_var(
                "v_proj_weight",
                &[e, config.vdim()],
                xavier_uniform(config.vdim(), e),
            )?;
            (None, Some([q, k, v]))
        };
        let in_proj_bias = if config.bias {
            if let Some(b) = &out_proj.bias {
                let mut b = b.shallow_clone();
                let _ = tch::no_grad(|| b.f_zero_())?;
            }
            Some(p.f_var("in_proj_bias", &[3 * e], Init::Const(0.0))?)
        } else {
            None
        };
        let (bias_k, bias_v) = if config.add_bias_kv {
            (
                Some(xavier_normal_var(p, "bias_k", e)?),
                Some(xavier_normal_var(p, "bias_v", e)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            in_proj_weight,
            qkv_proj_weight,
            in_proj_bias,
            out_proj,
            bias_k,
            bias_v,
            config,
            masked_rows: None,
        })
    }

    /// The forward pass; returns the output and, when `need_weights`, the weights.
    ///
    /// # Shapes
    /// - query `(L, N, E)` (`(N, L, E)` if `batch_first`, `(L, E)` unbatched);
    /// - key `(S, N, kdim)`, value `(S, N, vdim)`, likewise;
    /// - output like query; weights `(N, L, S')` averaged or `(N, num_heads, L, S')`,
    ///   without `N` unbatched, where `S'` counts the added bias and zero keys.
    pub fn f_forward_t(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        options: &MhaOptions,
        train: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let cfg = &self.config;
        let batched = self.check(query, key, value, options)?;
        let dropout_p = if train { cfg.dropout } else { 0.0 };
        if batched && self.is_plain_self_attention(query, key, value, options) {
            let out = self.f_self_attention_batch_first(query, options.is_causal, dropout_p)?;
            return Ok((out, None));
        }
        // Work sequence-first and batched, as PyTorch does: (L, N, E).
        let q_in = self.seq_first(query, batched)?;
        let (l, n) = (q_in.size()[0], q_in.size()[1]);
        let (k_in, v_in) = (
            self.seq_first(key, batched)?,
            self.seq_first(value, batched)?,
        );
        let mut masks = self.canonical_masks(options, batched)?;
        let (q, k, v) = self.project_heads(&q_in, &k_in, &v_in, &mut masks)?; // (N * H, L | S', hd)
        let attn_mask = masks.merged(n, cfg.num_heads, k.size()[1])?; // (1 | N * H, L, S')
        let (out, weights) = if options.need_weights {
            let average = options.average_attn_weights;
            let (out, w) = self.attend_with_weights(&q, &k, &v, attn_mask, dropout_p, average)?;
            (out, Some(w))
        } else {
            let out = self.attend_fused(&q, &k, &v, attn_mask, masks.is_causal, dropout_p)?;
            (out, None)
        }; // out (L * N, E)
        let out = self
            .out_proj
            .f_forward(&out)?
            .f_view([l, n, cfg.embed_dim])?;
        let weights = match weights {
            Some(w) if !batched => Some(w.f_squeeze_dim(0)?),
            w => w,
        };
        Ok((self.in_caller_layout(out, batched)?, weights))
    }

    /// An input in the internal layout `(L, N, E)`: unbatched inputs get `N = 1`.
    pub(crate) fn seq_first(&self, t: &Tensor, batched: bool) -> Result<Tensor> {
        Ok(if !batched {
            t.f_unsqueeze(1)?
        } else if self.config.batch_first {
            t.f_transpose(0, 1)?
        } else {
            t.shallow_clone()
        })
    }

    /// The output `(L, N, E)` back in the caller's layout.
    pub(crate) fn in_caller_layout(&self, out: Tensor, batched: bool) -> Result<Tensor> {
        Ok(if !batched {
            out.f_squeeze_dim(1)?
        } else if self.config.batch_first {
            out.f_transpose(0, 1)?
        } else {
            out
        })
    }

    /// The masks as additive biases of the module's dtype (PyTorch's `_canonical_mask`),
    /// and whether the attention may still be run as causal.
    fn canonical_masks(&self, options: &MhaOptions, batched: bool) -> Result<Masks> {
        let kind = self.out_proj.weight.kind();
        let key_padding = match &options.key_padding_mask {
            Some(m) if batched => Some(m.to_bias(kind)?), // (N, S)
            Some(m) => Some(m.to_bias(kind)?.f_unsqueeze(0)?),
            None => None,
        };
        let mut is_causal = options.is_causal;
        let attn = if is_causal && key_padding.is_none() && !options.need_weights {
            None // SDPA's own causal masking takes over
        } else {
            if key_padding.is_some() {
                is_causal = false; // the merged mask is no longer causal
            }
            match &options.attn_mask {
                Some(m) if m.tensor().dim() == 2 => Some(m.to_bias(kind)?.f_unsqueeze(0)?), // (1, L, S)
                Some(m) => Some(m.to_bias(kind)?),
                None => None,
            }
        };
        Ok(Masks {
            key_padding,
            attn,
            is_causal,
        })
    }

    /// The in-projection, `bias_k`/`bias_v` appended to the keys and values, the heads
    /// split, then `add_zero_attn`'s zero key and value; the masks grow with the keys.
    /// Returns q `(N * H, L, hd)`, k and v `(N * H, S', hd)`.
    fn project_heads(
        &self,
        q_in: &Tensor,
        k_in: &Tensor,
        v_in: &Tensor,
        masks: &mut Masks,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let cfg = &self.config;
        let (h, hd) = (cfg.num_heads, cfg.head_dim());
        let (l, n) = (q_in.size()[0], q_in.size()[1]);
        let (q, mut k, mut v) = self.in_projection(q_in, k_in, v_in)?; // (L, N, E), (S, N, E), (S, N, E)
        if let (Some(bk), Some(bv)) = (&self.bias_k, &self.bias_v) {
            k = Tensor::f_cat(&[k, bk.f_repeat([1, n, 1])?], 0)?; // (S + 1, N, E)
            v = Tensor::f_cat(&[v, bv.f_repeat([1, n, 1])?], 0)?;
            masks.pad()?;
        }
        let q = q.f_view([l, n * h, hd])?.f_transpose(0, 1)?; // (N * H, L, hd)
        let mut k = k.f_view([k.size()[0], n * h, hd])?.f_transpose(0, 1)?; // (N * H, S', hd)
        let mut v = v.f_view([v.size()[0], n * h, hd])?.f_transpose(0, 1)?;
        if cfg.add_zero_attn {
            let zeros = Tensor::f_zeros([n * h, 1, hd], (k.kind(), k.device()))?;
            k = Tensor::f_cat(&[&k, &zeros], 1)?;
            v = Tensor::f_cat(&[&v, &zeros], 1)?;
            masks.pad()?;
        }
        Ok((q, k, v))
    }

    /// The general path's math, as PyTorch computes it when it returns the weights:
    /// scaled scores plus the mask, softmax, dropout, then the values. Returns the heads
    /// side by side `(L * N, E)` and the weights `(N, H, L, S')`, or `(N, L, S')` averaged.
    fn attend_with_weights(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        attn_mask: Option<Tensor>,
        dropout_p: f64,
        average: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (e, h, hd) = (
            self.config.embed_dim,
            self.config.num_heads,
            self.config.head_dim(),
        );
        let (nh, l, s_all) = (q.size()[0], q.size()[1], k.size()[1]);
        let n = nh / h;
        let q_scaled = q.f_mul_scalar((1.0 / hd as f64).sqrt())?;
        let scores = match &attn_mask {
            Some(m) => m.f_baddbmm(&q_scaled, &k.f_transpose(-2, -1)?, 1.0, 1.0)?,
            None => q_scaled.f_bmm(&k.f_transpose(-2, -1)?)?,
        }; // (N * H, L, S')
        let mut w = match self.masked_rows.unwrap_or(MaskedRows::Nan) {
            MaskedRows::Nan => scores.f_softmax(-1, None::<Kind>)?,
            MaskedRows::Zero => scores.f_internal_safe_softmax(-1, None::<Kind>)?,
        };
        if dropout_p > 0.0 {
            w = w.f_dropout(dropout_p, true)?;
        }
        let out = w.f_bmm(v)?.f_transpose(0, 1)?.f_reshape([l * n, e])?; // (L * N, E)
        let mut w = w.f_view([n, h, l, s_all])?;
        if average {
            w = w.f_mean_dim(1, false, None::<Kind>)?; // (N, L, S')
        }
        Ok((out, w))
    }

    /// The general path without weights: PyTorch's fused SDPA over `(N, H, L, hd)`.
    /// Returns the heads side by side `(L * N, E)`.
    fn attend_fused(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        attn_mask: Option<Tensor>,
        is_causal: bool,
        dropout_p: f64,
    ) -> Result<Tensor> {
        let (h, hd) = (self.config.num_heads, self.config.head_dim());
        let (nh, l, s_all) = (q.size()[0], q.size()[1], k.size()[1]);
        let n = nh / h;
        let mask = match attn_mask {
            Some(m) if m.size()[0] == 1 && m.dim() == 3 => Some(m.f_unsqueeze(0)?), // (1, 1, L, S')
            Some(m) => Some(m.f_view([n, h, -1, s_all])?),
            None => None,
        };
        let options = SdpaOptions {
            attn_mask: mask.map(Mask::Bias),
            dropout_p,
            is_causal,
            masked_rows: Some(self.masked_rows.unwrap_or(MaskedRows::Zero)),
            ..SdpaOptions::default()
        };
        let q = q.f_view([n, h, l, hd])?;
        let k = k.f_view([n, h, s_all, hd])?;
        let v = v.f_view([n, h, s_all, hd])?;
        let out = scaled_dot_product_attention(&q, &k, &v, &options)?; // (N, H, L, hd)
        merge_heads_seq_first(&out)
    }

    /// Batch-first self-attention (`query`, `key` and `value` one tensor) with a packed
    /// in-projection, no weights returned, no key padding, no added keys, and either no
    /// `attn_mask` or one flagged `is_causal` (which SDPA's causal masking replaces, as
    /// in the general path): the case of a GPT block.
    fn is_plain_self_attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, o: &MhaOptions) -> bool {
        let cfg = &self.config;
        let same = |a: &Tensor, b: &Tensor| {
            a.data_ptr() == b.data_ptr() && a.size() == b.size() && a.stride() == b.stride()
        };
        cfg.batch_first
            && self.in_proj_weight.is_some()
            && !cfg.add_bias_kv
            && !cfg.add_zero_attn
            && !o.need_weights
            && o.key_padding_mask.is_none()
            && (o.attn_mask.is_none() || o.is_causal)
            && same(q, k)
            && same(q, v)
    }

    /// The general path's ops without its layout changes: PyTorch's Python path turns
    /// `(N, L, E)` into `(L, N, E)`, projects q, k and v apart and copies the heads back
    /// and forth (`transpose`, `reshape`), four copies of the activations. Here one
    /// matmul against `in_proj_weight` gives `(N, L, 3E)`, the heads are strided views
    /// of it, and the kernel's `(N, L, H, hd)` output is already `(N, L, E)` in memory.
    /// `tests/mha_fast_path.rs` checks it against the general path.
    fn f_self_attention_batch_first(
        &self,
        x: &Tensor,
        is_causal: bool,
        dropout_p: f64,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (h, hd) = (cfg.num_heads, cfg.head_dim());
        let (n, l) = (x.size()[0], x.size()[1]);
        let w = self.in_proj_weight.as_ref().ok_or_else(|| {
            Error::config("in_proj_weight", "the module has no packed in-projection")
        })?;
        let qkv = x
            .f_linear(w, self.in_proj_bias.as_ref())? // (N, L, 3E)
            .f_view([n, l, 3, h, hd])?
            .f_permute([2, 0, 3, 1, 4])?; // (3, N, H, L, hd)
        let qkv = qkv.f_unbind(0)?;
        let options = SdpaOptions {
            dropout_p,
            is_causal,
            masked_rows: Some(self.masked_rows.unwrap_or(MaskedRows::Zero)),
            ..SdpaOptions::default()
        };
        let y = scaled_dot_product_attention(&qkv[0], &qkv[1], &qkv[2], &options)?; // (N, H, L, hd)
        let y = merge_heads(&y)?; // (N, L, E): heads side by side
        self.out_proj.f_forward(&y)
    }

    pub(crate) fn in_projection(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let e = self.config.embed_dim;
        let biases = match &self.in_proj_bias {
            Some(b) => b.f_chunk(3, 0)?.into_iter().map(Some).collect(),
            None => vec![None, None, None],
        };
        let weights = match (&self.in_proj_weight, &self.qkv_proj_weight) {
            (Some(w), _) => w.f_split(e, 0)?,
            (None, Some([wq, wk, wv])) => {
                vec![wq.shallow_clone(), wk.shallow_clone(), wv.shallow_clone()]
            }
            (None, None) => {
                return Err(Error::config(
                    "in_proj_weight",
                    "the module has no in-projection weights",
                ))
            }
        };
        let proj = |x: &Tensor, i: usize| x.f_linear(&weights[i], biases[i].as_ref());
        Ok((proj(q, 0)?, proj(k, 1)?, proj(v, 2)?))
    }

    /// PyTorch's shape checks (`_mha_shape_check` and the forward's asserts), before any
    /// op runs (`mha_check.rs`). Returns whether the input is batched.
    fn check(&self, query: &Tensor, key: &Tensor, value: &Tensor, o: &MhaOptions) -> Result<bool> {
        let like = &self.out_proj.weight;
        let (batched, l, s, n) = mha_check::inputs(&self.config, like, [query, key, value])?;
        mha_check::masks(&self.config, like, o, batched, [l, s, n])?;
        Ok(batched)
    }
}

/// Self-attention (`query = key = value = xs`) with no masks; returns the output only.
impl tch::nn::ModuleT for MultiheadAttention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let options = MhaOptions {
            need_weights: false,
            ..MhaOptions::default()
        };
        match self.f_forward_t(xs, xs, xs, &options, train) {
            Ok((out, _)) => out,
            Err(e) => panic!("MultiheadAttention: {e}"),
        }
    }
}
