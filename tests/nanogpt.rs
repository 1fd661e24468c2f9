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
use serde_json::{json, Value};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::data::{prepare_chars, TokenData};
use tch_attention::io::read_safetensors;
use tch_attention::models::nanogpt::{Gpt, GptConfig};
use tch_attention::train::nanogpt::{Event, TrainConfig, Trainer};

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

/// The small training configuration, as flags of the reference (kebab case).
const TRAIN: [(&str, &str); 17] = [
    ("n-layer", "2"),
    ("n-head", "2"),
    ("n-embd", "32"),
    ("block-size", "16"),
    ("batch-size", "4"),
    ("gradient-accumulation-steps", "2"),
    ("dropout", "0.1"),
    ("bias", "true"),
    ("grad-clip", "0.1"),
    ("learning-rate", "0.001"),
    ("min-lr", "0.0001"),
    ("warmup-iters", "2"),
    ("lr-decay-iters", "8"),
    ("max-iters", "10"),
    ("eval-interval", "4"),
    ("eval-iters", "2"),
    ("always-save-checkpoint", "false"),
];

fn train_config() -> TrainConfig {
    let get = |k: &str| TRAIN.iter().find(|(n, _)| *n == k).unwrap().1;
    let int = |k: &str| get(k).parse::<i64>().unwrap();
    let float = |k: &str| get(k).parse::<f64>().unwrap();
    TrainConfig {
        n_layer: int("n-layer"),
        n_head: int("n-head"),
        n_embd: int("n-embd"),
        block_size: int("block-size"),
        batch_size: int("batch-size"),
        gradient_accumulation_steps: int("gradient-accumulation-steps"),
        dropout: float("dropout"),
        bias: get("bias") == "true",
        grad_clip: float("grad-clip"),
        learning_rate: float("learning-rate"),
        min_lr: float("min-lr"),
        warmup_iters: int("warmup-iters"),
        lr_decay_iters: int("lr-decay-iters"),
        max_iters: int("max-iters"),
        eval_interval: int("eval-interval"),
        eval_iters: int("eval-iters"),
        always_save_checkpoint: get("always-save-checkpoint") == "true",
        ..TrainConfig::default()
    }
}

/// Runs the reference's training with `TRAIN` and `extra` flags, writing into
/// `out_dir`; its JSON lines.
fn reference_train(out_dir: &Path, extra: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(setup_python());
    cmd.arg(reference())
        .arg("--data-dir")
        .arg(data_dir())
        .arg("--out-dir")
        .arg(out_dir);
    for (k, v) in TRAIN {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let out = cmd.args(extra).output().expect("run the reference");
    assert!(
        out.status.success(),
        "nanogpt_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The crate's events as the reference prints them (`Saved` left out), printed and
/// parsed back: serde_json's float parsing is not exact, so both sides go through it.
fn as_json(events: &[Event]) -> Vec<Value> {
    let printed = |v: Value| serde_json::from_str(&v.to_string()).unwrap();
    events
        .iter()
        .filter_map(|e| match *e {
            Event::Eval {
                iter,
                train_loss,
                val_loss,
            } => Some(json!({"iter": iter, "train_loss": train_loss, "val_loss": val_loss})),
            Event::Step { iter, loss, lr } => Some(json!({"iter": iter, "loss": loss, "lr": lr})),
            Event::Saved { .. } => None,
        })
        .map(printed)
        .collect()
}

/// Every line equal: iterations and lrs exactly, losses to float32 rounding (1e-6
/// relative: 8 units in the last place near the losses' 3.5). Returns the largest
/// loss difference.
fn assert_same_run(ours: &[Value], theirs: &[Value]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "ours {ours:?}\ntheirs {theirs:?}");
    let mut worst = 0f64;
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o["iter"], t["iter"], "{o} vs {t}");
        assert_eq!(o["lr"], t["lr"], "{o} vs {t}");
        for key in ["loss", "train_loss", "val_loss"] {
            if let Some(theirs) = t[key].as_f64() {
                let ours = o[key].as_f64().unwrap_or_else(|| panic!("{key} in {o}"));
                let diff = (ours - theirs).abs();
                assert!(diff <= 1e-6 * theirs.abs(), "{key}: {o} vs PyTorch's {t}");
                worst = worst.max(diff);
            }
        }
    }
    worst
}

/// Loads two `ckpt.pt` with `torch.load(weights_only=True)` and asserts they are the
/// same dict: keys in order, types, plain values equal, tensors' dtypes and shapes
/// equal and values to float32 rounding (`config`'s `out_dir` aside); and that the
/// first's `lm_head.weight` is its `transformer.wte.weight`. Prints the largest tensor
/// difference.
const SAME_CKPT: &str = r#"
import sys, torch
a = torch.load(sys.argv[1], weights_only=True)
b = torch.load(sys.argv[2], weights_only=True)
worst = [0.0]
def cmp(x, y, path):
    assert type(x) is type(y), (path, type(x), type(y))
    if isinstance(x, torch.Tensor):
        assert (x.dtype, x.shape) == (y.dtype, y.shape), (path, x.dtype, x.shape, y.dtype, y.shape)
        torch.testing.assert_close(x, y, msg=lambda m: f"{path}: {m}")
        worst[0] = max(worst[0], (x.double() - y.double()).abs().max().item() if x.numel() else 0.0)
    elif isinstance(x, dict):
        assert list(x) == list(y), (path, list(x), list(y))
        for k in x:
            if path + [k] != ["config", "out_dir"]:
                cmp(x[k], y[k], path + [k])
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y)):
            cmp(u, v, path + [i])
    else:
        assert x == y, (path, x, y)
cmp(a, b, [])
m = a["model"]
assert m["lm_head.weight"].data_ptr() == m["transformer.wte.weight"].data_ptr()
print(worst[0])
"#;

fn assert_same_checkpoint(ours: &Path, theirs: &Path) -> f64 {
    let out = Command::new(setup_python())
        .args(["-c", SAME_CKPT])
        .arg(ours)
        .arg(theirs)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the checkpoints differ: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// train.py from scratch: gradient accumulation, dropout, clipping, warmup, cosine
/// decay and the floor after it, evaluations, a checkpoint only when val improved.
#[test]
fn train_py_from_scratch_gives_pytorchs_losses_and_ckpt() {
    let theirs_dir = tempdir("nanogpt-train-theirs");
    let theirs = reference_train(&theirs_dir, &[]);

    let ours_dir = tempdir("nanogpt-train-ours");
    let _guard = rng();
    let data = TokenData::open(data_dir(), 16).unwrap();
    let mut trainer = Trainer::new(data, train_config(), Device::Cpu).unwrap();
    let mut events = Vec::new();
    trainer.run(&ours_dir, |e| events.push(*e)).unwrap();
    let worst = assert_same_run(&as_json(&events), &theirs);
    eprintln!("largest loss difference from PyTorch: {worst:e}");
    assert!(events.iter().any(|e| matches!(e, Event::Saved { .. })));

    let worst = assert_same_checkpoint(&ours_dir.join("ckpt.pt"), &theirs_dir.join("ckpt.pt"));
    eprintln!("largest ckpt.pt tensor difference from PyTorch: {worst:e}");
}

/// A fresh folder named `name` holding a copy of `from/ckpt.pt`.
fn copy_ckpt(from: &Path, name: &str) -> PathBuf {
    let dir = tempdir(name);
    std::fs::copy(from.join("ckpt.pt"), dir.join("ckpt.pt")).expect("copy ckpt.pt");
    dir
}

/// Resume both ways, from the iteration-8 `ckpt.pt` of a scratch run on each side, to
/// `max_iters` 12: PyTorch resuming the crate's checkpoint runs as PyTorch resuming its
/// own, and so does the crate resuming PyTorch's (and its own, and PyTorch's with
/// torch.compile's `_orig_mod.` keys).
#[test]
fn resume_either_way_continues_as_pytorch_does() {
    let theirs_dir = tempdir("nanogpt-resume-theirs");
    reference_train(&theirs_dir, &[]);
    let ours_dir = tempdir("nanogpt-resume-ours");
    {
        let _guard = rng();
        let data = TokenData::open(data_dir(), 16).unwrap();
        let mut trainer = Trainer::new(data, train_config(), Device::Cpu).unwrap();
        trainer.run(&ours_dir, |_| {}).unwrap();
    }
    let more = ["--init-from", "resume", "--max-iters", "12"];
    let pt_own = reference_train(&copy_ckpt(&theirs_dir, "nanogpt-resume-pt-own"), &more);
    let pt_ours = reference_train(&copy_ckpt(&ours_dir, "nanogpt-resume-pt-ours"), &more);
    assert_eq!(pt_own[0]["iter"], 8, "{pt_own:?}");
    let worst = assert_same_run(&pt_ours, &pt_own);
    eprintln!("PyTorch resuming ours vs its own: largest loss difference {worst:e}");

    // torch.compile's model saves its keys as `_orig_mod.transformer...`.
    let compiled = copy_ckpt(&theirs_dir, "nanogpt-resume-compiled");
    let prefix = "import sys, torch\np = sys.argv[1]\nc = torch.load(p, weights_only=True)\n\
                  c['model'] = {'_orig_mod.' + k: v for k, v in c['model'].items()}\n\
                  torch.save(c, p)";
    let status = Command::new(setup_python())
        .args(["-c", prefix])
        .arg(compiled.join("ckpt.pt"))
        .status()
        .unwrap();
    assert!(status.success());

    for (from, name) in [
        (&theirs_dir, "nanogpt-resume-rs-theirs"),
        (&ours_dir, "nanogpt-resume-rs-own"),
        (&compiled, "nanogpt-resume-rs-compiled"),
    ] {
        let dir = copy_ckpt(from, name);
        let _guard = rng();
        let data = TokenData::open(data_dir(), 16).unwrap();
        let config = TrainConfig {
            max_iters: 12,
            ..train_config()
        };
        let mut trainer = Trainer::resume(data, config, Device::Cpu, &dir.join("ckpt.pt")).unwrap();
        let mut events = Vec::new();
        trainer.run(&dir, |e| events.push(*e)).unwrap();
        let worst = assert_same_run(&as_json(&events), &pt_own);
        eprintln!("{name}: largest loss difference from PyTorch resuming its own {worst:e}");
    }
}

/// `attn train --model nanogpt` with `TRAIN` as flags and `extra`; its JSON lines.
fn attn_train(out_dir: &Path, data: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args: Vec<String> = ["train", "--model", "nanogpt", "--json", "--threads", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--data-dir".into(), data.display().to_string()]);
    args.extend(["--out-dir".into(), out_dir.display().to_string()]);
    // clap takes each flag once: those in `extra` replace TRAIN's.
    for (k, v) in TRAIN {
        let flag = format!("--{k}");
        if !extra.contains(&flag.as_str()) {
            args.extend([flag, v.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::attn(&args);
    assert!(
        out.status.success(),
        "attn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The CLI from scratch prints PyTorch's lines, and `--init-from resume` of PyTorch's
/// `ckpt.pt` continues as PyTorch resuming it does.
#[test]
fn attn_train_nanogpt_prints_pytorchs_losses_and_resumes_its_ckpt() {
    let theirs_dir = tempdir("nanogpt-cli-theirs");
    let theirs = reference_train(&theirs_dir, &[]);
    let ours = attn_train(&tempdir("nanogpt-cli-ours"), data_dir(), &[]);
    let worst = assert_same_run(&ours, &theirs);
    eprintln!("attn train: largest loss difference {worst:e}");

    let more = ["--init-from", "resume", "--max-iters", "12"];
    let pt_resumed = reference_train(&copy_ckpt(&theirs_dir, "nanogpt-cli-pt-resume"), &more);
    let dir = copy_ckpt(&theirs_dir, "nanogpt-cli-rs-resume");
    let resumed = attn_train(&dir, data_dir(), &more);
    let worst = assert_same_run(&resumed, &pt_resumed);
    eprintln!("attn train --init-from resume: largest loss difference {worst:e}");
}

/// Bad data and checkpoints: exit 2, one line naming what is wrong.
#[test]
fn attn_train_nanogpt_refuses_bad_input_in_one_line() {
    let good = data_dir();
    let run = |data: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["train", "--model", "nanogpt", "--block-size", "16"];
        args.extend(["--n-layer", "2", "--n-head", "2", "--n-embd", "32"]);
        let (d, o) = (data.display().to_string(), out.display().to_string());
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--data-dir".into(), d, "--out-dir".into(), o]);
        all.extend(extra.iter().map(|s| s.to_string()));
        common::attn(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let bad_copy = |name: &str| {
        let dir = tempdir(name);
        for f in ["train.bin", "val.bin", "meta.pkl"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        dir
    };
    let out = tempdir("nanogpt-bad-out");

    let missing = bad_copy("nanogpt-bad-missing");
    std::fs::remove_file(missing.join("train.bin")).unwrap();
    common::assert_usage_error(&run(&missing, &out, &[]), "train.bin");

    let truncated = bad_copy("nanogpt-bad-truncated");
    let bytes = std::fs::read(truncated.join("val.bin")).unwrap();
    std::fs::write(truncated.join("val.bin"), &bytes[..bytes.len() - 1]).unwrap();
    common::assert_usage_error(&run(&truncated, &out, &[]), "truncated");

    let big_token = bad_copy("nanogpt-bad-token");
    let mut bytes = std::fs::read(big_token.join("train.bin")).unwrap();
    bytes[10..12].copy_from_slice(&60000u16.to_le_bytes());
    std::fs::write(big_token.join("train.bin"), &bytes).unwrap();
    common::assert_usage_error(&run(&big_token, &out, &[]), "token 60000");

    // A pickle that would call os.system: the restricted unpickler builds no object.
    let foreign = bad_copy("nanogpt-bad-meta");
    let status = Command::new(setup_python())
        .args([
            "-c",
            "import pickle, os, sys\nclass E:\n    def __reduce__(self): return (os.system, ('true',))\npickle.dump(E(), open(sys.argv[1], 'wb'))",
        ])
        .arg(foreign.join("meta.pkl"))
        .status()
        .unwrap();
    assert!(status.success());
    common::assert_usage_error(&run(&foreign, &out, &[]), "meta.pkl");

    // A checkpoint of 2 layers resumed with 3.
    let ckpt_dir = tempdir("nanogpt-bad-resume");
    let ok = run(
        good,
        &ckpt_dir,
        &[
            "--max-iters",
            "1",
            "--eval-interval",
            "1",
            "--eval-iters",
            "1",
            "--batch-size",
            "2",
            "--gradient-accumulation-steps",
            "1",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = common::attn(&[
        "train",
        "--model",
        "nanogpt",
        "--block-size",
        "16",
        "--n-layer",
        "3",
        "--n-head",
        "2",
        "--n-embd",
        "32",
        "--init-from",
        "resume",
        "--data-dir",
        good.to_str().unwrap(),
        "--out-dir",
        ckpt_dir.to_str().unwrap(),
    ]);
    common::assert_usage_error(&out, "n_layer = 2, not 3");
}

/// `--data FILE.txt` is prepared as `shakespeare_char/prepare.py` prepares it: the same
/// `train.bin` and `val.bin` bytes, and a `meta.pkl` Python loads to the same dict.
#[test]
fn prepare_chars_writes_what_prepare_py_writes() {
    let dir = tempdir("nanogpt-prepare-ours");
    let n = prepare_chars(&fixtures().join("lecture_gpt/hamlet.txt"), &dir).unwrap();
    assert_eq!(n as i64, vocab_size());
    for f in ["train.bin", "val.bin"] {
        let ours = std::fs::read(dir.join(f)).unwrap();
        assert!(
            ours == std::fs::read(data_dir().join(f)).unwrap(),
            "{f} differs"
        );
    }
    let same = "import pickle, sys\na, b = (pickle.load(open(p, 'rb')) for p in sys.argv[1:])\nassert a == b and list(a) == list(b), (a, b)";
    let status = Command::new(setup_python())
        .args(["-c", same])
        .arg(dir.join("meta.pkl"))
        .arg(data_dir().join("meta.pkl"))
        .status()
        .unwrap();
    assert!(status.success(), "meta.pkl differs from prepare.py's");
}

/// A disk that fills while `ckpt.pt` is saved (here: the file-size limit of `ulimit -f`,
/// with SIGXFSZ ignored so that the write fails with EFBIG as on a full disk): one line,
/// exit 2, the previous `ckpt.pt` unchanged and no temporary left beside it.
#[test]
fn a_failed_save_keeps_the_previous_ckpt() {
    let data = data_dir().to_str().unwrap().to_string();
    let dir = tempdir("nanogpt-full-disk");
    let flags = |max_iters: &'static str| -> Vec<String> {
        [
            "train",
            "--model",
            "nanogpt",
            "--block-size",
            "16",
            "--n-layer",
            "2",
            "--n-head",
            "2",
            "--n-embd",
            "32",
            "--batch-size",
            "2",
            "--eval-iters",
            "1",
            "--eval-interval",
            "1",
            "--gradient-accumulation-steps",
            "1",
            "--max-iters",
            max_iters,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--data-dir".into(), data.clone()])
        .chain(["--out-dir".into(), dir.display().to_string()])
        .collect()
    };
    let first = flags("1");
    let ok = common::attn(&first.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ckpt = dir.join("ckpt.pt");
    let before = std::fs::read(&ckpt).unwrap();
    assert!(
        before.len() > 64 * 1024,
        "ckpt.pt is {} bytes",
        before.len()
    );

    // Resumed to iteration 2, whose evaluation saves again: the limit (16 KiB) is far
    // below the checkpoint's size.
    let mut resume = flags("2");
    resume.extend(["--init-from".into(), "resume".into()]);
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_attn"))
        .args(&resume)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    common::assert_usage_error(&out, "ckpt.pt");
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "ckpt.pt changed");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ckpt.pt"], "left behind: {names:?}");
}

#[test]
fn a_key_with_and_without_torch_compiles_prefix_is_an_error_not_a_silent_choice() {
    // One rule for torch.compile's `_orig_mod.` everywhere (io::strip_compile_prefix):
    // stripped, and two keys that become one refused, as the checkpoint reader refuses
    // them.
    let vs = VarStore::new(Device::Cpu);
    let config = GptConfig {
        block_size: 4,
        vocab_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
        bias: false,
    };
    let model = Gpt::new(vs.root(), config).unwrap();
    let state = model.state_dict();
    let compiled: Vec<(String, Tensor)> = state
        .iter()
        .map(|(k, t)| (format!("_orig_mod.{k}"), t.copy()))
        .collect();
    model.load_state_dict(&compiled).unwrap();
    let mut both = compiled;
    both.push((state[0].0.clone(), state[0].1.copy()));
    let err = model.load_state_dict(&both).unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
}
