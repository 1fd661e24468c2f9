//! `attn sample --checkpoint DIR/ckpt.pt` against nanoGPT's `sample.py`.
//!
//! The crate trains a tiny nanoGPT (`attn train --model nanogpt --data hamlet.txt`,
//! which writes `ckpt.pt` and `meta.pkl` to the out dir); PyTorch's side is
//! `scripts/nanogpt_sample_reference.py` (written from `sample.py` and `model.py`'s
//! `generate`), run now with the setup's Python, one thread on both sides. The printed
//! text must be the same: the same seed drawn before the model's init, the same draws.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{assert_usage_error, attn, fixtures, setup_python, tempdir};

/// A `ckpt.pt` from 20 iterations of a 2-layer model with block_size 16, made once.
fn trained() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempdir("nanogpt-sample-ckpt");
        let text = fixtures().join("lecture_gpt/hamlet.txt");
        let out = attn(&[
            "train",
            "--model",
            "nanogpt",
            "--threads",
            "1",
            "--data",
            text.to_str().unwrap(),
            "--out-dir",
            dir.to_str().unwrap(),
            "--n-layer",
            "2",
            "--n-head",
            "2",
            "--n-embd",
            "32",
            "--block-size",
            "16",
            "--batch-size",
            "4",
            "--gradient-accumulation-steps",
            "1",
            "--dropout",
            "0.1",
            "--max-iters",
            "20",
            "--eval-interval",
            "10",
            "--eval-iters",
            "2",
            "--learning-rate",
            "1e-2",
            "--warmup-iters",
            "2",
            "--lr-decay-iters",
            "20",
            "--min-lr",
            "1e-3",
        ]);
        assert!(
            out.status.success(),
            "attn train: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dir.join("ckpt.pt").is_file() && dir.join("meta.pkl").is_file());
        dir
    })
}

/// `sample.py`'s output from the reference, with `flags` (`attn sample`'s spelling).
fn reference(ckpt: &Path, flags: &[&str]) -> String {
    let flags: Vec<&str> = flags
        .iter()
        .map(|f| if *f == "--prompt" { "--start" } else { f })
        .collect();
    let out = Command::new(setup_python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/nanogpt_sample_reference.py"))
        .arg("--ckpt")
        .arg(ckpt)
        .args(&flags)
        .output()
        .expect("run the reference");
    assert!(
        out.status.success(),
        "reference: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ours(ckpt: &Path, flags: &[&str]) -> String {
    let mut args = vec![
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--threads",
        "1",
    ];
    args.extend(flags);
    let out = attn(&args);
    assert!(
        out.status.success(),
        "attn sample: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// sample.py's defaults (start "\n", temperature 0.8, top_k 200 > vocab, seed 1337),
/// and a prompt with a small top-k and another seed; 40 new tokens outrun block_size
/// 16, so both the cached and the recomputed window are used.
#[test]
fn attn_sample_prints_what_sample_py_prints() {
    let ckpt = trained().join("ckpt.pt");
    for flags in [
        &["--num-samples", "3", "--max-new-tokens", "40"][..],
        &[
            "--num-samples",
            "2",
            "--max-new-tokens",
            "30",
            "--prompt",
            "To be",
            "--temperature",
            "1.3",
            "--top-k",
            "5",
            "--seed",
            "7",
        ][..],
    ] {
        let theirs = reference(&ckpt, flags);
        assert_eq!(
            theirs.matches("---------------\n").count(),
            flag(flags, "--num-samples")
        );
        assert_eq!(ours(&ckpt, flags), theirs, "flags {flags:?}");
    }
}

fn flag(flags: &[&str], name: &str) -> usize {
    let at = flags.iter().position(|f| *f == name).unwrap();
    flags[at + 1].parse().unwrap()
}

/// No `meta.pkl` (sample.py would fall back to GPT-2's BPE), a prompt outside the
/// vocabulary, an empty prompt: exit 2, one line.
#[test]
fn a_ckpt_without_a_char_vocabulary_or_a_foreign_prompt_is_refused() {
    let dir = tempdir("nanogpt-sample-no-meta");
    std::fs::copy(trained().join("ckpt.pt"), dir.join("ckpt.pt")).unwrap();
    let lonely = dir.join("ckpt.pt");
    let out = attn(&["sample", "--checkpoint", lonely.to_str().unwrap()]);
    assert_usage_error(&out, "GPT-2");

    let ckpt = trained().join("ckpt.pt");
    let ckpt = ckpt.to_str().unwrap();
    assert_usage_error(
        &attn(&["sample", "--checkpoint", ckpt, "--prompt", "a~\u{1F600}"]),
        "--prompt",
    );
    assert_usage_error(
        &attn(&["sample", "--checkpoint", ckpt, "--prompt", ""]),
        "--prompt",
    );
    assert_usage_error(
        &attn(&["sample", "--checkpoint", ckpt, "--top-k", "0"]),
        "--top-k",
    );
}

/// `model_args` asking for a model far larger than the weights the file holds are
/// refused before anything that size is allocated.
#[test]
fn model_args_larger_than_the_weights_are_refused_before_allocating() {
    let dir = tempdir("nanogpt-sample-bomb");
    std::fs::copy(trained().join("meta.pkl"), dir.join("meta.pkl")).unwrap();
    let bomb = dir.join("ckpt.pt");
    let edit = "import torch, sys\n\
                c = torch.load(sys.argv[1], weights_only=True)\n\
                c['model_args'].update(n_embd=16384, n_layer=64)\n\
                torch.save(c, sys.argv[2])\n";
    let status = Command::new(setup_python())
        .args(["-c", edit])
        .arg(trained().join("ckpt.pt"))
        .arg(&bomb)
        .status()
        .expect("run python");
    assert!(status.success());
    let start = std::time::Instant::now();
    let out = attn(&["sample", "--checkpoint", bomb.to_str().unwrap()]);
    assert_usage_error(&out, "parameters, but the file holds");
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}
