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
//! Beyond PyTorch's arguments, [`SdpaOptions`] has the attention options of current
//! models: sliding windows ([`Window`]), logit soft-capping, attention sinks, ALiBi
//! ([`Alibi`]) and packed documents ([`Documents`]).
//!
//! # Shapes
//! - query `(.., Hq, L, E)`, key `(.., H, S, E)`, value `(.., H, S, Ev)`, each at least
//!   2-D; their batch dimensions broadcast together, as in PyTorch (`shapes.rs`);
//! - attn_mask broadcastable to the scores `(.., Hq, L, S)`;
//! - output `(.., Hq, L, Ev)`; weights `(.., Hq, L, S)`.

use tch::{Kind, Tensor};

use crate::attention::alibi::Alibi;
use crate::attention::documents::Documents;
use crate::attention::mask::Mask;
use crate::attention::window::{self, Window, WindowOnly};
use crate::attention::{shapes, sinks, softcap};
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

/// The non-tensor arguments of [`scaled_dot_product_attention`], with PyTorch's defaults,
/// and the options of the attention of current models that PyTorch's SDPA lacks as
/// arguments (sliding windows, soft-capping, sinks, ALiBi, packed documents), each off by
/// default.
///
/// The masks combine: a key takes part only where every one of `attn_mask`, `is_causal`,
/// `window` and `documents` lets it (with documents, `is_causal` and `window` are read
/// within each document). The scores are computed in this order:
/// `q @ k^T * scale`, soft-capping, `+ alibi`, `+ attn_mask` (or its `-inf`s), the causal,
/// window and document masks, softmax (with the sink column), dropout, `@ v`.
#[derive(Debug, Default)]
pub struct SdpaOptions {
    /// `attn_mask`: broadcastable to the scores `(.., L, S)`. Default: none.
    pub attn_mask: Option<Mask>,
    /// `dropout_p`, applied to the weights whenever it is nonzero (the functional form
    /// has no train flag). Default 0.0.
    pub dropout_p: f64,
    /// `is_causal`: query `i` sees keys `0..=i` (top-left aligned, as PyTorch's). Default
    /// false. For a bottom-right aligned causal mask, use `window: (-1, 0)`. With
    /// `documents`, causal masking applies within each document, aligned at its end as
    /// flash-attention's varlen API aligns it (see [`Documents`]): a document of 2 queries
    /// over 5 keys gives its query 0 keys 0–3 and query 1 keys 0–4.
    pub is_causal: bool,
    /// `scale`; `None` means `1 / sqrt(E)`.
    pub scale: Option<f64>,
    /// `enable_gqa`: key/value may have fewer heads than query, a divisor of them.
    pub enable_gqa: bool,
    /// Which implementation runs. Default [`Backend::Fused`].
    pub backend: Backend,
    /// Fully masked rows; `None` means PyTorch SDPA's behaviour (zeros).
    pub masked_rows: Option<MaskedRows>,
    /// Sliding-window attention, flash-attention's `window_size` (bottom-right aligned,
    /// see [`Window`]; with `documents`, within each document, aligned at its end).
    /// Default none (every key).
    pub window: Option<Window>,
    /// Logit soft-capping (Gemma 2): `cap * tanh(scores / cap)` on the scaled scores,
    /// before any mask; `cap > 0`. Default none. Computed on the math path.
    pub softcap: Option<f64>,
    /// Attention sinks (gpt-oss): one logit per head `(H,)`, in the query's dtype, joining
    /// each row's softmax as an extra column that is then dropped. Default none. Computed
    /// on the math path.
    pub sinks: Option<Tensor>,
    /// ALiBi's per-head linear bias `-slope_h * (i - j)` (see [`Alibi`]). Default none.
    pub alibi: Option<Alibi>,
    /// Packed documents: a query sees only the keys of its own document (see
    /// [`Documents`]). Default none.
    pub documents: Option<Documents>,
}

impl SdpaOptions {
    /// Whether any option needs the math path: soft-capping and sinks change the softmax
    /// itself, which no mask or bias given to the fused kernel can express.
    fn needs_math(&self) -> bool {
        self.softcap.is_some() || self.sinks.is_some()
    }

    /// The options when nothing but a window bounded on the left (with PyTorch's
    /// `is_causal`, `scale` and GQA) is set: the case the fused path can run one block of
    /// queries at a time ([`window::blocked`]). Every field is named, so that a new option
    /// cannot compile without deciding here whether the blocked path would drop it.
    fn window_only(&self) -> Option<WindowOnly> {
        let SdpaOptions {
            attn_mask,
            dropout_p,
            is_causal,
            scale,
            enable_gqa,
            backend: _,
            masked_rows,
            window,
            softcap,
            sinks,
            alibi,
            documents,
        } = self;
        let nothing_else = attn_mask.is_none()
            && *dropout_p == 0.0
            && *masked_rows != Some(MaskedRows::Nan)
            && softcap.is_none()
            && sinks.is_none()
            && alibi.is_none()
            && documents.is_none();
        match window {
            Some(w) if w.left >= 0 && nothing_else => Some(WindowOnly {
                window: *w,
                is_causal: *is_causal,
                scale: *scale,
                enable_gqa: *enable_gqa,
            }),
            _ => None,
        }
    }
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

/// `torch.nn.functional.scaled_dot_product_attention(query, key, value, ...)`, with the
/// options of [`SdpaOptions`].
///
/// Returns the output `(.., L, Ev)`, its batch dimensions those of query, key and value
/// broadcast together. The fused backend hands libtorch's kernel every mask and bias the
/// options amount to; soft-capping and sinks, which change the softmax itself, and empty
/// inputs run on the math path.
pub fn scaled_dot_product_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    options: &SdpaOptions,
) -> Result<Tensor> {
    let scores = check_inputs(query, key, value, options)?;
    let empty = [query, key, value].iter().any(|t| t.numel() == 0);
    if options.backend == Backend::Math || options.needs_math() || empty {
        return Ok(math(query, key, value, options, &scores)?.output);
    }
    fused(query, key, value, options, &scores)
}

/// The math path, returning the weights as well: the notebook's ops, line for line.
pub fn scaled_dot_product_attention_with_weights(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    options: &SdpaOptions,
) -> Result<Attention> {
    let scores = check_inputs(query, key, value, options)?;
    math(query, key, value, options, &scores)
}

fn fused(q: &Tensor, k: &Tensor, v: &Tensor, o: &SdpaOptions, scores: &[i64]) -> Result<Tensor> {
    if let Some(only) = o.window_only() {
        if let Some(out) = window::blocked(q, k, v, only, scores, window::BLOCK)? {
            return Ok(out);
        }
    }
    let (mask, is_causal) = fused_mask(o, scores, q.kind(), q.device())?;
    let out = Tensor::f_scaled_dot_product_attention(
        q,
        k,
        v,
        mask.as_ref(),
        o.dropout_p,
        is_causal,
        o.scale,
        o.enable_gqa,
    )?;
    match o.masked_rows {
        Some(MaskedRows::Nan) => {
            let rows = fully_masked_rows(scores, o, q.device())?;
            Ok(out.f_masked_fill(&rows.f_unsqueeze(-1)?, f64::NAN)?)
        }
        Some(MaskedRows::Zero) | None => Ok(out),
    }
}

fn math(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    o: &SdpaOptions,
    scores: &[i64],
) -> Result<Attention> {
    let (n, e) = (scores.len(), dim(query, -1));
    let (l, s) = (scores[n - 2], scores[n - 1]);
    // With E = 0 the scores are 0 whatever the scale (PyTorch's math path scales q and k
    // before their product); 1/sqrt(0) * 0 would make them NaN.
    let scale = match o.scale {
        _ if e == 0 => 1.0,
        Some(scale) => scale,
        None => 1.0 / (e as f64).sqrt(),
    };
    // GQA: each key/value head serves a group of consecutive query heads.
    let key = repeat_heads(key, shapes::groups(query, key, o.enable_gqa))?;
    let value = repeat_heads(value, shapes::groups(query, value, o.enable_gqa))?;
    let mut wei = query
        .f_matmul(&key.f_transpose(-2, -1)?)?
        .f_mul_scalar(scale)?; // (.., L, S)
    if let Some(cap) = o.softcap {
        wei = softcap::soft_cap(&wei, cap)?;
    }
    if let Some(alibi) = &o.alibi {
        wei = wei.f_add(&alibi.bias(scores[n - 3], l, s, query.kind(), query.device())?)?;
    }
    match &o.attn_mask {
        None => {}
        Some(Mask::Bias(bias)) => wei = wei.f_add(bias)?,
        Some(mask) => {
            wei = wei.f_masked_fill(&mask.to_keep()?.f_logical_not()?, f64::NEG_INFINITY)?
        }
    }
    if let Some(keep) = structural_keep(o, scores, query.device())? {
        wei = wei.f_masked_fill(&keep.f_logical_not()?, f64::NEG_INFINITY)?;
    }
    let mut wei = match (&o.sinks, o.masked_rows.unwrap_or(MaskedRows::Zero)) {
        // The sink column is never masked, so no row is empty.
        (Some(sinks), _) => sinks::softmax_with_sinks(&wei, sinks)?,
        (None, MaskedRows::Nan) => wei.f_softmax(-1, None::<Kind>)?,
        // `_safe_softmax`: softmax, then 0 for rows that are all -inf.
        (None, MaskedRows::Zero) => wei.f_internal_safe_softmax(-1, None::<Kind>)?,
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

/// `t` with each head (dimension -3) repeated `groups` times in place: GQA's key/value
/// heads lined up with the query heads they serve.
fn repeat_heads(t: &Tensor, groups: i64) -> Result<Tensor> {
    Ok(if groups == 1 {
        t.shallow_clone()
    } else {
        t.f_repeat_interleave_self_int(groups, -3, None)?
    })
}

/// The keep-mask of `is_causal`, `window` and `documents` together, broadcastable to
/// the scores; `None` when none of them masks anything. With documents, causal masking
/// and the window apply within each document ([`Documents`]); without, `is_causal` is
/// PyTorch's top-left mask and the window is aligned at the end of the whole sequence.
pub(crate) fn structural_keep(
    o: &SdpaOptions,
    scores: &[i64],
    device: tch::Device,
) -> Result<Option<Tensor>> {
    let n = scores.len();
    let (l, s) = (scores[n - 2], scores[n - 1]);
    let window = o.window.filter(|w| !w.is_unbounded());
    if let Some(documents) = &o.documents {
        return Ok(Some(documents.keep(n, o.is_causal, window)?));
    }
    let causal = match o.is_causal {
        true => Some(Tensor::f_ones([l, s], (Kind::Bool, device))?.f_tril(0)?),
        false => None,
    };
    Ok(match (causal, window) {
        (None, None) => None,
        (Some(c), None) => Some(c),
        (None, Some(w)) => Some(w.keep(l, s, device)?),
        (Some(c), Some(w)) => Some(c.f_logical_and(&w.keep(l, s, device)?)?),
    })
}

/// The `(attn_mask, is_causal)` for libtorch's fused kernel: the caller's mask as it is
/// when no option adds one (so the kernel sees exactly what PyTorch's would); otherwise
/// every mask and bias folded into one, a bool keep-mask, or an additive bias with `-inf`
/// where a key is masked out when ALiBi or a floating `attn_mask` takes part.
fn fused_mask(
    o: &SdpaOptions,
    scores: &[i64],
    kind: Kind,
    device: tch::Device,
) -> Result<(Option<Tensor>, bool)> {
    let windowed = o.window.is_some_and(|w| !w.is_unbounded());
    if !windowed && o.documents.is_none() && o.alibi.is_none() {
        let mask = match &o.attn_mask {
            None => None,
            Some(Mask::Keep(t)) | Some(Mask::Bias(t)) => Some(t.shallow_clone()),
            Some(block @ Mask::Block(_)) => Some(block.to_keep()?),
        };
        return Ok((mask, o.is_causal));
    }
    let mut keep = structural_keep(o, scores, device)?;
    let mut bias = None;
    match &o.attn_mask {
        None => {}
        Some(Mask::Bias(b)) => bias = Some(b.shallow_clone()),
        Some(mask) => {
            let m = mask.to_keep()?;
            keep = Some(match keep {
                Some(k) => k.f_logical_and(&m)?,
                None => m,
            });
        }
    }
    if let Some(alibi) = &o.alibi {
        let n = scores.len();
        let a = alibi.bias(scores[n - 3], scores[n - 2], scores[n - 1], kind, device)?;
        bias = Some(match bias {
            Some(b) => b.f_add(&a)?,
            None => a,
        });
    }
    let mask = match (bias, keep) {
        (None, keep) => keep,
        (Some(b), None) => Some(b),
        (Some(b), Some(k)) => Some(b.f_where_scalarother(&k, f64::NEG_INFINITY)?),
    };
    Ok((mask, false))
}

/// Bool `(.., L)`: true where every key is masked out for that query.
fn fully_masked_rows(scores: &[i64], o: &SdpaOptions, device: tch::Device) -> Result<Tensor> {
    let mut keep = Tensor::f_ones(scores, (Kind::Bool, device))?;
    if let Some(structural) = structural_keep(o, scores, device)? {
        keep = keep.f_logical_and(&structural)?;
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

/// Validates every argument and option; returns the shape of the scores `(.., L, S)`.
fn check_inputs(q: &Tensor, k: &Tensor, v: &Tensor, o: &SdpaOptions) -> Result<Vec<i64>> {
    let scores = shapes::check(q, k, v, o.enable_gqa)?;
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
    let (kind, device) = (q.kind(), q.device());
    if let Some(mask) = &o.attn_mask {
        if o.is_causal {
            return Err(Error::invalid(
                "attn_mask",
                "must be None when is_causal is true (PyTorch rejects both together)",
            ));
        }
        mask.check("attn_mask", &scores, kind, device)?;
    }
    if let Some(w) = &o.window {
        w.validate()?;
    }
    if let Some(cap) = o.softcap {
        softcap::check(cap)?;
    }
    if let Some(sinks) = &o.sinks {
        sinks::check(sinks, &scores, kind, device)?;
    }
    if let Some(alibi) = &o.alibi {
        alibi.check(&scores, device)?;
    }
    if let Some(documents) = &o.documents {
        documents.check(&scores, device)?;
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{scaled_dot_product_attention, Backend, SdpaOptions};
    use crate::attention::window::{blocked, Window};
    use crate::attention::Documents;

    /// The blocked path equals the math path, for windows of every kind, L < S, L > S,
    /// with and without causal masking and GQA.
    #[test]
    fn blocks_of_queries_give_the_whole_windowed_attention() {
        tch::manual_seed(0);
        for (l, s, left, right, causal) in [
            (9, 9, 2, 0, false),
            (9, 9, 3, 1, true),
            (10, 13, 0, -1, false),
            (11, 7, 4, 2, false),
            (12, 12, 20, 20, true),
        ] {
            let q = Tensor::randn([2, 4, l, 5], (Kind::Double, Device::Cpu));
            let k = Tensor::randn([2, 2, s, 5], (Kind::Double, Device::Cpu));
            let v = Tensor::randn([1, 2, s, 3], (Kind::Double, Device::Cpu));
            let options = |backend| SdpaOptions {
                window: Some(Window::new(left, right).unwrap()),
                is_causal: causal,
                enable_gqa: true,
                backend,
                ..SdpaOptions::default()
            };
            let only = options(Backend::Fused)
                .window_only()
                .expect("only a window bounded on the left is set");
            let blocked = blocked(&q, &k, &v, only, &[2, 4, l, s], 3)
                .unwrap()
                .expect("a window bounded on the left takes the blocked path");
            let math = scaled_dot_product_attention(&q, &k, &v, &options(Backend::Math)).unwrap();
            let diff = (&blocked - &math).abs().max().double_value(&[]);
            assert!(
                diff < 1e-12,
                "{l} {s} ({left}, {right}) causal {causal}: {diff}"
            );
        }
    }

    /// Any other option keeps the one-call path, which knows how to apply it.
    #[test]
    fn only_a_window_bounded_on_the_left_is_blocked() {
        let window = Some(Window::new(2, 0).unwrap());
        let with = |o: SdpaOptions| SdpaOptions { window, ..o }.window_only().is_some();
        assert!(with(SdpaOptions::default()));
        assert!(!with(SdpaOptions {
            softcap: Some(1.0),
            ..SdpaOptions::default()
        }));
        assert!(!with(SdpaOptions {
            dropout_p: 0.1,
            ..SdpaOptions::default()
        }));
        let ids = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        assert!(!with(SdpaOptions {
            documents: Some(Documents::same(ids).unwrap()),
            ..SdpaOptions::default()
        }));
        let unbounded = SdpaOptions {
            window: Some(Window::new(-1, 0).unwrap()),
            ..SdpaOptions::default()
        };
        assert!(unbounded.window_only().is_none());
    }
}
