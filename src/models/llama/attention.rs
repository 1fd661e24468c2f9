//! transformers' `LlamaAttention`: grouped-query attention (Ainslie et al., "GQA",
//! 2023) with rotary position embeddings, through the crate's SDPA with `enable_gqa`,
//! reading and writing the caller's [`LlamaCache`]. With `config.sliding_window` it is
//! Mistral's attention: each query sees only the window's keys (on the fused path, one
//! block of queries at a time). With `config.layer_types` the window is the layer's
//! own (Gemma 3), and Gemma's per-head query/key norms, score scale and soft-capping
//! come from the config too.

use std::borrow::Borrow;

use tch::nn::Path;
use tch::Tensor;

use super::cache::LlamaCache;
use super::config::LlamaConfig;
use super::{biased_projection, norm, projection};
use crate::attention::{scaled_dot_product_attention, Mask, SdpaOptions, Window};
use crate::error::{Error, Result};
use crate::nn::{apply_rotary, Projection, RmsNorm};

/// Self-attention with H query heads over Hkv key/value heads of size D, under
/// `q_proj`, `k_proj`, `v_proj`, `o_proj` (biases on the first three with
/// `config.qkv_bias`, Qwen2).
#[derive(Debug)]
pub struct LlamaAttention {
    /// `q_proj`: E -> H * D.
    pub q_proj: Projection,
    /// `k_proj`: E -> Hkv * D.
    pub k_proj: Projection,
    /// `v_proj`: E -> Hkv * D.
    pub v_proj: Projection,
    /// `o_proj`: H * D -> E.
    pub o_proj: Projection,
    /// H.
    pub num_heads: i64,
    /// Hkv, a divisor of H: each key/value head serves H / Hkv consecutive query heads.
    pub num_kv_heads: i64,
    /// D.
    pub head_dim: i64,
    /// Which layer it is, to find its slot in the cache.
    pub layer_idx: usize,
    /// `sliding_window` W as flash-attention's `(W - 1, 0)`; `None`: every earlier key.
    pub window: Option<Window>,
    /// `q_norm`, `k_norm` over D, per head, before RoPE (Gemma 3, Qwen3); `None`: none.
    pub qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// The scores' scale; `None`: `D ** -0.5`.
    pub scale: Option<f64>,
    /// `attn_logit_softcapping`.
    pub softcap: Option<f64>,
}

impl LlamaAttention {
    /// The attention of layer `layer_idx` under `path` (`model.layers.{i}.self_attn`).
    pub fn new<'a>(
        path: impl Borrow<Path<'a>>,
        config: &LlamaConfig,
        layer_idx: usize,
    ) -> Result<Self> {
        let p = path.borrow();
        let (e, h, hkv, d) = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        );
        let std = config.initializer_range;
        let window = match config.window_of_layer(layer_idx) {
            Some(w) if w < 1 => {
                return Err(Error::config(
                    "sliding_window",
                    format!("a window covers at least the token itself: expected >= 1, got {w}"),
                ))
            }
            w => w.map(Window::sliding).transpose()?,
        };
        Ok(Self {
            q_proj: biased_projection(&(p / "q_proj"), e, h * d, std, config.qkv_bias)?,
            k_proj: biased_projection(&(p / "k_proj"), e, hkv * d, std, config.qkv_bias)?,
            v_proj: biased_projection(&(p / "v_proj"), e, hkv * d, std, config.qkv_bias)?,
            o_proj: projection(&(p / "o_proj"), h * d, e, std)?,
            num_heads: h,
            num_kv_heads: hkv,
            head_dim: d,
            layer_idx,
            window,
            qk_norm: match config.qk_norm {
                true => Some((
                    norm(p / "q_norm", d, config)?,
                    norm(p / "k_norm", d, config)?,
                )),
                false => None,
            },
            scale: config.query_pre_attn_scalar.map(|s| s.powf(-0.5)),
            softcap: config.attn_logit_softcapping,
        })
    }

    /// `x` `(N, L, E)` with the rotary `cos`, `sin` `(N, L, D)` of its positions, which
    /// follow the `cache.len()` already cached (0 without a cache); returns `(N, L, E)`.
    /// Query `i` sees the cached keys and the new keys up to its own (within the window,
    /// bottom-right aligned so that cached steps see what the full forward sees).
    pub fn f_forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: Option<&LlamaCache>,
    ) -> Result<Tensor> {
        let (q, k, v) = self.f_qkv(x, cos, sin)?;
        let y = self.f_attend(&q, k, v, cache)?; // (N, H, L, D)
        self.f_output(&y)
    }

    /// One new position for each of N sequences, each after its own cache (continuous
    /// batching, vLLM's ragged decode step): `x` `(N, 1, E)` with the rotary `cos`,
    /// `sin` `(N, 1, D)` of each row's own position, `caches[i]` row `i`'s cache of one
    /// sequence; returns `(N, 1, E)`. The projections run on the N rows together; each
    /// row attends to its own keys alone, as [`Self::f_forward`] does for one sequence.
    pub fn f_forward_ragged(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        caches: &[&LlamaCache],
    ) -> Result<Tensor> {
        let xs = x.size();
        if xs.len() != 3 || xs[0] != caches.len() as i64 || xs[1] != 1 {
            let expected = format!("(N, 1, E) with N = {} caches", caches.len());
            return Err(Error::shape("x", expected, &xs));
        }
        let (q, k, v) = self.f_qkv(x, cos, sin)?; // (N, H or Hkv, 1, D)
        let rows = caches
            .iter()
            .enumerate()
            .map(|(i, cache)| {
                let row = |t: &Tensor| t.f_narrow(0, i as i64, 1); // (1, heads, 1, D)
                self.f_attend(&row(&q)?, row(&k)?, row(&v)?, Some(cache))
            })
            .collect::<Result<Vec<_>>>()?;
        self.f_output(&Tensor::f_cat(&rows, 0)?) // (N, H, 1, D) -> (N, 1, E)
    }

    /// Attention of the rotated `q` `(N, H, L, D)` over `k`, `v` `(N, Hkv, L, D)` of the
    /// same positions after those in `cache`, which `k`, `v` are written into: `(N, H,
    /// L, D)`.
    fn f_attend(
        &self,
        q: &Tensor,
        k: Tensor,
        v: Tensor,
        cache: Option<&LlamaCache>,
    ) -> Result<Tensor> {
        let l = q.size()[2];
        let device = q.device();
        let (k, v) = match cache {
            Some(c) => c.update(self.layer_idx, &k, &v)?, // (N, Hkv, offset + L, D)
            None => (k, v),
        };
        if let Some(group) = self.query_group(q, l) {
            return self.f_attend_grouped(q, &k, &v, group);
        }
        // The cached keys before the new ones: all of them, or a rolling layer's last
        // W - 1 (the only ones its window can reach).
        let offset = k.size()[2] - l;
        let options = SdpaOptions {
            // A single new query sees everything cached; a block of new queries sees the
            // cache and the causal triangle of itself (bottom-right aligned).
            is_causal: l > 1 && offset == 0,
            attn_mask: if l > 1 && offset > 0 {
                let keep =
                    Tensor::f_ones([l, offset + l], (tch::Kind::Bool, device))?.f_tril(offset)?;
                Some(Mask::keep(keep)?)
            } else {
                None
            },
            enable_gqa: self.num_heads != self.num_kv_heads,
            window: self.window,
            scale: self.scale,
            softcap: self.softcap,
            ..Default::default()
        };
        scaled_dot_product_attention(q, &k, &v, &options)
    }

    /// G = H / Hkv where one new query per sequence (decoding) in bfloat16 or float16
    /// attends with every cached key, no window and no soft-capping: the case
    /// [`Self::f_attend_grouped`] serves. `None` otherwise.
    fn query_group(&self, q: &Tensor, l: i64) -> Option<i64> {
        let half = matches!(q.kind(), tch::Kind::BFloat16 | tch::Kind::Half);
        let gqa = self.num_heads != self.num_kv_heads;
        let plain = self.window.is_none() && self.softcap.is_none();
        (l == 1 && half && gqa && plain).then_some(self.num_heads / self.num_kv_heads)
    }

    /// One decoding query per head `q` `(N, H, 1, D)` over `k`, `v` `(N, Hkv, S, D)`,
    /// as the G query heads of each key/value head read as G query rows of that head:
    /// `(N, Hkv, G, D)`, no mask (a lone new query sees every cached key). The same
    /// attention as `enable_gqa`, up to rounding; libtorch's CPU flash kernel in
    /// bfloat16 packs the keys and values once per (sequence, head) task, so that G
    /// rows of one task cost about a fifth of G one-row tasks (16 against 84 us per
    /// layer for SmolLM2's 9 query and 3 key/value heads at S = 64, one thread). In
    /// float32 the two cost the same, and float32 keeps `enable_gqa`.
    fn f_attend_grouped(&self, q: &Tensor, k: &Tensor, v: &Tensor, group: i64) -> Result<Tensor> {
        let (n, d) = (q.size()[0], self.head_dim);
        // (N, H, 1, D) -> (N, Hkv, G, D): query head h is row h % G of key head h / G.
        let rows = q.f_reshape([n, self.num_kv_heads, group, d])?;
        let options = SdpaOptions {
            scale: self.scale,
            ..Default::default()
        };
        let y = scaled_dot_product_attention(&rows, k, v, &options)?; // (N, Hkv, G, D)
        Ok(y.f_reshape([n, self.num_heads, 1, d])?) // (N, H, 1, D)
    }

    /// `o_proj` of the heads' outputs `(N, H, L, D)`: `(N, L, E)`.
    fn f_output(&self, y: &Tensor) -> Result<Tensor> {
        let (n, l) = (y.size()[0], y.size()[2]);
        // (N, H, L, D) -> (N, L, H, D) -> (N, L, H*D)
        let y = y
            .f_transpose(1, 2)?
            .f_reshape([n, l, self.num_heads * self.head_dim])?;
        self.o_proj.f_forward(&y)
    }

    /// The rotated queries `(N, H, L, D)` and keys `(N, Hkv, L, D)` and the values
    /// `(N, Hkv, L, D)` of `x` `(N, L, E)`, checked; `cos`, `sin` as [`Self::f_forward`].
    pub(super) fn f_qkv(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let e = self.q_proj.in_features();
        let xs = x.size();
        if xs.len() != 3 || xs[2] != e {
            return Err(Error::shape("x", format!("(N, L, E) with E = {e}"), &xs));
        }
        let (n, l, d) = (xs[0], xs[1], self.head_dim);
        // (N, L, heads*D) -> (N, L, heads, D) -> (N, heads, L, D)
        let heads = |t: Tensor, heads: i64| t.f_view([n, l, heads, d])?.f_transpose(1, 2);
        let mut q = heads(self.q_proj.f_forward(x)?, self.num_heads)?;
        let mut k = heads(self.k_proj.f_forward(x)?, self.num_kv_heads)?;
        let v = heads(self.v_proj.f_forward(x)?, self.num_kv_heads)?;
        if let Some((q_norm, k_norm)) = &self.qk_norm {
            q = q_norm.f_forward(&q)?;
            k = k_norm.f_forward(&k)?;
        }
        Ok((apply_rotary(&q, cos, sin)?, apply_rotary(&k, cos, sin)?, v))
    }
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::LlamaAttention;
    use crate::attention::{scaled_dot_product_attention, SdpaOptions};
    use crate::models::llama::LlamaConfig;

    fn attention(window: Option<i64>) -> LlamaAttention {
        let config = LlamaConfig {
            hidden_size: 64,
            num_attention_heads: 6,
            num_key_value_heads: 2,
            head_dim: 16,
            num_hidden_layers: 1,
            sliding_window: window,
            ..Default::default()
        };
        let vs = VarStore::new(Device::Cpu);
        LlamaAttention::new(vs.root() / "self_attn", &config, 0).unwrap()
    }

    /// A decoding query's heads read as rows of their key/value head give the float32
    /// attention of the same bfloat16 inputs (`enable_gqa`) within bfloat16's rounding
    /// (rtol 1.6e-2, torch.testing's for bfloat16, and atol 1e-2, about one ulp at 1),
    /// for every head, at cache lengths on both sides of the flash kernel's 512-key
    /// blocks; so does the bfloat16 `enable_gqa` path it replaces.
    #[test]
    fn grouped_decoding_queries_attend_as_enable_gqa_does() {
        tch::manual_seed(0);
        let a = attention(None);
        for s in [1, 7, 64, 600] {
            let f = (Kind::Float, Device::Cpu);
            let (q, k, v) = (
                Tensor::randn([2, 6, 1, 16], f),
                Tensor::randn([2, 2, s, 16], f),
                Tensor::randn([2, 2, s, 16], f),
            );
            let gqa = SdpaOptions {
                enable_gqa: true,
                ..Default::default()
            };
            let bf = |t: &Tensor| t.to_kind(Kind::BFloat16);
            let (q, k, v) = (bf(&q), bf(&k), bf(&v));
            let fl = |t: &Tensor| t.to_kind(Kind::Float);
            let want = scaled_dot_product_attention(&fl(&q), &fl(&k), &fl(&v), &gqa).unwrap();
            assert_eq!(a.query_group(&q, 1), Some(3));
            let got = a.f_attend_grouped(&q, &k, &v, 3).unwrap();
            let before = scaled_dot_product_attention(&q, &k, &v, &gqa).unwrap();
            assert_eq!(got.size(), [2, 6, 1, 16]);
            for (name, t) in [("grouped", &got), ("enable_gqa", &before)] {
                let err = (fl(t) - &want).abs();
                let bound = want.abs() * 1.6e-2 + 1e-2;
                let ok = bool::try_from(err.le_tensor(&bound).all()).unwrap();
                assert!(ok, "{name}, S = {s}");
            }
        }
    }

    /// float32, a block of new queries, and a window keep the `enable_gqa` path.
    #[test]
    fn only_half_precision_decoding_without_a_window_is_grouped() {
        let q = |kind, l| Tensor::zeros([1, 6, l, 16], (kind, Device::Cpu));
        assert_eq!(attention(None).query_group(&q(Kind::Float, 1), 1), None);
        assert_eq!(attention(None).query_group(&q(Kind::BFloat16, 2), 2), None);
        assert_eq!(
            attention(Some(4)).query_group(&q(Kind::BFloat16, 1), 1),
            None
        );
        assert_eq!(attention(None).query_group(&q(Kind::Half, 1), 1), Some(3));
    }
}
