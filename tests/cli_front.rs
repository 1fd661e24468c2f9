//! `attn`, the front door (src/bin/attn): it answers help and version as
//! attn-torch would, without linking libtorch, and hands everything else over intact.

mod common;

use std::process::Command;

use common::{assert_usage_error, attn, attn_torch, tempdir};

/// Its own command list is a copy of attn-torch's subcommands: any drift shows here.
#[test]
fn help_and_version_are_attn_torchs() {
    for flag in ["--help", "-h", "help", "--version", "-V"] {
        let (front, back) = (attn(&[flag]), attn_torch(&[flag]));
        assert_eq!(front.status.code(), back.status.code(), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&front.stdout),
            String::from_utf8_lossy(&back.stdout),
            "{flag}"
        );
        assert_eq!(front.stderr, back.stderr, "{flag}");
    }
    let help = String::from_utf8_lossy(&attn(&["--help"]).stdout).into_owned();
    assert!(help.contains("Usage: attn <COMMAND>"), "{help}");
}

/// The point of the front door: libtorch is not among the libraries it needs (the
/// loader would map and initialise it before `main`). attn-torch does need it, so the
/// check can tell the two apart.
#[cfg(target_os = "linux")]
#[test]
fn front_door_does_not_link_libtorch() {
    let needs = |path: &str| {
        let bytes = std::fs::read(path).unwrap();
        bytes
            .windows(b"libtorch_cpu".len())
            .any(|w| w == b"libtorch_cpu")
    };
    assert!(needs(env!("CARGO_BIN_EXE_attn-torch")));
    assert!(!needs(env!("CARGO_BIN_EXE_attn")));
}

#[test]
fn other_command_lines_reach_attn_torch_unchanged() {
    for args in [
        &["train", "--help"][..],
        &["inspect", "/nonexistent/file.safetensors"],
        &["bogus"],
        &[],
    ] {
        let (front, back) = (attn(args), attn_torch(args));
        assert_eq!(front.status.code(), back.status.code(), "{args:?}");
        assert_eq!(front.stdout, back.stdout, "{args:?}");
        assert_eq!(front.stderr, back.stderr, "{args:?}");
    }
    assert_usage_error(&attn(&["bogus"]), "bogus");
    assert_usage_error(&attn(&[]), "no command given");
}

/// Copied alone into a folder, the front door says what is missing: one line, exit 2.
#[test]
fn a_missing_attn_torch_is_one_clear_line() {
    let dir = tempdir("front-alone");
    let alone = dir.join("attn");
    std::fs::copy(env!("CARGO_BIN_EXE_attn"), &alone).unwrap();
    let out = Command::new(&alone).arg("doctor").output().unwrap();
    assert_usage_error(&out, "attn-torch");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is missing"));
    // Help still works without it: it never needed libtorch.
    let help = Command::new(&alone).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}
