//! Sliding-window (local) attention, as flash-attention's `window_size = (left, right)`
//! defines it (`flash_attn_func` docstring): query `i` attends to keys
//! `i + S - L - left ..= i + S - L + right`, inclusive, `-1` meaning unbounded on that
//! side. The window is aligned bottom-right, as flash-attention aligns it: the last query
//! sits at the last key, so a KV-cache step (`L` new queries after `S - L` cached keys)
//! sees the same keys as the same rows of the full forward.
//!
//! transformers' `sliding_window = W` (Mistral, Gemma 2, gpt-oss) is
//! [`Window::sliding(W)`](Window::sliding), `(W - 1, 0)`: a query sees itself and the
//! `W - 1` keys before it. `(W - 1, -1)` together with `is_causal` is the same only
//! when `L = S`: `is_causal` is PyTorch's top-left mask and
//! the window bottom-right. With 2 queries over 5 keys and `W = 2`, `(1, 0)` gives query 0
//! keys 2–3 and query 1 keys 3–4; `(1, -1)` with `is_causal` gives query 0 keys `>= 2`
//! and `<= 0`, query 1 keys `>= 3` and `<= 1`: no key at all.
//!
//! With packed documents ([`Documents`](crate::attention::Documents)) the window applies
//! within each document, aligned at the document's end, as flash-attention's
//! `flash_attn_varlen_func` applies it; there `is_causal` is aligned the same way, so
//! `(W - 1, -1)` with `is_causal` equals `(W - 1, 0)` whatever the lengths.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// A sliding window `(left, right)`: how many keys before and after its own position a
/// query sees; `-1` means unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Keys before the query's position it sees (`-1`: all of them).
    pub left: i64,
    /// Keys after the query's position it sees (`-1`: all of them; `0`: causal).
    pub right: i64,
}

impl Window {
    /// flash-attention's `window_size = (left, right)`; each side `>= -1`.
    pub fn new(left: i64, right: i64) -> Result<Self> {
        let window = Window { left, right };
        window.validate()?;
        Ok(window)
    }

    /// transformers' `sliding_window = w` (Mistral, Gemma 2): the query itself and the
    /// `w - 1` keys before it, nothing after, `(w - 1, 0)`; `w >= 1`. The one place the
    /// rule is checked; an error names `sliding_window`, the configs' field.
    pub fn sliding(w: i64) -> Result<Self> {
        if w < 1 {
            return Err(Error::invalid(
                "sliding_window",
                format!(
                    "a sliding window covers at least the query itself: expected w >= 1, got {w}"
                ),
            ));
        }
        Window::new(w - 1, 0)
    }

    /// Whether it masks nothing at all: `(-1, -1)`.
    pub fn is_unbounded(&self) -> bool {
        self.left == -1 && self.right == -1
    }

    /// Each side is `-1` (unbounded) or a count of keys.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.left < -1 || self.right < -1 {
            return Err(Error::invalid(
                "window",
                format!(
                    "each side must be -1 (unbounded) or >= 0, got ({}, {})",
                    self.left, self.right
                ),
            ));
        }
        Ok(())
    }

    /// The keep-mask `(L, S)`, bottom-right aligned: true where query `i` may see key `j`,
    /// `-left <= j - (i + S - L) <= right`.
    pub fn keep(&self, l: i64, s: i64, device: Device) -> Result<Tensor> {
        self.keep_between((0, l), (0, s), (l, s), false, device)
    }

    /// The rows `queries` and columns `keys` of the keep-mask of `(L, S)` scores, with
    /// PyTorch's top-left causal mask (`j <= i`) as well when `causal`.
    fn keep_between(
        &self,
        queries: (i64, i64),
        keys: (i64, i64),
        (l, s): (i64, i64),
        causal: bool,
        device: Device,
    ) -> Result<Tensor> {
        let i =
            Tensor::f_arange_start(queries.0, queries.1, (Kind::Int64, device))?.f_unsqueeze(1)?; // (rows, 1)
        let j = Tensor::f_arange_start(keys.0, keys.1, (Kind::Int64, device))?.f_unsqueeze(0)?; // (1, cols)
        let offset = j.f_sub(&i.f_add_scalar(s - l)?)?; // key position relative to the query's
        let mut keep = self.keep_offset(&offset)?;
        if causal {
            keep = keep.f_logical_and(&j.f_le_tensor(&i)?)?;
        }
        Ok(keep)
    }

    /// Where `offset`, a key's position relative to its query's (`j - (i + S - L)`, or
    /// within a document), lies inside the window: `-left <= offset <= right`.
    pub(crate) fn keep_offset(&self, offset: &Tensor) -> Result<Tensor> {
        let mut keep = Tensor::f_ones(offset.size(), (Kind::Bool, offset.device()))?;
        if self.left >= 0 {
            keep = keep.f_logical_and(&offset.f_ge(-self.left)?)?;
        }
        if self.right >= 0 {
            keep = keep.f_logical_and(&offset.f_le(self.right)?)?;
        }
        Ok(keep)
    }

    /// The keys `first..end` (clamped to `0..S`) that any of the queries `from..to` of `L`
    /// can see: the slice a block of queries needs.
    fn key_range(&self, (from, to): (i64, i64), l: i64, s: i64) -> (i64, i64) {
        let shift = s - l;
        let first = if self.left < 0 {
            0
        } else {
            from + shift - self.left
        };
        let end = if self.right < 0 {
            s
        } else {
            to + shift + self.right
        };
        let first = first.clamp(0, s);
        (first, end.clamp(first, s))
    }
}

/// Queries per block on the blocked path.
pub(crate) const BLOCK: i64 = 512;

/// The arguments of a windowed attention with nothing else set (which
/// `SdpaOptions` decides, naming each of its fields): all [`blocked`] needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowOnly {
    /// The window; bounded on the left, or nothing is gained.
    pub window: Window,
    /// PyTorch's top-left `is_causal` as well.
    pub is_causal: bool,
    /// SDPA's `scale`.
    pub scale: Option<f64>,
    /// SDPA's `enable_gqa`.
    pub enable_gqa: bool,
}

/// The fused path for a window bounded on the left, `block` queries at a time against
/// only the keys their window reaches: the masks and scores take
/// `O(L * (block + left + right))` memory instead of `O(L * S)`. `None` (use the one-call
/// path) when the queries are too few to gain from it (`L <= 2 * block`) or the window is
/// unbounded on the left.
pub(crate) fn blocked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: WindowOnly,
    scores: &[i64],
    block: i64,
) -> Result<Option<Tensor>> {
    let n = scores.len();
    let (l, s) = (scores[n - 2], scores[n - 1]);
    let window = o.window;
    if window.left < 0 || l <= 2 * block {
        return Ok(None);
    }
    let mut outs = Vec::new();
    for from in (0..l).step_by(block as usize) {
        let to = (from + block).min(l);
        let (first, end) = window.key_range((from, to), l, s);
        let keep =
            window.keep_between((from, to), (first, end), (l, s), o.is_causal, q.device())?;
        let out = Tensor::f_scaled_dot_product_attention(
            &q.f_narrow(-2, from, to - from)?,
            &k.f_narrow(-2, first, end - first)?,
            &v.f_narrow(-2, first, end - first)?,
            Some(&keep),
            0.0,
            false,
            o.scale,
            o.enable_gqa,
        )?; // (.., to - from, Ev)
        outs.push(out);
    }
    Ok(Some(Tensor::f_cat(&outs, -2)?))
}
