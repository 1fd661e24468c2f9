//! Criterion benches of the library's hot paths (`cargo bench`): the Head and lecture
//! MultiHeadAttention fast paths at the notebook's size, nn.MultiheadAttention's
//! self-attention path, nanoGPT's attention and the fused causal SDPA at a mid size, and
//! one KV-cache decoding step. One intra-op thread, eval mode, no grad, as `attn bench`.
//! For the comparison with PyTorch, see `make bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::{scaled_dot_product_attention, SdpaOptions};
use tch_attention::attention::kv_cache::KvCache;
use tch_attention::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use tch_attention::models::lecture::{Head, HeadConfig};
use tch_attention::models::lecture::{MultiHeadAttention, MultiHeadConfig};
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};

const F32: (Kind, Device) = (Kind::Float, Device::Cpu);

fn head(c: &mut Criterion) {
    let vs = VarStore::new(Device::Cpu);
    let h = Head::new(vs.root(), HeadConfig::new(32, 16, 8)).unwrap();
    let x = Tensor::randn([4, 8, 32], F32);
    let _guard = tch::no_grad_guard();
    c.bench_function("head forward eval B4 T8 C32 hs16 (fast path)", |b| {
        b.iter(|| h.f_forward_t(&x, false).unwrap())
    });
    c.bench_function("head forward B4 T8 C32 hs16 (lecture ops)", |b| {
        b.iter(|| h.f_forward_with_weights(&x, false).unwrap())
    });
}

fn multi_head(c: &mut Criterion) {
    let vs = VarStore::new(Device::Cpu);
    let m = MultiHeadAttention::new(vs.root(), MultiHeadConfig::new(32, 4, 8, 8)).unwrap();
    let x = Tensor::randn([4, 8, 32], F32);
    let _guard = tch::no_grad_guard();
    c.bench_function("multi_head forward eval B4 T8 C32 4x8 (heads fused)", |b| {
        b.iter(|| m.f_forward_t(&x, false).unwrap())
    });
}

fn multihead_attention(c: &mut Criterion) {
    let vs = VarStore::new(Device::Cpu);
    let cfg = MultiheadAttentionConfig::new(768, 12).with_batch_first(true);
    let m = MultiheadAttention::new(vs.root(), cfg).unwrap();
    let x = Tensor::randn([1, 128, 768], F32);
    let options = MhaOptions {
        need_weights: false,
        ..MhaOptions::default()
    };
    let _guard = tch::no_grad_guard();
    c.bench_function(
        "multihead_attention self-attention B1 T128 E768 nh12",
        |b| b.iter(|| m.f_forward_t(&x, &x, &x, &options, false).unwrap()),
    );
}

fn causal_self_attention(c: &mut Criterion) {
    let vs = VarStore::new(Device::Cpu);
    let m =
        CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(768, 12, 1024)).unwrap();
    let x = Tensor::randn([1, 128, 768], F32);
    let _guard = tch::no_grad_guard();
    c.bench_function("causal_self_attention forward B1 T128 C768 nh12", |b| {
        b.iter(|| m.f_forward_t(&x, false).unwrap())
    });
    let mut cache = KvCache::new();
    let prompt = Tensor::randn([1, 1023, 768], F32);
    let _prefill = m.f_forward_cached(&prompt, &mut cache).unwrap();
    let token = Tensor::randn([1, 1, 768], F32);
    c.bench_function("causal_self_attention decode step at context 1024", |b| {
        b.iter(|| {
            m.f_forward_cached(&token, &mut cache.shallow_clone())
                .unwrap()
        })
    });
}

fn sdpa(c: &mut Criterion) {
    let q = Tensor::randn([1, 12, 512, 64], F32);
    let options = SdpaOptions {
        is_causal: true,
        ..SdpaOptions::default()
    };
    let _guard = tch::no_grad_guard();
    c.bench_function("sdpa fused causal B1 nh12 T512 hs64", |b| {
        b.iter(|| scaled_dot_product_attention(&q, &q, &q, &options).unwrap())
    });
}

fn config() -> Criterion {
    tch::set_num_threads(1);
    Criterion::default().sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = head, multi_head, multihead_attention, causal_self_attention, sdpa
}
criterion_main!(benches);
