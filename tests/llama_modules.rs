//! Each Llama module against transformers' on a small random LlamaForCausalLM
//! (tests/fixtures/llama/tiny, by scripts/llama_reference.py --only tiny, seed 0): the
//! inputs and outputs of its RMSNorm, rotary embedding, attention, MLP and first decoder
//! layer were captured by forward hooks during one forward pass, and its logits kept.
//! The same weights load from the Hugging Face folder and from a GGUF written with
//! llama.cpp's query/key permutation.

mod common;

use common::ids;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use tch_attention::checkpoint::state_dict;
use tch_attention::io::{read_safetensors, Gguf};
use tch_attention::models::llama::{LlamaCache, LlamaConfig, LlamaForCausalLM};
use tch_attention::nn::{apply_rotary, RotaryEmbedding};
use tch_attention::parity::compare_tensors;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny")
}

fn reference() -> BTreeMap<String, Tensor> {
    read_safetensors(&tiny().join("reference.safetensors"))
        .unwrap()
        .tensors
}

fn model() -> LlamaForCausalLM {
    LlamaForCausalLM::from_hf_dir(&tiny(), Device::Cpu)
        .unwrap()
        .1
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

#[test]
fn config_reads_transformers_5_json_and_the_gguf_metadata_alike() {
    let from_json = LlamaConfig::from_file(&tiny().join("config.json")).unwrap();
    assert_eq!(from_json.num_key_value_heads, 2);
    assert_eq!(from_json.head_dim, 8);
    assert_eq!(from_json.rope_theta, 100000.0); // under rope_parameters in transformers 5
    assert!(from_json.tie_word_embeddings);
    let g = Gguf::read(&tiny().join("model.gguf")).unwrap();
    let from_gguf = LlamaConfig::from_gguf(&g).unwrap();
    // The GGUF keeps eps as float32 and has no initializer range or token ids.
    let eps32 = f64::from(1e-5f32);
    assert_eq!(from_gguf.rms_norm_eps, eps32);
    let normalised = LlamaConfig {
        rms_norm_eps: eps32,
        ..from_json
    };
    assert_eq!(
        LlamaConfig {
            initializer_range: normalised.initializer_range,
            ..from_gguf
        },
        normalised
    );
}

#[test]
fn gguf_weights_equal_the_safetensors_after_undoing_llama_cpp_permutation() {
    let (vs_hf, _) = LlamaForCausalLM::from_hf_dir(&tiny(), Device::Cpu).unwrap();
    let g = Gguf::read(&tiny().join("model.gguf")).unwrap();
    let (vs_gguf, _) = LlamaForCausalLM::from_gguf(&g, Device::Cpu).unwrap();
    let (a, b) = (state_dict(&vs_hf), state_dict(&vs_gguf));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.contains_key("model.layers.1.self_attn.k_proj.weight"));
    assert!(!a.contains_key("lm_head.weight"), "tied: one tensor");
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs between the two files");
    }
}

#[test]
fn rms_norm_matches_transformers() {
    let r = reference();
    let m = model();
    let norm = &m.model.layers[0].input_layernorm;
    assert_close(
        "rms_norm",
        &norm.f_forward(&r["rms_norm.input"]).unwrap(),
        &r["rms_norm.output"],
    );
}

#[test]
fn rotary_embedding_matches_transformers_at_offset_positions() {
    let r = reference();
    let rope = RotaryEmbedding::new(8, 100000.0, Device::Cpu).unwrap();
    // Positions 3..8, as after a cache of 3.
    let positions = RotaryEmbedding::positions(2, 3, 5, Device::Cpu).unwrap();
    let (cos, sin) = rope.f_cos_sin(&positions).unwrap();
    assert_close("cos", &cos, &r["rope.cos"]);
    assert_close("sin", &sin, &r["rope.sin"]);
    let q = apply_rotary(&r["rope.q"], &cos, &sin).unwrap();
    let k = apply_rotary(&r["rope.k"], &cos, &sin).unwrap();
    assert_close("q_embed", &q, &r["rope.q_out"]);
    assert_close("k_embed", &k, &r["rope.k_out"]);
    // And positions 0..7, as the model's forward pass used them.
    let positions = RotaryEmbedding::positions(1, 0, 7, Device::Cpu).unwrap();
    let (cos, sin) = rope.f_cos_sin(&positions).unwrap();
    assert_close("forward cos", &cos, &r["rotary.cos"]);
    assert_close("forward sin", &sin, &r["rotary.sin"]);
}

#[test]
fn attention_mlp_and_layer_match_transformers() {
    let r = reference();
    let m = model();
    let layer = &m.model.layers[0];
    let (cos, sin) = (&r["rotary.cos"], &r["rotary.sin"]);
    let attn = layer
        .self_attn
        .f_forward(&r["attn.input"], cos, sin, None)
        .unwrap();
    assert_close("self_attn", &attn, &r["attn.output"]);
    let mlp = layer.mlp.f_forward(&r["mlp.input"]).unwrap();
    assert_close("mlp", &mlp, &r["mlp.output"]);
    let out = layer.f_forward(&r["layer0.input"], cos, sin, None).unwrap();
    assert_close("layer 0", &out, &r["layer0.output"]);
}

#[test]
fn logits_match_transformers_from_either_file() {
    let r = reference();
    let ids = &r["input_ids"];
    let logits = model().f_forward(ids, None).unwrap();
    assert_close("logits (safetensors)", &logits, &r["logits"]);
    let g = Gguf::read(&tiny().join("model.gguf")).unwrap();
    let (_, from_gguf) = LlamaForCausalLM::from_gguf(&g, Device::Cpu).unwrap();
    assert_close(
        "logits (gguf)",
        &from_gguf.f_forward(ids, None).unwrap(),
        &r["logits"],
    );
}

#[test]
fn cached_decoding_equals_the_full_causal_forward() {
    let r = reference();
    let m = model();
    let ids = &r["input_ids"]; // (2, 7)
    let full = m.f_forward(ids, None).unwrap();
    // A prompt of 3, a chunk of 2 (the bottom-right causal mask), then one at a time.
    let mut cache = LlamaCache::new(&m.config, 2, 16, Kind::Float, Device::Cpu).unwrap();
    let mut parts = Vec::new();
    for (start, len) in [(0, 3), (3, 2), (5, 1), (6, 1)] {
        let chunk = ids.narrow(1, start, len);
        parts.push(m.f_forward(&chunk, Some(&mut cache)).unwrap());
    }
    assert_eq!(cache.len(), 7);
    let stepped = Tensor::cat(&parts, 1);
    assert_close("cached", &stepped, &full);
    let last = m.f_forward_last(&ids.narrow(1, 0, 7), None).unwrap();
    assert_close("last", &last, &full.select(1, 6));
}

#[test]
fn bad_inputs_are_typed_errors() {
    let m = model();
    let too_big = Tensor::from_slice(&[1i64, 96]).view([1, 2]);
    let err = m.f_forward(&too_big, None).unwrap_err().to_string();
    assert!(err.contains("input_ids") && err.contains("0..96"), "{err}");
    let floats = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    assert!(m.f_forward(&floats, None).is_err());
    let mut cache = LlamaCache::new(&m.config, 1, 4, Kind::Float, Device::Cpu).unwrap();
    let five = Tensor::from_slice(&[1i64, 2, 3, 4, 5]).view([1, 5]);
    let err = m
        .f_forward(&five, Some(&mut cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not fit"), "{err}");
    assert_eq!(cache.len(), 0, "a refused step leaves the cache as it was");
}

fn generation_fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(tiny().join("generate.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn greedy_and_seeded_sampled_generation_match_transformers() {
    use tch_attention::generate::{generate, Decoding, GenerateOptions, SamplingConfig};
    let f = generation_fixture();
    let m = model();
    let prompt = ids(&f["prompt"]);
    let greedy = GenerateOptions {
        eos_token_ids: m.config.eos_token_ids.clone(),
        ..GenerateOptions::greedy(12)
    };
    let mut streamed = Vec::new();
    let out = generate(&m, &prompt, &greedy, |t| streamed.push(t)).unwrap();
    assert_eq!(out.ids, ids(&f["greedy"]));
    assert_eq!(streamed, out.ids);
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
        ..greedy
    };
    let out = generate(&m, &prompt, &sampled, |_| {}).unwrap();
    assert_eq!(out.ids, ids(&s["ids"]));
}

#[test]
fn warpers_follow_transformers() {
    use tch_attention::generate::{top_k, top_p, SamplingConfig};
    let scores = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 3.0, 0.5]).view([1, 5]);
    let inf = f32::NEG_INFINITY;
    // Ties with the k-th score are kept.
    let k = top_k(&scores, 2).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(k.view([-1])).unwrap(),
        [inf, 3.0, inf, 3.0, inf]
    );
    // top_p = 0: only the most likely token stays.
    let p = top_p(&scores, 0.0).unwrap();
    let kept: Vec<bool> = Vec::<f32>::try_from(p.view([-1]))
        .unwrap()
        .iter()
        .map(|v| v.is_finite())
        .collect();
    assert_eq!(kept.iter().filter(|k| **k).count(), 1);
    let bad = SamplingConfig {
        temperature: 0.0,
        ..Default::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("temperature"));
}

#[test]
fn bf16_logits_match_transformers_in_bf16() {
    // tiny/reference_bf16.safetensors: transformers' model.to(torch.bfloat16), as
    // `--dtype bf16` casts the VarStore (scripts/llama_reference.py --only bf16). The
    // committed file where this CPU's bfloat16 kernels are the ones it was made with,
    // else computed here (tests/common/machine_reference.rs).
    let path = common::machine_reference::machine_reference(
        &tiny().join(".."),
        "tiny/reference_bf16.safetensors",
        "scripts/llama_reference.py",
        &["--only", "bf16"],
    );
    let r = read_safetensors(&path).unwrap().tensors;
    assert!(r["input_ids"].equal(&reference()["input_ids"]));
    let (mut vs, m) = LlamaForCausalLM::from_hf_dir(&tiny(), Device::Cpu).unwrap();
    vs.set_kind(Kind::BFloat16);
    let logits = m.f_forward(&r["input_ids"], None).unwrap();
    assert_eq!(logits.kind(), Kind::BFloat16);
    assert_close("logits (bf16)", &logits, &r["logits"]);
}
