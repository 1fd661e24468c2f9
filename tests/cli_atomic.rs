//! `attn`'s outputs are written atomically: two processes racing for one new file cannot
//! both win, and an interrupted write leaves the old file and no temporary.
//!
//! `ATTN_TEST_PAUSE_BEFORE_PUBLISH_MS` makes every write wait with its temporary written
//! but not yet published, so the race and the interruption happen in that window every
//! time rather than by luck.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_usage_error, fixtures, tempdir};

fn spawn_paused(args: &[&str], pause_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_attn"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env("ATTN_TEST_PAUSE_BEFORE_PUBLISH_MS", pause_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run attn")
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs `args` twice at once, both writing `out` (new); exactly one may succeed, the
/// other must say the file exists.
fn race(args: &[&str], dir: &Path, out: &Path) {
    let children = [spawn_paused(args, 700), spawn_paused(args, 700)];
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let (won, lost): (Vec<_>, Vec<_>) = outputs.iter().partition(|o| o.status.success());
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        won.len(),
        1,
        "exactly one wins: {:?}",
        outputs.iter().map(stderr).collect::<Vec<_>>()
    );
    let expected = format!("{}: exists; pass --force to replace it", out.display());
    assert_usage_error(lost[0], &expected);
    let file = out.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(names(dir), [file], "no temporary left");
}

fn case() -> PathBuf {
    fixtures().join("cases/multihead_attention/weights_per_head_f32.safetensors")
}

#[test]
fn two_runs_racing_for_one_output() {
    let dir = tempdir("race-run");
    let out = dir.join("out.safetensors");
    let (case, out_s) = (case(), out.display().to_string());
    race(&["run", case.to_str().unwrap(), "-o", &out_s], &dir, &out);
    let written = tch_attention::io::read_safetensors(&out).unwrap();
    assert!(written.tensors.contains_key("output"));
}

#[test]
fn two_heatmaps_racing_for_one_output() {
    let dir = tempdir("race-heatmap");
    let out = dir.join("map.png");
    let (case, out_s) = (case(), out.display().to_string());
    race(
        &["heatmap", case.to_str().unwrap(), "-o", &out_s],
        &dir,
        &out,
    );
    let png = std::fs::read(&out).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.ends_with(b"IEND\xaeB`\x82"));
}

#[test]
fn two_converts_racing_for_one_output() {
    let dir = tempdir("race-convert");
    let out = dir.join("bert.safetensors");
    let input = fixtures().join("checkpoints/hf_gpt2.bin");
    let (input_s, out_s) = (input.display().to_string(), out.display().to_string());
    let args = [
        "convert", "--from", "hf-gpt2", "--to", "hf-bert", &input_s, &out_s,
    ];
    race(&args, &dir, &out);
    tch_attention::io::read_safetensors(&out).unwrap();
}

/// Starts `attn convert --force` over an existing output, waits until its temporary is
/// written, sends `signal`, and checks the exit code, the old output and the folder.
#[cfg(unix)]
fn interrupt_convert(name: &str, signal: &str, code: i32) {
    let dir = tempdir(name);
    let out = dir.join("bert.safetensors");
    std::fs::write(&out, b"the old output").unwrap();
    let input = fixtures().join("checkpoints/hf_gpt2.bin");
    let (input_s, out_s) = (input.display().to_string(), out.display().to_string());
    let args = [
        "convert", "--force", "--from", "hf-gpt2", "--to", "hf-bert", &input_s, &out_s,
    ];
    let child = spawn_paused(&args, 60_000);
    let start = Instant::now();
    while !names(&dir).iter().any(|n| n.ends_with(".tmp")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(names(&dir), ["bert.safetensors"], "no temporary left");
    assert_eq!(std::fs::read(&out).unwrap(), b"the old output");
}

#[cfg(unix)]
#[test]
fn sigint_during_a_write_leaves_the_old_output_and_no_temporary() {
    interrupt_convert("sigint-convert", "-INT", 130);
}

#[cfg(unix)]
#[test]
fn sigterm_during_a_write_leaves_the_old_output_and_no_temporary() {
    interrupt_convert("sigterm-convert", "-TERM", 143);
}
