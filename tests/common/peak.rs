//! The binary run as its own process, with its peak resident memory: what the tests of
//! big files and hostile views measure (issues 16 and 26).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A finished run: exit code, output, and the high-water mark of its memory.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub peak_mib: f64,
}

/// `attn ARGS`, its output and its peak RSS: the high-water mark of its own memory
/// (`VmHWM`), read every 2 ms until it exits. (`wait4`'s `ru_maxrss` would not do: a
/// child spawned from this process counts this process's peak, taken at the exec.)
pub fn measured(dir: &Path, args: &[&str]) -> Run {
    measured_exe(env!("CARGO_BIN_EXE_attn"), dir, args)
}

pub fn measured_exe(exe: &str, dir: &Path, args: &[&str]) -> Run {
    let mut command = Command::new(exe);
    command.args(args);
    measured_command(command, dir)
}

/// [`measured`] for any command (a shell that sets a limit, then `exec`s `attn`: the
/// process measured is the one that ends as `attn`). Its output goes through files in
/// `dir`.
pub fn measured_command(mut command: Command, dir: &Path) -> Run {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = command
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("run attn");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
        peak_mib: peak_kib as f64 / 1024.0,
    }
}

/// `attn ARGS` measured, under a file-size limit of `bytes` (`ulimit -f`, in 512-byte
/// blocks), with SIGXFSZ ignored so that a write past it is an error, not a signal.
pub fn with_file_size_limit(dir: &Path, bytes: u64, args: &[&str]) -> Run {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"",
            bytes / 512
        ))
        .arg(env!("CARGO_BIN_EXE_attn"))
        .args(args);
    measured_command(sh, dir)
}

/// `VmHWM` of a `/proc/PID/status`, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a command that computes starts with: attn-torch with libtorch loaded (`attn
/// --version` alone is answered by the front door, without libtorch). Every other
/// figure is compared with it.
pub fn start_up(dir: &Path) -> f64 {
    (0..2)
        .map(|_| measured_exe(env!("CARGO_BIN_EXE_attn-torch"), dir, &["--version"]).peak_mib)
        .fold(0.0, f64::max)
}

pub fn ok(run: &Run) {
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
}

/// Exit 2 with one line on stderr holding `needle`.
pub fn refused(run: &Run, needle: &str) {
    assert_eq!(run.code, Some(2), "stderr: {}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "{:?} lacks {needle:?}",
        run.stderr
    );
}
