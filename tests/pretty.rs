//! `tch_attention::pretty` against PyTorch 2.13's own `str(tensor)`.
//!
//! `tests/fixtures/pretty/reprs.safetensors` (written by `scripts/pretty_reference.py`)
//! holds each case's tensor and, in its metadata, what PyTorch printed for it; every repr
//! here must be the same string, character for character.

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tch_attention::pretty::{size_repr, tensor_repr, tensor_repr_with};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pretty/reprs.safetensors")
}

/// One case: the stored tensor, PyTorch's string, and how the printed tensor was made.
struct Case {
    name: String,
    expected: String,
    size: String,
    tensor: Tensor,
    requires_grad: bool,
    suffixes: Vec<String>,
    cuda: bool,
}

fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F64 => Kind::Double,
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F8_E4M3 => Kind::Float8e4m3fn,
        Dtype::F8_E5M2 => Kind::Float8e5m2,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => panic!("no tch kind for the fixture dtype {other:?}"),
    }
}

fn load_cases() -> (HashMap<String, String>, Vec<Case>) {
    let path = fixture_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/pretty_reference.py to write it)",
            path.display()
        )
    });
    let (_, header) = SafeTensors::read_metadata(&bytes).expect("a safetensors header");
    let metadata = header.metadata().clone().expect("a __metadata__ table");
    let file = SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let index: Value =
        serde_json::from_str(&metadata["cases"]).expect("the `cases` metadata is JSON");
    let cases = index
        .as_array()
        .expect("`cases` is an array")
        .iter()
        .map(|entry| {
            let name = entry["name"].as_str().expect("a case name").to_string();
            let view = file.tensor(&name).expect("every case has its tensor");
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let mut tensor = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype()))
                .expect("a tensor from the fixture bytes");
            if entry["complex"].as_bool() == Some(true) {
                tensor = tensor.view_as_complex();
            }
            Case {
                expected: metadata[&name].clone(),
                size: entry["size"].as_str().expect("a size").to_string(),
                tensor,
                requires_grad: entry["requires_grad"].as_bool() == Some(true),
                suffixes: entry["suffixes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| s.as_str().expect("a suffix").to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
                cuda: entry["device"].as_str() == Some("cuda"),
                name,
            }
        })
        .collect();
    (metadata, cases)
}

/// Both strings line by line, with the first differing line and column marked.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        let (el, al) = (e.get(i).copied(), a.get(i).copied());
        if el == al {
            out.push_str(&format!("   {}\n", el.unwrap_or_default()));
            continue;
        }
        let (el, al) = (el.unwrap_or("<none>"), al.unwrap_or("<none>"));
        let column = el
            .chars()
            .zip(al.chars())
            .take_while(|(x, y)| x == y)
            .count();
        out.push_str(&format!(
            "-  {el}\n+  {al}\n   {}^ line {}, column {}\n",
            " ".repeat(column),
            i + 1,
            column + 1
        ));
    }
    out
}

/// Prints every case whose `cuda` flag is `on_cuda` (on the first CUDA device if so) and
/// returns how many were checked and a description of each that differs from PyTorch.
fn check_reprs(cases: &[Case], on_cuda: bool) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases.iter().filter(|c| c.cuda == on_cuda) {
        let mut t = case.tensor.shallow_clone();
        if on_cuda {
            t = t.to_device(Device::Cuda(0));
        }
        if case.requires_grad {
            t = t.set_requires_grad(true);
        }
        let suffixes: Vec<&str> = case.suffixes.iter().map(String::as_str).collect();
        checked += 1;
        match tensor_repr_with(&t, &suffixes) {
            Ok(actual) if actual == case.expected => {}
            Ok(actual) => failures.push(format!(
                "case `{}`: expected (-, PyTorch) and actual (+):\n{}",
                case.name,
                diff(&case.expected, &actual)
            )),
            Err(e) => failures.push(format!("case `{}`: error {e}", case.name)),
        }
    }
    (checked, failures)
}

#[test]
fn every_repr_matches_pytorch() {
    let (metadata, cases) = load_cases();
    assert!(
        metadata.get("torch_version").map(String::as_str) == Some("2.13.0"),
        "the fixture was made by torch {:?}, not 2.13.0",
        metadata.get("torch_version")
    );
    let (checked, failures) = check_reprs(&cases, false);
    assert!(checked >= 90, "only {checked} cases in the fixture");
    assert!(
        failures.is_empty(),
        "{} of {checked} reprs differ from PyTorch's:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The cases PyTorch printed for a tensor on `cuda:0` (`device='cuda:0'` in the repr).
#[test]
#[ignore = "needs a CUDA device; run with --ignored on a GPU machine"]
fn cuda_reprs_match_pytorch() {
    // Loads libtorch_cuda first: the binaries link libtorch_cpu alone (src/device.rs).
    if let Err(e) = tch_attention::device::cuda_device(0) {
        panic!("no CUDA device available to this libtorch: this test needs one ({e})");
    }
    let (_, cases) = load_cases();
    let (checked, failures) = check_reprs(&cases, true);
    assert!(checked > 0, "no CUDA cases in the fixture");
    assert!(
        failures.is_empty(),
        "{} of {checked} CUDA reprs differ from PyTorch's:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sizes_match_pytorch() {
    let (_, cases) = load_cases();
    for case in &cases {
        assert_eq!(
            size_repr(&case.tensor.size()),
            case.size,
            "case `{}`",
            case.name
        );
    }
}

#[test]
fn tensor_repr_is_tensor_repr_with_no_suffix() {
    let (_, cases) = load_cases();
    for case in cases.iter().filter(|c| c.suffixes.is_empty() && !c.cuda) {
        let mut t = case.tensor.shallow_clone();
        if case.requires_grad {
            t = t.set_requires_grad(true);
        }
        assert_eq!(
            tensor_repr(&t).ok().as_deref(),
            Some(case.expected.as_str())
        );
    }
}

#[test]
fn lazy_conjugate_and_negative_bits_are_resolved() {
    let re = Tensor::from_slice(&[1.5f32, -2.0, 0.25]);
    let im = Tensor::from_slice(&[0.5f32, 3.0, -1.0]);
    let c = Tensor::complex(&re, &im);
    let conj = c.conj();
    assert!(conj.is_conj());
    assert_eq!(
        tensor_repr(&conj).unwrap(),
        "tensor([ 1.5000-0.5000j, -2.0000-3.0000j,  0.2500+1.0000j])"
    );
    let neg = re.internal_neg_view();
    assert!(neg.is_neg());
    assert_eq!(
        tensor_repr(&neg).unwrap(),
        "tensor([-1.5000,  2.0000, -0.2500])"
    );
}

#[test]
fn views_and_non_contiguous_tensors_print_their_values() {
    let t = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]);
    assert_eq!(
        tensor_repr(&t.tr()).unwrap(),
        "tensor([[ 0.,  4.,  8.],\n        [ 1.,  5.,  9.],\n        [ 2.,  6., 10.],\n        [ 3.,  7., 11.]])"
    );
    assert_eq!(
        tensor_repr(&t.select(1, 2)).unwrap(),
        "tensor([ 2.,  6., 10.])"
    );
}

#[test]
fn caller_grad_suffix_replaces_requires_grad() {
    let t = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
    assert_eq!(
        tensor_repr(&t).unwrap(),
        "tensor([1., 2.], requires_grad=True)"
    );
    assert_eq!(
        tensor_repr_with(&t, &["grad_fn=<AddBackward0>"]).unwrap(),
        "tensor([1., 2.], grad_fn=<AddBackward0>)"
    );
    // A non-leaf does not say requires_grad=True: PyTorch names its grad_fn instead.
    let y = &t * 2.0;
    assert_eq!(tensor_repr(&y).unwrap(), "tensor([2., 4.])");
}

#[test]
fn no_panic_on_any_kind() {
    let kinds = [
        Kind::Uint8,
        Kind::Int8,
        Kind::Int16,
        Kind::Int,
        Kind::Int64,
        Kind::Half,
        Kind::Float,
        Kind::Double,
        Kind::ComplexHalf,
        Kind::ComplexFloat,
        Kind::ComplexDouble,
        Kind::Bool,
        Kind::QInt8,
        Kind::QUInt8,
        Kind::QInt32,
        Kind::BFloat16,
        Kind::Float8e5m2,
        Kind::Float8e4m3fn,
        Kind::Float8e5m2fnuz,
        Kind::Float8e4m3fnuz,
    ];
    let base = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0]).reshape([2, 2]);
    let big = Tensor::arange(2000, (Kind::Float, Device::Cpu)).reshape([40, 50]) / 7.0;
    let quantized = [Kind::QInt8, Kind::QUInt8, Kind::QInt32];
    for kind in kinds {
        for t in [&base, &big, &base.get(0).get(0), &base.narrow(0, 0, 0)] {
            // A cast to a quantized dtype is an error in libtorch (quantize_per_tensor
            // makes one); every other dtype must cast and print.
            let Ok(t) = t.f_to_kind(kind) else {
                assert!(quantized.contains(&kind), "{kind:?}: no cast");
                continue;
            };
            let repr = tensor_repr(&t);
            assert!(
                repr.as_ref().is_ok_and(|r| r.starts_with("tensor(")),
                "{kind:?} {:?}: {repr:?}",
                t.size()
            );
        }
    }
    // The dtypes PyTorch prints as it does float8 and complex32, checked for an answer.
    let c32 = Tensor::complex(&base, &base).to_kind(Kind::ComplexHalf);
    assert_eq!(
        tensor_repr(&c32).unwrap(),
        "tensor([[ 0.5000+0.5000j, -1.0000-1.0000j],\n        [ 2.0000+2.0000j,  0.0000+0.0000j]], dtype=torch.complex32)"
    );
    let q = base.quantize_per_tensor(0.1, 0, Kind::QInt8);
    assert!(tensor_repr(&q).is_err());
    assert!(tensor_repr(&Tensor::new()).is_err());
}
