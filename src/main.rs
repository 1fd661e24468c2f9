//! `attn`: the command-line face of tch-attention. Only options and wiring live here;
//! everything it does, a program can do through the library.
//!
//! Exit codes: 0 success; 1 a parity check failed; 2 bad usage, bad input or an
//! unhealthy install (one line on stderr).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tch::Device;

use tch_attention::case::{collect_case_files, Case};
use tch_attention::checkpoint::write_safetensors;
use tch_attention::doctor::Diagnosis;
use tch_attention::notebook::{Notebook, NotebookConfig};

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
    Notebook {
        /// manual_seed before anything is drawn.
        #[arg(long, default_value_t = 1337)]
        seed: i64,
        /// B: sequences in the batch.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
        batch: i64,
        /// T: tokens per sequence.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
        time: i64,
        /// C: channels per token.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
        channels: i64,
        /// Channels of the key, query and value projections.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
        head_size: i64,
    },
    /// Report the linked libtorch: version, folder, CUDA, threads, attention kernels.
    Doctor,
    /// Run a parity case and write what this crate computes.
    Run {
        /// The case file (docs/parity-cases.md).
        case: PathBuf,
        /// Where to write output, attn_weights and gradients (safetensors).
        #[arg(long, short)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
        /// Replace OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check parity cases against what PyTorch computed.
    Verify {
        /// Case files, or folders searched recursively for *.safetensors.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// One JSON object per case per line instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DeviceArg {
    Cpu,
    Cuda,
}

impl DeviceArg {
    fn device(self) -> Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceArg::Cuda => bail!(
                "--device cuda: no CUDA device is available to this libtorch (see `attn doctor`)"
            ),
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
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ");
            eprintln!("attn: {first} (see 'attn --help')");
            return ExitCode::from(2);
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("attn: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
        Err(_) => ExitCode::from(2),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Notebook {
            seed,
            batch,
            time,
            channels,
            head_size,
        } => {
            let nb = Notebook::replay(NotebookConfig {
                seed,
                batch,
                time,
                channels,
                head_size,
            })?;
            print!("{}", nb.render()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => doctor(),
        Command::Run {
            case,
            output,
            device,
            force,
        } => {
            if output.exists() && !force {
                bail!("{}: exists; pass --force to replace it", output.display());
            }
            let c = Case::read(&case)?;
            let outcome = c
                .run(device.device()?)
                .with_context(|| format!("{}", case.display()))?;
            let mut meta = BTreeMap::new();
            meta.insert("case".to_string(), case.display().to_string());
            meta.insert("module".to_string(), c.module.clone());
            write_safetensors(
                &output,
                outcome.tensors.iter().map(|(k, v)| (k.as_str(), v)),
                &meta,
            )?;
            eprintln!(
                "attn: wrote {} tensors to {}",
                outcome.tensors.len(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            paths,
            json,
            device,
        } => verify(&paths, json, device.device()?),
    }
}

fn doctor() -> Result<ExitCode> {
    let d = Diagnosis::collect();
    let dir = d
        .lib_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "unknown".into());
    let version = d.version.clone().unwrap_or_else(|| "unknown".into());
    let ok = d.problem().is_none();
    println!(
        "libtorch version   {version} ({})",
        if ok {
            "the 2.13.0 this build expects"
        } else {
            "NOT the 2.13.0 this build expects"
        }
    );
    println!("loaded from        {dir}");
    println!("built against      {}", d.built_against);
    println!(
        "CUDA available     {} ({} device(s))",
        d.cuda_available, d.cuda_devices
    );
    println!("cuDNN available    {}", d.cudnn_available);
    println!("threads            {}", d.threads);
    println!("SDPA kernels       math is always available; the fused dispatcher picks, for a causal (1, 2, 8, 16) call:");
    for (device, kind, choice) in &d.sdp_choices {
        println!("  {device:<8} {kind:<9} {choice}");
    }
    match d.problem() {
        None => Ok(ExitCode::SUCCESS),
        Some(p) => {
            eprintln!("attn: {p}");
            Ok(ExitCode::from(2))
        }
    }
}

fn verify(paths: &[PathBuf], json: bool, device: Device) -> Result<ExitCode> {
    let (files, skipped) = collect_case_files(paths)?;
    if !skipped.is_empty() {
        eprintln!(
            "attn: skipped {} safetensors file(s) without case metadata",
            skipped.len()
        );
    }
    if files.is_empty() {
        bail!("no *.safetensors case files under {paths:?}");
    }
    if !json {
        println!(
            "{:<60} {:<22} {:<9} {:>11} {:>11}  result",
            "case", "module", "dtype", "max abs", "max rel"
        );
    }
    let (mut failed, mut invalid) = (0, 0);
    for file in &files {
        let name = file.display().to_string();
        let result = Case::read(file).and_then(|case| {
            let outcome = case.run(device)?;
            let report = case.compare(&outcome)?;
            Ok((case, report))
        });
        match result {
            Ok((case, report)) => {
                let pass = report.passed();
                failed += usize::from(!pass);
                let dtype = format!("{:?}", case.kind());
                let failures: Vec<String> = report
                    .checks
                    .iter()
                    .filter_map(|c| c.failure.as_ref().map(|f| format!("{}: {f}", c.name)))
                    .collect();
                if json {
                    let obj = serde_json::json!({
                        "case": name, "module": case.module, "dtype": dtype,
                        "max_abs": report.max_abs(), "max_rel": report.max_rel(),
                        "pass": pass, "failures": failures,
                    });
                    println!("{obj}");
                } else {
                    let verdict = if pass {
                        "pass".to_string()
                    } else {
                        format!("FAIL ({})", failures.join("; "))
                    };
                    println!(
                        "{name:<60} {:<22} {dtype:<9} {:>11.3e} {:>11.3e}  {verdict}",
                        case.module,
                        report.max_abs(),
                        report.max_rel()
                    );
                }
            }
            Err(e) => {
                invalid += 1;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "case": name, "error": e.to_string() })
                    );
                } else {
                    println!("{name:<60} invalid: {e}");
                }
            }
        }
    }
    let passed = files.len() - failed - invalid;
    eprintln!("verify: {passed} passed, {failed} failed");
    if invalid > 0 {
        eprintln!("attn: {invalid} case(s) could not be read or run");
        Ok(ExitCode::from(2))
    } else if failed > 0 {
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
