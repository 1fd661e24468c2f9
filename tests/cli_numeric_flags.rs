//! Every numeric flag of every command at the edges a user (or an attacker) can type:
//! 0, -1, 2^63 and 2^64 - 1 (issue 26: `attn bench --repeats 18446744073709551615`
//! reached an allocation and printed "internal error: capacity overflow"). Each run
//! must end cleanly: exit 0, or exit 2 with one line on stderr; never a panic, a
//! libtorch exception or a hang.
//!
//! The commands and flags are read from the binary itself, not listed here: the
//! commands from `attn-torch --help`, each command's value-taking flags from its
//! `--help`, and which of those are numeric from clap's own parse error for a value that
//! is not a number (`--flag=zz`). A flag added later is covered without a change here.
//! What this file does list is a cheap set of other arguments per command (tiny sizes,
//! fixtures), so that the runs that pass validation finish in seconds.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_usage_error, attn, fixtures, tempdir};

/// The values every numeric flag is given: zero, minus one, 2^63 (one past i64), and
/// 2^64 - 1 (u64's largest).
const VALUES: [&str; 4] = ["0", "-1", "9223372036854775808", "18446744073709551615"];

/// The longest one run may take: the slowest takes a second or two alone, more on a
/// busy machine; a hang is caught, not waited for.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A finished (or killed) run of `attn-torch`.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    timed_out: bool,
}

/// `attn-torch ARGS` in `cwd`, killed after [`TIMEOUT`].
fn run_in(cwd: &Path, args: &[String]) -> Outcome {
    let err = tempfile_in(cwd);
    let mut child = Command::new(env!("CARGO_BIN_EXE_attn-torch"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&err).unwrap()))
        .spawn()
        .expect("run attn-torch");
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            child.kill().unwrap();
            timed_out = true;
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    Outcome {
        code: status.code(),
        stderr,
        timed_out,
    }
}

/// A fresh file name in `dir` for one run's stderr.
fn tempfile_in(dir: &Path) -> PathBuf {
    static NEXT: Mutex<u64> = Mutex::new(0);
    let mut n = NEXT.lock().unwrap();
    *n += 1;
    dir.join(format!("stderr-{n}"))
}

/// The text `attn-torch ARGS` prints (help goes to stdout).
fn help(args: &[&str]) -> String {
    let out = common::attn_torch(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The commands, from the "Commands:" section of `attn-torch --help`.
fn commands() -> Vec<String> {
    let text = help(&["--help"]);
    let section = text.split("Commands:").nth(1).expect("a Commands section");
    section
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags of `command` that take a value (`--flag <VALUE>` in its help).
fn value_flags(command: &str) -> Vec<String> {
    help(&[command, "--help"])
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| w.starts_with("--"))?;
            let takes_value = words.get(i + 1).is_some_and(|w| w.starts_with('<'));
            takes_value.then(|| words[i].trim_end_matches(',').to_string())
        })
        .collect()
}

/// Whether clap parses `flag`'s value as a number: its error for `--flag=zz` says so
/// ("invalid digit", "invalid float literal"). The unknown flag after it makes every
/// other flag fail to parse too, so that nothing runs.
fn is_numeric(dir: &Path, command: &str, flag: &str) -> bool {
    let args = [
        command.to_string(),
        format!("{flag}=zz"),
        "--no-such-flag-zz".to_string(),
    ];
    let out = run_in(dir, &args);
    assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    let e = &out.stderr;
    e.contains("invalid value 'zz'") && (e.contains("invalid digit") || e.contains("float"))
}

/// What the commands' cheap runs need: fixtures, and checkpoints made by a tiny training.
struct Inputs {
    dir: PathBuf,
    text: PathBuf,
    lecture_ckpt: PathBuf,
    nanogpt_dir: PathBuf,
}

/// The tiny model of every training run: one step of a 2-channel, 1-layer GPT.
const TINY: [&str; 16] = [
    "--batch-size",
    "1",
    "--block-size",
    "2",
    "--max-iters",
    "1",
    "--eval-interval",
    "1",
    "--eval-iters",
    "1",
    "--n-embd",
    "2",
    "--n-head",
    "1",
    "--n-layer",
    "1",
];

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Inputs {
    fn make(dir: PathBuf) -> Self {
        let text = fixtures().join("lecture_gpt/hamlet.txt");
        let inputs = Inputs {
            lecture_ckpt: dir.join("lecture.safetensors"),
            nanogpt_dir: dir.join("nanogpt"),
            text,
            dir,
        };
        // The checkpoints `attn sample` reads, one of each kind.
        for base in [inputs.lecture(), inputs.nanogpt()] {
            let out = run_in(&inputs.dir, &base);
            assert_eq!(out.code, Some(0), "{base:?}: {}", out.stderr);
        }
        inputs
    }

    fn lecture(&self) -> Vec<String> {
        let mut args = strings(&["train", "--model", "lecture", "--data", s(&self.text)]);
        args.extend(strings(&TINY));
        args.extend(strings(&["--out", s(&self.lecture_ckpt)]));
        args
    }

    fn nanogpt(&self) -> Vec<String> {
        let mut args = strings(&["train", "--model", "nanogpt", "--data", s(&self.text)]);
        args.extend(strings(&TINY));
        args.extend(strings(&[
            "--out-dir",
            s(&self.nanogpt_dir),
            "--gradient-accumulation-steps",
            "1",
            "--warmup-iters",
            "0",
            "--lr-decay-iters",
            "1",
        ]));
        args
    }

    /// Cheap complete invocations of `command` (more than one where its flags mean
    /// different things per mode). A command not named here runs with no other
    /// arguments: a new command is covered, and a costly default shows as a slow test.
    fn bases(&self, command: &str) -> Vec<Vec<String>> {
        let (converted, png) = (self.dir.join("c.safetensors"), self.dir.join("h.png"));
        let case = fixtures().join("cases/multihead_attention/attn_mask_bool_2d_f32.safetensors");
        let gpt2 = fixtures().join("checkpoints/hf_gpt2.bin");
        let nano_ckpt = self.nanogpt_dir.join("ckpt.pt");
        let tiny_gguf = fixtures().join("llama/tiny/model.gguf");
        let args: Vec<Vec<&str>> = match command {
            "train" => return vec![self.lecture(), self.nanogpt()],
            "bench" => vec![vec![
                "--module",
                "sdpa",
                "--batch",
                "1",
                "--seq",
                "1",
                "--embd",
                "2",
                "--heads",
                "1",
                "--warmup",
                "0",
                "--repeats",
                "1",
            ]],
            "convert" => vec![vec![
                "--from",
                "hf-gpt2",
                "--to",
                "nanogpt",
                "--force",
                s(&gpt2),
                s(&converted),
            ]],
            "heatmap" => vec![vec![s(&case), "-o", s(&png), "--force"]],
            "explain" => vec![vec!["a b", "-o", s(&png), "--force"]],
            "sample" => vec![
                vec![
                    "--checkpoint",
                    s(&self.lecture_ckpt),
                    "--max-new-tokens",
                    "2",
                ],
                vec![
                    "--checkpoint",
                    s(&nano_ckpt),
                    "--max-new-tokens",
                    "2",
                    "--num-samples",
                    "1",
                ],
            ],
            // A Llama GGUF without a tokenizer: every option is checked before the model
            // is read, and a value that passes ends in one clean error. (SmolLM2, the
            // default, takes 10 s to load in a debug build; tests/llama_cli.rs runs it.)
            "generate" => vec![vec![
                "hi",
                "--model",
                s(&tiny_gguf),
                "--max-new-tokens",
                "1",
            ]],
            // The same file: every option is checked before the model is read, and one
            // that passes ends in the tokenizer's clean error instead of a server that
            // listens until it is stopped (tests/serve.rs runs it).
            "serve" => vec![vec!["--model", s(&tiny_gguf)]],
            _ => vec![vec![]],
        };
        args.into_iter()
            .map(|a| {
                let mut v = vec![command.to_string()];
                v.extend(strings(&a));
                v
            })
            .collect()
    }
}

/// `base` with `flag` set to `value`: its own value for the flag, if any, replaced.
fn with_flag(base: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = Vec::with_capacity(base.len() + 1);
    let mut i = 0;
    while i < base.len() {
        if base[i] == flag {
            i += 2;
            continue;
        }
        args.push(base[i].clone());
        i += 1;
    }
    args.push(format!("{flag}={value}"));
    args
}

/// What is wrong with a run's ending, if anything.
fn unclean(out: &Outcome) -> Option<String> {
    if out.timed_out {
        return Some(format!("did not finish in {TIMEOUT:?}"));
    }
    let e = &out.stderr;
    for bad in [
        "internal error",
        "panicked",
        "RUST_BACKTRACE",
        "Exception raised from",
        "frame #",
        "libtorch:",
    ] {
        if e.contains(bad) {
            return Some(format!("stderr holds {bad:?}: {e}"));
        }
    }
    match out.code {
        Some(0) => None,
        Some(2) if e.lines().count() == 1 && e.starts_with("attn: ") => None,
        Some(2) => Some(format!("exit 2 without one 'attn: ' line: {e:?}")),
        code => Some(format!("exit {code:?}: {e}")),
    }
}

#[test]
fn every_numeric_flag_at_the_edges_exits_cleanly() {
    let dir = tempdir("numeric-flags");
    let inputs = Inputs::make(dir.clone());
    let mut runs = Vec::new();
    let mut found = BTreeSet::new();
    for command in commands() {
        for flag in value_flags(&command) {
            if !is_numeric(&dir, &command, &flag) {
                continue;
            }
            found.insert(format!("{command} {flag}"));
            for base in inputs.bases(&command) {
                for value in VALUES {
                    runs.push(with_flag(&base, &flag, value));
                }
            }
        }
    }
    // The discovery itself is checked: these must be among what it found.
    for known in [
        "bench --repeats",
        "bench --warmup",
        "bench --threads",
        "notebook --batch",
        "convert --heads",
        "heatmap --vmax",
        "explain --layer",
        "train --eval-iters",
        "train --min-lr",
        "sample --num-samples",
        "generate --seed",
    ] {
        assert!(found.contains(known), "{known} not found among {found:?}");
    }
    let failures = run_all(&dir, runs);
    assert!(
        failures.is_empty(),
        "{} unclean run(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs every argument list, two at a time (the machines that run the tests may have
/// two cores), and returns a line per unclean run.
fn run_all(dir: &Path, runs: Vec<Vec<String>>) -> Vec<String> {
    let queue = Mutex::new(runs);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some(args) = queue.lock().unwrap().pop() else {
                    break;
                };
                if let Some(why) = unclean(&run_in(dir, &args)) {
                    failures.lock().unwrap().push(format!("{args:?}: {why}"));
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// The exact command of issue 26, and its twin for --warmup.
#[test]
fn bench_step_counts_past_the_limit_name_the_flag_and_the_limit() {
    let out = attn(&[
        "bench",
        "--module",
        "sdpa",
        "--repeats",
        "18446744073709551615",
        "--warmup",
        "0",
        "--seq",
        "1",
    ]);
    assert_usage_error(&out, "--repeats: must be between 1 and 10000000");
    let out = attn(&[
        "bench",
        "--module",
        "sdpa",
        "--warmup",
        "18446744073709551615",
        "--seq",
        "1",
    ]);
    assert_usage_error(&out, "--warmup: must be between 0 and 10000000");
    let out = attn(&["bench", "--suite", "small", "--repeats", "10000001"]);
    assert_usage_error(&out, "--repeats");
}

/// Counts past the four edges that reached an allocation (issue 26's class): each is
/// refused in one line naming the flags, before the model is built or the cache made.
#[test]
fn sizes_that_cannot_fit_are_refused_before_allocating() {
    let dir = tempdir("numeric-sizes");
    let text = fixtures().join("lecture_gpt/hamlet.txt");
    let nano = dir.join("nanogpt");
    for (flag, value, needle) in [
        ("--n-embd", "2147483648", "overflow 64-bit integers"),
        ("--batch-size", "4294967296", "this machine has available"),
        ("--n-layer", "2147483648", "this machine has available"),
    ] {
        let mut lecture = strings(&["train", "--model", "lecture", "--data", s(&text)]);
        lecture.extend(strings(&TINY));
        let mut nanogpt = lecture.clone();
        nanogpt[2] = "nanogpt".into();
        nanogpt.extend(strings(&["--out-dir", s(&nano)]));
        for base in [lecture, nanogpt] {
            let args = with_flag(&base, flag, value);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = attn(&args);
            assert_usage_error(&out, "--batch-size, --block-size, --n-embd");
            assert_usage_error(&out, needle);
        }
    }
    assert!(!nano.join("ckpt.pt").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `generate` makes its KV cache for every new token at once: 2^63 - 1 of them
/// overflowed an addition (a panic), 10^8 reached libtorch's allocator. (SmolLM2, the
/// default model: the cache's size is read from it.)
#[test]
fn generate_refuses_a_kv_cache_that_cannot_fit() {
    let out = attn(&["generate", "hi", "--max-new-tokens", "9223372036854775807"]);
    assert_usage_error(&out, "--max-new-tokens: 9223372036854775807 new tokens");
    assert_usage_error(&out, "overflows 64-bit integers");
    let out = attn(&["generate", "hi", "--max-new-tokens", "100000000"]);
    assert_usage_error(&out, "need a KV cache of 4.2 TiB, more than the");
}

/// `--eval-iters 9223372036854775807` reserved room for that many losses before the
/// first batch: "internal error: capacity overflow". It is a long evaluation now, as in
/// gpt.py: still running after seconds, stopped here.
#[test]
fn a_huge_eval_count_is_a_long_run_not_a_panic() {
    let text = fixtures().join("lecture_gpt/hamlet.txt");
    let mut args = strings(&["train", "--model", "lecture", "--data", s(&text)]);
    args.extend(strings(&TINY));
    let args = with_flag(&args, "--eval-iters", "9223372036854775807");
    let mut child = Command::new(env!("CARGO_BIN_EXE_attn-torch"))
        .args(&args)
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "exited early: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
