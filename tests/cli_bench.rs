//! `attn bench` as a user meets it: bad configurations are one line and exit 2; JSON rows.

mod common;

use common::{assert_usage_error, attn};
use tch_attention::nn::kernels::KernelSet;

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
fn bench_refuses_what_the_machine_cannot_hold_before_allocating() {
    // Both were killed by the kernel for lack of memory: 100000 threads, and q, k, v of
    // (1000, 1, 10^7, 32) floats (5 TB).
    assert_usage_error(
        &attn(&["bench", "--module", "head", "--threads", "100000"]),
        "--threads",
    );
    assert_usage_error(
        &attn(&["bench", "--module", "head", "--threads", "100000"]),
        "100000",
    );
    let out = attn(&[
        "bench", "--module", "sdpa", "--seq", "10000000", "--batch", "1000",
    ]);
    assert_usage_error(&out, "memory");
    assert_usage_error(&out, "available");
    // Sizes whose product overflows are refused whatever the machine has.
    assert_usage_error(
        &attn(&[
            "bench",
            "--module",
            "head",
            "--seq",
            "9223372036854775807",
            "--embd",
            "9223372036854775807",
            "--head-size",
            "1",
        ]),
        "overflow",
    );
    // The lecture's modules hold T x T scores: T = 10^6 at B = 4 is 48 TB in float32.
    assert_usage_error(
        &attn(&["bench", "--module", "head", "--seq", "1000000"]),
        "needs at least",
    );
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

/// `attn bench --suite SUITE --smoke --json` on the tiny quantised Llama of the
/// fixtures (and `extra` flags), which must succeed: its rows, and its stdout for
/// messages.
fn tiny_suite_rows_with(suite: &str, extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let model = common::fixtures().join("llama/tiny/model_q4_1.gguf");
    let mut args = vec![
        "bench",
        "--suite",
        suite,
        "--smoke",
        "--json",
        "--model",
        model.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = attn(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (rows, stdout)
}

fn tiny_suite_rows(suite: &str) -> (Vec<serde_json::Value>, String) {
    tiny_suite_rows_with(suite, &[])
}

/// `--kernels` holds the block kernels to a slower set than this CPU's fastest (an
/// AVX2-only CPU's, timed on an AVX-512 one), and every row says which set it ran on;
/// a set this CPU lacks, or no set of that name, is refused with exit 2.
#[test]
fn kernels_flag_limits_the_block_kernels_and_rows_name_them() {
    let only = ["--only", "smollm2_gguf_decode", "--kernels", "scalar"];
    let (rows, stdout) = tiny_suite_rows_with("generate", &only);
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0]["block_kernels"], "scalar", "{stdout}");
    let out = attn(&["bench", "--suite", "generate", "--kernels", "avx1024"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--kernels") && err.contains("avx512-vnni"),
        "{err}"
    );
    let lacking = KernelSet::ALL.into_iter().find(|s| !s.is_available());
    if let Some(set) = lacking {
        let out = attn(&["bench", "--suite", "generate", "--kernels", set.name()]);
        assert_eq!(out.status.code(), Some(2), "{set}");
    }
}

/// The generate suite on the tiny quantised Llama of the fixtures (its smoke sizes):
/// every row runs in the dtype `attn generate` gives its `quant`, and each decode row
/// carries the kernels' floor, the time of one token's projections and head alone,
/// which the whole step cannot beat by much.
#[test]
fn generate_suite_reports_the_kernels_floor_of_each_decode_row() {
    let (rows, stdout) = tiny_suite_rows("generate");
    let suites: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/suites.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let configs = suites["generate"]["configs"].as_array().unwrap().len();
    assert_eq!(rows.len(), configs, "{stdout}");
    for row in &rows {
        // The floats as `attn generate --quant` loads them: bfloat16 beside libtorch's
        // int4/int8 kernels, float32 beside the block kernels (whose decoding step
        // needs them) and without --quant.
        let floats = if matches!(row["quant"].as_str(), Some("int4" | "int8")) {
            "bf16"
        } else {
            "f32"
        };
        assert_eq!(row["floats"], floats, "{row}");
        let kernels = row["projections_ms"].as_f64();
        if row["mode"] == "decode" {
            assert!(kernels.is_some_and(|v| v > 0.0), "{row}");
        } else {
            assert!(row["projections_ms"].is_null(), "{row}");
        }
    }
}

/// The serve suite on the tiny quantised Llama of the fixtures (its smoke sizes): every
/// row runs through the continuous batcher; decode rows report the aggregate tokens/s of
/// their streams, and the cached time-to-first-token row took exactly its system prompt
/// from the cache while the cold one took nothing.
#[test]
fn serve_suite_reports_streams_and_prefix_reuse() {
    let (rows, _) = tiny_suite_rows("serve");
    let names: Vec<_> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "streams1",
            "streams4",
            "streams8",
            "int4_streams1",
            "int4_streams4",
            "int4_streams8",
            "gguf_streams1",
            "gguf_streams4",
            "gguf_streams8",
            "ttft_cold",
            "ttft_cached"
        ]
    );
    for row in &rows {
        assert_eq!(row["module"], "smollm2_serve", "{row}");
        assert!(row["cpu_simd"].is_string(), "{row}");
        let median = row["median_ms"].as_f64().unwrap();
        if row["mode"] == "decode" {
            let streams = row["streams"].as_f64().unwrap();
            assert_eq!(row["streams"], row["batch"], "{row}");
            let tokens_per_s = row["tokens_per_s"].as_f64().unwrap();
            assert!((tokens_per_s - streams * 1e3 / median).abs() < 1e-6 * tokens_per_s);
            assert_eq!(row["prefix_tokens_reused"], 0, "{row}");
        } else {
            assert_eq!(row["ttft_ms"].as_f64(), Some(median), "{row}");
            let reused = if row["prefix"] == "cached" {
                row["seq"].as_i64().unwrap()
            } else {
                0
            };
            assert_eq!(row["prefix_tokens_reused"], reused, "{row}");
        }
    }
}
