//! Helpers shared by the tests that run the `attn` binary or the setup's Python.
#![allow(dead_code)] // each test file uses its own subset

pub mod machine_reference;
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

/// `attn` with the kernel pins the committed parity fixtures were computed with
/// ([`FIXTURE_PINS`]).
pub fn attn_pinned(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attn"));
    cmd.envs(FIXTURE_PINS);
    output(cmd.args(args), "attn")
}

/// What scripts/fixture_common.py sets before PyTorch loads, so that the committed
/// parity fixtures are the same on every x86 CPU: MKL's conditional numerical
/// reproducibility mode and ATen's portable kernels. Running the crate on those
/// fixtures under the same pins compares the same kernels: without them a CPU with
/// AVX-512 FP16 runs float16 matmuls on other MKL kernels, which round a few elements
/// of a float16 case past its tolerance (README, "Testing").
pub const FIXTURE_PINS: [(&str, &str); 2] = [
    ("MKL_CBWR", "COMPATIBLE"),
    ("ATEN_CPU_CAPABILITY", "default"),
];

/// Sets [`FIXTURE_PINS`] in this process. MKL and ATen read them when first used, so
/// this must run before the process's first tensor operation; it asserts that ATen
/// took the pin (libtorch reports its kernel class).
pub fn pin_kernels_like_fixtures() {
    for (k, v) in FIXTURE_PINS {
        std::env::set_var(k, v);
    }
    assert_eq!(
        tch_attention::cpu::libtorch_capability().as_deref(),
        Some("DEFAULT"),
        "ATEN_CPU_CAPABILITY was read before the pin was set"
    );
}

fn output(cmd: &mut Command, exe: &str) -> Output {
    cmd.env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap_or_else(|e| panic!("run {exe}: {e}"))
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

/// A JSON fixture, parsed.
pub fn read_json(path: impl AsRef<std::path::Path>) -> serde_json::Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of integers: the token ids of a reference.
pub fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .expect("an array of token ids")
        .iter()
        .map(|x| x.as_i64().expect("a token id"))
        .collect()
}
