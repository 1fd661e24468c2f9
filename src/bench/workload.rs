//! The module, inputs and one timed step of a [`BenchConfig`]: what PyTorch users write,
//! mirrored in scripts/bench_torch.py — the lecture's `Head` and `MultiHeadAttention`,
//! nanoGPT's `CausalSelfAttention`, `nn.MultiheadAttention(batch_first=True)` called
//! with the causal mask, `is_causal=True` and `need_weights=False`, and
//! `F.scaled_dot_product_attention(q, k, v, is_causal=True)`.

use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::config::{BenchConfig, Mode};
use crate::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use crate::attention::kv_cache::KvCache;
use crate::attention::mask::Mask;
use crate::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use crate::error::{Error, Result};
use crate::models::lecture::{Head, HeadConfig};
use crate::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use crate::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

/// A ready-to-time step. Grad mode is the caller's: the runner turns it off except for
/// [`Mode::Backward`].
pub struct Workload {
    step: Box<dyn FnMut() -> Result<()>>,
    device: Device,
}

impl Workload {
    /// Runs one step and waits for the device to finish it.
    pub fn step(&mut self) -> Result<()> {
        (self.step)()?;
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
        Ok(())
    }
}

/// A forward pass `train -> output` over inputs built once.
type Forward = Box<dyn Fn(bool) -> Result<Tensor>>;

/// Builds the module (seeded, PyTorch's init) and its inputs for `config`.
pub fn prepare(config: &BenchConfig) -> Result<Workload> {
    config.validate()?;
    tch::manual_seed(0);
    let (b, t, c, nh, hs) = (
        config.batch,
        config.seq,
        config.embd,
        config.heads,
        config.head_size,
    );
    let opts = (config.kind, config.device);
    let backward = config.mode == Mode::Backward;
    let mut vs = VarStore::new(config.device);
    let input = |shape: &[i64]| -> Result<Tensor> {
        Ok(Tensor::f_randn(shape, opts)?.f_set_requires_grad(backward)?)
    };
    let forward: Forward = match config.module.as_str() {
        "head" => {
            let m = Head::new(vs.root(), HeadConfig::new(c, hs, t))?;
            let x = input(&[b, t, c])?;
            Box::new(move |train| m.f_forward_t(&x, train))
        }
        "multi_head" => {
            let m = MultiHeadAttention::new(vs.root(), MultiHeadConfig::new(c, nh, hs, t))?;
            let x = input(&[b, t, c])?;
            Box::new(move |train| m.f_forward_t(&x, train))
        }
        "causal_self_attention" => {
            let m = CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(c, nh, t))?;
            if config.mode == Mode::Decode {
                vs.set_kind(config.kind);
                return decode(m, config);
            }
            let x = input(&[b, t, c])?;
            Box::new(move |train| m.f_forward_t(&x, train))
        }
        "multihead_attention" => {
            let cfg = MultiheadAttentionConfig::new(c, nh).with_batch_first(true);
            let m = MultiheadAttention::new(vs.root(), cfg)?;
            let x = input(&[b, t, c])?;
            // nn.Transformer.generate_square_subsequent_mask(T): 0 on and below the
            // diagonal, -inf above; is_causal tells the module it is causal.
            let future = Tensor::f_ones([t, t], (tch::Kind::Bool, config.device))?.f_triu(1)?;
            let bias = Tensor::f_zeros([t, t], opts)?.f_masked_fill(&future, f64::NEG_INFINITY)?;
            Box::new(move |train| {
                let options = MhaOptions {
                    attn_mask: Some(Mask::Bias(bias.shallow_clone())),
                    need_weights: false,
                    is_causal: true,
                    ..MhaOptions::default()
                };
                Ok(m.f_forward_t(&x, &x, &x, &options, train)?.0)
            })
        }
        "sdpa" => {
            let (q, k, v) = (
                input(&[b, nh, t, hs])?,
                input(&[b, nh, t, hs])?,
                input(&[b, nh, t, hs])?,
            );
            Box::new(move |_train| {
                let options = SdpaOptions {
                    is_causal: true,
                    ..SdpaOptions::default()
                };
                scaled_dot_product_attention(&q, &k, &v, &options)
            })
        }
        other => return Err(Error::config("module", format!("unknown module {other:?}"))),
    };
    // Parameters are drawn in float32 as PyTorch draws them, then cast, like `.to(dtype)`.
    vs.set_kind(config.kind);
    let step: Box<dyn FnMut() -> Result<()>> = if backward {
        Box::new(move || {
            // Train mode (dropout 0, as the modules default), then a scalar loss.
            forward(true)?.f_sum(None::<tch::Kind>)?.f_backward()?;
            Ok(())
        })
    } else {
        Box::new(move || forward(false).map(drop))
    };
    Ok(Workload {
        step,
        device: config.device,
    })
}

/// One new token attended to `seq - 1` cached ones. Every step starts from the same
/// cache: the step appends by concatenation into new tensors, so a shallow copy of the
/// prefilled cache is enough and costs nothing.
fn decode(m: CausalSelfAttention, config: &BenchConfig) -> Result<Workload> {
    let (b, t, c) = (config.batch, config.seq, config.embd);
    let opts = (config.kind, config.device);
    let mut prefilled = KvCache::new();
    let prefix = Tensor::f_randn([b, t - 1, c], opts)?;
    let _prefill = tch::no_grad(|| m.f_forward_cached(&prefix, &mut prefilled))?;
    let x = Tensor::f_randn([b, 1, c], opts)?;
    Ok(Workload {
        step: Box::new(move || {
            let mut cache = prefilled.shallow_clone();
            m.f_forward_cached(&x, &mut cache).map(drop)
        }),
        device: config.device,
    })
}
