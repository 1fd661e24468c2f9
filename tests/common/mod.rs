//! Helpers shared by the tests that run the `attn` binary or the setup's Python.
#![allow(dead_code)] // each test file uses its own subset

pub mod peak;
pub mod torch_save;

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn attn(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_attn"), args)
}

/// attn-torch started directly, as the front door `attn` starts it.
pub fn attn_torch(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_attn-torch"), args)
}

fn run(exe: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap_or_else(|e| panic!("run {exe}: {e}"))
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Exit code 2 and exactly one line on stderr, with no panic or C++ trace in it.
pub fn assert_usage_error(out: &Output, needle: &str) {
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

/// A fresh empty folder under the system's temporary folder.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tch-attention-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Python of the environment whose libtorch this build links
/// (`VENV/lib/pythonX.Y/site-packages/torch/lib` -> `VENV/bin/python`), or
/// `$TCH_ATTENTION_VENV/bin/python`: the PyTorch the references are computed with.
pub fn setup_python() -> PathBuf {
    let lib = std::path::Path::new(env!("TCH_ATTENTION_LIBTORCH_LIB"));
    let from_build = lib.ancestors().nth(5).map(|venv| venv.join("bin/python"));
    from_build
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("TCH_ATTENTION_VENV").map(|v| PathBuf::from(v).join("bin/python"))
        })
        .expect("the setup's Python (run `make setup`, or set TCH_ATTENTION_VENV)")
}
