//! nanoGPT's GPT and train.py in the crate against PyTorch.
//!
//! PyTorch's side is `scripts/nanogpt_reference.py` (written from nanoGPT's `model.py`
//! and `train.py` semantics), run now with the setup's Python, one thread on both
//! sides, on a data folder prepared from `tests/fixtures/lecture_gpt/hamlet.txt` as
//! nanoGPT's `shakespeare_char/prepare.py` prepares one (sorted characters, 90/10,
//! uint16 `train.bin`/`val.bin`, `meta.pkl`). Comparisons are to float32 rounding
//! (`assert_close`'s float32 tolerance); the initialisation, drawn from the same seed,
//! must be equal to the bit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use common::{fixtures, setup_python, tempdir};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::io::read_safetensors;
use tch_attention::models::nanogpt::{Gpt, GptConfig};

/// libtorch's default generator is process-wide: tests that draw from it hold this.
static RNG: Mutex<()> = Mutex::new(());

fn rng() -> MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/nanogpt_reference.py")
}

/// `data/shakespeare_char/prepare.py`'s output for the Hamlet excerpt, made once.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempdir("nanogpt-data");
        let prepare = r#"
import numpy as np, pickle, sys, os
text = open(sys.argv[1], encoding='utf-8').read()
chars = sorted(list(set(text)))
stoi = {ch: i for i, ch in enumerate(chars)}
itos = {i: ch for i, ch in enumerate(chars)}
n = len(text)
train, val = text[:int(n * 0.9)], text[int(n * 0.9):]
out = sys.argv[2]
np.array([stoi[c] for c in train], dtype=np.uint16).tofile(os.path.join(out, 'train.bin'))
np.array([stoi[c] for c in val], dtype=np.uint16).tofile(os.path.join(out, 'val.bin'))
with open(os.path.join(out, 'meta.pkl'), 'wb') as f:
    pickle.dump({'vocab_size': len(chars), 'itos': itos, 'stoi': stoi}, f)
"#;
        let status = Command::new(setup_python())
            .args(["-c", prepare])
            .arg(fixtures().join("lecture_gpt/hamlet.txt"))
            .arg(&dir)
            .status()
            .expect("run python");
        assert!(status.success(), "preparing the data failed");
        dir
    })
}

fn vocab_size() -> i64 {
    let text = std::fs::read_to_string(fixtures().join("lecture_gpt/hamlet.txt")).unwrap();
    let chars: std::collections::BTreeSet<char> = text.chars().collect();
    chars.len() as i64
}

/// Equal to float32 rounding (`torch.testing.assert_close`'s float32 rtol 1.3e-6, atol
/// 1e-5); returns the largest |ours - theirs|.
fn assert_tensor_close(what: &str, ours: &Tensor, theirs: &Tensor) -> f64 {
    assert_eq!(ours.size(), theirs.size(), "{what}: shape");
    let diff = (ours - theirs).abs();
    let bound = theirs.abs() * 1.3e-6 + 1e-5;
    let worst = (&diff - &bound).max().double_value(&[]);
    let max_diff = diff.max().double_value(&[]);
    assert!(worst <= 0.0, "{what}: largest difference {max_diff}");
    max_diff
}

/// The model's init, eval logits and loss, and train-mode loss (dropout) against the
/// reference's `--check-out`, for `bias` on and off.
#[test]
fn gpt_init_logits_and_losses_equal_pytorchs() {
    for bias in [true, false] {
        let dir = tempdir(&format!("nanogpt-check-{bias}"));
        let out = dir.join("check.safetensors");
        let status = Command::new(setup_python())
            .arg(reference())
            .arg("--data-dir")
            .arg(data_dir())
            .args(["--n-layer", "2", "--n-head", "2", "--n-embd", "32"])
            .args([
                "--block-size",
                "16",
                "--dropout",
                "0.1",
                "--bias",
                &bias.to_string(),
            ])
            .arg("--check-out")
            .arg(&out)
            .status()
            .expect("run the reference");
        assert!(status.success(), "nanogpt_reference.py --check-out failed");
        let theirs = read_safetensors(&out).unwrap().tensors;

        let _guard = rng();
        tch::manual_seed(1337);
        let vs = VarStore::new(Device::Cpu);
        let config = GptConfig {
            block_size: 16,
            vocab_size: vocab_size(),
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            dropout: 0.1,
            bias,
        };
        let model = Gpt::new(vs.root(), config).unwrap();
        let state = model.state_dict();
        let params: Vec<&str> = state.iter().map(|(k, _)| k.as_str()).collect();
        let mut expected: Vec<&str> = theirs
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("transformer.") || *k == "lm_head.weight")
            .collect();
        let mut sorted = params.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "state_dict keys");
        for (k, t) in &state {
            assert!(t.equal(&theirs[k]), "{k} (bias {bias}): init differs");
        }

        let (idx, targets) = (&theirs["idx"], &theirs["targets"]);
        let logits = model.f_forward_t(idx, false).unwrap();
        let loss = model.f_loss(&logits, targets).unwrap();
        assert_tensor_close("logits", &logits, &theirs["logits"]);
        assert_tensor_close("loss", &loss, &theirs["loss"]);
        tch::manual_seed(1338);
        let logits = tch::no_grad(|| model.f_forward_t(idx, true)).unwrap();
        let train_loss = model.f_loss(&logits, targets).unwrap();
        let d = assert_tensor_close("train loss", &train_loss, &theirs["train_loss"]);
        eprintln!("bias {bias}: train-mode loss differs by {d}");
        assert_eq!(idx.kind(), Kind::Int64);
    }
}
