//! The `attn` binary as a user meets it: exit codes, one-line errors, no panic text.

mod common;

use std::process::{Command, Output};

use common::{assert_usage_error, attn, attn_pinned, fixtures, tempdir as temp_dir};

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
    // Under the kernel pins the fixtures were computed with (tests/common: FIXTURE_PINS).
    let out = attn_pinned(&["verify", fixtures().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(" pass")).count(),
        185,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("verify: 185 passed, 0 failed"), "{stderr}");
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
    let written = tch_attention::io::read_safetensors(&dest).unwrap();
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
    let mut file = tch_attention::io::read_safetensors(&src).unwrap();
    let out = file.tensors.get("expected.output").unwrap();
    let bumped = out + 1e-2;
    file.tensors.insert("expected.output".into(), bumped);
    let bad = dir.join("bad.safetensors");
    tch_attention::io::write_safetensors(
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

/// Width and height from a PNG's IHDR, after checking the signature.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn explain_draws_any_layer_and_head_and_names_the_top_tokens() {
    let dir = temp_dir("explain");
    let all = dir.join("all.png");
    let stdout = ok_stdout(&attn(&["explain", "--output", all.to_str().unwrap()]));
    // The notebook's sentence by default, 14 tokens, one summary line each.
    let ran = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ran"))
        .unwrap_or_else(|| panic!("no line for ran: {stdout}"));
    assert_eq!(
        ran.split("->").nth(1).unwrap().split(',').count(),
        3,
        "{ran}"
    );
    assert!(stdout.starts_with("layer 5, all heads"), "{stdout}");
    let (w_all, h_all) = png_size(&all);
    let one = dir.join("one.png");
    let stdout = ok_stdout(&attn(&[
        "explain",
        "--layer",
        "2",
        "--head",
        "7",
        "--top",
        "2",
        "--skip-special",
        "-o",
        one.to_str().unwrap(),
    ]));
    assert!(stdout.starts_with("layer 2, head 7"), "{stdout}");
    assert!(
        !stdout.contains("-> [CLS]") && !stdout.contains("[SEP] 0."),
        "{stdout}"
    );
    let (w_one, h_one) = png_size(&one);
    assert!(w_one >= 300 && h_one >= 300, "{w_one}x{h_one}");
    assert!(
        w_all > 2 * w_one && h_all > 2 * h_one,
        "12 panels: {w_all}x{h_all}"
    );
    // An existing file stays unless --force.
    let before = std::fs::read(&one).unwrap();
    assert_usage_error(
        &attn(&["explain", "--average", "-o", one.to_str().unwrap()]),
        "--force",
    );
    assert_eq!(std::fs::read(&one).unwrap(), before);
    ok_stdout(&attn(&[
        "explain",
        "--average",
        "--force",
        "-o",
        one.to_str().unwrap(),
    ]));
    assert_ne!(std::fs::read(&one).unwrap(), before);
    assert_usage_error(&attn(&["explain", "--layer", "6"]), "--layer");
    assert_usage_error(&attn(&["explain", "--head", "12"]), "--head");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn embed_json_matches_sentence_transformers() {
    let fixture =
        tch_attention::io::read_safetensors(&fixtures().join("bert/minilm.safetensors")).unwrap();
    let sentences: Vec<String> = serde_json::from_str(&fixture.metadata["sentences"]).unwrap();
    let expected = &fixture.tensors["embeddings"];
    // A command line cannot carry a NUL character, so the sentence that tests the
    // tokenizer's cleaning of it is left to tests/bert.rs. Padding does not change an
    // embedding (beyond rounding), so the other rows of the batched reference hold.
    let picked: Vec<usize> = (0..sentences.len())
        .filter(|&i| !sentences[i].contains('\0'))
        .collect();
    assert!(picked.len() >= 5);
    let mut args = vec!["embed", "--json"];
    args.extend(picked.iter().map(|&i| sentences[i].as_str()));
    let stdout = ok_stdout(&attn(&args));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), picked.len());
    let mut worst = 0f64;
    for (&i, line) in picked.iter().zip(&lines) {
        let row: Vec<f64> = serde_json::from_str(line).unwrap();
        let want = Vec::<f64>::try_from(expected.get(i as i64).to_kind(tch::Kind::Double)).unwrap();
        assert_eq!(row.len(), want.len());
        for (a, b) in row.iter().zip(&want) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("attn embed --json vs sentence-transformers: max abs error {worst:e}");
    assert!(worst <= 1e-5, "max abs error {worst:e}");
    // The table form: one block per sentence and the similarities.
    let stdout = ok_stdout(&attn(&["embed", "a cat ran", "a dog ran"]));
    assert!(stdout.contains("384 values"), "{stdout}");
    assert!(stdout.contains("cosine similarity"), "{stdout}");
}

#[test]
fn a_missing_model_is_one_line_and_exit_2() {
    for cmd in ["explain", "embed"] {
        assert_usage_error(
            &attn(&[cmd, "a cat", "--model", "/nonexistent"]),
            "/nonexistent",
        );
    }
    let empty = temp_dir("nomodel");
    let out = Command::new(env!("CARGO_BIN_EXE_attn"))
        .args(["embed", "a cat"])
        .env("TCH_ATTENTION_MODEL_DIR", &empty)
        .output()
        .unwrap();
    assert_usage_error(&out, "config.json");
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn heatmap_of_a_case_and_of_the_notebook() {
    let dir = temp_dir("heatmap");
    let case = fixtures().join("cases/multihead_attention/weights_per_head_f32.safetensors");
    let png = dir.join("case.png");
    ok_stdout(&attn(&[
        "heatmap",
        case.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]));
    let (w, h) = png_size(&png);
    assert!(w > 300 && h > 200, "{w}x{h}");
    assert_usage_error(
        &attn(&[
            "heatmap",
            case.to_str().unwrap(),
            "-o",
            png.to_str().unwrap(),
        ]),
        "--force",
    );
    ok_stdout(&attn(&[
        "heatmap",
        case.to_str().unwrap(),
        "--average",
        "--batch",
        "1",
        "--force",
        "-o",
        png.to_str().unwrap(),
    ]));
    assert_usage_error(
        &attn(&[
            "heatmap",
            case.to_str().unwrap(),
            "--batch",
            "2",
            "--force",
            "-o",
            png.to_str().unwrap(),
        ]),
        "--batch",
    );
    assert_usage_error(
        &attn(&[
            "heatmap",
            case.to_str().unwrap(),
            "--tensor",
            "nope",
            "--force",
            "-o",
            png.to_str().unwrap(),
        ]),
        "nope",
    );
    let nb = dir.join("notebook.png");
    ok_stdout(&attn(&["notebook", "--heatmap", nb.to_str().unwrap()]));
    png_size(&nb);
    assert_usage_error(
        &attn(&["notebook", "--heatmap", nb.to_str().unwrap()]),
        "--force",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
