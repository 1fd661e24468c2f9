//! `attn convert` and `attn inspect` as a user meets them.

mod common;

use common::{assert_usage_error, attn, fixtures, tempdir};

fn ckpt(name: &str) -> String {
    fixtures()
        .join("checkpoints")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn inspect_lists_tensors_and_recognised_layouts() {
    let out = attn(&["inspect", &ckpt("nanogpt_ckpt.pt")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("torch.save (zip), 5 tensors"), "{text}");
    assert!(
        text.contains("transformer.h.1.attn.c_attn.weight  Float     [24, 8]"),
        "{text}"
    );
    assert!(text.contains("nanogpt    1 block(s), C = 8"), "{text}");
    assert!(text.contains("prefix \"transformer.h.1.attn.\""), "{text}");

    let out = attn(&["inspect", "--json", &ckpt("hf_gpt2.bin")]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["layouts"][0]["layout"], "hf-gpt2");
    assert_eq!(v["layouts"][0]["prefix"], "h.0.attn.");
    let shapes: Vec<_> = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(
        shapes.contains(&serde_json::json!("h.0.attn.masked_bias")),
        "{shapes:?}"
    );
}

#[test]
fn convert_writes_once_and_refuses_to_clobber() {
    let dir = tempdir("cli-convert");
    let out_path = dir.join("bert.safetensors");
    let out_s = out_path.display().to_string();
    let args = [
        "convert",
        "--from",
        "hf-gpt2",
        "--to",
        "hf-bert",
        &ckpt("hf_gpt2.bin"),
        &out_s,
    ];
    let out = attn(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = attn(&["inspect", &out_s]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("hf-bert") && text.contains("prefix \"h.0.attn.\""),
        "{text}"
    );
    let before = std::fs::read(&out_path).unwrap();
    assert_usage_error(
        &attn(&args),
        &format!("{out_s}: exists; pass --force to replace it"),
    );
    assert_eq!(std::fs::read(&out_path).unwrap(), before);
    let mut forced = args.to_vec();
    forced.insert(1, "--force");
    assert!(attn(&forced).status.success());
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary files left: {names:?}");
}

#[test]
fn convert_errors_are_one_line_and_write_nothing() {
    let dir = tempdir("cli-convert-errors");
    let out = dir.join("x.safetensors").display().to_string();
    for (args, needle) in [
        (
            vec![
                "convert",
                "--from",
                "nanogpt",
                "--to",
                "lecture",
                &ckpt("nanogpt_ckpt.pt"),
                &out,
            ],
            "nonzero bias",
        ),
        (
            vec![
                "convert",
                "--from",
                "torch-mha",
                "--to",
                "lecture",
                &ckpt("lecture.pt"),
                &out,
            ],
            "no torch-mha attention weights found",
        ),
        (
            vec![
                "convert",
                "--from",
                "lecture",
                "--to",
                "nanogpt",
                "--prefix",
                "blocks.9.",
                &ckpt("lecture.pt"),
                &out,
            ],
            "missing key blocks.9.heads.0.query.weight",
        ),
        (
            vec![
                "convert",
                "--from",
                "bert",
                "--to",
                "lecture",
                &ckpt("lecture.pt"),
                &out,
            ],
            "invalid value 'bert' for '--from <FROM>'",
        ),
        (
            vec![
                "convert",
                "--from",
                "lecture",
                "--to",
                "nanogpt",
                "/nonexistent.pt",
                &out,
            ],
            "/nonexistent.pt",
        ),
        (
            vec!["inspect", &ckpt("../cases")],
            "a folder; expected a file",
        ),
        (vec!["inspect", "/dev/zero"], "not a regular file"),
        (
            vec![
                "convert",
                "--from",
                "lecture",
                "--to",
                "nanogpt",
                "/dev/zero",
                &out,
            ],
            "not a regular file",
        ),
        (
            vec![
                "convert",
                "--from",
                "lecture",
                "--to",
                "nanogpt",
                &ckpt("lecture.pt"),
                "/tmp/x.pt",
            ],
            "name it *.safetensors",
        ),
    ] {
        assert_usage_error(&attn(&args), needle);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
