//! The module, inputs and one timed step of a [`BenchConfig`]: what PyTorch users write,
//! mirrored in scripts/bench_torch.py — the lecture's `Head` and `MultiHeadAttention`,
//! nanoGPT's `CausalSelfAttention`, `nn.MultiheadAttention(batch_first=True)` called
//! with the causal mask, `is_causal=True` and `need_weights=False`, and
//! `F.scaled_dot_product_attention(q, k, v, is_causal=True)` (with a sliding window, the
//! crate's `window` option against PyTorch's SDPA given the equivalent boolean mask).

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::config::{BenchConfig, BenchModule, Mode};
pub use super::step::Workload;
use crate::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use crate::attention::kv_cache::KvCache;
use crate::attention::mask::Mask;
use crate::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use crate::attention::Window;
use crate::error::Result;
use crate::models::lecture::{Head, HeadConfig};
use crate::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use crate::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
use crate::parity::ModuleKind;

/// A forward pass `train -> output` over inputs built once.
type Forward = Box<dyn Fn(bool) -> Result<Tensor>>;

/// Builds the module (seeded, PyTorch's init) and its inputs for `config`.
pub fn prepare(config: &BenchConfig) -> Result<Workload> {
    config.validate()?;
    tch::manual_seed(0);
    let module = match config.module {
        BenchModule::Attention(m) => m,
        BenchModule::Model(ref model) => return model.prepare(config),
    };
    let mut vs = VarStore::new(config.device);
    if config.mode == Mode::Decode {
        // `validate` allows decoding for causal_self_attention only.
        return decode(&mut vs, config);
    }
    let forward = match module {
        ModuleKind::Head => head(&vs, config)?,
        ModuleKind::MultiHead => multi_head(&vs, config)?,
        ModuleKind::CausalSelfAttention => causal_self_attention(&vs, config)?,
        ModuleKind::MultiheadAttention => multihead_attention(&vs, config)?,
        ModuleKind::Sdpa => sdpa(config)?,
    };
    // Parameters are drawn in float32 as PyTorch draws them, then cast, like `.to(dtype)`.
    vs.set_kind(config.kind);
    let step: Box<dyn FnMut() -> Result<()>> = if config.mode == Mode::Backward {
        Box::new(move || {
            // Train mode (dropout 0, as the modules default), then a scalar loss.
            forward(true)?.f_sum(None::<Kind>)?.f_backward()?;
            Ok(())
        })
    } else {
        Box::new(move || forward(false).map(drop))
    };
    Ok(Workload::new(step, config.device))
}

/// A random input of `shape`, requiring grad when the step has a backward pass.
fn input(config: &BenchConfig, shape: &[i64]) -> Result<Tensor> {
    let backward = config.mode == Mode::Backward;
    Ok(Tensor::f_randn(shape, (config.kind, config.device))?.f_set_requires_grad(backward)?)
}

fn head(vs: &VarStore, config: &BenchConfig) -> Result<Forward> {
    let (b, t, c, hs) = (config.batch, config.seq, config.embd, config.head_size);
    let m = Head::new(vs.root(), HeadConfig::new(c, hs, t))?;
    let x = input(config, &[b, t, c])?;
    Ok(Box::new(move |train| m.f_forward_t(&x, train)))
}

fn multi_head(vs: &VarStore, config: &BenchConfig) -> Result<Forward> {
    let (b, t, c) = (config.batch, config.seq, config.embd);
    let cfg = MultiHeadConfig::new(c, config.heads, config.head_size, t);
    let m = MultiHeadAttention::new(vs.root(), cfg)?;
    let x = input(config, &[b, t, c])?;
    Ok(Box::new(move |train| m.f_forward_t(&x, train)))
}

fn causal_self_attention(vs: &VarStore, config: &BenchConfig) -> Result<Forward> {
    let (b, t, c) = (config.batch, config.seq, config.embd);
    let m = CausalSelfAttention::new(
        vs.root(),
        CausalSelfAttentionConfig::new(c, config.heads, t),
    )?;
    let x = input(config, &[b, t, c])?;
    Ok(Box::new(move |train| m.f_forward_t(&x, train)))
}

fn multihead_attention(vs: &VarStore, config: &BenchConfig) -> Result<Forward> {
    let (b, t, c) = (config.batch, config.seq, config.embd);
    let cfg = MultiheadAttentionConfig::new(c, config.heads).with_batch_first(true);
    let m = MultiheadAttention::new(vs.root(), cfg)?;
    let x = input(config, &[b, t, c])?;
    // nn.Transformer.generate_square_subsequent_mask(T): 0 on and below the diagonal,
    // -inf above; is_causal tells the module it is causal.
    let future = Tensor::f_ones([t, t], (Kind::Bool, config.device))?.f_triu(1)?;
    let bias = Tensor::f_zeros([t, t], (config.kind, config.device))?
        .f_masked_fill(&future, f64::NEG_INFINITY)?;
    Ok(Box::new(move |train| {
        let options = MhaOptions {
            attn_mask: Some(Mask::Bias(bias.shallow_clone())),
            need_weights: false,
            is_causal: true,
            ..MhaOptions::default()
        };
        Ok(m.f_forward_t(&x, &x, &x, &options, train)?.0)
    }))
}

fn sdpa(config: &BenchConfig) -> Result<Forward> {
    let shape = [config.batch, config.heads, config.seq, config.head_size];
    let (q, k, v) = (
        input(config, &shape)?,
        input(config, &shape)?,
        input(config, &shape)?,
    );
    let window = config.window.map(Window::sliding).transpose()?;
    Ok(Box::new(move |_train| {
        let options = SdpaOptions {
            is_causal: true,
            window,
            ..SdpaOptions::default()
        };
        scaled_dot_product_attention(&q, &k, &v, &options)
    }))
}

/// One new token attended to `seq - 1` cached ones. Every step starts from the same
/// cache: the step appends by concatenation into new tensors, so a shallow copy of the
/// prefilled cache is enough and costs nothing.
fn decode(vs: &mut VarStore, config: &BenchConfig) -> Result<Workload> {
    let (b, t, c) = (config.batch, config.seq, config.embd);
    let m = CausalSelfAttention::new(
        vs.root(),
        CausalSelfAttentionConfig::new(c, config.heads, t),
    )?;
    vs.set_kind(config.kind);
    let opts = (config.kind, config.device);
    let mut prefilled = KvCache::new();
    let prefix = Tensor::f_randn([b, t - 1, c], opts)?;
    let _prefill = tch::no_grad(|| m.f_forward_cached(&prefix, &mut prefilled))?;
    let x = Tensor::f_randn([b, 1, c], opts)?;
    Ok(Workload::new(
        Box::new(move || {
            let mut cache = prefilled.shallow_clone();
            m.f_forward_cached(&x, &mut cache).map(drop)
        }),
        config.device,
    ))
}
