//! `attn`: the command-line face of tch-attention. Only options and wiring live here,
//! one file per subcommand; everything it does, a program can do through the library.
//!
//! Exit codes: 0 success; 1 a parity check failed; 2 bad usage, bad input or an
//! unhealthy install (one line on stderr).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use tch::Device;

mod bench;
mod cases;
mod checkpoint;
mod doctor;
mod embed;
mod explain;
mod heatmap;
mod model;
mod notebook;
mod sample;
mod train;

/// Transformer self-attention on libtorch, checked against PyTorch.
#[derive(Parser, Debug)]
#[command(name = "attn", version, about)]
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
    /// Show a pretrained encoder's attention on a sentence: heatmap and top tokens.
    Explain(explain::Args),
    /// Sentence embeddings from a pretrained encoder (sentence-transformers' values).
    Embed(embed::Args),
    /// Time a benchmark suite or one configuration (median, spread, GFLOP/s, peak memory).
    Bench(bench::Args),
    /// Train a model as its PyTorch script does, step for step (the lecture's gpt.py).
    Train(train::Args),
    /// Sample text from a checkpoint `attn train` wrote.
    Sample(sample::Args),
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
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("attn: {}", one_line(&describe(&e)));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

/// The error and its causes, each once (an I/O error's text is often repeated by its
/// source), without libtorch's C++ stack traces.
fn describe(e: &anyhow::Error) -> String {
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
    }
}
