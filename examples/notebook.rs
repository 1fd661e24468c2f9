//! The notebook "Self attention from scratch using PyTorch", replayed through the
//! library: part one of what `attn notebook` prints, built from the replay's tensors
//! with the crate's PyTorch-style printing.
//!
//!     cargo run --example notebook
//!
//! Exits nonzero unless the text is what `attn notebook` prints ([`Notebook::render`])
//! and the tensors behind it are what PyTorch computed for the notebook
//! (`tests/fixtures/notebook.safetensors`, from `scripts/make_fixtures.py`): the random
//! draws bit for bit, the computed `wei` and `out` to float32 `assert_close` tolerances
//! at least (`tests/notebook.rs` holds them to the bit).

use std::path::Path;

use anyhow::{bail, Context};
use tch::{Kind, Tensor};
use tch_attention::io::read_safetensors;
use tch_attention::notebook::{Notebook, NotebookConfig};
use tch_attention::pretty::{size_repr, tensor_repr, tensor_repr_with};

/// `torch.testing.assert_close`'s float32 tolerances.
const RTOL: f64 = 1.3e-6;
const ATOL: f64 = 1e-5;

fn main() -> anyhow::Result<()> {
    // torch.manual_seed(1337); B, T, C = 4, 8, 32; head_size = 16
    let nb = Notebook::replay(NotebookConfig::default())?;
    let one = &nb.one;

    // In [8]: print(x.shape); print(x[:1]); ...; print(out.shape)
    let mut text = String::from("In [8]:\n");
    text += &format!("{}\n", size_repr(&one.x.size()));
    text += &format!("{}\n", tensor_repr(&one.x.f_narrow(0, 0, 1)?)?);
    text += &format!("{}\n", size_repr(&one.out.size()));
    // In [10]: wei[0]; PyTorch shows the grad_fn of the select, which tch cannot name.
    let wei0 = one.wei.f_get(0)?;
    text += "\nIn [10]:\n";
    text += &format!(
        "{}\n",
        tensor_repr_with(&wei0, &["grad_fn=<SelectBackward0>"])?
    );
    print!("{text}");
    if !nb.render()?.starts_with(&text) {
        bail!("the text above is not the start of what `attn notebook` prints");
    }
    println!();
    check_against_pytorch(&nb)
}

/// Compares part one's tensors with the notebook fixture written by PyTorch.
fn check_against_pytorch(nb: &Notebook) -> anyhow::Result<()> {
    let one = &nb.one;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notebook.safetensors");
    let pytorch = read_safetensors(&file)?.tensors;
    // What was drawn from the seed must be PyTorch's bits. What was computed from it is
    // PyTorch's bits where the CPU kernels round as on the machine that wrote the fixture
    // (tests/notebook.rs holds that), and within float32 tolerance everywhere.
    for (name, ours, drawn) in [
        ("x", &one.x, true),
        ("key.weight", &one.key.weight, true),
        ("query.weight", &one.query.weight, true),
        ("wei", &one.wei, false),
        ("out", &one.out, false),
    ] {
        let theirs = pytorch
            .get(name)
            .with_context(|| format!("{} lacks {name}", file.display()))?;
        if bits_equal(ours, theirs)? {
            println!("{name:<12} equals PyTorch's bit for bit");
        } else if !drawn && ours.f_allclose(theirs, RTOL, ATOL, false)? {
            let max_abs = ours.f_sub(theirs)?.f_abs()?.f_max()?.f_double_value(&[])?;
            println!(
                "{name:<12} equals PyTorch's within float32 tolerance (max abs diff {max_abs:.1e})"
            );
        } else {
            bail!("{name} differs from PyTorch's notebook");
        }
    }
    Ok(())
}

/// Same dtype, shape and bytes (so -0.0 against 0.0, or a last-ulp difference, counts).
fn bits_equal(a: &Tensor, b: &Tensor) -> anyhow::Result<bool> {
    if a.kind() != b.kind() || a.size() != b.size() {
        return Ok(false);
    }
    // Reinterpreted as integers of the same width, equal values are equal bits.
    let bits = |t: &Tensor| t.f_detach()?.f_view_dtype(Kind::Int);
    Ok(bits(a)?.equal(&bits(b)?))
}
