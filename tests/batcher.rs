//! Continuous batching (`generate::Batcher`) against the one-sequence loop
//! (`generate::generate`), which the Llama tests check against transformers: on the
//! tiny random Llama (tests/fixtures/llama/tiny, scripts/llama_reference.py --only
//! tiny, seed 0) and on a tiny random Gemma 3-shaped decoder (a sliding layer of
//! window 4 with its rolling cache, and a full layer; seed 0), sequences that join at
//! different steps, with prompts of different lengths, and leave early, get exactly the
//! tokens each gets alone; the ragged forward's logits are the per-sequence cached
//! forward's within float32's `assert_close` tolerances; a reused prompt prefix changes
//! no token; bad input is a typed error naming the argument.

mod common;

use common::ids;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::generate::{
    generate, Batcher, CausalLm, Decoding, FinishReason, GenerateOptions, SamplingConfig, SeqId,
};
use tch_attention::models::llama::{
    Activation, LayerType, LlamaCache, LlamaConfig, LlamaForCausalLM,
};
use tch_attention::parity::compare_tensors;

/// Held by whatever seeds or draws from libtorch's one default generator (a random
/// model's initialisation, a seeded sampler), which tests running in parallel share.
fn generator() -> MutexGuard<'static, ()> {
    static GENERATOR: Mutex<()> = Mutex::new(());
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny")
}

/// The tiny Llama of the fixtures (V = 96, 2 layers, 4 heads over 2 key/value heads).
fn llama() -> LlamaForCausalLM {
    LlamaForCausalLM::from_hf_dir(&tiny_dir(), Device::Cpu)
        .unwrap()
        .1
}

/// A tiny Gemma 3-shaped decoder, random (seed 0, std 0.5 so that logits are far
/// apart): a sliding layer of window `window`, rolling in the cache, and a full layer.
fn gemma(window: i64) -> LlamaForCausalLM {
    let config = LlamaConfig {
        vocab_size: 64,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        sliding_window: Some(window),
        architecture: "gemma3".into(),
        hidden_act: Activation::GeluTanh,
        norm_unit_offset: true,
        scale_embeddings: true,
        qk_norm: true,
        sandwich_norms: true,
        query_pre_attn_scalar: Some(8.0),
        layer_types: Some(vec![LayerType::Sliding, LayerType::Full]),
        rope_local_theta: Some(10_000.0),
        tie_word_embeddings: true,
        initializer_range: 0.5,
        ..LlamaConfig::default()
    };
    let _generator = generator();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    LlamaForCausalLM::new(vs.root(), config).unwrap()
}

/// Both models, named.
fn models() -> Vec<(&'static str, LlamaForCausalLM)> {
    vec![("llama", llama()), ("gemma", gemma(4))]
}

/// `torch.testing.assert_close(actual, expected)` with float32's default tolerances.
fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) {
    let check = compare_tensors(name, actual, expected).unwrap();
    assert!(
        check.failure.is_none(),
        "{name}: {:?} (max abs {:.3e})",
        check.failure,
        check.max_abs
    );
}

/// `generate`'s tokens for `prompt` alone.
fn alone(m: &LlamaForCausalLM, prompt: &[i64], options: &GenerateOptions) -> Vec<i64> {
    generate(m, prompt, options, |_| {}).unwrap().ids
}

/// A sequence of a schedule: joins before step `at`, leaves after `leave_after` of its
/// tokens if set.
struct Plan {
    at: usize,
    prompt: Vec<i64>,
    options: GenerateOptions,
    leave_after: Option<usize>,
}

/// Each plan's tokens and how it finished (`None`: it left), running `plans` through
/// `b` step by step.
fn run(b: &mut Batcher<LlamaForCausalLM>, plans: &[Plan]) -> Vec<(Vec<i64>, Option<FinishReason>)> {
    let mut ids: HashMap<SeqId, usize> = HashMap::new();
    let mut out = vec![(Vec::new(), None); plans.len()];
    let mut most = 0;
    for step in 0.. {
        for (i, p) in plans.iter().enumerate().filter(|(_, p)| p.at == step) {
            ids.insert(b.join(&p.prompt, &p.options).unwrap(), i);
        }
        if b.active() == 0 && plans.iter().all(|p| p.at <= step) {
            break;
        }
        most = most.max(b.active());
        for t in b.step().unwrap() {
            let i = ids[&t.id];
            out[i].0.push(t.token);
            out[i].1 = t.finished;
            assert_eq!(
                b.contains(t.id),
                t.finished.is_none(),
                "finished ones leave"
            );
            if plans[i].leave_after == Some(out[i].0.len()) && t.finished.is_none() {
                b.leave(t.id);
                assert!(!b.contains(t.id));
            }
        }
    }
    assert!(
        most > 2,
        "sequences decoded together (at most {most} at once)"
    );
    out
}

fn greedy(n: i64) -> GenerateOptions {
    GenerateOptions::greedy(n)
}

#[test]
fn sequences_joining_and_leaving_get_the_tokens_each_gets_alone() {
    for (name, m) in models() {
        // One with a stop token: the 4th token it generates alone.
        let stop_prompt = vec![3i64, 9, 27, 14];
        let stop_at = alone(&m, &stop_prompt, &greedy(8))[3];
        let with_eos = GenerateOptions {
            eos_token_ids: vec![stop_at],
            ..greedy(8)
        };
        let plans = [
            Plan {
                at: 0,
                prompt: vec![1, 17, 33, 5, 60, 21],
                options: greedy(12),
                leave_after: None,
            },
            Plan {
                at: 0,
                prompt: vec![7, 8, 9],
                options: greedy(10),
                leave_after: Some(4),
            },
            Plan {
                at: 2,
                prompt: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
                options: greedy(6),
                leave_after: None,
            },
            Plan {
                at: 3,
                prompt: vec![42],
                options: greedy(9),
                leave_after: None,
            },
            Plan {
                at: 5,
                prompt: stop_prompt.clone(),
                options: with_eos.clone(),
                leave_after: None,
            },
        ];
        let mut b = Batcher::new(m, 8, 64).unwrap();
        let got = run(&mut b, &plans);
        let m = b.model();
        for (i, (p, (tokens, finished))) in plans.iter().zip(&got).enumerate() {
            let want = alone(m, &p.prompt, &p.options);
            match p.leave_after {
                Some(k) => {
                    assert_eq!(tokens[..], want[..k], "{name}: sequence {i}, which left");
                    assert_eq!(*finished, None);
                }
                None => {
                    assert_eq!(*tokens, want, "{name}: sequence {i}");
                    let eos = p.options.eos_token_ids.contains(tokens.last().unwrap());
                    let reason = if eos {
                        FinishReason::Eos
                    } else {
                        FinishReason::Length
                    };
                    assert_eq!(*finished, Some(reason), "{name}: sequence {i}");
                }
            }
        }
        assert_eq!(
            got[4].1,
            Some(FinishReason::Eos),
            "{name}: the stop token ends it"
        );
        assert_eq!(b.active(), 0);
    }
}

/// A cache of one sequence holding `prompt`, and the prompt's last logits `(1, V)`.
fn prefilled(m: &LlamaForCausalLM, prompt: &[i64], capacity: i64) -> (LlamaCache, Tensor) {
    let mut cache = m.new_cache(1, capacity).unwrap();
    let ids = Tensor::from_slice(prompt).view([1, -1]);
    let logits = m.f_forward_last(&ids, Some(&mut cache)).unwrap();
    (cache, logits)
}

#[test]
fn the_ragged_step_gives_each_sequence_its_cached_forward_logits() {
    for (name, m) in models() {
        tch::no_grad(|| {
            // Lengths 1, 4 and 7 (the last past the window of 4: its sliding layer rolls).
            let prompts: [&[i64]; 3] = [&[5], &[1, 17, 33, 5], &[9, 8, 7, 6, 5, 4, 3]];
            let (mut batched, mut single): (Vec<_>, Vec<_>) = prompts
                .iter()
                .map(|p| (prefilled(&m, p, 16).0, prefilled(&m, p, 16).0))
                .unzip();
            for step in 0..6i64 {
                let tokens: Vec<i64> = (0..3).map(|i| (11 * step + 7 * i + 2) % 60).collect();
                let mut caches: Vec<&mut LlamaCache> = batched.iter_mut().collect();
                let logits = m
                    .f_forward_ragged(&Tensor::from_slice(&tokens), &mut caches)
                    .unwrap(); // (N, V)
                assert_eq!(logits.size(), [3, m.config.vocab_size]);
                for (i, cache) in single.iter_mut().enumerate() {
                    let one = Tensor::from_slice(&tokens[i..i + 1]).view([1, 1]);
                    let want = m.f_forward_last(&one, Some(cache)).unwrap(); // (1, V)
                    let row = logits.narrow(0, i as i64, 1);
                    assert_close(&format!("{name}: step {step}, sequence {i}"), &row, &want);
                    assert_eq!(batched[i].len(), cache.len());
                }
            }
        });
    }
}

#[test]
fn a_reused_prompt_prefix_changes_no_token_and_is_counted() {
    // Gemma's window of 16 holds the whole context, so the rolling layer keeps the
    // prefix too.
    for (name, m) in [("llama", llama()), ("gemma", gemma(16))] {
        let system = [1i64, 30, 31, 32, 33, 34, 35, 36];
        let with = |user: &[i64]| [&system[..], user].concat();
        let (a, b2, c) = (with(&[40, 41]), with(&[50, 51, 52]), with(&[60]));
        let mut b = Batcher::new(m, 4, 64).unwrap();
        // A alone, to its end: its cache goes to the store.
        let ida = b.join(&a, &greedy(5)).unwrap();
        assert_eq!(b.prefix_tokens_reused(), 0);
        let mut ta = Vec::new();
        while b.contains(ida) {
            ta.extend(b.step().unwrap().iter().map(|t| t.token));
        }
        assert_eq!(b.stored_prefixes(), 1);
        // B from A's stored prefix; C, joining while B decodes, from B's (or A's).
        let idb = b.join(&b2, &greedy(6)).unwrap();
        assert_eq!(
            b.prefix_tokens_reused(),
            8,
            "{name}: the system prompt, from the store"
        );
        let mut tb = Vec::new();
        let mut tc = Vec::new();
        let mut idc = None;
        while b.active() > 0 || idc.is_none() {
            for t in b.step().unwrap() {
                match t.id == idb {
                    true => tb.push(t.token),
                    false => tc.push(t.token),
                }
            }
            if idc.is_none() {
                idc = Some(b.join(&c, &greedy(4)).unwrap());
                assert_eq!(b.prefix_tokens_reused(), 16, "{name}: from the active B");
            }
        }
        let m = b.model();
        assert_eq!(ta, alone(m, &a, &greedy(5)), "{name}: A");
        assert_eq!(
            tb,
            alone(m, &b2, &greedy(6)),
            "{name}: B, from a reused prefix"
        );
        assert_eq!(
            tc,
            alone(m, &c, &greedy(4)),
            "{name}: C, from a reused prefix"
        );
        // A whole prompt already cached still computes its last token, for its logits.
        let _ = b.join(&a, &greedy(5)).unwrap();
        assert_eq!(b.prefix_tokens_reused(), 16 + a.len() as u64 - 1);
        let mut again = Vec::new();
        while b.active() > 0 {
            again.extend(b.step().unwrap().iter().map(|t| t.token));
        }
        assert_eq!(again, ta, "{name}: A again");
    }
}

#[test]
fn a_rolling_layer_that_lost_the_prefix_is_not_reused() {
    // Window 4: once a sequence is 4 positions past the prefix, its sliding layer has
    // overwritten what the prefix's last position must see; the prompt is computed.
    let mut b = Batcher::new(gemma(4), 2, 64).unwrap();
    let system = [1i64, 30, 31, 32, 33, 34, 35, 36];
    let first = [&system[..], &[40, 41, 42, 43, 44]].concat();
    let id = b.join(&first, &greedy(3)).unwrap();
    while b.contains(id) {
        b.step().unwrap();
    }
    let second = [&system[..], &[50]].concat();
    let id = b.join(&second, &greedy(5)).unwrap();
    assert_eq!(b.prefix_tokens_reused(), 0);
    let mut got = Vec::new();
    while b.contains(id) {
        got.extend(b.step().unwrap().iter().map(|t| t.token));
    }
    assert_eq!(got, alone(b.model(), &second, &greedy(5)));
}

#[test]
fn leave_frees_the_sequence_at_once() {
    let mut b = Batcher::new(llama(), 4, 64).unwrap();
    let x = b.join(&[1, 2, 3], &greedy(10)).unwrap();
    let y = b.join(&[4, 5, 6], &greedy(10)).unwrap();
    b.step().unwrap();
    assert_eq!(b.active(), 2);
    b.leave(x);
    assert_eq!(b.active(), 1);
    assert!(!b.contains(x) && b.contains(y));
    // Its cache is dropped, not kept for reuse: nothing stored, nothing to reuse.
    assert_eq!(b.stored_prefixes(), 0);
    let step = b.step().unwrap();
    assert_eq!(step.iter().map(|t| t.id).collect::<Vec<_>>(), [y]);
    b.leave(y);
    b.leave(y); // gone already: nothing
    assert_eq!(b.active(), 0);
    assert!(b.step().unwrap().is_empty());
    let _ = b.join(&[1, 2, 3, 9], &greedy(2)).unwrap();
    assert_eq!(
        b.prefix_tokens_reused(),
        0,
        "the left sequence's cache is gone"
    );
}

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(tiny_dir().join("generate.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_seeded_sampled_sequence_alone_draws_generates_tokens() {
    // generate.json: transformers' greedy and seeded sampled tokens for the tiny model.
    let f = fixture();
    let s = &f["sampled"];
    let sampled = GenerateOptions {
        decoding: Decoding::Sample {
            config: SamplingConfig {
                temperature: s["temperature"].as_f64().unwrap(),
                top_k: Some(s["top_k"].as_i64().unwrap()),
                top_p: s["top_p"].as_f64().unwrap(),
            },
            seed: Some(s["seed"].as_u64().unwrap()),
        },
        ..greedy(12)
    };
    let prompt = ids(&f["prompt"]);
    let mut b = Batcher::new(llama(), 4, 64).unwrap();
    let _generator = generator();
    for (options, want) in [(&sampled, ids(&s["ids"])), (&greedy(12), ids(&f["greedy"]))] {
        let id = b.join(&prompt, options).unwrap();
        let mut got = Vec::new();
        while b.contains(id) {
            got.extend(b.step().unwrap().iter().map(|t| t.token));
        }
        assert_eq!(got, want);
        assert_eq!(got, alone(b.model(), &prompt, options));
    }
}

/// The error's text, which must name `arg`.
fn refused<T: std::fmt::Debug>(r: tch_attention::Result<T>, arg: &str) {
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            tch_attention::Error::Invalid { .. } | tch_attention::Error::Shape { .. }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with(&format!("{arg}: ")), "{arg}: {e}");
}

#[test]
fn a_batcher_can_move_to_an_engine_thread() {
    fn send<T: Send>() {}
    send::<Batcher<LlamaForCausalLM>>();
    let b = Batcher::new(llama(), 2, 64).unwrap();
    let tokens = std::thread::spawn(move || {
        let mut b = b;
        let id = b.join(&[1, 2, 3], &greedy(3)).unwrap();
        let mut tokens = Vec::new();
        while b.contains(id) {
            tokens.extend(b.step().unwrap().iter().map(|t| t.token));
        }
        tokens
    })
    .join()
    .unwrap();
    assert_eq!(tokens, alone(&llama(), &[1, 2, 3], &greedy(3)));
}

#[test]
fn bad_input_is_a_typed_error_naming_the_argument() {
    refused(Batcher::new(llama(), 0, 64), "max_batch");
    refused(Batcher::new(llama(), 2, 1), "max_context");
    let mut b = Batcher::new(llama(), 2, 16).unwrap();
    refused(b.join(&[], &greedy(4)), "prompt");
    refused(b.join(&[1; 16], &greedy(1)), "prompt");
    refused(b.join(&[1; 10], &greedy(7)), "max_new_tokens");
    refused(b.join(&[1, 2], &greedy(0)), "max_new_tokens");
    refused(b.join(&[1, 2], &greedy(-1)), "max_new_tokens");
    refused(b.join(&[1, 500], &greedy(2)), "input_ids");
    refused(b.join(&[1, -1], &greedy(2)), "input_ids");
    let cold = GenerateOptions::sampled(
        4,
        SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        },
    );
    refused(b.join(&[1, 2], &cold), "temperature");
    let uncached = GenerateOptions {
        kv_cache: false,
        ..greedy(4)
    };
    refused(b.join(&[1, 2], &uncached), "kv_cache");
    assert_eq!(b.active(), 0, "a refused join leaves the batch as it was");
    b.join(&[1; 10], &greedy(6)).unwrap();
    b.join(&[2, 3], &greedy(4)).unwrap();
    assert!(b.is_full());
    refused(b.join(&[4, 5], &greedy(4)), "max_batch");
    assert_eq!(b.active(), 2);
    assert_eq!(b.step().unwrap().len(), 2);
}

#[test]
fn the_ragged_forward_checks_its_arguments() {
    let m = llama();
    tch::no_grad(|| {
        let (mut a, _) = prefilled(&m, &[1, 2, 3], 4);
        let (mut c, _) = prefilled(&m, &[1, 2], 4);
        let two = Tensor::from_slice(&[5i64, 6]);
        refused(m.f_forward_ragged(&two, &mut [&mut a]), "input_ids");
        refused(
            m.f_forward_ragged(&two.view([2, 1]), &mut [&mut a, &mut c]),
            "input_ids",
        );
        refused(
            m.f_forward_ragged(&Tensor::from_slice::<i64>(&[]), &mut []),
            "input_ids",
        );
        let mut pair = LlamaCache::new(&m.config, 2, 4, Kind::Float, Device::Cpu).unwrap();
        refused(m.f_forward_ragged(&two, &mut [&mut a, &mut pair]), "caches");
        // Full after one more: the second step does not fit a's capacity of 4.
        let _ = m.f_forward_ragged(&two, &mut [&mut a, &mut c]).unwrap();
        refused(m.f_forward_ragged(&two, &mut [&mut a, &mut c]), "cache");
        assert_eq!(
            (a.len(), c.len()),
            (4, 3),
            "a refused step advances no cache"
        );
        let mut into = m.new_cache(1, 8).unwrap();
        refused(a.f_copy_prefix_into(5, &mut into), "len");
        assert!(a.f_copy_prefix_into(3, &mut into).unwrap());
        assert_eq!(into.len(), 3);
        refused(a.f_copy_prefix_into(3, &mut into), "into");
    });
}

#[test]
fn a_copied_prefix_decodes_as_the_cache_it_came_from() {
    // Gemma's sliding layer rolls (window 4 in a capacity of 16): copies of 7 and 6 of
    // 7 cached positions, and of 3 and 2 of 3 into a capacity of 4 (where it does not
    // roll), each continue as a cache that computed those positions itself.
    let m = gemma(4);
    tch::no_grad(|| {
        let prompt = [9i64, 8, 7, 6, 5, 4, 3];
        for (cached, len, capacity) in [(7, 7, 16), (7, 6, 16), (3, 3, 4), (3, 2, 4)] {
            let (from, _) = prefilled(&m, &prompt[..cached], 16);
            let mut copy = m.new_cache(1, capacity).unwrap();
            assert!(from.f_copy_prefix_into(len as i64, &mut copy).unwrap());
            assert_eq!(copy.len(), len as i64);
            let (mut own, _) = prefilled(&m, &prompt[..len], capacity);
            let next = Tensor::from_slice(&[11i64]).view([1, 1]);
            let got = m.f_forward_last(&next, Some(&mut copy)).unwrap();
            let want = m.f_forward_last(&next, Some(&mut own)).unwrap();
            assert_close(&format!("{len} of {cached} positions"), &got, &want);
        }
        let (from, _) = prefilled(&m, &prompt, 16);
        // 5 of 7: position 2, which the sliding layer has overwritten, is needed.
        let mut copy = m.new_cache(1, 16).unwrap();
        assert!(!from.f_copy_prefix_into(5, &mut copy).unwrap());
        assert!(copy.is_empty());
    });
}

#[test]
fn quantised_projections_decode_together_as_alone() {
    use tch_attention::io::Gguf;
    use tch_attention::models::llama::Quant;
    let g = Gguf::read(&tiny_dir().join("model_q4_1.gguf")).unwrap();
    for quant in [Quant::Int4, Quant::Int8, Quant::Blocks] {
        let m = LlamaForCausalLM::from_gguf_quantized(&g, Device::Cpu, quant)
            .unwrap()
            .1;
        let plans = [
            Plan {
                at: 0,
                prompt: vec![1, 17, 33, 5, 60, 21],
                options: greedy(10),
                leave_after: None,
            },
            Plan {
                at: 0,
                prompt: vec![7, 8, 9],
                options: greedy(10),
                leave_after: None,
            },
            // No prompt shares a prefix with another: under Quant::Blocks a prompt of 8
            // or more tokens is prefilled on dequantised tiles (float activations) and a
            // shorter one on the integer kernels (8-bit activations), so a prefix
            // reused from another prompt's prefill would hold keys and values of the
            // other arithmetic (README, "Serving": what batching changes).
            Plan {
                at: 1,
                prompt: vec![2, 3, 4, 5, 6, 7, 8, 9, 10],
                options: greedy(8),
                leave_after: None,
            },
            Plan {
                at: 2,
                prompt: vec![42],
                options: greedy(9),
                leave_after: None,
            },
        ];
        let mut b = Batcher::new(m, 8, 64).unwrap();
        let got = run(&mut b, &plans);
        for (i, (p, (tokens, _))) in plans.iter().zip(&got).enumerate() {
            assert_eq!(
                *tokens,
                alone(b.model(), &p.prompt, &p.options),
                "{quant:?}: sequence {i}"
            );
        }
    }
}
