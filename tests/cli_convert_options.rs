//! `attn convert` names its own flags where the library names a `ConvertOptions` field.

mod common;

use common::{assert_usage_error, attn, fixtures, tempdir};
use tch_attention::io::{read_checkpoint, write_safetensors};

#[test]
fn a_missing_head_count_or_block_size_names_the_flag() {
    let dir = tempdir("cli-options");
    // BERT's attention with zero query/key/value biases: convertible to lecture, which
    // needs the head count and block size BERT does not record.
    let bert = read_checkpoint(fixtures().join("checkpoints/hf_bert.safetensors")).unwrap();
    let tensors: Vec<_> = bert
        .tensors
        .iter()
        .map(|(k, t)| {
            let qkv_bias = ["query.bias", "key.bias", "value.bias"]
                .iter()
                .any(|b| k.ends_with(b));
            (k.clone(), if qkv_bias { t.zeros_like() } else { t.copy() })
        })
        .collect();
    let input = dir.join("bert0.safetensors");
    write_safetensors(
        &input,
        tensors.iter().map(|(k, t)| (k.as_str(), t)),
        &Default::default(),
    )
    .unwrap();
    let input = input.display().to_string();
    let output = dir.join("out.safetensors").display().to_string();
    let convert = |extra: &[&str]| {
        let mut args = vec!["convert", "--from", "hf-bert", "--to", "lecture"];
        args.extend(extra);
        args.extend([input.as_str(), output.as_str()]);
        attn(&args)
    };
    let out = convert(&[]);
    assert_usage_error(
        &out,
        "--heads: not set, and hf-bert does not record the head count",
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("ConvertOptions"));
    let out = convert(&["--heads", "2"]);
    assert_usage_error(&out, "--block-size: not set");
    let out = convert(&["--heads", "2", "--block-size", "6"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
