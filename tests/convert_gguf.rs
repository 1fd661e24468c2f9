//! `attn inspect` of a GGUF file, against gguf-py's reading of it; and `attn convert
//! --from gguf --to hf-llama`: a Llama GGUF written under Hugging Face's names in
//! float32. The tiny fixture model exists in both forms, written by
//! scripts/llama_reference.py (transformers' `save_pretrained`, and gguf-py with
//! llama.cpp's query/key row permutation), so the conversion must give back
//! transformers' file tensor for tensor, bit for bit.

mod common;

use common::{assert_usage_error, attn, fixtures, setup_python, tempdir};
use tch_attention::io::read_safetensors;

#[test]
fn a_gguf_converts_to_transformers_own_tensors() {
    let dir = tempdir("convert-gguf");
    let out = dir.join("model.safetensors");
    let tiny = fixtures().join("llama/tiny");
    let gguf = tiny.join("model.gguf");
    let args = [
        "convert",
        "--from",
        "gguf",
        "--to",
        "hf-llama",
        gguf.to_str().unwrap(),
        out.to_str().unwrap(),
    ];
    let run = attn(&args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got = read_safetensors(&out).unwrap().tensors;
    let want = read_safetensors(&tiny.join("model.safetensors"))
        .unwrap()
        .tensors;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(g.kind(), w.kind(), "{name}");
        assert!(g.equal(w), "{name} differs");
    }

    // Written atomically, and never over an existing file without --force.
    let again = attn(&args);
    assert_usage_error(&again, "exists");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gguf_conversions_refuse_what_does_not_apply_in_one_line() {
    let dir = tempdir("convert-gguf-errors");
    let out = dir.join("x.safetensors");
    let out = out.to_str().unwrap();
    let tiny = fixtures().join("llama/tiny");
    let gguf = tiny.join("model.gguf");
    let gguf = gguf.to_str().unwrap();
    let st = tiny.join("model.safetensors");
    let st = st.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--from", "gguf", "--to", "nanogpt", gguf, out],
            "--to hf-llama",
        ),
        (
            &["--from", "hf-gpt2", "--to", "hf-llama", gguf, out],
            "--to hf-llama",
        ),
        (
            &[
                "--from", "gguf", "--to", "hf-llama", "--heads", "2", gguf, out,
            ],
            "--heads",
        ),
        (
            &["--from", "gguf", "--to", "hf-llama", st, out],
            "not a GGUF file",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["convert"];
        full.extend_from_slice(args);
        assert_usage_error(&attn(&full), needle);
    }
    assert!(!dir.join("x.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `attn inspect --json` lists the tensors gguf-py's `GGUFReader` lists, with the same
/// storage types, shapes (PyTorch's order: gguf-py's reversed) and metadata values.
#[test]
fn inspect_lists_what_gguf_py_reads() {
    let file = fixtures().join("llama/tiny/model_q4_1.gguf");
    let out = attn(&["inspect", "--json", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let script = "import gguf, json, sys\n\
r = gguf.GGUFReader(sys.argv[1])\n\
t = [[x.name, x.tensor_type.name, [int(d) for d in reversed(x.shape)]] for x in r.tensors]\n\
m = {k: f.contents() for k, f in r.fields.items() if not k.startswith('GGUF.') and not isinstance(f.contents(), list)}\n\
print(json.dumps({'tensors': t, 'metadata': m}))";
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
    let tensors: Vec<serde_json::Value> = ours["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::json!([t["name"], t["dtype"], t["shape"]]))
        .collect();
    assert_eq!(serde_json::Value::Array(tensors), theirs["tensors"]);
    for (key, value) in theirs["metadata"].as_object().unwrap() {
        let got = &ours["metadata"][key];
        match (got.as_f64(), value.as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-6 * b.abs(), "{key}: {a} vs {b}"),
            _ => assert_eq!(got, value, "{key}"),
        }
    }
    assert_eq!(ours["format"], "GGUF v3");
}

#[test]
fn a_gguf_is_told_apart_by_the_one_sniffer_and_named_by_the_state_dict_reader() {
    use tch_attention::io::{read_checkpoint, sniff_file, Format};
    let tiny = fixtures().join("llama/tiny");
    assert_eq!(
        sniff_file(&tiny.join("model.gguf")).unwrap(),
        Some(Format::Gguf)
    );
    assert_eq!(
        sniff_file(&tiny.join("model.safetensors")).unwrap(),
        Some(Format::Safetensors)
    );
    let err = read_checkpoint(tiny.join("model.gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a GGUF file, a whole model"), "{err}");
}
