//! The lecture's GPT (`gpt.py`) trained and sampled by the crate against PyTorch.
//!
//! PyTorch's side is `scripts/lecture_gpt_reference.py`, run now with the setup's Python
//! (the libtorch this build links, one thread on both sides) on
//! `tests/fixtures/lecture_gpt/hamlet.txt` in a small configuration: n_embd 32, 2
//! heads, 2 layers, block 16, batch 4, 20 iterations, evaluation every 5 over 3
//! batches, dropout 0.2, seed 1337, then 100 tokens sampled with seed 7. Run on the
//! same CPU, the crate's losses have come out equal to the bit; the assertions ask for
//! float32 rounding (`assert_close`'s float32 tolerance) and print the largest
//! difference.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use common::{assert_usage_error, attn, fixtures, setup_python, tempdir};
use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::generate::{generate_batch, GenerateOptions, SamplingConfig};
use tch_attention::io::read_safetensors;
use tch_attention::models::lecture::{GptConfig, GptLanguageModel};

/// libtorch's default generator is process-wide: tests that draw from it hold this.
static RNG: Mutex<()> = Mutex::new(());

fn rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The small configuration, as flags both sides take.
const CONFIG: [&str; 16] = [
    "--batch-size",
    "4",
    "--block-size",
    "16",
    "--max-iters",
    "20",
    "--eval-interval",
    "5",
    "--eval-iters",
    "3",
    "--n-embd",
    "32",
    "--n-head",
    "2",
    "--n-layer",
    "2",
];
const SAMPLE_SEED: &str = "7";
const NEW_TOKENS: &str = "100";

fn text() -> PathBuf {
    fixtures().join("lecture_gpt/hamlet.txt")
}

/// PyTorch's run: its JSON and the folder holding init.safetensors and
/// final.safetensors. Run once for all the tests of this file.
fn pytorch() -> &'static (Value, PathBuf) {
    static RUN: OnceLock<(Value, PathBuf)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempdir("lecture-gpt-reference");
        let status = Command::new(setup_python())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lecture_gpt_reference.py"))
            .arg("--text")
            .arg(text())
            .args(CONFIG)
            .args([
                "--sample-seed",
                SAMPLE_SEED,
                "--max-new-tokens",
                NEW_TOKENS,
                "--num-samples",
                "2",
            ])
            .arg("--out")
            .arg(dir.join("ref.json"))
            .arg("--init-out")
            .arg(dir.join("init.safetensors"))
            .arg("--final-out")
            .arg(dir.join("final.safetensors"))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run scripts/lecture_gpt_reference.py");
        assert!(status.success(), "lecture_gpt_reference.py failed");
        let json = std::fs::read_to_string(dir.join("ref.json")).expect("ref.json");
        (serde_json::from_str(&json).expect("ref.json is JSON"), dir)
    })
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "attn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

/// Equal to float32 rounding: within 1e-6 relative (8 units in the last place of a
/// float32 near the losses' 4.0), no absolute slack: a loss is a mean over the batch, and
/// an optimizer that differs slightly (half the weight decay, say) moves it by 1e-5
/// within 20 steps. Returns |ours - theirs|.
fn assert_close(what: &str, ours: f64, theirs: f64) -> f64 {
    let diff = (ours - theirs).abs();
    assert!(
        diff <= 1e-6 * theirs.abs(),
        "{what}: ours {ours}, PyTorch's {theirs}"
    );
    diff
}

fn as_f64(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn attn_train_gives_pytorchs_losses_and_attn_sample_its_text() {
    let (reference, ref_dir) = pytorch();
    let dir = tempdir("lecture-gpt-train");
    let ckpt = dir.join("ckpt.safetensors");
    let stdout = ok(&attn(
        &[
            &[
                "train",
                "--model",
                "lecture",
                "--data",
                text().to_str().unwrap(),
            ][..],
            &CONFIG,
            &["--threads", "1", "--json", "--out", ckpt.to_str().unwrap()],
        ]
        .concat(),
    ));
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&Value> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    let evals: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("val_loss").is_some())
        .collect();
    let (ref_steps, ref_evals) = (
        reference["steps"].as_array().unwrap(),
        reference["evals"].as_array().unwrap(),
    );
    assert_eq!(steps.len(), 20);
    assert_eq!(evals.len(), 5, "iterations 0, 5, 10, 15 and the last, 19");
    let mut largest = 0f64;
    for (ours, theirs) in steps.iter().zip(ref_steps) {
        assert_eq!(ours["iter"], theirs["iter"]);
        let what = format!("step {} loss", ours["iter"]);
        largest = largest.max(assert_close(
            &what,
            as_f64(ours, "loss"),
            as_f64(theirs, "loss"),
        ));
    }
    for (ours, theirs) in evals.iter().zip(ref_evals) {
        assert_eq!(ours["iter"], theirs["iter"]);
        for key in ["train_loss", "val_loss"] {
            let what = format!("evaluation {} {key}", ours["iter"]);
            largest = largest.max(assert_close(&what, as_f64(ours, key), as_f64(theirs, key)));
        }
    }
    println!("largest loss difference from PyTorch: {largest:e}");
    assert_weights_close(&ckpt, &ref_dir.join("final.safetensors"));
    assert!(
        dir.join("ckpt.safetensors.loss.png").is_file(),
        "the loss curve"
    );

    let stdout = ok(&attn(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--seed",
        SAMPLE_SEED,
        "--max-new-tokens",
        NEW_TOKENS,
        "--num-samples",
        "2",
        "--threads",
        "1",
        "--json",
    ]));
    let texts: Vec<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let ref_texts: Vec<&str> = reference["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts, ref_texts, "attn sample's text is not PyTorch's");
    assert_eq!(
        texts[0].chars().count(),
        101,
        "the zero context, then 100 tokens"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Every tensor of the checkpoint against PyTorch's `state_dict()` after training.
fn assert_weights_close(ours: &Path, theirs: &Path) {
    let ours = read_safetensors(ours).expect("our checkpoint");
    let theirs = read_safetensors(theirs).expect("PyTorch's weights");
    assert_eq!(
        ours.tensors.keys().collect::<Vec<_>>(),
        theirs.tensors.keys().collect::<Vec<_>>(),
        "state_dict keys"
    );
    for (name, t) in &theirs.tensors {
        assert!(
            ours.tensors[name].allclose(t, 1.3e-6, 1e-5, false),
            "{name}: not PyTorch's after training"
        );
    }
}

#[test]
fn init_draws_pytorchs_weights() {
    let (reference, ref_dir) = pytorch();
    let theirs = read_safetensors(&ref_dir.join("init.safetensors")).expect("init.safetensors");
    let vocab_size = reference["vocab"].as_array().unwrap().len() as i64;
    let config = GptConfig {
        block_size: 16,
        n_embd: 32,
        n_head: 2,
        n_layer: 2,
        ..GptConfig::new(vocab_size)
    };
    let vs = VarStore::new(Device::Cpu);
    {
        let _rng = rng();
        tch::manual_seed(1337);
        GptLanguageModel::new(vs.root(), config).expect("model");
    }
    let ours = tch_attention::checkpoint::state_dict(&vs);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &theirs.tensors {
        // The same normal_ / uniform_ draws in the same order: the same bits.
        assert!(ours[name].equal(t), "{name}: not PyTorch's initial values");
    }
}

#[test]
fn named_parameters_are_model_parameters_in_pytorch_order() {
    let (reference, ref_dir) = pytorch();
    let init = read_safetensors(&ref_dir.join("init.safetensors")).expect("init.safetensors");
    let vocab_size = reference["vocab"].as_array().unwrap().len() as i64;
    let vs = VarStore::new(Device::Cpu);
    let config = GptConfig {
        block_size: 16,
        n_embd: 32,
        n_head: 2,
        n_layer: 2,
        ..GptConfig::new(vocab_size)
    };
    let model = {
        let _rng = rng();
        GptLanguageModel::new(vs.root(), config).unwrap()
    };
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // Registration order, as model.parameters() yields it: embeddings, then per block
    // sa (heads' key, query, value; proj), ffwd, ln1, ln2; then ln_f and lm_head.
    assert_eq!(
        &names[..5],
        [
            "token_embedding_table.weight",
            "position_embedding_table.weight",
            "blocks.0.sa.heads.0.key.weight",
            "blocks.0.sa.heads.0.query.weight",
            "blocks.0.sa.heads.0.value.weight",
        ]
    );
    assert_eq!(
        &names[names.len() - 4..],
        ["ln_f.weight", "ln_f.bias", "lm_head.weight", "lm_head.bias"]
    );
    // Every trainable tensor once: the state_dict less the `tril` buffers.
    let mut sorted = names.clone();
    sorted.sort();
    let params: Vec<&String> = init
        .tensors
        .keys()
        .filter(|k| !k.ends_with(".tril"))
        .collect();
    assert_eq!(sorted.iter().collect::<Vec<_>>(), params);
    // The count loaders check a checkpoint's config against, before building anything.
    let numel: u64 = model
        .named_parameters()
        .iter()
        .map(|(_, t)| t.numel() as u64)
        .sum();
    assert_eq!(config.parameter_count(), Some(numel));
}

/// A model with random (but not trivial) weights, for the decoding tests.
fn random_model(vs: &VarStore) -> GptLanguageModel {
    let config = GptConfig {
        block_size: 12,
        n_embd: 24,
        n_head: 3,
        n_layer: 2,
        ..GptConfig::new(11)
    };
    let model = GptLanguageModel::new(vs.root(), config).unwrap();
    tch::no_grad(|| {
        for (_, mut p) in model.named_parameters() {
            let _ = p.normal_(0.0, 0.5);
        }
    });
    model
}

#[test]
fn cached_decoding_equals_the_lectures_forward() {
    let _rng = rng();
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let model = random_model(&vs);
    let idx = Tensor::randint(11, [2, 12], (Kind::Int64, Device::Cpu));
    let full = tch::no_grad(|| model.f_forward_t(&idx, false)).unwrap(); // (2, 12, 11)
    let mut caches = model.new_caches();
    // A prompt of 5, then one token at a time, then the last 3 at once.
    let mut pieces =
        vec![tch::no_grad(|| model.f_forward_cached(&idx.narrow(1, 0, 5), &mut caches)).unwrap()];
    for t in 5..9 {
        pieces.push(
            tch::no_grad(|| model.f_forward_cached(&idx.narrow(1, t, 1), &mut caches)).unwrap(),
        );
    }
    pieces
        .push(tch::no_grad(|| model.f_forward_cached(&idx.narrow(1, 9, 3), &mut caches)).unwrap());
    let cached = Tensor::cat(&pieces, 1);
    assert!(
        cached.allclose(&full, 1.3e-6, 1e-5, false),
        "cached logits differ"
    );
    // The position table ends at block_size: one more token is an error, not a crash.
    let err = model
        .f_forward_cached(&idx.narrow(1, 0, 1), &mut caches)
        .unwrap_err();
    assert!(matches!(err, tch_attention::Error::Shape { .. }), "{err}");
}

#[test]
fn generating_with_the_kv_cache_samples_what_recomputing_samples() {
    let _rng = rng();
    tch::manual_seed(4);
    let vs = VarStore::new(Device::Cpu);
    let model = random_model(&vs);
    // 30 new tokens after 2: past block_size 12, so the window slides as well.
    let context = Tensor::from_slice(&[1i64, 2]).unsqueeze(0);
    let mut outs = Vec::new();
    for kv_cache in [true, false] {
        tch::manual_seed(5);
        let config = GenerateOptions {
            kv_cache,
            ..GenerateOptions::sampled(30, SamplingConfig::none())
        };
        outs.push(generate_batch(&model, &context, &config).unwrap());
    }
    assert_eq!(outs[0].size(), [1, 32]);
    assert!(
        outs[0].equal(&outs[1]),
        "{:?} vs {:?}",
        Vec::<i64>::try_from(outs[0].squeeze()),
        Vec::<i64>::try_from(outs[1].squeeze())
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const TINY: [&str; 14] = [
    "--batch-size",
    "2",
    "--block-size",
    "8",
    "--max-iters",
    "2",
    "--eval-iters",
    "1",
    "--n-embd",
    "8",
    "--n-head",
    "2",
    "--n-layer",
    "1",
];

/// `attn train` on `data` in the tiny configuration, `extra` flags replacing its own.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--model",
        "lecture",
        "--data",
        data.to_str().unwrap(),
    ];
    args.extend(["--out", out.to_str().unwrap()]);
    for pair in TINY.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend(pair);
        }
    }
    args.extend(extra);
    attn(&args)
}

#[test]
fn bad_training_input_is_one_line_exit_2_and_writes_nothing() {
    let dir = tempdir("lecture-gpt-bad-train");
    let out = dir.join("ckpt.safetensors");
    let good = text();
    let empty = write(&dir, "empty.txt", "");
    // 90/10 of 40 characters: 36 and 4; the val split needs block_size + 1 = 9.
    let short = write(&dir, "short.txt", &"abcd".repeat(10));
    let cases: [(&Path, &[&str], &str); 9] = [
        (&empty, &[], "too short"),
        (&short, &[], "each needs at least block_size + 1 = 9"),
        (
            &good,
            &["--n-embd", "10", "--n-head", "3"],
            "--n-embd: must be divisible by n_head = 3",
        ),
        (&good, &["--batch-size", "0"], "--batch-size"),
        (&good, &["--block-size", "-4"], "--block-size"),
        (&good, &["--n-layer", "0"], "--n-layer"),
        (&good, &["--learning-rate", "-1"], "--learning-rate"),
        (&good, &["--dropout", "1.5"], "--dropout"),
        (&dir.join("missing.txt"), &[], "missing.txt"),
    ];
    for (data, extra, needle) in cases {
        assert_usage_error(&train(data, &out, extra), needle);
        assert!(
            !out.exists() && !dir.join("ckpt.safetensors.loss.png").exists(),
            "{needle}: wrote"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_sampling_input_is_one_line_and_exit_2() {
    let dir = tempdir("lecture-gpt-bad-sample");
    let ckpt = dir.join("ckpt.safetensors");
    ok(&train(&text(), &ckpt, &[]));
    let ckpt_s = ckpt.to_str().unwrap();
    // Hamlet's opening has no 'Z'... nor '~'.
    assert_usage_error(
        &attn(&["sample", "--checkpoint", ckpt_s, "--prompt", "a~b"]),
        "'~' is not in the vocabulary",
    );
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let corrupt = dir.join("corrupt.safetensors");
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&corrupt, &bytes).unwrap();
    assert_usage_error(
        &attn(&["sample", "--checkpoint", corrupt.to_str().unwrap()]),
        "corrupt.safetensors",
    );
    let foreign = fixtures().join("init.safetensors");
    assert_usage_error(
        &attn(&["sample", "--checkpoint", foreign.to_str().unwrap()]),
        "not a lecture GPT checkpoint",
    );
    // A config that asks for ~200 G parameters beside the file's few thousand is refused
    // before anything is allocated.
    let mut file = read_safetensors(&ckpt).unwrap();
    let mut config: Value = serde_json::from_str(&file.metadata["config"]).unwrap();
    config["n_embd"] = 16384.into();
    config["n_layer"] = 64.into();
    file.metadata.insert("config".into(), config.to_string());
    let bomb = dir.join("bomb.safetensors");
    let named: Vec<(&str, &tch::Tensor)> =
        file.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    tch_attention::io::write_safetensors(&bomb, named, &file.metadata).unwrap();
    let start = std::time::Instant::now();
    assert_usage_error(
        &attn(&["sample", "--checkpoint", bomb.to_str().unwrap()]),
        "parameters, but the file holds",
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    let garbage = write(&dir, "garbage.safetensors", "not a checkpoint at all");
    assert_usage_error(
        &attn(&["sample", "--checkpoint", garbage.to_str().unwrap()]),
        "garbage.safetensors",
    );
    for (flag, value) in [
        ("--temperature", "0"),
        ("--top-k", "0"),
        ("--max-new-tokens", "-1"),
        ("--num-samples", "0"),
    ] {
        assert_usage_error(
            &attn(&["sample", "--checkpoint", ckpt_s, flag, value]),
            flag,
        );
    }
    // A prompt from the vocabulary, continued by top-k sampling at a low temperature.
    let text = ok(&attn(&[
        "sample",
        "--checkpoint",
        ckpt_s,
        "--prompt",
        "Hamlet",
        "--max-new-tokens",
        "20",
        "--top-k",
        "5",
        "--temperature",
        "0.5",
    ]));
    assert!(
        text.starts_with("Hamlet") && text.trim_end().chars().count() >= 6,
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ctrl_c_stops_training_and_keeps_the_last_checkpoint() {
    let dir = tempdir("lecture-gpt-sigint");
    let ckpt = dir.join("ckpt.safetensors");
    let data = text();
    let args = [
        &[
            "train",
            "--model",
            "lecture",
            "--data",
            data.to_str().unwrap(),
            "--out",
            ckpt.to_str().unwrap(),
        ][..],
        &TINY[..4],
        &[
            "--max-iters",
            "1000000",
            "--eval-interval",
            "50",
            "--eval-iters",
            "1",
            "--n-embd",
            "8",
            "--n-head",
            "2",
            "--n-layer",
            "1",
        ],
    ]
    .concat();
    let child = Command::new(env!("CARGO_BIN_EXE_attn"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start attn train");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ckpt.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // The checkpoint is whole and loads; no temporary file is left beside it.
    ok(&attn(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--max-new-tokens",
        "5",
    ]));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from("ckpt.safetensors")],
        "{left:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_default_corpus_is_shakespeares_plays() {
    let dir = tempdir("lecture-gpt-default");
    let ckpt = dir.join("ckpt.safetensors");
    let args = [
        &[
            "train",
            "--model",
            "lecture",
            "--json",
            "--out",
            ckpt.to_str().unwrap(),
        ][..],
        &TINY,
    ]
    .concat();
    let stdout = ok(&attn(&args));
    assert_eq!(
        stdout.lines().count(),
        2 + 2,
        "2 steps, evaluations at 0 and 1"
    );
    let file = read_safetensors(&ckpt).unwrap();
    let vocab: Vec<String> = serde_json::from_str(&file.metadata["vocab"]).unwrap();
    assert!(
        vocab.len() > 60 && vocab.contains(&"Z".to_string()),
        "{vocab:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
