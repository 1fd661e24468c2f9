//! `attn inspect` of a GGUF file: its metadata (long arrays summarised) and its tensors
//! with their storage types and PyTorch-order shapes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};
use tch_attention::io::{Gguf, GgufValue};

/// Arrays up to this length are shown whole; longer ones (a tokenizer's vocabulary) as
/// their length and element type.
const SHOWN_ARRAY: usize = 16;

pub fn inspect(path: &Path, json_out: bool) -> Result<ExitCode> {
    let g = Gguf::read(path)?;
    if json_out {
        let tensors: Vec<Value> = g
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "dtype": format!("{:?}", t.ggml_type), "shape": t.shape, "bytes": t.n_bytes}))
            .collect();
        let metadata: serde_json::Map<String, Value> = g
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect();
        let obj = json!({"file": path.display().to_string(), "format": format!("GGUF v{}", g.version),
            "tensors": tensors, "metadata": metadata});
        println!("{obj}");
        return Ok(ExitCode::SUCCESS);
    }
    let total: i128 = g.tensors.iter().map(|t| t.numel() as i128).sum();
    println!(
        "{}: GGUF v{}, {} tensors, {total} elements, {} metadata keys",
        path.display(),
        g.version,
        g.tensors.len(),
        g.metadata.len()
    );
    println!("metadata:");
    for (k, v) in &g.metadata {
        println!("  {k} = {}", to_json(v));
    }
    println!("tensors:");
    let width = g.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &g.tensors {
        println!(
            "  {:<width$}  {:<5} {:?}",
            t.name,
            format!("{:?}", t.ggml_type),
            t.shape
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A metadata value as JSON; a long array as `{"array": len, "of": type}`.
fn to_json(v: &GgufValue) -> Value {
    match v {
        GgufValue::U8(x) => json!(x),
        GgufValue::I8(x) => json!(x),
        GgufValue::U16(x) => json!(x),
        GgufValue::I16(x) => json!(x),
        GgufValue::U32(x) => json!(x),
        GgufValue::I32(x) => json!(x),
        GgufValue::U64(x) => json!(x),
        GgufValue::I64(x) => json!(x),
        // Shortest decimal of the f32 (1e-5, not 9.999999747378752e-6).
        GgufValue::F32(x) => x
            .to_string()
            .parse::<f64>()
            .map_or(json!(null), |f| json!(f)),
        GgufValue::F64(x) => json!(x),
        GgufValue::Bool(x) => json!(x),
        GgufValue::String(s) => json!(s),
        GgufValue::Array(items) if items.len() <= SHOWN_ARRAY => {
            Value::Array(items.iter().map(to_json).collect())
        }
        GgufValue::Array(items) => {
            json!({"array": items.len(), "of": items.first().map(type_name).unwrap_or("nothing")})
        }
    }
}

fn type_name(v: &GgufValue) -> &'static str {
    match v {
        GgufValue::U8(_) => "u8",
        GgufValue::I8(_) => "i8",
        GgufValue::U16(_) => "u16",
        GgufValue::I16(_) => "i16",
        GgufValue::U32(_) => "u32",
        GgufValue::I32(_) => "i32",
        GgufValue::U64(_) => "u64",
        GgufValue::I64(_) => "i64",
        GgufValue::F32(_) => "f32",
        GgufValue::F64(_) => "f64",
        GgufValue::Bool(_) => "bool",
        GgufValue::String(_) => "string",
        GgufValue::Array(_) => "array",
    }
}
