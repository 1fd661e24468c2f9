//! `attn sample`: text from a checkpoint `attn train` wrote, as `gpt.py`'s `generate`
//! samples it (temperature 1, no top-k), with nanoGPT's temperature and top-k; or from
//! a nanoGPT `ckpt.pt` (`attn train --model nanogpt`, or `train.py`'s), as nanoGPT's
//! `sample.py` samples it, with `sample.py`'s defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::{Device, Tensor};
use tch_attention::generate::nanogpt::SampleCheckpoint;
use tch_attention::generate::{generate_batch, GenerateOptions, SamplingConfig};
use tch_attention::io::{sniff_file, Format};
use tch_attention::train::checkpoint;

/// The checkpoint carries the vocabulary and the model's configuration. Defaults are
/// per model: the lecture's (`gpt.py`) or nanoGPT `sample.py`'s for a `ckpt.pt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint written by `attn train --out`, or a nanoGPT `ckpt.pt` (`meta.pkl`
    /// beside it or in data/<dataset>/ as sample.py looks for it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue; every character must be in the checkpoint's vocabulary.
    /// Default: a single token of id 0, as gpt.py starts; "\n" for a ckpt.pt (sample.py's
    /// `start`, where "FILE:path" reads the prompt from a file).
    #[arg(long)]
    prompt: Option<String>,
    /// Tokens to sample after the prompt.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    max_new_tokens: i64,
    /// Divides the logits: below 1 sharper, above 1 flatter. Default 1.0; 0.8 for a
    /// ckpt.pt.
    #[arg(long, allow_negative_numbers = true)]
    temperature: Option<f64>,
    /// Sample only from the K most likely tokens. Default: all; 200 for a ckpt.pt.
    #[arg(long, allow_negative_numbers = true)]
    top_k: Option<i64>,
    /// Samples, one after another from the same generator. Default 1; 10 for a ckpt.pt.
    #[arg(long, allow_negative_numbers = true)]
    num_samples: Option<i64>,
    /// torch.manual_seed before the first sample (before building the model for a
    /// ckpt.pt, as sample.py does).
    #[arg(long, default_value_t = 1337, allow_negative_numbers = true)]
    seed: i64,
    /// Intra-op threads (default: libtorch's).
    #[arg(long, allow_negative_numbers = true)]
    threads: Option<i32>,
    /// One {"text": "..."} object per sample, one per line.
    #[arg(long)]
    json: bool,
}

/// What both models share: checked settings with the model's defaults filled in.
struct Settings {
    config: GenerateOptions,
    num_samples: i64,
}

fn settings(args: &Args, nanogpt: bool) -> Result<Settings> {
    let (temperature, top_k, num_samples) = if nanogpt {
        (0.8, Some(200), 10) // sample.py
    } else {
        (1.0, None, 1) // gpt.py
    };
    let sampling = SamplingConfig {
        temperature: args.temperature.unwrap_or(temperature),
        top_k: args.top_k.or(top_k),
        ..SamplingConfig::none()
    };
    let config = GenerateOptions::sampled(args.max_new_tokens, sampling);
    if let Err(e) = config.validate() {
        let text = e.to_string();
        let text = text.strip_prefix("config ").unwrap_or(&text);
        bail!("--{}", text.replacen('_', "-", 2));
    }
    let num_samples = args.num_samples.unwrap_or(num_samples);
    if num_samples < 1 {
        bail!("--num-samples: must be at least 1, got {num_samples}");
    }
    Ok(Settings {
        config,
        num_samples,
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    // A torch.save zip is nanoGPT's ckpt.pt; anything else the lecture's checkpoint.
    let nanogpt = sniff_file(&args.checkpoint)
        .map(|f| f == Some(Format::TorchZip))
        .with_context(|| format!("--checkpoint {}", args.checkpoint.display()))?;
    let Settings {
        config,
        num_samples,
    } = settings(&args, nanogpt)?;
    if let Some(t) = args.threads {
        if t < 1 {
            bail!("--threads: must be at least 1, got {t}");
        }
        tch::set_num_threads(t);
    }
    if nanogpt {
        return run_nanogpt(&args, &config, num_samples);
    }
    let ckpt = checkpoint::load(&args.checkpoint, Device::Cpu)
        .with_context(|| format!("--checkpoint {}", args.checkpoint.display()))?;
    let ids = match args.prompt.as_deref() {
        Some(p) if !p.is_empty() => ckpt.vocab.encode(p).map_err(|e| {
            anyhow::anyhow!("--prompt: {}", e.to_string().trim_start_matches("text: "))
        })?,
        _ => vec![0],
    };
    // After the load: building the model draws its init from the default generator.
    tch::manual_seed(args.seed);
    for i in 0..num_samples {
        let context = Tensor::f_from_slice(&ids)?.f_unsqueeze(0)?; // (1, T)
        let out = generate_batch(&ckpt.model, &context, &config)?;
        let text = ckpt
            .vocab
            .decode(&Vec::<i64>::try_from(out.f_squeeze_dim(0)?)?)?;
        if args.json {
            println!("{}", json!({ "text": text }));
        } else {
            if i > 0 {
                println!("---------------");
            }
            println!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sample.py` with `init_from='resume'`: seed, build and load the model, then each
/// sample printed and followed by a line of dashes.
fn run_nanogpt(args: &Args, config: &GenerateOptions, num_samples: i64) -> Result<ExitCode> {
    let start = match args.prompt.as_deref() {
        None => "\n".to_string(),
        Some(p) => match p.strip_prefix("FILE:") {
            Some(file) => {
                std::fs::read_to_string(file).with_context(|| format!("--prompt FILE:{file}"))?
            }
            None => p.to_string(),
        },
    };
    if start.is_empty() {
        bail!("--prompt: must not be empty (sample.py needs at least one token)");
    }
    // Before the model: GPT(gptconf) draws its init, and the samples draw after it.
    tch::manual_seed(args.seed);
    let ckpt = SampleCheckpoint::load(&args.checkpoint)
        .with_context(|| format!("--checkpoint {}", args.checkpoint.display()))?;
    let ids = ckpt
        .encode(&start)
        .map_err(|e| anyhow::anyhow!("--prompt: {}", e.to_string().trim_start_matches("text: ")))?;
    let x = Tensor::f_from_slice(&ids)?.f_unsqueeze(0)?; // (1, T)
    for _ in 0..num_samples {
        let y = generate_batch(&ckpt.model, &x, config)?;
        let text = ckpt.decode(&Vec::<i64>::try_from(y.f_squeeze_dim(0)?)?)?;
        if args.json {
            println!("{}", json!({ "text": text }));
        } else {
            println!("{text}");
            println!("---------------");
        }
    }
    Ok(ExitCode::SUCCESS)
}
