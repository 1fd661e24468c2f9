//! `attn sample`: text from a checkpoint `attn train` wrote, as `gpt.py`'s `generate`
//! samples it (temperature 1, no top-k), with nanoGPT's temperature and top-k.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::{Device, Tensor};
use tch_attention::generate::{generate, SampleConfig};
use tch_attention::train::checkpoint;

/// The checkpoint carries the vocabulary and the model's configuration.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint written by `attn train --out`.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Text to continue; every character must be in the checkpoint's vocabulary.
    /// Default: a single token of id 0, as gpt.py starts.
    #[arg(long)]
    prompt: Option<String>,
    /// Tokens to sample after the prompt.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    max_new_tokens: i64,
    /// Divides the logits: below 1 sharper, above 1 flatter.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Sample only from the K most likely tokens.
    #[arg(long, allow_negative_numbers = true)]
    top_k: Option<i64>,
    /// Samples, one after another from the same generator.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    num_samples: i64,
    /// torch.manual_seed before the first sample.
    #[arg(long, default_value_t = 1337, allow_negative_numbers = true)]
    seed: i64,
    /// Intra-op threads (default: libtorch's).
    #[arg(long, allow_negative_numbers = true)]
    threads: Option<i32>,
    /// One {"text": "..."} object per sample, one per line.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = SampleConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        kv_cache: true,
    };
    if let Err(e) = config.validate() {
        let text = e.to_string();
        let text = text.strip_prefix("config ").unwrap_or(&text);
        bail!("--{}", text.replacen('_', "-", 2));
    }
    if args.num_samples < 1 {
        bail!(
            "--num-samples: must be at least 1, got {}",
            args.num_samples
        );
    }
    if let Some(t) = args.threads {
        if t < 1 {
            bail!("--threads: must be at least 1, got {t}");
        }
        tch::set_num_threads(t);
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
    for i in 0..args.num_samples {
        let context = Tensor::f_from_slice(&ids)?.f_unsqueeze(0)?; // (1, T)
        let out = generate(&ckpt.model, &context, &config)?;
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
