//! The Llama decoder with `sliding_window` is Mistral: a small random
//! `MistralForCausalLM` (scripts/mistral_window_reference.py, run here at test time
//! with libtorch's native kernels, seed 0, window 3 over 10 tokens) gives the logits the
//! crate's `LlamaForCausalLM` gives on its weights, for one forward pass and for a
//! prompt decoded token by token through the `LlamaCache`. Without the window the
//! default decoder (SmolLM2's) is unchanged: `tests/llama_modules.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::{setup_python, tempdir};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::checkpoint::load_into;
use tch_attention::io::read_safetensors;
use tch_attention::models::llama::{LlamaCache, LlamaConfig, LlamaForCausalLM};
use tch_attention::parity::compare_tensors;
use tch_attention::Error;

/// The reference's folder: config.json, model.safetensors, reference.safetensors.
fn reference_dir() -> PathBuf {
    let dir = tempdir("mistral-window");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/mistral_window_reference.py");
    let status = Command::new(setup_python())
        .arg(script)
        .arg("--out")
        .arg(&dir)
        .status()
        .expect("run scripts/mistral_window_reference.py");
    assert!(status.success(), "mistral_window_reference.py failed");
    dir
}

fn read(path: PathBuf) -> BTreeMap<String, Tensor> {
    read_safetensors(&path).unwrap().tensors
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
fn a_sliding_window_llama_gives_mistral_logits_full_and_cached() {
    let dir = reference_dir();
    let reference = read(dir.join("reference.safetensors"));
    let (ids, expected) = (&reference["input_ids"], &reference["logits"]);
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(
        config.sliding_window,
        Some(3),
        "read from a mistral config.json"
    );
    let vs = VarStore::new(Device::Cpu);
    let model = LlamaForCausalLM::new(vs.root(), config.clone()).unwrap();
    load_into(
        &vs,
        &read(dir.join("model.safetensors")),
        "model.safetensors",
    )
    .unwrap();

    let full = model.f_forward(ids, None).unwrap();
    assert_close("logits", &full, expected);

    let t = ids.size()[1];
    for pieces in [
        vec![4, 1, 1, 1, 1, 1, 1],
        vec![1; t as usize],
        vec![2, 5, 3],
    ] {
        let mut cache = LlamaCache::new(&config, 1, t, Kind::Float, Device::Cpu).unwrap();
        let (mut outs, mut start) = (Vec::new(), 0);
        for len in &pieces {
            let piece = ids.narrow(1, start, *len);
            outs.push(model.f_forward(&piece, Some(&mut cache)).unwrap());
            start += len;
        }
        let cached = Tensor::cat(&outs, 1);
        assert_close(&format!("cached logits {pieces:?}"), &cached, expected);
    }
}

#[test]
fn a_window_below_one_is_a_config_error() {
    let config = LlamaConfig {
        vocab_size: 16,
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 4,
        sliding_window: Some(0),
        ..LlamaConfig::default()
    };
    let vs = VarStore::new(Device::Cpu);
    let e = LlamaForCausalLM::new(vs.root(), config).unwrap_err();
    assert!(
        matches!(&e, Error::Config { field, .. } if field == "sliding_window"),
        "{e}"
    );
}
