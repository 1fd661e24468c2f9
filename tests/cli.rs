//! The `attn` binary as a user meets it: exit codes, one-line errors, no panic text.

use std::path::PathBuf;
use std::process::{Command, Output};

fn attn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attn"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run attn")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Exit code 2 and exactly one line on stderr, with no panic or C++ trace in it.
fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line expected, got: {stderr}"
    );
    assert!(stderr.starts_with("attn: "), "{stderr}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "Exception raised from",
        "frame #",
    ] {
        assert!(!stderr.contains(bad), "{stderr}");
    }
}

#[test]
fn notebook_runs_without_ld_library_path() {
    let out = attn(&["notebook"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout
        .contains("        [0.1574, 0.8426, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000],"));
    assert!(stdout.contains("tensor([[[ 1.8077e-01,"));
}

#[test]
fn notebook_at_other_sizes() {
    let out = attn(&[
        "notebook",
        "--seed",
        "1",
        "--batch",
        "2",
        "--time",
        "3",
        "--channels",
        "5",
        "--head-size",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("torch.Size([2, 3, 5])"));
}

#[test]
fn bad_usage_is_one_line_and_exit_2() {
    assert_usage_error(&attn(&["frobnicate"]), "frobnicate");
    assert_usage_error(&attn(&["notebook", "--time", "0"]), "--time");
    assert_usage_error(&attn(&["notebook", "--batch", "-3"]), "-3");
    assert_usage_error(&attn(&["notebook", "--channels", "many"]), "many");
    assert_usage_error(
        &attn(&["verify", "/nonexistent/case.safetensors"]),
        "/nonexistent/case.safetensors",
    );
}

#[test]
fn doctor_names_libtorch_2_13() {
    let out = attn(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = tch_attention::doctor::EXPECTED_LIBTORCH;
    assert!(
        stdout.contains(&format!("libtorch version   {expected}")),
        "{stdout}"
    );
}

#[test]
fn verify_passes_the_fixtures_and_run_writes_outputs() {
    // The whole fixtures folder: every case passes; the notebook, init, README and
    // pretty-printing files beside the cases are not cases and are skipped.
    let out = attn(&["verify", fixtures().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(" pass")).count(),
        109,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("verify: 109 passed, 0 failed"), "{stderr}");
    let dir = std::env::temp_dir().join(format!("attn-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let case = std::fs::read_dir(fixtures().join("cases/sdpa"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let dest = dir.join("out.safetensors");
    let out = attn(&[
        "run",
        case.to_str().unwrap(),
        "--output",
        dest.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = tch_attention::checkpoint::read_safetensors(&dest).unwrap();
    assert!(written.tensors.contains_key("output"));
    // An existing file is not replaced without --force.
    assert_usage_error(
        &attn(&[
            "run",
            case.to_str().unwrap(),
            "--output",
            dest.to_str().unwrap(),
        ]),
        "--force",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn verify_reports_a_mismatch_with_exit_1_and_garbage_with_exit_2() {
    let dir = std::env::temp_dir().join(format!("attn-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A real case with its expected output perturbed must fail.
    let case = fixtures().join("cases/head");
    let src = std::fs::read_dir(&case)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut file = tch_attention::checkpoint::read_safetensors(&src).unwrap();
    let out = file.tensors.get("expected.output").unwrap();
    let bumped = out + 1e-2;
    file.tensors.insert("expected.output".into(), bumped);
    let bad = dir.join("bad.safetensors");
    tch_attention::checkpoint::write_safetensors(
        &bad,
        file.tensors.iter().map(|(k, v)| (k.as_str(), v)),
        &file.metadata,
    )
    .unwrap();
    let out = attn(&["verify", bad.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
    // Truncated file: invalid, exit 2, names the file.
    let bytes = std::fs::read(&src).unwrap();
    let trunc = dir.join("trunc.safetensors");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let out = attn(&["verify", "--json", trunc.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("trunc.safetensors"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_rejects_bad_configurations_in_one_line() {
    assert_usage_error(&attn(&["bench", "--suite", "huge"]), "huge");
    assert_usage_error(&attn(&["bench"]), "--suite");
    assert_usage_error(&attn(&["bench", "--module", "nope"]), "nope");
    for size in ["--batch", "--seq", "--embd", "--heads", "--head-size"] {
        assert_usage_error(
            &attn(&["bench", "--module", "head", size, "0"]),
            "at least 1",
        );
    }
    assert_usage_error(&attn(&["bench", "--module", "head", "--seq", "-2"]), "-2");
    assert_usage_error(
        &attn(&["bench", "--module", "head", "--repeats", "0"]),
        "repeats",
    );
    assert_usage_error(
        &attn(&["bench", "--module", "head", "--threads", "0"]),
        "--threads",
    );
    assert_usage_error(&attn(&["bench", "--module", "head", "--dtype", "f8"]), "f8");
    assert_usage_error(
        &attn(&[
            "bench",
            "--module",
            "causal_self_attention",
            "--embd",
            "32",
            "--heads",
            "3",
            "--head-size",
            "8",
        ]),
        "embd",
    );
    assert_usage_error(&attn(&["bench", "--module", "sdpa", "--decode"]), "decode");
}

#[test]
fn bench_prints_one_json_object_per_configuration() {
    let out = attn(&[
        "bench",
        "--module",
        "head",
        "--head-size",
        "16",
        "--warmup",
        "1",
        "--repeats",
        "3",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let row: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    for field in [
        "median_ms",
        "p10_ms",
        "p90_ms",
        "gflops",
        "matmul_gflops",
        "peak_rss_mb",
    ] {
        assert!(
            row[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {row}"
        );
    }
    assert_eq!(row["module"], "head");
    assert_eq!(row["threads"], 1);
    assert!(row["p10_ms"].as_f64() <= row["median_ms"].as_f64());
    assert!(row["median_ms"].as_f64() <= row["p90_ms"].as_f64());

    let out = attn(&[
        "bench",
        "--suite",
        "small",
        "--smoke",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);

    let out = attn(&[
        "bench",
        "--module",
        "causal_self_attention",
        "--embd",
        "32",
        "--heads",
        "4",
        "--seq",
        "16",
        "--decode",
        "--repeats",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("decode"));
}
