//! References whose value depends on the CPU's kernels (README, "Testing"): a committed
//! fixture records the key of the CPU it was computed on (`cpu_kernels` in its
//! safetensors metadata, scripts/cpu_kernels.py); on a machine with another key the
//! test computes the reference here, with the same script, and says which it used.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch_attention::cpu::Capability;
use tch_attention::io::read_safetensors;

/// The reference file `rel` (relative to `fixtures_dir`): the committed one when its
/// `cpu_kernels` metadata equals this machine's key, else the one `script` writes on this
/// machine with `args` and `--out DIR` (kept under the target folder, by key and by the
/// script's bytes, so a test run computes it once). Prints which one and why.
pub fn machine_reference(fixtures_dir: &Path, rel: &str, script: &str, args: &[&str]) -> PathBuf {
    let committed = fixtures_dir.join(rel);
    let here = Capability::detect().kernel_key();
    let made_for = read_safetensors(&committed)
        .ok()
        .and_then(|s| s.metadata.get("cpu_kernels").cloned())
        .unwrap_or_else(|| "unrecorded".to_string());
    if made_for == here {
        eprintln!(
            "{rel}: reference computed for CPU kernels {made_for} (committed; this machine's)"
        );
        return committed;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script_path = root.join(script);
    let bytes = std::fs::read(&script_path).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("machine-references")
        .join(format!("{here}-{:016x}", fnv1a(&bytes)));
    if !dir.join(rel).is_file() {
        // Written into a temporary folder first and moved into place whole, so a test
        // in another process never reads half a reference.
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let status = Command::new(super::setup_python())
            .arg(&script_path)
            .args(args)
            .arg("--out")
            .arg(&tmp)
            .status()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(status.success(), "{script} {args:?} failed");
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another process got there first
        }
    }
    eprintln!(
        "{rel}: reference computed for CPU kernels {here} (this machine; the committed one \
         is for {made_for}): {script} {}",
        args.join(" ")
    );
    dir.join(rel)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
