//! The two messages of packed-documents cases that used to mislead, through `attn run`:
//! cumulative lengths that do not end at L name `cu_seqlens_q` (or `_k`) and the last
//! value they need, not `document_ids.query`; a `window` of three values says a window is
//! `[left, right]`, not serde's "trailing characters at line 1 column 19". Each is one line
//! on stderr with exit code 2.

mod common;

use std::path::Path;

use common::{assert_usage_error, attn, tempdir};

/// An sdpa case with `forward` (JSON, quotes escaped for the header) and query `[1, 2, 2]`,
/// key and value `[1, 3, 2]` in float32 (zeros), `cu_seqlens_q` `cu_q` and `cu_seqlens_k`
/// `cu_k` in int64.
fn write_case(path: &Path, forward: &str, cu_q: &[i64], cu_k: &[i64]) {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    let mut add = |name: &str, dtype: &str, shape: &[usize], bytes: Vec<u8>| {
        let (from, to) = (data.len(), data.len() + bytes.len());
        entries.push(format!(
            r#""{name}": {{"dtype": "{dtype}", "shape": {shape:?}, "data_offsets": [{from}, {to}]}}"#
        ));
        data.extend(bytes);
    };
    for (name, shape) in [
        ("input.query", [1, 2, 2]),
        ("input.key", [1, 3, 2]),
        ("input.value", [1, 3, 2]),
        ("expected.output", [1, 2, 2]),
    ] {
        add(
            name,
            "F32",
            &shape,
            vec![0u8; 4 * shape.iter().product::<usize>()],
        );
    }
    for (name, values) in [("input.cu_seqlens_q", cu_q), ("input.cu_seqlens_k", cu_k)] {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        add(name, "I64", &[values.len()], bytes);
    }
    let header = format!(
        r#"{{"__metadata__": {{"format": "tch-attention-case/1", "module": "sdpa", "config": "{{}}", "forward": "{forward}", "seed": "0"}}, {}}}"#,
        entries.join(", ")
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

fn run(case: &Path) -> std::process::Output {
    let out = case.with_extension("out.safetensors");
    attn(&["run", case.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

#[test]
fn cu_seqlens_not_ending_at_l_or_s_are_named_with_the_value_they_need() {
    let dir = tempdir("cu-seqlens-end");
    let case = dir.join("short_q.safetensors");
    write_case(&case, r#"{\"is_causal\": true}"#, &[0, 1], &[0, 3]);
    let out = run(&case);
    assert_usage_error(
        &out,
        "cu_seqlens_q: the last value must be L = 2, the number of queries",
    );
    assert_usage_error(&out, "got 1");
    let case = dir.join("long_k.safetensors");
    write_case(&case, "{}", &[0, 2], &[0, 4]);
    let out = run(&case);
    assert_usage_error(
        &out,
        "cu_seqlens_k: the last value must be S = 3, the number of keys",
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("document_ids"));
    // The same case with lengths that end right runs.
    let case = dir.join("fine.safetensors");
    write_case(&case, r#"{\"is_causal\": true}"#, &[0, 2], &[0, 3]);
    let out = run(&case);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_window_of_three_values_says_what_a_window_is() {
    let dir = tempdir("window-three");
    let case = dir.join("window3.safetensors");
    write_case(&case, r#"{\"window\": [1, 2, 3]}"#, &[0, 2], &[0, 3]);
    let out = run(&case);
    assert_usage_error(&out, "window is [left, right], two integers");
    assert_usage_error(&out, "window3.safetensors");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("trailing characters"));
    std::fs::remove_dir_all(&dir).unwrap();
}
