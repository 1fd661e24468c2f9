//! nanoGPT's `CausalSelfAttention` with the options of current models' attention
//! (sliding window, soft-capping, sinks, ALiBi, packed documents): decoding token by
//! token through a rolling-window KV cache equals the full windowed forward, the fused
//! and math paths agree, and bad options are typed errors. Parity with PyTorch is in the
//! fixture cases (`tests/cases.rs`, `causal_self_attention/{window,softcap,sinks,..}`).
//!
//! Tolerances are `torch.testing.assert_close`'s float32 defaults; every test seeds
//! libtorch's generator.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::attention::functional::Backend;
use tch_attention::attention::{KvCache, Window};
use tch_attention::checkpoint::{load_state_dict, StateDict};
use tch_attention::models::nanogpt::{CausalSelfAttention, CausalSelfAttentionConfig};
use tch_attention::Error;

/// `torch.testing.assert_close` defaults for float32.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

const C: i64 = 32;
const NH: i64 = 4;
const BLOCK: i64 = 16;

/// libtorch's default generator is one for the process and the tests run on threads:
/// every draw holds this lock, so that a block seeded twice with one seed gets the same
/// weights (tests compare such pairs) whatever the other tests draw meanwhile.
static RNG: Mutex<()> = Mutex::new(());

fn randn(shape: &[i64]) -> Tensor {
    let _draw = RNG.lock().unwrap_or_else(|e| e.into_inner());
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

/// Asserts `|actual - expected| <= ATOL + RTOL * |expected|` everywhere.
fn assert_close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.size(), expected.size(), "{what}: shapes");
    let diff = (actual - expected).abs();
    let excess = (&diff - (expected.abs() * RTOL + ATOL))
        .max()
        .double_value(&[]);
    let max_abs = diff.max().double_value(&[]);
    assert!(
        excess <= 0.0,
        "{what}: max abs diff {max_abs:e} beyond tolerance"
    );
}

/// The block for `config`, seeded, its sink logits (if any) drawn away from zero so
/// that they matter.
fn block(seed: i64, config: CausalSelfAttentionConfig) -> (VarStore, CausalSelfAttention) {
    let draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let m = CausalSelfAttention::new(vs.root(), config).expect("valid config");
    let sinks = Tensor::randn([NH], (Kind::Float, Device::Cpu));
    drop(draws);
    if let Some(s) = &m.sinks {
        tch::no_grad(|| s.shallow_clone().copy_(&sinks));
    }
    (vs, m)
}

/// Feeds `x (B, T, C)` into `cache` in pieces of the given lengths; returns the outputs
/// side by side and the most positions the cache held after any step.
fn decode(
    m: &CausalSelfAttention,
    x: &Tensor,
    pieces: &[i64],
    cache: &mut KvCache,
) -> (Tensor, i64) {
    let (mut outs, mut start, mut held) = (Vec::new(), 0, 0);
    for &len in pieces {
        let y = m
            .f_forward_cached(&x.narrow(1, start, len), cache)
            .expect("cached step");
        outs.push(y);
        start += len;
        held = held.max(cache.len());
    }
    (Tensor::cat(&outs, 1), held)
}

fn windowed_configs() -> Vec<(&'static str, CausalSelfAttentionConfig)> {
    let base = CausalSelfAttentionConfig::new(C, NH, BLOCK).with_sliding_window(4);
    vec![
        ("window", base),
        ("window + alibi", base.with_alibi(true)),
        ("window + softcap", base.with_softcap(1.5)),
        ("window + sinks", base.with_sinks(true)),
        (
            "window + alibi + softcap + sinks",
            base.with_alibi(true).with_softcap(2.0).with_sinks(true),
        ),
    ]
}

#[test]
fn rolling_window_decoding_token_by_token_equals_the_full_windowed_forward() {
    let (b, t) = (2, 13);
    for (i, (what, config)) in windowed_configs().into_iter().enumerate() {
        let (_vs, mut m) = block(i as i64, config);
        let x = randn(&[b, t, C]);
        for backend in [Backend::Fused, Backend::Math] {
            m.backend = backend;
            let full = m.f_forward_t(&x, false).unwrap();
            for pieces in [vec![1; t as usize], vec![3, 1, 1, 5, 1, 2], vec![6, 7]] {
                let mut cache = m.new_cache().unwrap();
                assert_eq!(cache.window(), Some(Window::sliding(4).unwrap()));
                let (cached, held) = decode(&m, &x, &pieces, &mut cache);
                assert_close(&cached, &full, &format!("{what} {backend:?} {pieces:?}"));
                // The rolling cache keeps only what the window still reaches: W - 1.
                assert_eq!(held, 3, "{what}: positions held");
                // A growing cache on the same block attends through the window too.
                let (grown, held) = decode(&m, &x, &pieces, &mut KvCache::new());
                assert_close(&grown, &full, &format!("{what} growing {pieces:?}"));
                assert_eq!(held, t);
            }
        }
    }
}

#[test]
fn the_window_changes_the_output_and_a_window_as_long_as_the_block_does_not() {
    let x = randn(&[2, 10, C]);
    let plain = CausalSelfAttentionConfig::new(C, NH, BLOCK);
    let (_a, m) = block(7, plain);
    let (_b, w) = block(7, plain.with_sliding_window(3));
    let (_c, wide) = block(7, plain.with_sliding_window(BLOCK));
    let y = m.f_forward_t(&x, false).unwrap();
    let yw = w.f_forward_t(&x, false).unwrap();
    assert_close(
        &wide.f_forward_t(&x, false).unwrap(),
        &y,
        "window = block_size",
    );
    // The first 3 tokens see the same keys; later ones lose the earliest.
    assert_close(&yw.narrow(1, 0, 3), &y.narrow(1, 0, 3), "inside the window");
    let later = (yw.narrow(1, 3, 7) - y.narrow(1, 3, 7)).abs().max();
    assert!(later.double_value(&[]) > 1e-3, "the window masked nothing");
}

#[test]
fn fused_and_math_paths_agree_for_every_option_and_documents() {
    let x = randn(&[2, 9, C]);
    let ids = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1, 1, 2, 2]);
    let per_row =
        Tensor::from_slice(&[0i64, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 2, 2, 2, 3, 3, 3]).view([2, 9]);
    for (i, (what, config)) in windowed_configs().into_iter().enumerate() {
        for config in [
            config,
            CausalSelfAttentionConfig {
                sliding_window: None,
                ..config
            },
        ] {
            let (_vs, mut m) = block(20 + i as i64, config);
            for documents in [None, Some(&ids), Some(&per_row)] {
                let run = |m: &CausalSelfAttention| match documents {
                    Some(d) => m.f_forward_documents_t(&x, d, false).unwrap(),
                    None => m.f_forward_t(&x, false).unwrap(),
                };
                m.backend = Backend::Fused;
                let fused = run(&m);
                m.backend = Backend::Math;
                let math = run(&m);
                let docs = documents.map(Tensor::size);
                assert_close(
                    &fused,
                    &math,
                    &format!("{what} {config:?} documents {docs:?}"),
                );
            }
        }
    }
}

#[test]
fn documents_keep_each_document_to_itself() {
    // The tokens of document 1 give the same outputs alone as packed after document 0.
    let (_vs, m) = block(
        30,
        CausalSelfAttentionConfig::new(C, NH, BLOCK).with_alibi(true),
    );
    let x = randn(&[1, 7, C]);
    let ids = Tensor::from_slice(&[0i64, 0, 0, 1, 1, 1, 1]);
    let packed = m.f_forward_documents_t(&x, &ids, false).unwrap();
    let alone = m.f_forward_t(&x.narrow(1, 3, 4), false).unwrap();
    assert_close(&packed.narrow(1, 3, 4), &alone, "document 1 alone");
}

#[test]
fn sinks_are_a_parameter_named_sinks() {
    let (vs, _m) = block(
        40,
        CausalSelfAttentionConfig::new(C, NH, BLOCK).with_sinks(true),
    );
    let vars = vs.variables();
    let sinks = vars.get("sinks").expect("a `sinks` variable");
    assert_eq!(sinks.size(), [NH]);
    assert!(sinks.requires_grad());
    let (vs, _m) = block(40, CausalSelfAttentionConfig::new(C, NH, BLOCK));
    assert!(!vs.variables().contains_key("sinks"));
}

/// The state_dict holds `sinks` too: a block with sinks saves and strictly loads them,
/// and one without refuses a state_dict that has them.
#[test]
fn sinks_are_in_the_state_dict() {
    let config = CausalSelfAttentionConfig::new(C, NH, BLOCK).with_sinks(true);
    let (_vs, from) = block(41, config);
    let tensors: BTreeMap<String, Tensor> = from.named_tensors().into_iter().collect();
    assert!(tensors.contains_key("sinks"));
    let (_vs, to) = block(42, config);
    load_state_dict(&to, &tensors, "test").unwrap();
    assert_close(
        to.sinks.as_ref().unwrap(),
        from.sinks.as_ref().unwrap(),
        "sinks",
    );
    let (_vs, plain) = block(43, CausalSelfAttentionConfig::new(C, NH, BLOCK));
    assert!(load_state_dict(&plain, &tensors, "test").is_err());
}

#[test]
fn bad_options_are_typed_errors() {
    let cfg = CausalSelfAttentionConfig::new(C, NH, BLOCK);
    let vs = VarStore::new(Device::Cpu);
    let invalid = |config: CausalSelfAttentionConfig, arg: &str| {
        let e = CausalSelfAttention::new(vs.root(), config).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { arg: a, .. } if a == arg),
            "{config:?}: {e}"
        );
    };
    invalid(cfg.with_sliding_window(0), "sliding_window");
    invalid(cfg.with_sliding_window(-2), "sliding_window");
    for cap in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        invalid(cfg.with_softcap(cap), "softcap");
    }

    let m = {
        let _draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
        CausalSelfAttention::new(vs.root() / "a", cfg).unwrap()
    };
    let e = m.with_alibi_slopes(randn(&[NH])).unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    let m = {
        let _draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
        CausalSelfAttention::new(vs.root() / "b", cfg.with_alibi(true)).unwrap()
    };
    let e = m.with_alibi_slopes(randn(&[NH + 1])).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");

    let m = {
        let _draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
        CausalSelfAttention::new(vs.root() / "c", cfg).unwrap()
    };
    let x = randn(&[2, 5, C]);
    for ids in [
        Tensor::from_slice(&[0i64, 0, 1, 1]),
        Tensor::zeros([3, 5], (Kind::Int64, Device::Cpu)),
    ] {
        let e = m.f_forward_documents_t(&x, &ids, false).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
    let e = m
        .f_forward_documents_t(&x, &Tensor::zeros([5], (Kind::Float, Device::Cpu)), false)
        .unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e}");
}

#[test]
fn a_cache_rolling_through_another_window_is_refused_and_left_unchanged() {
    let (_vs, m) = block(
        50,
        CausalSelfAttentionConfig::new(C, NH, BLOCK).with_sliding_window(4),
    );
    let mut cache = KvCache::rolling(Window::sliding(6).unwrap()).unwrap();
    let e = m
        .f_forward_cached(&randn(&[1, 2, C]), &mut cache)
        .unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { arg, .. } if arg == "cache"),
        "{e}"
    );
    assert!(cache.is_empty());
}

#[test]
fn a_block_without_a_window_decodes_through_its_rolling_cache_window() {
    let plain = CausalSelfAttentionConfig::new(C, NH, BLOCK);
    let (_a, m) = block(60, plain);
    let (_b, windowed) = block(60, plain.with_sliding_window(4));
    let x = randn(&[2, 9, C]);
    let full = windowed.f_forward_t(&x, false).unwrap();
    let mut cache = KvCache::rolling(Window::sliding(4).unwrap()).unwrap();
    let (cached, _) = decode(&m, &x, &[2, 1, 1, 3, 1, 1], &mut cache);
    assert_close(&cached, &full, "plain block, rolling cache");
}
