//! transformers' `LlamaModel` (embeddings, decoder layers, final norm) and
//! `LlamaForCausalLM` (the language-model head, tied to the embeddings or not); with
//! Gemma's switches in the config, `Gemma3TextModel` / `Gemma3ForCausalLM` (scaled
//! embeddings, a second rotary base for the sliding layers, final soft-capping).

use std::borrow::Borrow;

use tch::nn::Path;
use tch::{Kind, Tensor};

use super::cache::LlamaCache;
use super::config::LlamaConfig;
use super::layer::LlamaDecoderLayer;
use super::{norm, weight};
use crate::error::{Error, Result};
use crate::nn::{f_decode_linear, BlockLinear, Projection, RmsNorm, RotaryEmbedding};

/// The decoder stack under `embed_tokens`, `layers.{i}`, `norm`.
#[derive(Debug)]
pub struct LlamaModel {
    /// `embed_tokens.weight`, `[V, E]` (empty where `embed_blocks` holds the table).
    pub embed_tokens: Tensor,
    /// The table in a GGUF's own blocks, rows dequantised per lookup (ggml's
    /// `get_rows`), instead of a float copy: set by `--quant gguf` loading, whose head
    /// runs on the same blocks.
    pub embed_blocks: Option<BlockLinear>,
    /// The decoder layers.
    pub layers: Vec<LlamaDecoderLayer>,
    /// The final RMSNorm.
    pub norm: RmsNorm,
    /// The rotary embedding every layer shares (a buffer, not a parameter); with
    /// `layer_types`, the full layers'.
    pub rotary_emb: RotaryEmbedding,
    /// The sliding layers' rotary embedding (Gemma 3's `rope_local_base_freq`).
    pub rotary_emb_local: Option<RotaryEmbedding>,
    /// Gemma's embedding scale `sqrt(E)`, as the float32 it is in transformers.
    pub embed_scale: Option<f32>,
}

/// The rotary `cos`, `sin` `(N, L, D)` of a forward's positions, for the full layers
/// and, when the sliding layers have their own base, for those.
#[derive(Debug)]
pub struct RopeTables {
    /// The full layers' (every layer's without a local base).
    pub full: (Tensor, Tensor),
    /// The sliding layers'.
    pub sliding: Option<(Tensor, Tensor)>,
}

impl RopeTables {
    /// The tables of `layer`.
    pub fn of(&self, layer: &LlamaDecoderLayer) -> (&Tensor, &Tensor) {
        match (&self.sliding, layer.sliding) {
            (Some((cos, sin)), true) => (cos, sin),
            _ => (&self.full.0, &self.full.1),
        }
    }
}

impl LlamaModel {
    /// The stack of `config` under `path` (`model`).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: &LlamaConfig) -> Result<Self> {
        let p = path.borrow();
        config.validate()?;
        let dims = [config.vocab_size, config.hidden_size];
        let embed_tokens = weight(
            &(p / "embed_tokens"),
            "weight",
            &dims,
            config.initializer_range,
        )?;
        let layers = (0..config.num_hidden_layers as usize)
            .map(|i| LlamaDecoderLayer::new(p / "layers" / i, config, i))
            .collect::<Result<_>>()?;
        Ok(Self {
            embed_tokens,
            embed_blocks: None,
            layers,
            norm: norm(p / "norm", config.hidden_size, config)?,
            rotary_emb: RotaryEmbedding::new(config.head_dim, config.rope_theta, p.device())?,
            rotary_emb_local: config
                .rope_local_theta
                .map(|theta| RotaryEmbedding::new(config.head_dim, theta, p.device()))
                .transpose()?,
            embed_scale: config
                .scale_embeddings
                .then(|| (config.hidden_size as f64).sqrt() as f32),
        })
    }

    /// The last hidden states `(N, L, E)` of token ids `(N, L)` (int64), placed after
    /// the positions `cache` holds, which it then holds too.
    pub fn f_forward(&self, input_ids: &Tensor, cache: Option<&mut LlamaCache>) -> Result<Tensor> {
        let offset = cache.as_deref().map_or(0, LlamaCache::len);
        let (mut x, rope) = self.f_embed(input_ids, &[offset])?;
        let l = x.size()[1];
        if let Some(c) = cache.as_deref() {
            self.check_cache(c, l)?;
        }
        for layer in &self.layers {
            let (cos, sin) = rope.of(layer);
            x = layer.f_forward(&x, cos, sin, cache.as_deref())?;
        }
        if let Some(c) = cache {
            c.advance(l);
        }
        self.norm.f_forward(&x)
    }

    /// The last hidden states `(N, E)` of one new token for each of N sequences
    /// (continuous batching's decode step): `input_ids` `(N)` int64, token `i` placed
    /// after the positions `caches[i]` (a cache of one sequence, of any length) holds,
    /// which it then holds too. The embedding, norms, projections and MLP run on the N
    /// tokens together; attention runs per sequence against its own cache at its own
    /// rotary position, as vLLM's ragged batches do.
    pub fn f_forward_ragged(
        &self,
        input_ids: &Tensor,
        caches: &mut [&mut LlamaCache],
    ) -> Result<Tensor> {
        let n = caches.len() as i64;
        if n == 0 || input_ids.size() != [n] {
            let expected = format!("(N) with N = {n} caches, N >= 1");
            return Err(Error::shape("input_ids", expected, &input_ids.size()));
        }
        for c in caches.iter() {
            if c.batch() != 1 {
                let got = format!("a cache of one sequence each, got one of {}", c.batch());
                return Err(Error::invalid("caches", got));
            }
            self.check_cache(c, 1)?;
        }
        let offsets: Vec<i64> = caches.iter().map(|c| c.len()).collect();
        let (mut x, rope) = self.f_embed(&input_ids.f_view([n, 1])?, &offsets)?; // (N, 1, E)
        {
            let shared: Vec<&LlamaCache> = caches.iter().map(|c| &**c).collect();
            for layer in &self.layers {
                let (cos, sin) = rope.of(layer);
                x = layer.f_forward_ragged(&x, cos, sin, &shared)?;
            }
        }
        for c in caches.iter_mut() {
            c.advance(1);
        }
        self.norm.f_forward(&x.f_squeeze_dim(1)?) // (N, E)
    }

    /// Errors unless `cache` serves this stack's layers and has room for `l` more
    /// positions.
    pub(super) fn check_cache(&self, cache: &LlamaCache, l: i64) -> Result<()> {
        if cache.num_layers() != self.layers.len() {
            return Err(Error::invalid(
                "cache",
                format!(
                    "made for {} layers, the model has {}",
                    cache.num_layers(),
                    self.layers.len()
                ),
            ));
        }
        cache.check_room(l)
    }
}

impl LlamaModel {
    /// The checked embeddings `(N, L, E)` of `input_ids` `(N, L)` (scaled for Gemma)
    /// and the rotary tables of row `i`'s positions `offsets[i] .. offsets[i] + L` (one
    /// offset: every row's), in the embeddings' dtype.
    pub(super) fn f_embed(
        &self,
        input_ids: &Tensor,
        offsets: &[i64],
    ) -> Result<(Tensor, RopeTables)> {
        let size = input_ids.size();
        if size.len() != 2 || size[1] == 0 || input_ids.kind() != Kind::Int64 {
            return Err(Error::shape("input_ids", "(N, L) int64 with L >= 1", &size));
        }
        if offsets.len() != 1 && offsets.len() as i64 != size[0] {
            let got = format!(
                "one offset or one per row (N = {}), got {}",
                size[0],
                offsets.len()
            );
            return Err(Error::invalid("offsets", got));
        }
        let v = match &self.embed_blocks {
            Some(table) => table.out_features(),
            None => self.embed_tokens.size()[0],
        };
        let (lo, hi) = (
            input_ids.f_min()?.int64_value(&[]),
            input_ids.f_max()?.int64_value(&[]),
        );
        if lo < 0 || hi >= v {
            return Err(Error::invalid(
                "input_ids",
                format!("ids must lie in 0..{v}, got {lo}..={hi}"),
            ));
        }
        let device = input_ids.device();
        // (N or 1, 1) + (L) -> (N, L): row i's positions offsets[i] .. offsets[i] + L.
        let positions = Tensor::f_from_slice(offsets)?
            .f_to_device(device)?
            .f_view([-1, 1])?
            .f_add(&Tensor::f_arange(size[1], (Kind::Int64, device))?)?
            .f_expand([size[0], size[1]], false)?;
        let mut x = match &self.embed_blocks {
            // In the model's dtype, which the (empty) float table still carries.
            Some(table) => table
                .f_rows(input_ids)?
                .f_to_kind(self.embed_tokens.kind())?, // (N, L, E)
            None => Tensor::f_embedding(&self.embed_tokens, input_ids, -1, false, false)?,
        };
        if let Some(scale) = self.embed_scale {
            // `* self.embed_scale.to(self.weight.dtype)`: a float32 0-d tensor, cast.
            let scale = Tensor::f_scalar_tensor(f64::from(scale), (Kind::Float, x.device()))?
                .f_to_kind(x.kind())?;
            x = x.f_mul(&scale)?;
        }
        // Computed in float32, then in the hidden states' dtype, as transformers does.
        let tables = |rope: &RotaryEmbedding| -> Result<(Tensor, Tensor)> {
            let (cos, sin) = rope.f_cos_sin(&positions)?; // (N, L, D)
            Ok((cos.f_to_kind(x.kind())?, sin.f_to_kind(x.kind())?))
        };
        let rope = RopeTables {
            full: tables(&self.rotary_emb)?,
            sliding: self.rotary_emb_local.as_ref().map(tables).transpose()?,
        };
        Ok((x, rope))
    }
}

/// A Llama decoder with its language-model head: token ids in, next-token logits out.
#[derive(Debug)]
pub struct LlamaForCausalLM {
    /// The config it was built from.
    pub config: LlamaConfig,
    /// The decoder stack, under `model`.
    pub model: LlamaModel,
    /// `lm_head.weight` `[V, E]`; `None` when tied to `model.embed_tokens.weight`.
    pub lm_head: Option<Tensor>,
    /// The head as a quantised projection, used instead of [`Self::lm_head_weight`]
    /// for the logits when set ([`LlamaForCausalLM::quantize_head`]); the embedding
    /// lookup keeps the float weights.
    pub quantized_head: Option<Projection>,
}

impl LlamaForCausalLM {
    /// The model of `config` under `path` (the root, so that the names are
    /// `model.layers.0.self_attn.q_proj.weight`, ..., `lm_head.weight` unless tied).
    pub fn new<'a>(path: impl Borrow<Path<'a>>, config: LlamaConfig) -> Result<Self> {
        let p = path.borrow();
        let model = LlamaModel::new(p / "model", &config)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            let dims = [config.vocab_size, config.hidden_size];
            Some(weight(
                &(p / "lm_head"),
                "weight",
                &dims,
                config.initializer_range,
            )?)
        };
        Ok(Self {
            config,
            model,
            lm_head,
            quantized_head: None,
        })
    }

    /// The output projection's weight `[V, E]`.
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.model.embed_tokens)
    }

    /// The logits `(N, L, V)` of every position of `input_ids` `(N, L)`.
    pub fn f_forward(&self, input_ids: &Tensor, cache: Option<&mut LlamaCache>) -> Result<Tensor> {
        let h = self.model.f_forward(input_ids, cache)?;
        self.head(&h)
    }

    /// The logits `(N, V)` of the last position only, as `generate` computes them
    /// (`logits_to_keep=1`): the head runs on one position instead of L. One new token
    /// of a model on block kernels takes the decoding step on plain buffers
    /// (`decode_step.rs`); everything else [`Self::f_forward_last_on`].
    pub fn f_forward_last(
        &self,
        input_ids: &Tensor,
        cache: Option<&mut LlamaCache>,
    ) -> Result<Tensor> {
        match cache {
            // One token on block kernels: the step on plain buffers (decode_step.rs).
            Some(c) if input_ids.size() == [1, 1] && self.step_applies(1, &[c]) => {
                let h = self.f_step(&input_ids.f_view([1])?, &mut [c])?; // (1, E)
                self.head(&h)
            }
            cache => self.f_forward_last_on(input_ids, cache),
        }
    }

    /// [`Self::f_forward_last`] on the libtorch path, the math path of the decoding
    /// step (`decode_step.rs`).
    pub fn f_forward_last_on(
        &self,
        input_ids: &Tensor,
        cache: Option<&mut LlamaCache>,
    ) -> Result<Tensor> {
        let h = self.model.f_forward(input_ids, cache)?;
        let last = h.f_select(1, h.size()[1] - 1)?; // (N, E)
        self.head(&last)
    }

    /// The logits `(N, V)` of one new token for each of N sequences, each after its
    /// own cache: `input_ids` `(N)` and `caches` as [`LlamaModel::f_forward_ragged`].
    pub fn f_forward_ragged(
        &self,
        input_ids: &Tensor,
        caches: &mut [&mut LlamaCache],
    ) -> Result<Tensor> {
        let h = self.model.f_forward_ragged(input_ids, caches)?; // (N, E)
        self.head(&h)
    }

    /// The logits `(*, V)` of hidden states `(*, E)`: the quantised head if there is
    /// one, else `F.linear` with the float head (a few float32 rows on the CPU through
    /// the crate's matrix-vector kernel, [`f_decode_linear`]).
    /// `final_logit_softcapping` (Gemma 2) then caps them: `c * tanh(z / c)`.
    pub(crate) fn head(&self, h: &Tensor) -> Result<Tensor> {
        let logits = match &self.quantized_head {
            Some(head) => head.f_forward(h)?,
            None => f_decode_linear(h, self.lm_head_weight(), None)?,
        };
        match self.config.final_logit_softcapping {
            Some(c) => Ok(logits.f_div_scalar(c)?.f_tanh()?.f_mul_scalar(c)?),
            None => Ok(logits),
        }
    }
}
