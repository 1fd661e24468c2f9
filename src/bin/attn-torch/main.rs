//! `attn-torch`: the command-line face of tch-attention, started by `attn` (the front
//! door, src/bin/attn, which answers `--help` and `--version` without loading
//! libtorch). Only options and wiring live here, one file per subcommand; everything it
//! does, a program can do through the library.
//!
//! Exit codes: 0 success; 1 a parity check failed; 2 bad usage, bad input or an
//! unhealthy install (one line on stderr).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tch::Device;

mod bench;
mod cases;
mod checkpoint;
mod doctor;
mod embed;
mod explain;
mod generate;
mod heatmap;
mod inspect_gguf;
mod llama_model;
mod model;
mod model_dir;
mod notebook;
mod sample;
mod serve;
mod tokenize;
mod train;

/// Transformer self-attention on libtorch, checked against PyTorch.
#[derive(Parser, Debug)]
// bin_name: usage lines say `attn`, the name users type, also when the front door
// (src/bin/attn) has started this executable as attn-torch.
#[command(name = "attn", bin_name = "attn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay the notebook "Self attention from scratch using PyTorch" cell by cell.
    Notebook(notebook::Args),
    /// Report the linked libtorch: version, folder, CUDA, threads, attention kernels.
    Doctor,
    /// Run a parity case and write what this crate computes.
    Run(cases::RunArgs),
    /// Check parity cases against what PyTorch computed.
    Verify(cases::VerifyArgs),
    /// Convert a checkpoint's attention weights from one layout to another.
    Convert(checkpoint::ConvertArgs),
    /// List a checkpoint's tensors and the attention layouts it holds.
    Inspect(checkpoint::InspectArgs),
    /// Draw attention weights from a safetensors file (e.g. a parity case) as a PNG.
    Heatmap(heatmap::Args),
    /// Show a pretrained model's attention on a sentence: heatmap and top tokens.
    Explain(explain::Args),
    /// Sentence embeddings from a pretrained encoder (sentence-transformers' values).
    Embed(embed::Args),
    /// Time a benchmark suite or one configuration (median, spread, GFLOP/s, peak memory).
    Bench(bench::Args),
    /// Train a model step for step as its PyTorch script does (gpt.py, nanoGPT's train.py).
    Train(train::Args),
    /// Sample text from a checkpoint: attn train's, or nanoGPT's ckpt.pt.
    Sample(sample::Args),
    /// A decoder LM's token ids for a text (SmolLM2-135M-Instruct by default).
    Tokenize(tokenize::Args),
    /// Continue a prompt, or answer it as a chat, with a decoder LM (GGUF or HF folder).
    Generate(generate::Args),
    /// Serve a decoder LM (GGUF or HF folder) over OpenAI's HTTP API (completions, chat).
    Serve(serve::Args),
}

/// `--device`, shared by the subcommands that compute.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

impl DeviceArg {
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            // Loads libtorch_cuda first: start-up maps libtorch_cpu alone.
            DeviceArg::Cuda => tch_attention::device::cuda_device(0)
                .map_err(|e| anyhow::anyhow!("--device cuda: {e} (see `attn doctor`)")),
        }
    }
}

fn main() -> ExitCode {
    // A panic would be a bug; still, the user gets one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        let first = msg.lines().next().unwrap_or(msg);
        eprintln!("attn: internal error: {first}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // clap would print the whole help to stderr; one line says what is missing.
            eprintln!("attn: no command given (see 'attn --help')");
            return ExitCode::from(2);
        }
        Err(e) => {
            // clap's first paragraph, joined: a missing argument is named on its second line.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            let first = if first.is_empty() {
                "invalid usage"
            } else {
                first
            };
            eprintln!("attn: {first} (see 'attn --help')");
            return ExitCode::from(2);
        }
    };
    // `attn serve` shuts down gracefully on these signals itself (and writes no files).
    if !matches!(cli.command, Command::Serve(_)) {
        remove_temporaries_on_signals();
    }
    if let Some(ms) = std::env::var("ATTN_TEST_PAUSE_BEFORE_PUBLISH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tch_attention::io::atomic::pause_before_publish_for_tests(Duration::from_millis(ms));
    }
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("attn: {}", one_line(&describe(&e)));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

/// On SIGINT or SIGTERM, removes the temporary of any write in progress (so an
/// interrupted `attn convert` leaves the old output and nothing else), then exits with
/// 128 + the signal, as the shell reports a process killed by it (130, 143).
#[cfg(unix)]
fn remove_temporaries_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Without the handler the default action still ends the process; only the cleanup
    // is lost, and the next write of the same file sweeps what is left.
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tch_attention::io::remove_in_progress_temporaries();
            // _exit, not exit: the main thread may be inside libtorch, whose static
            // destructors must not run under it.
            // SAFETY: _exit only ends the process.
            unsafe { libc::_exit(128 + signal) };
        }
    });
}

/// Elsewhere the default action ends the process; the next write sweeps what is left.
#[cfg(not(unix))]
fn remove_temporaries_on_signals() {}

/// The library names a bad argument by its parameter (`layer`); a user typed the flag
/// (`--layer`). `flags` pairs the two.
pub fn with_flag_names(e: tch_attention::error::Error, flags: &[(&str, &str)]) -> anyhow::Error {
    use tch_attention::error::Error;
    match e {
        Error::Invalid { arg, reason } => match flags.iter().find(|(name, _)| *name == arg) {
            Some((_, flag)) => anyhow::anyhow!("{flag}: {reason}"),
            None => Error::Invalid { arg, reason }.into(),
        },
        e => e.into(),
    }
}

/// The error and its causes, each once (an I/O error's text is often repeated by its
/// source), without libtorch's C++ stack traces.
fn describe(e: &anyhow::Error) -> String {
    let exists = e.chain().find_map(|c| match c.downcast_ref() {
        Some(tch_attention::error::Error::Exists { path }) => Some(path),
        _ => None,
    });
    if let Some(path) = exists {
        return format!("{}: exists; pass --force to replace it", path.display());
    }
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        let part = tch_attention::error::without_backtrace(&part);
        if !text.contains(part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(part);
        }
    }
    text
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    if matches!(cli.command, Command::Train(_) | Command::Sample(_)) {
        // A model's steps allocate and free the same large activations again and again;
        // keeping freed pages saves the kernel's re-zeroing of them
        // (memory::keep_freed_memory). `bench` decides per suite; `generate` once its
        // model is loaded.
        tch_attention::memory::keep_freed_memory();
    }
    if matches!(cli.command, Command::Convert(_) | Command::Serve(_)) {
        // Views are written one piece at a time: each piece's pages go back at once
        // (memory::return_freed_memory). A server's requests come and go: the KV cache
        // of one that ended goes back too, rather than staying mapped at its peak.
        tch_attention::memory::return_freed_memory();
    }
    match cli.command {
        Command::Notebook(args) => notebook::run(args),
        Command::Doctor => doctor::run(),
        Command::Run(args) => cases::run(args),
        Command::Verify(args) => cases::verify(args),
        Command::Convert(args) => checkpoint::convert_file(args),
        Command::Inspect(args) => checkpoint::inspect(args),
        Command::Heatmap(args) => heatmap::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Serve(args) => serve::run(args),
    }
}
