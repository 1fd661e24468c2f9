//! `attn bench` as a user meets it: bad configurations are one line and exit 2; JSON rows.

mod common;

use common::{assert_usage_error, attn};

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
