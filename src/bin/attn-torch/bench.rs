//! `attn bench`: times a named suite or one configuration (see tch_attention::bench),
//! as a table or one JSON object per line for scripts/bench_compare.py.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::Kind;
use tch_attention::bench::config::{dtype_name, parse_dtype};
use tch_attention::bench::limits::check_steps;
use tch_attention::bench::llama::{self, BenchDecoder};
use tch_attention::bench::runner::device_name;
use tch_attention::bench::serve;
use tch_attention::bench::suites::suite;
use tch_attention::bench::{
    check_threads, matmul_gflops, measure, BenchConfig, BenchModule, Measurement, Mode, SUITES,
};
use tch_attention::doctor::loaded_libtorch_version;
use tch_attention::nn::kernels::{self, KernelSet};

use crate::model_dir::{default_gemma_model, default_llama_model};
use crate::DeviceArg;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["suite", "module"])))]
pub struct Args {
    /// A named suite: small, gpt2, long, decode, train (the lecture's GPT), or all of them;
    /// or generate and serve (SmolLM2 from its package, or --model; not part of all).
    #[arg(long)]
    suite: Option<String>,
    /// One configuration of this module: head, multi_head, causal_self_attention,
    /// multihead_attention or sdpa.
    #[arg(long)]
    module: Option<String>,
    /// B.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
    batch: i64,
    /// T (for --decode: the context, T - 1 cached tokens and one new).
    #[arg(long, default_value_t = 8, allow_negative_numbers = true)]
    seq: i64,
    /// C.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    embd: i64,
    /// nh.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    heads: i64,
    /// hs; default embd / heads.
    #[arg(long, allow_negative_numbers = true)]
    head_size: Option<i64>,
    /// f32, f64, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// Time forward + backward (train mode, loss = output.sum()).
    #[arg(long, conflicts_with = "decode")]
    backward: bool,
    /// Time one new token against a KV cache of seq - 1 (causal_self_attention).
    #[arg(long)]
    decode: bool,
    /// Untimed steps first (default 10 for one configuration; a suite's own otherwise).
    #[arg(long)]
    warmup: Option<usize>,
    /// Timed steps (default 50 for one configuration; a suite's own otherwise).
    #[arg(long)]
    repeats: Option<usize>,
    /// Intra-op threads, fixed for the whole run (PyTorch's side uses the same).
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Tiny sizes and few repeats: checks that every suite runs, in seconds.
    #[arg(long)]
    smoke: bool,
    /// One JSON object per line and configuration instead of a table.
    #[arg(long)]
    json: bool,
    /// The GGUF file of suites generate and serve (default: each row's installed model,
    /// SmolLM2-135M-Instruct or Gemma 3 270M).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Only the suite's rows of these names (comma-separated), in the suite's order.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The crate's block kernels at most this set (scalar, avx2, avx512-vnni, avx512):
    /// a smaller CPU's kernels timed on this one; default the fastest this CPU has.
    #[arg(long, value_parser = parse_kernel_set)]
    kernels: Option<KernelSet>,
}

/// A kernel set by its name (`attn doctor`'s).
fn parse_kernel_set(name: &str) -> Result<KernelSet, String> {
    KernelSet::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = KernelSet::ALL.iter().map(|s| s.name()).collect();
        format!("expected one of {}, got {name:?}", names.join(", "))
    })
}

/// The config fields a user sets with a flag of the same meaning.
const FLAGS: &[(&str, &str)] = &[
    ("batch", "--batch"),
    ("seq", "--seq"),
    ("embd", "--embd"),
    ("heads", "--heads"),
    ("head_size", "--head-size"),
    ("warmup", "--warmup"),
    ("repeats", "--repeats"),
];

/// A config error about a field a flag sets, as that flag's error (`--repeats: ...`).
fn config_to_flag(e: tch_attention::Error) -> anyhow::Error {
    match e {
        tch_attention::Error::Config { field, reason } => {
            match FLAGS.iter().find(|(name, _)| *name == field) {
                Some((_, flag)) => anyhow::anyhow!("{flag}: {reason}"),
                None => tch_attention::Error::Config { field, reason }.into(),
            }
        }
        e => e.into(),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    // The counts first: a step count reaches an allocation (the kept times).
    check_steps(args.warmup.unwrap_or(0), args.repeats.unwrap_or(1)).map_err(config_to_flag)?;
    check_threads(args.threads.into()).context("--threads")?;
    if let Some(set) = args.kernels {
        kernels::limit_kernel_set(set).context("--kernels")?;
    }
    if matches!(args.suite.as_deref(), Some("train" | "generate" | "serve")) {
        // The whole models run as `attn train`, `sample` and `generate` run them, with
        // freed pages kept (memory::keep_freed_memory); the module suites run on glibc's
        // default, as PyTorch's side does.
        tch_attention::memory::keep_freed_memory();
    }
    let kind = parse_dtype(&args.dtype)?;
    let device = args.device.device()?;
    let configs = configs(&args, kind, device)?;
    tch::set_num_threads(args.threads);
    let ceiling = matmul_gflops(1024, kind, device)?;
    if !args.json {
        println!(
            "tch-attention bench: libtorch {}, {} thread(s), {}, matmul ceiling {ceiling:.1} GFLOP/s ({} 1024x1024)",
            loaded_libtorch_version().unwrap_or_else(|| "?".into()),
            args.threads,
            device_name(device),
            dtype_name(kind)
        );
        println!(
            "{:<8} {:<32} {:<9} {:>4} {:>5} {:>4} {:>3} {:>3} {:>10} {:>10} {:>10} {:>8} {:>6} {:>9}",
            "suite", "name", "mode", "B", "T", "C", "nh", "hs", "median ms", "p10 ms", "p90 ms",
            "GFLOP/s", "%peak", "peak MiB"
        );
    }
    let bar = std::io::stderr().is_terminal();
    for (i, c) in configs.iter().enumerate() {
        let label = format!("[{}/{}] {}/{}", i + 1, configs.len(), c.suite, c.name);
        // Redrawn at most every 100 ms: thousands of tiny steps must not flood the terminal.
        let mut last: Option<Instant> = None;
        let mut progress = |done: usize, total: usize| {
            if bar && (done == total || last.is_none_or(|t| t.elapsed().as_millis() >= 100)) {
                draw_bar(&label, done, total);
                last = Some(Instant::now());
            }
        };
        let (m, mut row) = measure_one(c, &args, ceiling, &mut progress)?;
        if bar {
            eprint!("\r\x1b[2K");
        }
        if args.json {
            row["libtorch"] = loaded_libtorch_version().into();
            println!("{row}");
        } else {
            print_row(&m, ceiling);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Times `c`: a whole pretrained model with the model file (--model or the installed
/// SmolLM2), anything else by the runner; its measurement and JSON row.
fn measure_one(
    c: &BenchConfig,
    args: &Args,
    ceiling: f64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Measurement, serde_json::Value)> {
    let file = |model: BenchDecoder| match (&args.model, model) {
        (Some(file), _) => Ok(file.clone()),
        (None, BenchDecoder::SmolLm2) => default_llama_model(),
        (None, BenchDecoder::Gemma3) => default_gemma_model(),
    };
    let what = |file: &std::path::Path| format!("{}/{} ({})", c.suite, c.name, file.display());
    if let Some(bench) = c.module.model::<llama::LlamaBench>() {
        let file = file(bench.model)?;
        let m = llama::measure(c, bench, &file, progress).with_context(|| what(&file))?;
        let row = m.to_json(ceiling);
        return Ok((m.measurement, row));
    }
    if let Some(bench) = c.module.model::<serve::ServeBench>() {
        let file = file(BenchDecoder::SmolLm2)?;
        let m = serve::measure(c, bench, &file, progress).with_context(|| what(&file))?;
        let row = m.to_json(ceiling);
        return Ok((m.measurement, row));
    }
    let m = measure(c, progress).with_context(|| format!("{}/{}", c.suite, c.name))?;
    let row = m.to_json(ceiling);
    Ok((m, row))
}

/// The configurations to time: a suite's (or all of them), or the one of --module,
/// with --warmup and --repeats applied, each checked.
fn configs(args: &Args, kind: Kind, device: tch::Device) -> Result<Vec<BenchConfig>> {
    let mut configs = match (&args.suite, &args.module) {
        (Some(name), _) => {
            let names: Vec<&str> = if name == "all" {
                SUITES.to_vec()
            } else {
                vec![name.as_str()]
            };
            let mut all = Vec::new();
            for n in names {
                all.extend(suite(n, kind, device, args.smoke).context("--suite")?);
            }
            if let Some(bad) = args
                .only
                .iter()
                .find(|o| !all.iter().any(|c| &c.name == *o))
            {
                bail!("--only: no row {bad:?} in suite {name}");
            }
            if !args.only.is_empty() {
                all.retain(|c| args.only.contains(&c.name));
            }
            all
        }
        (None, Some(module)) => vec![one(args, module, kind, device)?],
        (None, None) => bail!("give --suite or --module"),
    };
    for c in &mut configs {
        c.warmup = args.warmup.unwrap_or(c.warmup);
        c.repeats = args.repeats.unwrap_or(c.repeats);
        c.validate().map_err(config_to_flag)?;
    }
    Ok(configs)
}

fn one(args: &Args, module: &str, kind: Kind, device: tch::Device) -> Result<BenchConfig> {
    let head_size = match args.head_size {
        Some(hs) => hs,
        None if args.heads >= 1 => args.embd / args.heads,
        None => args.heads, // rejected by validate
    };
    let config = BenchConfig {
        suite: "custom".into(),
        name: module.into(),
        module: BenchModule::Attention(module.parse().context("--module")?),
        mode: if args.backward {
            Mode::Backward
        } else if args.decode {
            Mode::Decode
        } else {
            Mode::Forward
        },
        batch: args.batch,
        seq: args.seq,
        embd: args.embd,
        heads: args.heads,
        head_size,
        kind,
        device,
        warmup: 10,
        repeats: 50,
        window: None,
    };
    config.validate().map_err(config_to_flag)?;
    Ok(config)
}

fn print_row(m: &Measurement, ceiling: f64) {
    let c = &m.config;
    let mb = m
        .peak_rss_mb
        .map(|v| format!("{v:.0}"))
        .unwrap_or_else(|| "-".into());
    println!(
        "{:<8} {:<32} {:<9} {:>4} {:>5} {:>4} {:>3} {:>3} {:>10.4} {:>10.4} {:>10.4} {:>8.2} {:>5.1}% {:>9}",
        c.suite,
        c.name,
        c.mode.name(),
        c.batch,
        c.seq,
        c.embd,
        c.heads,
        c.head_size,
        m.median_ms,
        m.p10_ms,
        m.p90_ms,
        m.gflops,
        100.0 * m.gflops / ceiling,
        mb
    );
}

fn draw_bar(label: &str, done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    eprint!(
        "\r\x1b[2K{label} [{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    let _ = std::io::stderr().flush();
}
