//! `attn`: the front door. It answers `--help` and `--version` itself and hands every
//! other command line to `attn-torch`, installed beside it, which does the work.
//!
//! Why two executables: a program linked with libtorch loads `libtorch_cpu` before
//! `main` runs, and that load alone costs about 0.3–0.4 s of CPU and 110 MiB (operator
//! registration in its static initialisers; bench/RESULTS.md, "Start-up and big files").
//! Nothing here refers to tch, so the linker (`--as-needed`) leaves libtorch out of this
//! binary and asking for help costs milliseconds. On Unix the hand-over is `exec`: the
//! process keeps its id, signals and exit status, as if `attn-torch` had been started.
//!
//! The command list below repeats the doc comments of `attn-torch`'s subcommands; a test
//! (tests/cli_front.rs) checks that both print the same help, so they cannot drift.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Command;

/// Each subcommand of `attn-torch` and its one-line description, in its order.
const COMMANDS: &[(&str, &str)] = &[
    (
        "notebook",
        "Replay the notebook \"Self attention from scratch using PyTorch\" cell by cell",
    ),
    (
        "doctor",
        "Report the linked libtorch: version, folder, CUDA, threads, attention kernels",
    ),
    (
        "run",
        "Run a parity case and write what this crate computes",
    ),
    ("verify", "Check parity cases against what PyTorch computed"),
    (
        "convert",
        "Convert a checkpoint's attention weights from one layout to another",
    ),
    (
        "inspect",
        "List a checkpoint's tensors and the attention layouts it holds",
    ),
    (
        "heatmap",
        "Draw attention weights from a safetensors file (e.g. a parity case) as a PNG",
    ),
    (
        "explain",
        "Show a pretrained model's attention on a sentence: heatmap and top tokens",
    ),
    (
        "embed",
        "Sentence embeddings from a pretrained encoder (sentence-transformers' values)",
    ),
    (
        "bench",
        "Time a benchmark suite or one configuration (median, spread, GFLOP/s, peak memory)",
    ),
    (
        "train",
        "Train a model step for step as its PyTorch script does (gpt.py, nanoGPT's train.py)",
    ),
    (
        "sample",
        "Sample text from a checkpoint: attn train's, or nanoGPT's ckpt.pt",
    ),
    (
        "tokenize",
        "A decoder LM's token ids for a text (SmolLM2-135M-Instruct by default)",
    ),
    (
        "generate",
        "Continue a prompt, or answer it as a chat, with a decoder LM (GGUF or HF folder)",
    ),
    (
        "serve",
        "Serve a decoder LM (GGUF or HF folder) over OpenAI's HTTP API (completions, chat)",
    ),
];

/// The executable that does the work, next to this one.
const WORKER: &str = "attn-torch";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if answers_itself(&args) {
        // clap prints help or version exactly as attn-torch's derived parser would.
        if let Err(e) = command().try_get_matches_from(std::iter::once("attn".into()).chain(args)) {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
        return ExitCode::SUCCESS;
    }
    match hand_over(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("attn: {e}");
            ExitCode::from(2)
        }
    }
}

/// `attn --help`, `-h`, `help`, `--version`, `-V`, alone: all the front door knows.
/// Everything else, a subcommand's help included, needs the subcommands' flags.
fn answers_itself(args: &[OsString]) -> bool {
    matches!(args, [one] if ["--help", "-h", "help", "--version", "-V"]
        .iter()
        .any(|flag| one == flag))
}

/// The top-level parser attn-torch derives, without the subcommands' flags.
fn command() -> Command {
    let subcommands = COMMANDS
        .iter()
        .map(|(name, about)| Command::new(*name).about(*about));
    Command::new("attn")
        .version(env!("CARGO_PKG_VERSION"))
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommands(subcommands)
}

/// Runs attn-torch with the same arguments: on Unix it replaces this process.
fn hand_over(args: Vec<OsString>) -> Result<ExitCode, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate itself: {e}"))?;
    let worker = exe.with_file_name(format!("{WORKER}{}", std::env::consts::EXE_SUFFIX));
    if !worker.is_file() {
        return Err(format!(
            "{} is missing: it is installed beside attn and does the work",
            worker.display()
        ));
    }
    let mut command = std::process::Command::new(&worker);
    command.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // exec returns only when it failed.
        let e = command.exec();
        Err(format!("cannot run {}: {e}", worker.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .map_err(|e| format!("cannot run {}: {e}", worker.display()))?;
        Ok(ExitCode::from(status.code().map_or(2, |c| c as u8)))
    }
}
