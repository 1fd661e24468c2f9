//! Incremental decoding with a KV cache equals one forward pass over the whole sequence:
//! a prompt, then token by token (or a chunk of several tokens, where a top-left causal
//! mask would be wrong), against the module's own `f_forward_t` in eval mode. Bad steps
//! are typed errors that leave the cache as it was.
//!
//! Tolerances are `torch.testing.assert_close`'s float32 defaults; every test seeds
//! libtorch's generator.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::Backend;
use tch_attention::attention::kv_cache::KvCache;
use tch_attention::attention::mask::Mask;
use tch_attention::attention::multihead_attention::{
    MhaOptions, MultiheadAttention, MultiheadAttentionConfig,
};
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
use tch_attention::Error;

/// `torch.testing.assert_close` defaults for float32.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

fn randn(shape: &[i64]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

/// Asserts `|actual - expected| <= ATOL + RTOL * |expected|` everywhere; returns the
/// largest absolute difference.
fn assert_close(actual: &Tensor, expected: &Tensor, what: &str) -> f64 {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let diff = (actual - expected).abs();
    let bound = expected.abs() * RTOL + ATOL;
    let excess = (&diff - &bound).max().double_value(&[]);
    let max_abs = diff.max().double_value(&[]);
    assert!(
        excess <= 0.0,
        "{what}: max abs diff {max_abs:e} beyond tolerance"
    );
    eprintln!("{what}: max abs diff {max_abs:e}");
    max_abs
}

/// Sequence lengths fed one call at a time: the prompt, then the rest as `steps`.
fn pieces(prompt: i64, steps: &[i64]) -> Vec<i64> {
    std::iter::once(prompt)
        .chain(steps.iter().copied())
        .collect()
}

// ---- CausalSelfAttention ----

const C: i64 = 32;
const NH: i64 = 4;
const BLOCK: i64 = 12;

fn csa(seed: i64) -> (VarStore, CausalSelfAttention) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let m = CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(C, NH, BLOCK))
        .expect("valid config");
    (vs, m)
}

/// Feeds `x (B, T, C)` in pieces of the given lengths; returns the outputs side by side.
fn csa_cached(m: &CausalSelfAttention, x: &Tensor, pieces: &[i64]) -> (Tensor, KvCache) {
    let mut cache = KvCache::new();
    let mut outs = Vec::new();
    let mut start = 0;
    for &len in pieces {
        outs.push(
            m.f_forward_cached(&x.narrow(1, start, len), &mut cache)
                .expect("cached step"),
        );
        start += len;
        assert_eq!(cache.len(), start);
    }
    (Tensor::cat(&outs, 1), cache)
}

#[test]
fn csa_prompt_then_tokens_matches_full_recompute() {
    let (_vs, mut m) = csa(0);
    let (b, t) = (3, 9);
    let x = randn(&[b, t, C]);
    for backend in [Backend::Fused, Backend::Math] {
        m.backend = backend;
        let full = m.f_forward_t(&x, false).unwrap();
        for prompt in [1, 3, 5] {
            let steps = vec![1; (t - prompt) as usize];
            let (cached, cache) = csa_cached(&m, &x, &pieces(prompt, &steps));
            assert_close(&cached, &full, &format!("csa {backend:?} prompt {prompt}"));
            assert_eq!(cache.keys().unwrap().size(), [b, NH, t, C / NH]);
            assert_eq!(cache.batch_size(), Some(b));
        }
    }
}

#[test]
fn csa_chunk_after_prompt_matches_full_recompute() {
    // A chunk of T_new > 1 after a prompt is where a top-left causal mask goes wrong.
    let (_vs, m) = csa(1);
    let x = randn(&[2, 10, C]);
    let full = m.f_forward_t(&x, false).unwrap();
    for lens in [[3, 4, 1, 2], [1, 5, 3, 1], [5, 2, 2, 1]] {
        let (cached, _) = csa_cached(&m, &x, &lens);
        assert_close(&cached, &full, &format!("csa chunks {lens:?}"));
    }
}

#[test]
fn csa_exceeding_block_size_is_an_error() {
    let (_vs, m) = csa(2);
    let x = randn(&[2, BLOCK, C]);
    let mut cache = KvCache::new();
    let _ = m.f_forward_cached(&x, &mut cache).unwrap();
    assert_eq!(cache.len(), BLOCK);
    let e = m
        .f_forward_cached(&randn(&[2, 1, C]), &mut cache)
        .expect_err("past block_size");
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("x: {BLOCK} cached + 1 new tokens exceed block_size = {BLOCK}")
    );
    assert_eq!(
        cache.len(),
        BLOCK,
        "a failed step leaves the cache unchanged"
    );

    // Part way: a chunk that would cross block_size.
    let mut cache = KvCache::new();
    let _ = m
        .f_forward_cached(&x.narrow(1, 0, BLOCK - 2), &mut cache)
        .unwrap();
    let e = m
        .f_forward_cached(&randn(&[2, 3, C]), &mut cache)
        .expect_err("past block_size");
    assert!(matches!(e, Error::Invalid { .. }), "{e}");

    // A prompt longer than block_size on its own.
    let e = m
        .f_forward_cached(&randn(&[2, BLOCK + 1, C]), &mut KvCache::new())
        .expect_err("prompt past block_size");
    assert!(matches!(e, Error::Shape { .. }), "{e}");

    // reset() starts over.
    cache.reset();
    assert!(cache.is_empty());
    assert_eq!(cache.len(), 0);
    let _ = m.f_forward_cached(&x, &mut cache).unwrap();
}

#[test]
fn csa_bad_steps_are_typed_errors() {
    let (_vs, m) = csa(3);
    let mut cache = KvCache::new();
    let _ = m.f_forward_cached(&randn(&[3, 2, C]), &mut cache).unwrap();

    let e = m
        .f_forward_cached(&randn(&[2, 1, C]), &mut cache)
        .expect_err("batch mismatch");
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("batch size 3 like the cache"), "{e}");

    let e = m
        .f_forward_cached(&randn(&[3, 1, C + 1]), &mut cache)
        .expect_err("wrong width");
    assert!(matches!(e, Error::Shape { .. }), "{e}");

    let e = m
        .f_forward_cached(&randn(&[3, 1, C]).to_kind(Kind::Double), &mut cache)
        .expect_err("wrong dtype");
    assert!(matches!(e, Error::Dtype { .. }), "{e}");

    let e = m
        .f_forward_cached(&randn(&[3, C]), &mut cache)
        .expect_err("2-D");
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert_eq!(cache.len(), 2, "failed steps leave the cache unchanged");

    // A cache filled by a layer with other heads.
    tch::manual_seed(4);
    let vs = VarStore::new(Device::Cpu);
    let other =
        CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(C, 2, BLOCK)).unwrap();
    let e = other
        .f_forward_cached(&randn(&[3, 1, C]), &mut cache)
        .expect_err("other layer");
    assert!(matches!(e, Error::Invalid { .. }), "{e}");

    // A cache of another dtype.
    let mut vs = VarStore::new(Device::Cpu);
    let double =
        CausalSelfAttention::new(vs.root(), CausalSelfAttentionConfig::new(C, NH, BLOCK)).unwrap();
    vs.double();
    let e = double
        .f_forward_cached(&randn(&[3, 1, C]).to_kind(Kind::Double), &mut cache)
        .expect_err("cache dtype");
    assert!(
        matches!(&e, Error::Dtype { arg, .. } if arg == "cache"),
        "{e}"
    );
}

// ---- MultiheadAttention ----

const E: i64 = 16;
const H: i64 = 4;

fn mha(seed: i64, config: MultiheadAttentionConfig) -> (VarStore, MultiheadAttention) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let m = MultiheadAttention::new(vs.root(), config).expect("valid config");
    // PyTorch starts both biases at zero; nonzero ones exercise them too.
    tch::no_grad(|| {
        for b in [&m.in_proj_bias, &m.out_proj.bias].into_iter().flatten() {
            let mut b = b.shallow_clone();
            b.copy_(&randn(&b.size()));
        }
    });
    (vs, m)
}

/// The whole sequence at once; `causal` adds the causal block-mask `(T, T)`.
fn mha_full(m: &MultiheadAttention, q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Tensor {
    let seq = if m.config.batch_first { 1 } else { 0 };
    let t = q.size()[seq];
    let attn_mask = causal.then(|| {
        let block = Tensor::ones([t, t], (Kind::Bool, Device::Cpu)).triu(1);
        Mask::block(block).unwrap()
    });
    let options = MhaOptions {
        attn_mask,
        need_weights: false,
        ..MhaOptions::default()
    };
    m.f_forward_t(q, k, v, &options, false).unwrap().0
}

/// Feeds the sequences in pieces of the given lengths along the module's sequence dim.
fn mha_cached(
    m: &MultiheadAttention,
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    pieces: &[i64],
    causal: bool,
) -> Tensor {
    let seq = if m.config.batch_first { 1 } else { 0 };
    let mut cache = KvCache::new();
    let mut outs = Vec::new();
    let mut start = 0;
    for &len in pieces {
        let part = |t: &Tensor| t.narrow(seq, start, len);
        outs.push(
            m.f_forward_cached(&part(q), &part(k), &part(v), &mut cache, causal)
                .expect("cached step"),
        );
        start += len;
        assert_eq!(cache.len(), start);
    }
    Tensor::cat(&outs, seq)
}

/// Inputs `(T, N, width)` or `(N, T, width)`.
fn mha_input(m: &MultiheadAttention, n: i64, t: i64, width: i64) -> Tensor {
    if m.config.batch_first {
        randn(&[n, t, width])
    } else {
        randn(&[t, n, width])
    }
}

#[test]
fn mha_prompt_then_tokens_matches_full_recompute() {
    let (n, t) = (3, 9);
    for batch_first in [false, true] {
        let (_vs, m) = mha(
            10,
            MultiheadAttentionConfig::new(E, H).with_batch_first(batch_first),
        );
        let x = mha_input(&m, n, t, E);
        let full = mha_full(&m, &x, &x, &x, true);
        for prompt in [1, 3, 5] {
            let steps = vec![1; (t - prompt) as usize];
            let cached = mha_cached(&m, (&x, &x, &x), &pieces(prompt, &steps), true);
            let what = format!("mha batch_first={batch_first} prompt {prompt}");
            assert_close(&cached, &full, &what);
        }
        // Chunks of several new tokens after the prompt.
        for lens in [[3, 4, 1, 1], [1, 5, 2, 1]] {
            let cached = mha_cached(&m, (&x, &x, &x), &lens, true);
            let what = format!("mha batch_first={batch_first} chunks {lens:?}");
            assert_close(&cached, &full, &what);
        }
    }
}

#[test]
fn mha_kdim_vdim_and_non_causal() {
    let (n, t) = (2, 8);
    for batch_first in [false, true] {
        let config = MultiheadAttentionConfig::new(E, H)
            .with_kdim(6)
            .with_vdim(10)
            .with_batch_first(batch_first);
        let (_vs, m) = mha(11, config);
        let (q, k, v) = (
            mha_input(&m, n, t, E),
            mha_input(&m, n, t, 6),
            mha_input(&m, n, t, 10),
        );
        let full = mha_full(&m, &q, &k, &v, true);
        let cached = mha_cached(&m, (&q, &k, &v), &[3, 1, 3, 1], true);
        assert_close(
            &cached,
            &full,
            &format!("mha kdim/vdim batch_first={batch_first}"),
        );

        // Without the causal mask the last chunk sees every key, as the full pass does.
        let full = mha_full(&m, &q, &k, &v, false);
        let cached = mha_cached(&m, (&q, &k, &v), &[5, 3], false);
        let seq = if batch_first { 1 } else { 0 };
        assert_close(
            &cached.narrow(seq, 5, 3),
            &full.narrow(seq, 5, 3),
            &format!("mha non-causal batch_first={batch_first}"),
        );
    }
}

#[test]
fn mha_bad_steps_are_typed_errors() {
    for batch_first in [false, true] {
        let (_vs, m) = mha(
            12,
            MultiheadAttentionConfig::new(E, H).with_batch_first(batch_first),
        );
        let mut cache = KvCache::new();
        let x = mha_input(&m, 3, 2, E);
        let _ = m.f_forward_cached(&x, &x, &x, &mut cache, true).unwrap();

        // Batch size differs from the cache.
        let y = mha_input(&m, 2, 1, E);
        let e = m
            .f_forward_cached(&y, &y, &y, &mut cache, true)
            .expect_err("batch mismatch");
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        assert!(e.to_string().contains("batch size 3 like the cache"), "{e}");

        // Key of another length than the query.
        let (q, kv) = (mha_input(&m, 3, 1, E), mha_input(&m, 3, 2, E));
        let e = m
            .f_forward_cached(&q, &kv, &kv, &mut cache, true)
            .expect_err("length mismatch");
        assert!(
            matches!(&e, Error::Shape { arg, .. } if arg == "key"),
            "{e}"
        );

        // Unbatched input, wrong width, wrong dtype.
        let e = m
            .f_forward_cached(
                &randn(&[1, E]),
                &randn(&[1, E]),
                &randn(&[1, E]),
                &mut cache,
                true,
            )
            .expect_err("unbatched");
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let w = mha_input(&m, 3, 1, E + 2);
        let e = m
            .f_forward_cached(&w, &w, &w, &mut cache, true)
            .expect_err("width");
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let d = mha_input(&m, 3, 1, E).to_kind(Kind::Double);
        let e = m
            .f_forward_cached(&d, &d, &d, &mut cache, true)
            .expect_err("dtype");
        assert!(matches!(e, Error::Dtype { .. }), "{e}");
        assert_eq!(cache.len(), 2, "failed steps leave the cache unchanged");
    }
}

#[test]
fn mha_unsupported_configs_are_typed_errors() {
    for (config, flag) in [
        (
            MultiheadAttentionConfig::new(E, H).with_add_bias_kv(true),
            "add_bias_kv",
        ),
        (
            MultiheadAttentionConfig::new(E, H).with_add_zero_attn(true),
            "add_zero_attn",
        ),
    ] {
        let (_vs, m) = mha(13, config);
        let x = randn(&[2, 2, E]);
        let mut cache = KvCache::new();
        let e = m
            .f_forward_cached(&x, &x, &x, &mut cache, true)
            .expect_err("unsupported");
        assert!(
            matches!(&e, Error::Invalid { arg, .. } if arg == flag),
            "{e}"
        );
        assert!(cache.is_empty());
    }
}

/// A rolling cache for a sliding window of `w` keys, fed a prompt and then token by
/// token (or in chunks), gives the outputs of the whole sequence at once under the
/// windowed causal mask, and never holds more than `w - 1` positions.
#[test]
fn rolling_window_cache_matches_the_full_windowed_forward() {
    use tch_attention::attention::Window;
    let (n, t) = (2, 11);
    for batch_first in [false, true] {
        let (_vs, m) = mha(
            12,
            MultiheadAttentionConfig::new(E, H).with_batch_first(batch_first),
        );
        let x = mha_input(&m, n, t, E);
        for w in [1, 3, 4] {
            let window = Window::sliding(w).unwrap();
            // The full forward: a query sees itself and the w - 1 keys before it.
            let keep = window.keep(t, t, Device::Cpu).unwrap();
            let options = MhaOptions {
                attn_mask: Some(Mask::keep(keep).unwrap().flip_convention().unwrap()),
                need_weights: false,
                ..MhaOptions::default()
            };
            let full = m.f_forward_t(&x, &x, &x, &options, false).unwrap().0;
            let seq = if batch_first { 1 } else { 0 };
            for lens in [vec![1; t as usize], vec![4, 1, 1, 3, 1, 1]] {
                let mut cache = KvCache::rolling(window).unwrap();
                let (mut outs, mut start) = (Vec::new(), 0);
                for len in lens.iter().copied() {
                    let part = x.narrow(seq, start, len);
                    outs.push(
                        m.f_forward_cached(&part, &part, &part, &mut cache, true)
                            .expect("cached step"),
                    );
                    start += len;
                    assert!(cache.len() < w, "the cache keeps only the window");
                }
                let what = format!("rolling w={w} batch_first={batch_first} {lens:?}");
                assert_close(&Tensor::cat(&outs, seq), &full, &what);
            }
        }
    }
    assert!(KvCache::rolling(Window::new(-1, 0).unwrap()).is_err());
    assert!(KvCache::rolling(Window::new(2, 1).unwrap()).is_err());
}
