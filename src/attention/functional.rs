//! Scaled dot-product attention with PyTorch's semantics
//! (`torch.nn.functional.scaled_dot_product_attention`), on two paths:
//!
//! - [`Backend::Math`]: the notebook's own ops, line for line — `q @ k^T * scale`,
//!   `masked_fill(-inf)`, `softmax`, `dropout`, `@ v` — which can also return the weights;
//! - [`Backend::Fused`]: libtorch's `scaled_dot_product_attention`, which picks its
//!   flash / memory-efficient / math kernel as PyTorch does.
//!
//! Every argument is checked here before libtorch sees it: its CPU flash kernel reads
//! out of bounds when key and value lengths differ and silently accepts a mask together
//! with `is_causal`.
//!
//! # Shapes
//! - query `(N, ..., Hq, L, E)`, key `(N, ..., H, S, E)`, value `(N, ..., H, S, Ev)`,
//!   3-D `(N, L, E)` or 4-D `(N, H, L, E)`;
//! - attn_mask broadcastable to `(N, Hq, L, S)`;
//! - output `(N, ..., Hq, L, Ev)`; weights `(N, ..., Hq, L, S)`.

use tch::{Kind, Tensor};

use crate::attention::mask::Mask;
use crate::error::{Error, Result};

/// Which implementation computes the attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// libtorch's fused `scaled_dot_product_attention` (the default).
    #[default]
    Fused,
    /// The notebook's explicit ops; the only path that can return the weights.
    Math,
}

/// What a query row gets when every key is masked out for it.
///
/// The softmax of a row of `-inf` is NaN. PyTorch's SDPA returns 0 there (its math
/// path uses `_safe_softmax`); plain `torch.softmax`, as in the lecture's `Head` and in
/// `nn.MultiheadAttention` when it returns weights, gives NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskedRows {
    /// NaN weights and outputs, as plain softmax gives.
    Nan,
    /// Zero weights, hence zero outputs, as PyTorch's SDPA gives.
    Zero,
}

/// The non-tensor arguments of [`scaled_dot_product_attention`], with PyTorch's defaults.
#[derive(Debug, Default)]
pub struct SdpaOptions {
    /// `attn_mask`: broadcastable to `(N, Hq, L, S)`. Default: none.
    pub attn_mask: Option<Mask>,
    /// `dropout_p`, applied to the weights whenever it is nonzero (the functional form
    /// has no train flag). Default 0.0.
    pub dropout_p: f64,
    /// `is_causal`: query `i` sees keys `0..=i` (top-left aligned). Default false.
    pub is_causal: bool,
    /// `scale`; `None` means `1 / sqrt(E)`.
    pub scale: Option<f64>,
    /// `enable_gqa`: key/value may have fewer heads than query, a divisor of them.
    pub enable_gqa: bool,
    /// Which implementation runs. Default [`Backend::Fused`].
    pub backend: Backend,
    /// Fully masked rows; `None` means PyTorch SDPA's behaviour (zeros).
    pub masked_rows: Option<MaskedRows>,
}

/// The result of the math path: the output and the weights actually applied to the
/// values (after masking, softmax and dropout).
#[derive(Debug)]
pub struct Attention {
    /// The attention output `(N, ..., Hq, L, Ev)`: the weights applied to `value`.
    pub output: Tensor,
    /// The attention weights `(N, ..., Hq, L, S)`: each query row's softmax over the keys,
    /// after dropout (so a train-mode row no longer sums to 1).
    pub weights: Tensor,
}

/// `torch.nn.functional.scaled_dot_product_attention(query, key, value, ...)`.
///
/// Returns the output `(N, ..., Hq, L, Ev)`.
pub fn scaled_dot_product_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    options: &SdpaOptions,
) -> Result<Tensor> {
    let scores = check_inputs(query, key, value, options)?;
    match options.backend {
        Backend::Math => Ok(math(query, key, value, options)?.output),
        Backend::Fused => {
            let out = Tensor::f_scaled_dot_product_attention(
                query,
                key,
                value,
                fused_mask(options.attn_mask.as_ref())?.as_ref(),
                options.dropout_p,
                options.is_causal,
                options.scale,
                options.enable_gqa,
            )?;
            match options.masked_rows {
                Some(MaskedRows::Nan) => {
                    let rows = fully_masked_rows(&scores, options, query.device())?;
                    Ok(out.f_masked_fill(&rows.f_unsqueeze(-1)?, f64::NAN)?)
                }
                Some(MaskedRows::Zero) | None => Ok(out),
            }
        }
    }
}

/// The math path, returning the weights as well: the notebook's ops, line for line.
pub fn scaled_dot_product_attention_with_weights(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    options: &SdpaOptions,
) -> Result<Attention> {
    check_inputs(query, key, value, options)?;
    math(query, key, value, options)
}

fn math(query: &Tensor, key: &Tensor, value: &Tensor, o: &SdpaOptions) -> Result<Attention> {
    let (l, s, e) = (dim(query, -2), dim(key, -2), dim(query, -1));
    let scale = o.scale.unwrap_or(1.0 / (e as f64).sqrt());
    // GQA: each key/value head serves a group of consecutive query heads.
    let (key, value) = if o.enable_gqa && query.dim() == 4 && dim(query, -3) != dim(key, -3) {
        let groups = dim(query, -3) / dim(key, -3);
        (
            key.f_repeat_interleave_self_int(groups, -3, None)?,
            value.f_repeat_interleave_self_int(groups, -3, None)?,
        )
    } else {
        (key.shallow_clone(), value.shallow_clone())
    };
    let mut wei = query
        .f_matmul(&key.f_transpose(-2, -1)?)?
        .f_mul_scalar(scale)?; // (.., L, S)
    if o.is_causal {
        let keep = Tensor::f_ones([l, s], (Kind::Bool, query.device()))?.f_tril(0)?;
        wei = wei.f_masked_fill(&keep.f_logical_not()?, f64::NEG_INFINITY)?;
    }
    match &o.attn_mask {
        None => {}
        Some(Mask::Bias(bias)) => wei = wei.f_add(bias)?,
        Some(mask) => {
            wei = wei.f_masked_fill(&mask.to_keep()?.f_logical_not()?, f64::NEG_INFINITY)?
        }
    }
    let mut wei = match o.masked_rows.unwrap_or(MaskedRows::Zero) {
        MaskedRows::Nan => wei.f_softmax(-1, None::<Kind>)?,
        // `_safe_softmax`: softmax, then 0 for rows that are all -inf.
        MaskedRows::Zero => wei.f_internal_safe_softmax(-1, None::<Kind>)?,
    };
    if o.dropout_p > 0.0 {
        wei = wei.f_dropout(o.dropout_p, true)?;
    }
    let output = wei.f_matmul(&value)?; // (.., L, S) @ (.., S, Ev) -> (.., L, Ev)
    Ok(Attention {
        output,
        weights: wei,
    })
}

/// libtorch's fused kernel takes bool (keep) or additive masks; a block-mask is flipped.
fn fused_mask(mask: Option<&Mask>) -> Result<Option<Tensor>> {
    Ok(match mask {
        None => None,
        Some(Mask::Keep(t)) | Some(Mask::Bias(t)) => Some(t.shallow_clone()),
        Some(block @ Mask::Block(_)) => Some(block.to_keep()?),
    })
}

/// Bool `(.., L)`: true where every key is masked out for that query.
fn fully_masked_rows(scores: &[i64], o: &SdpaOptions, device: tch::Device) -> Result<Tensor> {
    let (l, s) = (scores[scores.len() - 2], scores[scores.len() - 1]);
    let mut keep = Tensor::f_ones(scores, (Kind::Bool, device))?;
    if o.is_causal {
        keep = keep.f_logical_and(&Tensor::f_ones([l, s], (Kind::Bool, device))?.f_tril(0)?)?;
    }
    if let Some(mask) = &o.attn_mask {
        let mask_keep = match mask {
            Mask::Bias(b) => b.f_ne(f64::NEG_INFINITY)?,
            other => other.to_keep()?,
        };
        keep = keep.f_logical_and(&mask_keep)?;
    }
    Ok(keep.f_any_dim(-1, false)?.f_logical_not()?)
}

fn dim(t: &Tensor, d: i64) -> i64 {
    let size = t.size();
    size[(size.len() as i64 + d) as usize]
}

/// Validates every argument; returns the shape of the scores `(N, .., Hq, L, S)`.
fn check_inputs(q: &Tensor, k: &Tensor, v: &Tensor, o: &SdpaOptions) -> Result<Vec<i64>> {
    let (qs, ks, vs) = (q.size(), k.size(), v.size());
    for (arg, t, s) in [("query", q, &qs), ("key", k, &ks), ("value", v, &vs)] {
        if !(3..=4).contains(&s.len()) {
            return Err(Error::shape(arg, "3-D (N, L, E) or 4-D (N, H, L, E)", s));
        }
        if s.contains(&0) {
            return Err(Error::shape(arg, "no zero-sized dimension", s));
        }
        if !t.is_floating_point() {
            return Err(Error::Dtype {
                arg: arg.into(),
                expected: "a floating dtype".into(),
                got: t.kind(),
            });
        }
    }
    for (arg, t, s) in [("key", k, &ks), ("value", v, &vs)] {
        if s.len() != qs.len() {
            return Err(Error::shape(
                arg,
                format!("{}-D like query {qs:?}", qs.len()),
                s,
            ));
        }
        if t.kind() != q.kind() {
            return Err(Error::Dtype {
                arg: arg.into(),
                expected: format!("the query's dtype {:?}", q.kind()),
                got: t.kind(),
            });
        }
        if t.device() != q.device() {
            return Err(Error::Device {
                arg: arg.into(),
                expected: q.device(),
                got: t.device(),
            });
        }
    }
    let n = qs.len();
    let (l, e, s) = (qs[n - 2], qs[n - 1], ks[n - 2]);
    if ks[n - 1] != e {
        return Err(Error::shape(
            "key",
            format!("last dimension E = {e} like query {qs:?}"),
            &ks,
        ));
    }
    if vs[..n - 1] != ks[..n - 1] {
        return Err(Error::shape(
            "value",
            format!(
                "(.., S, Ev) with (.., S) = {:?} like key {ks:?}",
                &ks[..n - 1]
            ),
            &vs,
        ));
    }
    if ks[0] != qs[0] {
        return Err(Error::shape(
            "key",
            format!("batch N = {} like query {qs:?}", qs[0]),
            &ks,
        ));
    }
    if n == 4 && ks[1] != qs[1] {
        let divides = ks[1] > 0 && qs[1] % ks[1] == 0;
        if !o.enable_gqa || !divides {
            let expected = if o.enable_gqa {
                format!(
                    "a number of heads that divides the query's {} (enable_gqa)",
                    qs[1]
                )
            } else {
                format!("{} heads like query {qs:?} (or set enable_gqa)", qs[1])
            };
            return Err(Error::shape("key", expected, &ks));
        }
    }
    if !(0.0..1.0).contains(&o.dropout_p) {
        return Err(Error::invalid(
            "dropout_p",
            format!("must be in [0, 1), got {}", o.dropout_p),
        ));
    }
    if let Some(scale) = o.scale {
        if !scale.is_finite() {
            return Err(Error::invalid(
                "scale",
                format!("must be finite, got {scale}"),
            ));
        }
    }
    let mut scores = qs[..n - 2].to_vec();
    scores.extend([l, s]);
    if let Some(mask) = &o.attn_mask {
        if o.is_causal {
            return Err(Error::invalid(
                "attn_mask",
                "must be None when is_causal is true (PyTorch rejects both together)",
            ));
        }
        mask.check("attn_mask", &scores, q.kind(), q.device())?;
    }
    Ok(scores)
}
