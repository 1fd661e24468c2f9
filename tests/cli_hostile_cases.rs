//! `attn verify` and `attn run` on hostile folders and files: a FIFO named like a case,
//! symbolic links that loop, shapes libtorch cannot represent, configs that would
//! allocate without end. Each must finish with a clear one-line error, never hang,
//! never print libtorch's C++ stack trace.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_usage_error, fixtures, tempdir};
use tch_attention::parity::collect_case_files;

/// A small valid case (an sdpa case in float64).
fn valid_case() -> PathBuf {
    fixtures().join("cases/sdpa/value_dim3_3d_f64.safetensors")
}

/// Runs `attn` with `args`, failing the test (instead of hanging it) after 120 s.
fn attn_with_timeout(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attn"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run attn");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().expect("kill");
            panic!("attn {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// A safetensors file with `tensors` (the header's JSON entries, without metadata) and
/// `data` bytes, the metadata of an sdpa case.
fn write_raw_case(path: &Path, tensors: &str, data: &[u8]) {
    let header = format!(
        r#"{{"__metadata__": {{"format": "tch-attention-case/1", "module": "sdpa", "config": "{{}}", "forward": "{{}}", "seed": "0"}}, {tensors}}}"#
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// `attn run CASE -o OUT`, OUT beside the case (and not there before).
fn run_case(case: &Path) -> Output {
    let out = case.with_extension("out.safetensors");
    attn_with_timeout(&["run", case.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

fn no_trace(text: &str) {
    for bad in ["Exception raised from", "frame #", "panicked"] {
        assert!(!text.contains(bad), "{text}");
    }
}

#[test]
fn a_fifo_named_like_a_case_is_reported_not_opened() {
    let dir = tempdir("fifo");
    std::fs::copy(valid_case(), dir.join("a.safetensors")).unwrap();
    let fifo = dir.join("b.safetensors");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let out = attn_with_timeout(&["verify", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("a.safetensors") && stdout.contains("pass"),
        "{stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("b.safetensors"))
        .unwrap();
    assert!(line.contains("not a regular file"), "{line}");
    assert_usage_error(&out, "b.safetensors: not a regular file");
    // Named on the command line, it is the same one-line error.
    let out = run_case(&fifo);
    assert_usage_error(&out, "not a regular file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 26: a folder holding only a FIFO named like a case (and a state_dict that is
/// no case) printed three lines on stderr for one user error.
#[test]
fn a_folder_of_a_fifo_is_one_line_naming_it() {
    let dir = tempdir("fifo-only");
    let fifo = dir.join("x.safetensors");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let out = attn_with_timeout(&["verify", dir.to_str().unwrap()]);
    assert_usage_error(&out, "x.safetensors: not a regular file");
    // A safetensors file without case metadata beside it: counted in the same line.
    std::fs::copy(
        fixtures().join("checkpoints/reference.safetensors"),
        dir.join("state_dict.safetensors"),
    )
    .unwrap();
    let out = attn_with_timeout(&["verify", "--json", dir.to_str().unwrap()]);
    assert_usage_error(&out, "x.safetensors: not a regular file");
    assert_usage_error(&out, "skipped 1 safetensors file(s) without case metadata");
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert!(row["error"]
        .as_str()
        .unwrap()
        .contains("not a regular file"));
    // Only files that are no case: one line too.
    std::fs::remove_file(&fifo).unwrap();
    let out = attn_with_timeout(&["verify", dir.to_str().unwrap()]);
    assert_usage_error(&out, "no *.safetensors case files");
    assert_usage_error(&out, "skipped 1");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "nothing written beside the cases");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn symbolic_links_neither_loop_nor_count_a_case_twice() {
    use std::os::unix::fs::symlink;
    let dir = tempdir("links");
    let other = tempdir("links-other");
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::copy(valid_case(), dir.join("sub/case.safetensors")).unwrap();
    std::fs::copy(valid_case(), other.join("elsewhere.safetensors")).unwrap();
    symlink(".", dir.join("sub/self")).unwrap(); // a cycle through itself
    symlink("..", dir.join("sub/up")).unwrap(); // a cycle through the parent
    symlink(dir.join("loop-b"), dir.join("loop-a")).unwrap(); // two links to each other
    symlink(dir.join("loop-a"), dir.join("loop-b")).unwrap();
    symlink("sub/case.safetensors", dir.join("alias.safetensors")).unwrap();
    symlink(&other, dir.join("other")).unwrap(); // a folder elsewhere: followed once
    let (files, skipped) = collect_case_files(&[dir.clone(), dir.join("sub")]).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap()).collect();
    assert_eq!(names.len(), 2, "{files:?}");
    assert!(
        names.contains(&"elsewhere.safetensors".as_ref()),
        "{files:?}"
    );

    let out = attn_with_timeout(&["verify", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("verify: 2 passed, 0 failed"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn shapes_libtorch_cannot_represent_are_typed_errors() {
    let dir = tempdir("shapes");
    let empty = r#""dtype": "F32", "data_offsets": [0, 0]"#;
    for (name, shape, needle) in [
        ("huge", "[9223372036854775808, 0]", "too large"),
        ("overflow", "[4294967296, 4294967296, 0]", "too large"),
        ("negative", "[-1, 0]", "-1"),
    ] {
        let path = dir.join(format!("{name}.safetensors"));
        write_raw_case(
            &path,
            &format!(r#""expected.output": {{{empty}, "shape": {shape}}}"#),
            &[],
        );
        let out = attn_with_timeout(&["verify", "--json", path.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{stdout}");
        no_trace(&stdout);
        let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let error = row["error"].as_str().unwrap();
        assert!(error.contains("expected.output"), "{error}");
        assert!(error.contains(needle), "{name}: {error}");
        let out = run_case(&path);
        assert_usage_error(&out, "expected.output");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_larger_than_its_parameters_is_refused_before_allocating() {
    let dir = tempdir("bigconfig");
    // A head whose block_size would make a tril of 2^80 elements.
    let path = dir.join("head.safetensors");
    let header = r#"{"__metadata__": {"format": "tch-attention-case/1", "module": "head", "config": "{\"n_embd\": 2, \"head_size\": 2, \"block_size\": 1099511627776}", "seed": "0"}, "expected.output": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "param.tril": {"dtype": "F32", "shape": [2, 2], "data_offsets": [4, 20]}, "input.x": {"dtype": "F32", "shape": [1, 1, 2], "data_offsets": [20, 28]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 28]);
    std::fs::write(&path, bytes).unwrap();
    let out = run_case(&path);
    assert_usage_error(&out, "larger than any param");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_misspelt_config_key_names_the_file_and_the_key() {
    let dir = tempdir("typo");
    let path = dir.join("typo.safetensors");
    let header = r#"{"__metadata__": {"format": "tch-attention-case/1", "module": "sdpa", "forward": "{\"is_casual\": true}", "seed": "0"}, "expected.output": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 4]);
    std::fs::write(&path, bytes).unwrap();
    let out = run_case(&path);
    assert_usage_error(&out, "is_casual");
    assert_usage_error(&out, "typo.safetensors");
    std::fs::remove_dir_all(&dir).unwrap();
}
