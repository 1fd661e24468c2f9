//! One decoding step on plain buffers: one new token for each of N sequences
//! (`attn generate`'s one, or the continuous batcher's), on the CPU in float32, for a
//! model whose layer projections run on the crate's kernels (`--quant gguf`'s blocks,
//! or float32 weights on the matrix-vector kernel). Each layer runs on buffers
//! ([`crate::nn::token_ops`]) instead of libtorch's operators, each key and value
//! written straight into its sequence's cache; llama.cpp's graph works the same way.
//! The libtorch path ([`super::LlamaModel::f_forward`], `f_forward_ragged`) is the math
//! path beside it, and tests/decode_step.rs holds the two to each other. The
//! projections run on the N rows together and each row's arithmetic is the same
//! whatever N is, so a sequence decoded in a batch gets the tokens it gets alone.
//!
//! Each operator is the layer's own (the same norms, rotary tables from
//! `LlamaModel::f_embed`, GQA, window, soft-capping, activation); the norms' and
//! attention's sums run in their own order, so the logits differ from the libtorch
//! path's in float32's last bits: within 1e-4 for a float32 model (the whole-model
//! tolerance against transformers, whose tokens it keeps), and inside the 8-bit
//! activations' rounding for a block-quantised one.

use tch::{Device, Kind, Tensor};

use super::cache::{LlamaCache, TokenKv};
use super::config::Activation;
use super::layer::LlamaDecoderLayer;
use super::model::LlamaForCausalLM;
use crate::attention::Window;
use crate::error::{Error, Result};
use crate::nn::kernels::{self, MAX_F32_ROWS};
use crate::nn::token_ops::{self, AttendOptions, KvHead};
use crate::nn::{linear_slices, slices_apply, BatchPath, Projection, RmsNorm};

/// A step's buffers for N sequences, made once and reused by every layer; each holds
/// N rows.
struct Buffers {
    /// The residual stream `(N, E)`.
    x: Vec<f32>,
    /// A normed copy `(N, E)`.
    h: Vec<f32>,
    /// Queries `(N, H, D)`.
    q: Vec<f32>,
    /// The new keys and values `(N, Hkv, D)`.
    k: Vec<f32>,
    v: Vec<f32>,
    /// The heads' outputs `(N, H, D)`.
    attn: Vec<f32>,
    /// A projection back to `(N, E)`.
    out: Vec<f32>,
    /// The MLP's gate and up `(N, I)`.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Attention scores.
    scores: Vec<f32>,
}

/// Each sequence's rotary `cos`, `sin` `(N, D)`, for the full layers and the sliding
/// ones (Gemma 3's second base).
struct Tables {
    full: (Vec<f32>, Vec<f32>),
    sliding: Option<(Vec<f32>, Vec<f32>)>,
}

impl LlamaForCausalLM {
    /// Whether [`Self::f_step`] serves `n` new tokens, one for each of `caches`: a CPU
    /// float32 model whose every layer projection takes the crate's kernels for `n`
    /// rows (blocks on the integer kernels, [`BatchPath::for_rows`]; float32 weights
    /// autograd does not track, up to [`MAX_F32_ROWS`] rows), and caches of one
    /// sequence each.
    pub(super) fn step_applies(&self, n: usize, caches: &[&LlamaCache]) -> bool {
        let m = &self.model;
        let float = |t: &Tensor| t.kind() == Kind::Float && t.device() == Device::Cpu;
        let norms_ok = |n: &RmsNorm| float(&n.weight) && n.weight.is_contiguous();
        let on_kernels = |p: &&Projection| match p {
            Projection::Block(b) => BatchPath::for_rows(b.block(), n) == BatchPath::Kernels,
            Projection::Float(l) => n <= MAX_F32_ROWS && slices_apply(&l.weight, l.bias.as_ref()),
            _ => false,
        };
        n >= 1
            && caches.len() == n
            && caches.iter().all(|c| c.batch() == 1)
            && float(&m.embed_tokens)
            && norms_ok(&m.norm)
            && m.layers.iter().all(|l| {
                l.projections().iter().all(on_kernels) && layer_norms(l).iter().all(|n| norms_ok(n))
            })
    }

    /// The last hidden states `(N, E)` (after the final norm) of one new token for each
    /// of N sequences, `input_ids` `(N)`, token `i` placed after the positions
    /// `caches[i]` holds, which it then holds too: as [`super::LlamaModel::f_forward`]
    /// (N = 1) or `f_forward_ragged` on the libtorch path. Callers check
    /// [`Self::step_applies`] first.
    pub(super) fn f_step(
        &self,
        input_ids: &Tensor,
        caches: &mut [&mut LlamaCache],
    ) -> Result<Tensor> {
        let m = &self.model;
        let n = caches.len();
        let offsets: Vec<i64> = caches.iter().map(|c| c.len()).collect();
        for c in caches.iter() {
            m.check_cache(c, 1)?;
        }
        // The embeddings and the rotary tables as the libtorch path computes them.
        let (x, rope) = m.f_embed(&input_ids.f_view([n as i64, 1])?, &offsets)?; // (N, 1, E)
        let tables = Tables {
            full: table(&rope.full)?,
            sliding: rope.sliding.as_ref().map(table).transpose()?,
        };
        let mut b = Buffers::new(&self.config, n, Vec::<f32>::try_from(&x.f_view([-1])?)?);
        for (i, layer) in m.layers.iter().enumerate() {
            let rope = match (&tables.sliding, layer.sliding) {
                (Some(t), true) => (&t.0[..], &t.1[..]),
                _ => (&tables.full.0[..], &tables.full.1[..]),
            };
            layer_step((layer, i), &mut b, rope, caches)?;
        }
        for c in caches.iter_mut() {
            c.advance(1);
        }
        norm_into(&m.norm, &b.x, &mut b.h);
        Ok(Tensor::f_from_slice(&b.h)?.f_view([n as i64, -1])?) // (N, E)
    }
}

impl Buffers {
    fn new(c: &super::LlamaConfig, n: usize, x: Vec<f32>) -> Self {
        let (d, i) = (c.head_dim as usize, c.intermediate_size as usize);
        let (h, hkv) = (
            c.num_attention_heads as usize,
            c.num_key_value_heads as usize,
        );
        Self {
            h: vec![0.0; x.len()],
            q: vec![0.0; n * h * d],
            k: vec![0.0; n * hkv * d],
            v: vec![0.0; n * hkv * d],
            attn: vec![0.0; n * h * d],
            out: vec![0.0; x.len()],
            gate: vec![0.0; n * i],
            up: vec![0.0; n * i],
            scores: Vec::new(),
            x,
        }
    }
}

/// A rotary table `(N, 1, D)` as floats `(N, D)`.
fn table((cos, sin): &(Tensor, Tensor)) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((
        Vec::<f32>::try_from(&cos.f_view([-1])?)?,
        Vec::<f32>::try_from(&sin.f_view([-1])?)?,
    ))
}

/// Every norm of `layer` (whose weights the step reads in place).
fn layer_norms(layer: &LlamaDecoderLayer) -> Vec<&RmsNorm> {
    let mut norms = vec![&layer.input_layernorm, &layer.post_attention_layernorm];
    if let Some((q, k)) = &layer.self_attn.qk_norm {
        norms.extend([q, k]);
    }
    if let Some((pre, post)) = &layer.feedforward_norms {
        norms.extend([pre, post]);
    }
    norms
}

/// `norm`'s weight as floats. The weights are parameters no one writes during a step.
fn weight(norm: &RmsNorm) -> &[f32] {
    let n = norm.weight.numel();
    // SAFETY: `step_applies` checked a contiguous CPU float32 weight of `n` elements,
    // which lives as long as `norm` and is not written while it is borrowed.
    unsafe { std::slice::from_raw_parts(norm.weight.data_ptr() as *const f32, n) }
}

fn norm_into(norm: &RmsNorm, x: &[f32], out: &mut [f32]) {
    token_ops::rms_norm(x, weight(norm), norm.unit_offset, norm.eps, out);
}

/// `y = proj(x)` on the kernels.
fn project(proj: &Projection, x: &[f32], y: &mut [f32]) -> Result<()> {
    match proj {
        Projection::Block(b) => b.forward_slices(x, y),
        Projection::Float(l) => linear_slices(&l.weight, l.bias.as_ref(), x, y),
        _ => Err(Error::invalid(
            "projection",
            "blocks or float32 (step_applies checks)",
        )),
    }
}

/// Layer `index` on the buffers: `b.x` in, `b.x` out, as
/// [`LlamaDecoderLayer::f_forward`] (N = 1) or `f_forward_ragged`.
fn layer_step(
    (layer, index): (&LlamaDecoderLayer, usize),
    b: &mut Buffers,
    rope: (&[f32], &[f32]),
    caches: &mut [&mut LlamaCache],
) -> Result<()> {
    norm_into(&layer.input_layernorm, &b.x, &mut b.h);
    attention_step((layer, index), b, rope, caches)?; // b.out: (N, E)
    let Some((pre_ff, post_ff)) = &layer.feedforward_norms else {
        token_ops::add_in_place(&mut b.x, &b.out);
        norm_into(&layer.post_attention_layernorm, &b.x, &mut b.h);
        mlp_step(layer, b)?;
        token_ops::add_in_place(&mut b.x, &b.out);
        return Ok(());
    };
    // Gemma's sandwich: each output normed before it joins the residual stream.
    norm_into(&layer.post_attention_layernorm, &b.out, &mut b.h);
    token_ops::add_in_place(&mut b.x, &b.h);
    norm_into(pre_ff, &b.x, &mut b.h);
    mlp_step(layer, b)?;
    norm_into(post_ff, &b.out, &mut b.h);
    token_ops::add_in_place(&mut b.x, &b.h);
    Ok(())
}

/// The attention of the normed `b.h` into `b.out` `(N, E)`: the N rows' projections
/// together, then each row's rotation, key and value written into its own cache (layer
/// `index`) and attention over that cache; `rope` each row's `(cos, sin)` `(N, D)`.
fn attention_step(
    (layer, index): (&LlamaDecoderLayer, usize),
    b: &mut Buffers,
    (cos, sin): (&[f32], &[f32]),
    caches: &mut [&mut LlamaCache],
) -> Result<()> {
    let a = &layer.self_attn;
    let d = a.head_dim as usize;
    project(&a.q_proj, &b.h, &mut b.q)?;
    project(&a.k_proj, &b.h, &mut b.k)?;
    project(&a.v_proj, &b.h, &mut b.v)?;
    if let Some((q_norm, k_norm)) = &a.qk_norm {
        token_ops::rms_norm_in_place(&mut b.q, weight(q_norm), q_norm.unit_offset, q_norm.eps);
        token_ops::rms_norm_in_place(&mut b.k, weight(k_norm), k_norm.unit_offset, k_norm.eps);
    }
    let n = caches.len();
    let (qr, kr) = (b.q.len() / n, b.k.len() / n); // H * D, Hkv * D
    let options = AttendOptions {
        scale: a.scale.unwrap_or((d as f64).powf(-0.5)) as f32,
        softcap: a.softcap.map(|c| c as f32),
    };
    for (r, cache) in caches.iter_mut().enumerate() {
        let (cos, sin) = (&cos[r * d..(r + 1) * d], &sin[r * d..(r + 1) * d]);
        let q = &mut b.q[r * qr..(r + 1) * qr];
        let k = &mut b.k[r * kr..(r + 1) * kr];
        token_ops::rotate(q, cos, sin);
        token_ops::rotate(k, cos, sin);
        let kv = cache.token_kv(index).ok_or_else(|| {
            Error::invalid("caches", "one sequence each, CPU float32 buffers with room")
        })?;
        let heads = write_and_read(kv, k, &b.v[r * kr..(r + 1) * kr], d, a.window);
        let out = &mut b.attn[r * qr..(r + 1) * qr];
        attend_on_threads(q, &heads, d, options, out, &mut b.scores)?;
    }
    project(&a.o_proj, &b.attn, &mut b.out)
}

/// [`token_ops::attend`], its key/value heads shared out over the kernels' threads
/// when there are several of both (each head's arithmetic the same wherever it runs).
fn attend_on_threads(
    q: &[f32],
    heads: &[KvHead<'_>],
    d: usize,
    options: AttendOptions,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) -> Result<()> {
    let threads = kernels::threads().min(heads.len());
    if threads < 2 {
        return token_ops::attend(q, heads, d, options, out, scores);
    }
    let per_head = q.len() / heads.len(); // G * D
    let parts = kernels::map_on_pool(threads, heads.len(), |g| -> Result<Vec<f32>> {
        let mut y = vec![0f32; per_head];
        let qg = &q[g * per_head..(g + 1) * per_head];
        token_ops::attend(qg, &heads[g..g + 1], d, options, &mut y, &mut Vec::new())?;
        Ok(y)
    });
    for (y, part) in out.chunks_exact_mut(per_head).zip(parts) {
        y.copy_from_slice(&part?);
    }
    Ok(())
}

/// Writes one position's key and value `(Hkv, D)` at `kv.slot` and returns each
/// key/value head's rows the new query sees: a rolling layer's whole buffer (all within
/// its window), else the positions from the window's start (every one without).
fn write_and_read<'a>(
    kv: TokenKv<'a>,
    k: &[f32],
    v: &[f32],
    d: usize,
    window: Option<Window>,
) -> Vec<KvHead<'a>> {
    let TokenKv {
        keys,
        values,
        slots,
        slot,
        filled,
        rolling,
    } = kv;
    let head_len = slots * d;
    for (g, (k, v)) in k.chunks_exact(d).zip(v.chunks_exact(d)).enumerate() {
        let at = g * head_len + slot * d;
        keys[at..at + d].copy_from_slice(k);
        values[at..at + d].copy_from_slice(v);
    }
    let first = match window {
        Some(w) if !rolling && w.left >= 0 => filled.saturating_sub(w.left as usize + 1),
        _ => 0,
    };
    let (keys, values) = (&*keys, &*values);
    (0..keys.len() / head_len)
        .map(|g| {
            let rows = g * head_len + first * d..g * head_len + filled * d;
            KvHead {
                keys: &keys[rows.clone()],
                values: &values[rows],
            }
        })
        .collect()
}

/// The gated MLP of the normed `b.h` into `b.out` `(N, E)`.
fn mlp_step(layer: &LlamaDecoderLayer, b: &mut Buffers) -> Result<()> {
    let mlp = &layer.mlp;
    project(&mlp.gate_proj, &b.h, &mut b.gate)?;
    project(&mlp.up_proj, &b.h, &mut b.up)?;
    let i = layer.mlp.gate_proj.out_features() as usize;
    for row in b.gate.chunks_exact_mut(i) {
        activate(mlp.act, row)?;
    }
    token_ops::mul_in_place(&mut b.gate, &b.up);
    project(&mlp.down_proj, &b.gate, &mut b.out)
}

/// `act` in place on one row, by libtorch's own vectorised kernel (one row at a time, so
/// that a row's elements meet the same vector lanes and tail whatever N is).
fn activate(act: Activation, row: &mut [f32]) -> Result<()> {
    // SAFETY: `row` is a live float32 buffer of `len` elements, borrowed mutably here
    // and not touched otherwise until the tensor viewing it is dropped below.
    let mut t = unsafe {
        Tensor::from_blob(
            row.as_mut_ptr() as *const u8,
            &[row.len() as i64],
            &[1],
            Kind::Float,
            Device::Cpu,
        )
    };
    let _ = match act {
        Activation::Silu => t.f_silu_()?,
        Activation::GeluTanh => t.f_gelu_("tanh")?,
    };
    Ok(())
}
