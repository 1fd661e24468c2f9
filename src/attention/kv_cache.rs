//! Incremental decoding with a KV cache: each step projects only the new tokens, appends
//! their keys and values to those of the earlier steps, and lets the new queries attend
//! to all of them — what Hugging Face's `past_key_values` / `use_cache=True` does for a
//! GPT-2 attention block, here for [`CausalSelfAttention`](crate::models::nanogpt::CausalSelfAttention)
//! and [`MultiheadAttention`].
//!
//! Feeding a prompt and then its continuation piece by piece gives the same outputs as
//! one forward pass over the whole sequence (eval mode): `tests/kv_cache.rs` checks it.
//!
//! # The causal mask is aligned bottom-right
//! With `past` cached positions and `T` new tokens the scores are `(T, S)`, `S = past + T`,
//! and new query `i` sits at absolute position `past + i`: it sees keys `0..=past + i`.
//! PyTorch's `is_causal` aligns the mask top-left (query `i` sees keys `0..=i`), which is
//! the same thing only when `T == S`. So the cached forwards use `is_causal` only for the
//! first call (`past == 0`), no mask for a single new token (it sees every key), and an
//! explicit keep-mask `ones(T, S).tril(past)` otherwise.
//!
//! Packed documents decode the same way through [`Documents`](crate::attention::Documents):
//! with cumulative lengths of the new queries (`cu_seqlens_q`) and of each document's
//! cached and new keys (`cu_seqlens_k`), `is_causal` and the window apply within each
//! document, aligned at its end, so each step gets the rows of the full forward
//! (`tests/documents_varlen.rs`).

use tch::{Device, Kind, Tensor};

use crate::attention::functional::{scaled_dot_product_attention, MaskedRows, SdpaOptions};
use crate::attention::mask::Mask;
use crate::attention::multihead_attention::MultiheadAttention;
use crate::attention::window::Window;
use crate::attention::{merge_heads_seq_first, split_heads_seq_first};
use crate::check;
use crate::error::{Error, Result};

/// The keys and values one attention layer has seen so far, head-split:
/// `(N, H, S, hd)` each. Use one cache per layer (and per sequence batch); a model keeps
/// a `Vec<KvCache>`.
///
/// The cache grows by concatenation, so a decode of `S` tokens copies `O(S^2)` elements
/// in all; that is negligible next to the attention itself at the lengths
/// `block_size` allows.
///
/// A rolling cache ([`KvCache::rolling`]) serves sliding-window attention (Mistral,
/// Gemma 2's local layers, gpt-oss): it keeps only the keys and values the window can
/// still reach, so its memory stays bounded however long the decode.
#[derive(Debug, Default)]
pub struct KvCache {
    keys: Option<Tensor>,
    values: Option<Tensor>,
    /// For a rolling cache: the window's `left`, the most positions kept after a step.
    keep_last: Option<i64>,
}

impl KvCache {
    /// An empty cache; the first cached forward fixes its batch size, heads, dtype and
    /// device.
    pub fn new() -> Self {
        Self::default()
    }

    /// A rolling cache for the causal sliding window `window` (`(left, 0)`, e.g.
    /// [`Window::sliding(w)`](crate::attention::Window::sliding)): each step attends
    /// through the window, bottom-right aligned, and afterwards the cache keeps only the
    /// last `left` positions, all the next token can see.
    pub fn rolling(window: Window) -> Result<Self> {
        window.validate()?;
        if window.left < 0 || window.right != 0 {
            return Err(Error::invalid(
                "window",
                format!(
                    "a rolling cache needs a causal window bounded on the left, (left >= 0, 0), \
                     got ({}, {})",
                    window.left, window.right
                ),
            ));
        }
        Ok(KvCache {
            keep_last: Some(window.left),
            ..KvCache::default()
        })
    }

    /// The window of a rolling cache, `(left, 0)`; `None` for a growing one.
    pub fn window(&self) -> Option<Window> {
        self.keep_last.map(|left| Window { left, right: 0 })
    }

    /// The number of cached positions (S).
    pub fn len(&self) -> i64 {
        self.keys.as_ref().map_or(0, |k| k.size()[2])
    }

    /// Whether nothing is cached yet (before the first cached forward, or after [`KvCache::reset`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_none()
    }

    /// A second handle on the same cached tensors. A step never writes into them (it
    /// appends by concatenation into new tensors), so the copy can go on decoding while
    /// this one stays where it was: beam search, or a benchmark that repeats one step.
    pub fn shallow_clone(&self) -> Self {
        Self {
            keys: self.keys.as_ref().map(Tensor::shallow_clone),
            values: self.values.as_ref().map(Tensor::shallow_clone),
            keep_last: self.keep_last,
        }
    }

    /// Forgets every cached position, to start a new sequence.
    pub fn reset(&mut self) {
        self.keys = None;
        self.values = None;
    }

    /// The batch size (N) of the cached sequences; `None` while empty.
    pub fn batch_size(&self) -> Option<i64> {
        self.keys.as_ref().map(|k| k.size()[0])
    }

    /// The cached keys `(N, H, S, hd)`.
    pub fn keys(&self) -> Option<&Tensor> {
        self.keys.as_ref()
    }

    /// The cached values `(N, H, S, hd)`.
    pub fn values(&self) -> Option<&Tensor> {
        self.values.as_ref()
    }

    /// Checks that a step of batch `n` with `h` heads of size `hd`, dtype `kind` on
    /// `device`, fits what the cache holds; `arg` names the input. Returns `past`.
    pub(crate) fn check_step(
        &self,
        arg: &str,
        x: &Tensor,
        n: i64,
        (h, hd): (i64, i64),
        kind: Kind,
        device: Device,
    ) -> Result<i64> {
        let Some(keys) = &self.keys else {
            return Ok(0);
        };
        let size = keys.size();
        if size[0] != n {
            return Err(Error::shape(
                arg,
                format!("batch size {} like the cache {size:?}", size[0]),
                &x.size(),
            ));
        }
        if size[1] != h || size[3] != hd {
            return Err(Error::invalid(
                "cache",
                format!(
                    "holds {} heads of size {} ({size:?}), the module has {h} of size {hd}: \
                     was it filled by another layer?",
                    size[1], size[3]
                ),
            ));
        }
        if keys.kind() != kind {
            return Err(Error::Dtype {
                arg: "cache".into(),
                expected: format!("{kind:?} (the module's parameters)"),
                got: keys.kind(),
            });
        }
        if keys.device() != device {
            return Err(Error::Device {
                arg: "cache".into(),
                expected: device,
                got: keys.device(),
            });
        }
        Ok(size[2])
    }

    /// The cached keys and values followed by `k`, `v` `(N, H, T, hd)`, along S. The
    /// cache itself is unchanged until [`KvCache::store`], so a failed step leaves it as
    /// it was.
    pub(crate) fn extended(&self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(match (&self.keys, &self.values) {
            (Some(ck), Some(cv)) => (Tensor::f_cat(&[ck, k], 2)?, Tensor::f_cat(&[cv, v], 2)?),
            _ => (k.f_contiguous()?, v.f_contiguous()?),
        })
    }

    /// Keeps `keys` and `values` `(N, H, S, hd)` for the next step: all of them, or for a
    /// rolling cache the last `left` positions (a view; the next step's concatenation
    /// copies it, so the memory held stays bounded).
    pub(crate) fn store(&mut self, keys: Tensor, values: Tensor) {
        let last = |t: Tensor| match self.keep_last {
            // In range by the guard: `narrow` cannot fail.
            Some(left) if t.size()[2] > left => {
                let s = t.size()[2];
                t.narrow(2, s - left, left)
            }
            _ => t,
        };
        self.keys = Some(last(keys));
        self.values = Some(last(values));
    }

    /// The causal masking of `t` new queries after `past` cached positions, as
    /// `(attn_mask, is_causal, window)` for [`SdpaOptions`]: through the window for a
    /// rolling cache, [`causal_mask`] otherwise.
    pub(crate) fn step_masking(
        &self,
        past: i64,
        t: i64,
        device: Device,
    ) -> Result<(Option<Mask>, bool, Option<Window>)> {
        Ok(match self.window() {
            Some(window) => (None, false, Some(window)),
            None => {
                let (mask, is_causal) = causal_mask(past, t, device)?;
                (mask, is_causal, None)
            }
        })
    }
}

/// The causal masking of `t` new queries after `past` cached positions, bottom-right
/// aligned (see the module docs): `(attn_mask, is_causal)` for [`SdpaOptions`].
pub(crate) fn causal_mask(past: i64, t: i64, device: Device) -> Result<(Option<Mask>, bool)> {
    Ok(if t == 1 {
        (None, false) // the one new query sees every key
    } else if past == 0 {
        (None, true) // T == S: top-left and bottom-right coincide
    } else {
        let keep = Tensor::f_ones([t, past + t], (Kind::Bool, device))?.f_tril(past)?; // (T, S)
        (Some(Mask::Keep(keep)), false)
    })
}

impl MultiheadAttention {
    /// One step of incremental self-attention decoding: `f_forward_t` with
    /// `need_weights: false`, no key padding, eval mode, and — when `causal` — the causal
    /// mask, over the new tokens and every token cached before them. Appends the new
    /// projected, head-split keys and values to `cache`.
    ///
    /// `query`, `key` and `value` are the new tokens (the same tensor in plain
    /// self-attention; `key`/`value` may have `kdim`/`vdim` channels), so they must have
    /// the same length `T_new`. When `causal`, the mask is aligned bottom-right: new
    /// token `i` sees cached and new keys `0..=past + i` (see the module docs); otherwise
    /// every new token sees every key.
    ///
    /// Errors, leaving `cache` unchanged, for unbatched inputs, for `add_bias_kv` and
    /// `add_zero_attn` (their extra key sits after the sequence, which a growing cache
    /// cannot keep), for inputs of the wrong shape, dtype or device, and for a batch
    /// size different from the cached one.
    ///
    /// # Shapes
    /// - query `(L, N, E)` (`(N, L, E)` if `batch_first`), `L = T_new`;
    /// - key `(L, N, kdim)`, value `(L, N, vdim)`, likewise;
    /// - output like query; cache `(N, H, past, hd)` before, `(N, H, past + L, hd)` after.
    pub fn f_forward_cached(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        cache: &mut KvCache,
        causal: bool,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (e, h, hd) = (cfg.embed_dim, cfg.num_heads, cfg.head_dim());
        let like = &self.out_proj.weight;
        let (kind, device) = (like.kind(), like.device());
        for (flag, on) in [
            ("add_bias_kv", cfg.add_bias_kv),
            ("add_zero_attn", cfg.add_zero_attn),
        ] {
            if on {
                return Err(Error::invalid(
                    flag,
                    "is not supported by f_forward_cached: the extra key follows the \
                     whole sequence; use f_forward_t",
                ));
            }
        }
        let (n, l) = self.check_cached(query, key, value, kind, device)?;
        let past = cache.check_step("query", query, n, (h, hd), kind, device)?;

        // Work sequence-first, as `f_forward_t` does: (L, N, E).
        let (q, k, v) = self.in_projection(
            &self.seq_first(query, true)?,
            &self.seq_first(key, true)?,
            &self.seq_first(value, true)?,
        )?; // 3 x (L, N, E)
        let q = split_heads_seq_first(&q, h)?; // (N, H, L, hd)
        let (k, v) = cache.extended(
            &split_heads_seq_first(&k, h)?,
            &split_heads_seq_first(&v, h)?,
        )?; // (N, H, S, hd)
        let (attn_mask, is_causal, window) = if causal {
            cache.step_masking(past, l, device)?
        } else {
            (None, false, None)
        };
        let options = SdpaOptions {
            attn_mask,
            is_causal,
            window,
            masked_rows: Some(self.masked_rows.unwrap_or(MaskedRows::Zero)),
            ..SdpaOptions::default()
        };
        let out = scaled_dot_product_attention(&q, &k, &v, &options)?; // (N, H, L, hd)
        let out = merge_heads_seq_first(&out)?; // (L * N, E): heads side by side
        let out = self.out_proj.f_forward(&out)?.f_view([l, n, e])?;
        let out = self.in_caller_layout(out, true)?;
        cache.store(k, v);
        Ok(out)
    }

    /// The checks of the cached forward: batched inputs of the module's layout, widths,
    /// dtype and device, one length and one batch size. Returns `(N, L)`.
    fn check_cached(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        kind: Kind,
        device: Device,
    ) -> Result<(i64, i64)> {
        let cfg = &self.config;
        let (layout, seq, batch) = if cfg.batch_first {
            ("(N, L, E)", 1, 0)
        } else {
            ("(L, N, E)", 0, 1)
        };
        let qs = query.size();
        let (l, n) = match qs.as_slice() {
            [_, _, _] => (qs[seq], qs[batch]),
            _ => {
                return Err(Error::shape(
                    "query",
                    format!("batched 3-D {layout} (cached decoding keeps a batch dimension)"),
                    &qs,
                ))
            }
        };
        for (arg, t, width) in [
            ("query", query, cfg.embed_dim),
            ("key", key, cfg.kdim()),
            ("value", value, cfg.vdim()),
        ] {
            let s = t.size();
            if s.len() != 3 || s[seq] != l || s[batch] != n || s[2] != width || s.contains(&0) {
                return Err(Error::shape(
                    arg,
                    format!(
                        "{layout} with L = {l} new tokens, N = {n} like query {qs:?}, \
                         last dimension {width}, no zero sizes"
                    ),
                    &s,
                ));
            }
            check::same_kind_device(arg, t, kind, device)?;
        }
        Ok((n, l))
    }
}
