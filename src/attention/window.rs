//! Sliding-window (local) attention, as flash-attention's `window_size = (left, right)`
//! defines it (`flash_attn_func` docstring): query `i` attends to keys
//! `i + S - L - left ..= i + S - L + right`, inclusive, `-1` meaning unbounded on that
//! side. The window is aligned bottom-right, as flash-attention aligns it: the last query
//! sits at the last key, so a KV-cache step (`L` new queries after `S - L` cached keys)
//! sees the same keys as the same rows of the full forward.
//!
//! transformers' `sliding_window = W` (Mistral, Gemma 2, gpt-oss) is
//! [`Window::sliding(W)`](Window::sliding): `left = W - 1` with causal masking, so a
//! query sees itself and the `W - 1` keys before it.

use tch::{Device, Kind, Tensor};

use crate::attention::functional::{MaskedRows, SdpaOptions};
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
    /// `w - 1` keys before it, nothing after, `(w - 1, 0)`; `w >= 1`.
    pub fn sliding(w: i64) -> Result<Self> {
        if w < 1 {
            return Err(Error::invalid(
                "window",
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
        let mut keep = Tensor::f_ones(offset.size(), (Kind::Bool, device))?;
        if self.left >= 0 {
            keep = keep.f_logical_and(&offset.f_ge(-self.left)?)?;
        }
        if self.right >= 0 {
            keep = keep.f_logical_and(&offset.f_le(self.right)?)?;
        }
        if causal {
            keep = keep.f_logical_and(&j.f_le_tensor(&i)?)?;
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
const BLOCK: i64 = 512;

/// The fused path for a window bounded on the left, one block of queries at a time
/// against only the keys their window reaches: the masks and scores take
/// `O(L * (block + left + right))` memory instead of `O(L * S)`. `None` (use the one-call
/// path) when the options ask for more than the window and causal masking, or when the
/// queries are too few to gain from it.
pub(crate) fn blocked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &SdpaOptions,
    scores: &[i64],
) -> Result<Option<Tensor>> {
    blocked_by(q, k, v, o, scores, BLOCK)
}

fn blocked_by(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &SdpaOptions,
    scores: &[i64],
    block: i64,
) -> Result<Option<Tensor>> {
    let n = scores.len();
    let (l, s) = (scores[n - 2], scores[n - 1]);
    let window = match o.window {
        Some(w) if w.left >= 0 && l > 2 * block => w,
        _ => return Ok(None),
    };
    let only_window = o.attn_mask.is_none()
        && o.documents.is_none()
        && o.alibi.is_none()
        && o.softcap.is_none()
        && o.sinks.is_none()
        && o.dropout_p == 0.0
        && o.masked_rows != Some(MaskedRows::Nan);
    if !only_window {
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

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{blocked_by, Window};
    use crate::attention::functional::{scaled_dot_product_attention, Backend, SdpaOptions};

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
            let fused = options(Backend::Fused);
            let blocked = blocked_by(&q, &k, &v, &fused, &[2, 4, l, s], 3)
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
}
