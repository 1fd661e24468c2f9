//! The tensors behind `attn notebook` equal, bit for bit, what PyTorch computes for the
//! notebook (tests/fixtures/notebook.safetensors, written by scripts/make_fixtures.py).

use std::path::PathBuf;
use std::sync::Mutex;

use tch::Tensor;
use tch_attention::io::read_safetensors;
use tch_attention::notebook::{Notebook, NotebookConfig};

/// libtorch's default generator is process-wide and the test harness runs tests on
/// several threads: each replay holds this lock so no other test draws in between.
static RNG: Mutex<()> = Mutex::new(());

fn replay(config: NotebookConfig) -> tch_attention::Result<Notebook> {
    let _guard = RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Notebook::replay(config)
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notebook.safetensors")
}

fn assert_bits_equal(name: &str, ours: &Tensor, theirs: &Tensor) {
    assert_eq!(ours.size(), theirs.size(), "{name}: shape");
    assert_eq!(ours.kind(), theirs.kind(), "{name}: dtype");
    // Bitwise: compare the raw bytes, so -0.0 vs 0.0 or a last-ulp difference fails too.
    let bytes = |t: &Tensor| {
        let t = t.detach().contiguous();
        let mut v = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
        t.copy_data_u8(&mut v, t.numel());
        v
    };
    assert!(
        bytes(ours) == bytes(theirs),
        "{name}: not bit-for-bit equal to PyTorch's"
    );
}

#[test]
fn notebook_matches_pytorch_bit_for_bit() {
    let file = read_safetensors(&fixture()).expect("read the notebook fixture");
    assert_eq!(file.metadata.get("seed").map(String::as_str), Some("1337"));
    let nb = replay(NotebookConfig::default()).expect("replay");
    let expected = |n: &str| {
        file.tensors
            .get(n)
            .unwrap_or_else(|| panic!("fixture lacks {n}"))
    };
    assert_bits_equal("x", &nb.one.x, expected("x"));
    assert_bits_equal("key.weight", &nb.one.key.weight, expected("key.weight"));
    assert_bits_equal(
        "query.weight",
        &nb.one.query.weight,
        expected("query.weight"),
    );
    assert_bits_equal("wei", &nb.one.wei, expected("wei"));
    assert_bits_equal("out", &nb.one.out, expected("out"));
}

#[test]
fn notebook_prints_the_notebooks_digits() {
    let nb = replay(NotebookConfig::default()).expect("replay");
    let text = nb.render().expect("render");
    // Lines as they appear in shared/notebook.txt.
    for line in [
        "torch.Size([4, 8, 32])",
        "tensor([[[ 1.8077e-01, -6.9988e-02, -3.5962e-01, -9.1520e-01,  6.2577e-01,",
        "        [0.1574, 0.8426, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000],",
        "        [0.0210, 0.0843, 0.0555, 0.2297, 0.0573, 0.0709, 0.2423, 0.2391]],",
        "       grad_fn=<SelectBackward0>)",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
}

#[test]
fn notebook_rejects_zero_sizes() {
    let cfg = NotebookConfig {
        time: 0,
        ..NotebookConfig::default()
    };
    let err = replay(cfg).expect_err("zero time must be an error");
    assert!(err.to_string().contains("time"), "{err}");
}
