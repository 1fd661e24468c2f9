//! The crate's `torch.save` writer read back by PyTorch itself: `torch.load(path,
//! weights_only=True)` in the setup's Python, run now, describes what it loaded as
//! JSON (types, values, tensors' dtypes, shapes, elements and which share storage),
//! and that must be the tree written. The crate's own reader reads the `model` entry
//! back too.

mod common;

use std::process::Command;

use common::{setup_python, tempdir};
use serde_json::{json, Value};
use tch::{Kind, Tensor};
use tch_attention::io::{read_checkpoint, write_torch_save, Overwrite, TorchValue};

/// Loads `path` with `torch.load(weights_only=True)` and prints it as JSON: a tensor is
/// `{"dtype", "shape", "values", "storage"}` with `storage` the index of its storage
/// among those seen (tied tensors share one), a tuple is `{"tuple": [...]}`, an
/// OrderedDict `{"ordered": [[k, v], ...]}`, a dict `{"dict": [[k, v], ...]}`. A
/// tensor's elements are Python's `repr`s (exact, unlike serde_json's float parsing).
const DESCRIBE: &str = r#"
import collections, json, sys, torch
obj = torch.load(sys.argv[1], weights_only=True)
storages = []
def d(v):
    if isinstance(v, torch.Tensor):
        ptr = v.untyped_storage().data_ptr()
        if ptr not in storages: storages.append(ptr)
        return {"dtype": str(v.dtype), "shape": list(v.shape),
                "values": [repr(x) for x in v.double().flatten().tolist()], "storage": storages.index(ptr),
                "requires_grad": v.requires_grad}
    if isinstance(v, collections.OrderedDict):
        return {"ordered": [[d(k), d(x)] for k, x in v.items()]}
    if isinstance(v, dict):
        return {"dict": [[d(k), d(x)] for k, x in v.items()]}
    if isinstance(v, tuple):
        return {"tuple": [d(x) for x in v]}
    if isinstance(v, list):
        return [d(x) for x in v]
    return v
print(json.dumps(d(obj)))
"#;

/// Turns every tensor's `values` (Python `repr`s) into numbers, parsed exactly.
fn parse_reprs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(xs)) = o.get_mut("values") {
                for x in xs.iter_mut() {
                    let f: f64 = x.as_str().expect("a repr").parse().expect("a float");
                    *x = json!(f);
                }
            }
            o.values_mut().for_each(parse_reprs);
        }
        Value::Array(xs) => xs.iter_mut().for_each(parse_reprs),
        _ => {}
    }
}

#[test]
fn torch_load_weights_only_reads_back_the_tree_written() {
    let dir = tempdir("torch-writer");
    let path = dir.join("ckpt.pt");
    tch::manual_seed(0);
    let wte = Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu));
    let bias = Tensor::from_slice(&[1i64, -2, 3]);
    let view = Tensor::arange(12, (Kind::Double, tch::Device::Cpu))
        .view([3, 4])
        .transpose(0, 1); // a non-contiguous view, written as its own storage
    let scalar = Tensor::from(2.5f32);
    let value = TorchValue::dict([
        (
            "model",
            TorchValue::state_dict([
                ("transformer.wte.weight", wte.shallow_clone()),
                ("bias", bias.shallow_clone()),
                ("lm_head.weight", wte.shallow_clone()),
            ]),
        ),
        (
            "optimizer",
            TorchValue::dict([(
                "state",
                TorchValue::Dict(vec![(
                    TorchValue::Int(0),
                    TorchValue::dict([("step", TorchValue::Tensor(scalar.shallow_clone()))]),
                )]),
            )]),
        ),
        ("view", TorchValue::Tensor(view.shallow_clone())),
        (
            "ints",
            TorchValue::List(
                [0, 255, 256, 70000, -1, -300, 1 << 40, i64::MIN]
                    .map(TorchValue::Int)
                    .into(),
            ),
        ),
        ("lr", TorchValue::Float(6e-4)),
        (
            "betas",
            TorchValue::Tuple(vec![TorchValue::Float(0.9), TorchValue::Float(0.95)]),
        ),
        (
            "five",
            TorchValue::Tuple((1..=5).map(TorchValue::Int).collect()),
        ),
        ("none", TorchValue::None),
        (
            "flags",
            TorchValue::List(vec![TorchValue::Bool(true), TorchValue::Bool(false)]),
        ),
        ("name", TorchValue::str("shakespeare_char é")),
        ("empty", TorchValue::Dict(vec![])),
    ]);
    write_torch_save(&path, &value, Overwrite::Replace).unwrap();

    let out = Command::new(setup_python())
        .args(["-c", DESCRIBE])
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "torch.load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Value = serde_json::from_slice(&out.stdout).unwrap();
    parse_reprs(&mut got);

    let tensor = |t: &Tensor, dtype: &str, storage: usize| {
        json!({
            "dtype": dtype,
            "shape": t.size(),
            "values": Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap(),
            "storage": storage,
            "requires_grad": false,
        })
    };
    let s = |k: &str| json!(k);
    let expected = json!({"dict": [
        [s("model"), {"ordered": [
            [s("transformer.wte.weight"), tensor(&wte, "torch.float32", 0)],
            [s("bias"), tensor(&bias, "torch.int64", 1)],
            [s("lm_head.weight"), tensor(&wte, "torch.float32", 0)],
        ]}],
        [s("optimizer"), {"dict": [[s("state"), {"dict": [
            [0, {"dict": [[s("step"), tensor(&scalar, "torch.float32", 2)]]}],
        ]}]]}],
        [s("view"), tensor(&view, "torch.float64", 3)],
        [s("ints"), [0, 255, 256, 70000, -1, -300, 1i64 << 40, i64::MIN]],
        [s("lr"), 6e-4],
        [s("betas"), {"tuple": [0.9, 0.95]}],
        [s("five"), {"tuple": [1, 2, 3, 4, 5]}],
        [s("none"), null],
        [s("flags"), [true, false]],
        [s("name"), s("shakespeare_char é")],
        [s("empty"), {"dict": []}],
    ]});
    assert_eq!(got, expected);

    // The crate's reader finds the `model` state_dict and its tensors' bytes.
    let ckpt = read_checkpoint(&path).unwrap();
    assert_eq!(ckpt.tensors.len(), 3);
    for (k, t) in [
        ("transformer.wte.weight", &wte),
        ("bias", &bias),
        ("lm_head.weight", &wte),
    ] {
        assert!(ckpt.tensors[k].equal(t), "{k}");
    }
}

#[test]
fn records_are_torch_saves_and_64_byte_aligned() {
    let dir = tempdir("torch-writer-layout");
    let path = dir.join("ckpt.pt");
    let value = TorchValue::state_dict([
        ("a", Tensor::from_slice(&[1f32, 2., 3.])),
        ("b", Tensor::from_slice(&[7u8])),
    ]);
    write_torch_save(&path, &value, Overwrite::Replace).unwrap();
    let script = r#"
import struct, sys, zipfile
b = open(sys.argv[1], 'rb').read()
for i in zipfile.ZipFile(sys.argv[1]).infolist():
    o = i.header_offset
    nl, el = struct.unpack('<HH', b[o+26:o+30])
    print(i.filename, i.compress_type, (o + 30 + nl + el) % 64, b[o+30+nl:o+32+nl].decode())
"#;
    let out = Command::new(setup_python())
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = [
        "data.pkl",
        ".format_version",
        ".storage_alignment",
        "byteorder",
        "data/0",
        "data/1",
        "version",
        ".data/serialization_id",
    ]
    .iter()
    .map(|r| format!("ckpt/{r} 0 0 FB"))
    .collect();
    assert_eq!(names, expected);
}
