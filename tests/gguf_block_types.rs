//! Every GGUF block type the crate dequantises, against gguf-py bit for bit:
//! tests/fixtures/llama/block_types.gguf holds one tensor per type (several rows of
//! several blocks, one of them 3-D) of random bytes with random finite float16 scales,
//! written by gguf-py's GGUFWriter, and block_types_dequant.safetensors holds gguf-py's
//! `quants.dequantize` of each (scripts/llama_reference.py --only gguf, seed 0;
//! `make check-llama-fixtures` reproduces both byte for byte).

mod common;

use common::{attn, fixtures, setup_python};
use tch_attention::io::{read_safetensors, GgmlType, Gguf};

fn block_types() -> std::path::PathBuf {
    fixtures().join("llama/block_types.gguf")
}

#[test]
fn every_block_type_dequantises_bit_for_bit_as_gguf_py() {
    let g = Gguf::read(&block_types()).unwrap();
    let expected = read_safetensors(&fixtures().join("llama/block_types_dequant.safetensors"))
        .unwrap()
        .tensors;
    let types: Vec<GgmlType> = g.tensors.iter().map(|t| t.ggml_type).collect();
    use GgmlType::*;
    assert_eq!(
        types,
        [Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS]
    );
    assert_eq!(expected.len(), g.tensors.len());
    for info in &g.tensors {
        let name = &info.name;
        let want = &expected[name];
        let got = g.tensor(name).unwrap();
        assert_eq!(got.size(), want.size(), "{name}");
        let bits = |t: &tch::Tensor| {
            Vec::<f32>::try_from(t.flatten(0, -1))
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<u32>>()
        };
        let (got, want) = (bits(&got), bits(want));
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            differ,
            0,
            "{name} ({:?}): {differ} of {} values differ from gguf-py's, the first at {first:?}",
            info.ggml_type,
            want.len()
        );
    }
}

/// `attn inspect --json` names each tensor's type as gguf-py's `GGUFReader` does.
#[test]
fn inspect_names_every_block_type_as_gguf_py() {
    let file = block_types();
    let out = attn(&["inspect", "--json", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<serde_json::Value> = ours["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::json!([t["name"], t["dtype"], t["shape"], t["bytes"]]))
        .collect();
    let script = "import gguf, json, sys\n\
r = gguf.GGUFReader(sys.argv[1])\n\
print(json.dumps([[x.name, x.tensor_type.name, [int(d) for d in reversed(x.shape)], int(x.n_bytes)] for x in r.tensors]))";
    let py = std::process::Command::new(setup_python())
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(serde_json::Value::Array(ours), theirs);
}
