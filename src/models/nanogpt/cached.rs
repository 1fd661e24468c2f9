//! [`CausalSelfAttention`] with a [`KvCache`]: incremental decoding, the causal mask
//! aligned bottom-right (see [`crate::attention::kv_cache`]). A block with a sliding
//! window decodes into a rolling cache ([`CausalSelfAttention::new_cache`]) that keeps
//! only the keys the window still reaches.

use tch::Tensor;

use super::CausalSelfAttention;
use crate::attention::{
    merge_heads, scaled_dot_product_attention, split_heads, KvCache, SdpaOptions,
};
use crate::error::{Error, Result};

impl CausalSelfAttention {
    /// The cache this block decodes into: a rolling cache through its sliding window
    /// ([`KvCache::rolling`]) when it has one, a growing cache otherwise.
    pub fn new_cache(&self) -> Result<KvCache> {
        match self.config.window()? {
            Some(window) => KvCache::rolling(window),
            None => Ok(KvCache::new()),
        }
    }

    /// One step of incremental decoding (eval mode: no dropout): attends the `T_new` new
    /// tokens in `x` to every token cached so far and to themselves, causally, and
    /// appends their keys and values to `cache`.
    ///
    /// The causal mask is aligned bottom-right: new token `i` is at absolute position
    /// `past + i` and sees keys `0..=past + i`. (PyTorch's `is_causal` aligns top-left,
    /// wrong whenever `T_new < S`; it is used only on the first call, where they agree.)
    ///
    /// With a sliding window, each new token sees only the window's keys, through a
    /// rolling cache for that window or a growing one. A block without a window attends
    /// through the window of a rolling cache.
    ///
    /// Errors, leaving `cache` unchanged, when `x` is not `(B, T_new, C)` with the
    /// module's dtype and device, when `B` differs from the cached batch, when
    /// `past + T_new` exceeds `block_size`, or when `cache` rolls through another window
    /// than the block's.
    ///
    /// # Shapes
    /// - x `(B, T_new, C)`; output `(B, T_new, C)`;
    /// - cache `(B, nh, past, hs)` before, `(B, nh, past + T_new, hs)` after.
    pub fn f_forward_cached(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let cfg = &self.config;
        let like = &self.c_attn.weight;
        let (b, t, c) = self.check_x(x)?;
        let (nh, hs) = (cfg.n_head, c / cfg.n_head);
        let past = cache.check_step("x", x, b, (nh, hs), like.kind(), like.device())?;
        let window = cfg.window()?;
        // A block without a window of its own attends through its rolling cache's.
        if let (Some(rolling), Some(own)) = (cache.window(), window) {
            if rolling != own {
                return Err(Error::invalid(
                    "cache",
                    format!(
                        "rolls through the window {rolling:?}, the block attends through {own:?}"
                    ),
                ));
            }
        }
        if past + t > cfg.block_size {
            return Err(Error::invalid(
                "x",
                format!(
                    "{past} cached + {t} new tokens exceed block_size = {}",
                    cfg.block_size
                ),
            ));
        }
        let qkv = self.c_attn.f_forward(x)?.f_split(c, 2)?; // 3 x (B, T, C)
        let q = split_heads(&qkv[0], nh)?; // (B, nh, T, hs)
        let (k, v) = cache.extended(&split_heads(&qkv[1], nh)?, &split_heads(&qkv[2], nh)?)?; // (B, nh, S, hs)
        let (attn_mask, is_causal, cache_window) = cache.step_masking(past, t, x.device())?;
        let options = SdpaOptions {
            attn_mask,
            is_causal,
            window: window.or(cache_window),
            ..self.options()
        };
        let y = scaled_dot_product_attention(&q, &k, &v, &options)?; // (B, nh, T, hs)
        let y = merge_heads(&y)?; // (B, T, C): re-assemble heads side by side
        let y = self.c_proj.f_forward(&y)?;
        cache.store(k, v);
        Ok(y)
    }
}
