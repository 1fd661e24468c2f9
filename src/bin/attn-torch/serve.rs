//! `attn serve`: an OpenAI-compatible HTTP server for a decoder LM from a GGUF
//! (SmolLM2-135M-Instruct by default), with `attn generate`'s tokens.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use tch_attention::generate::Batcher;
use tch_attention::serve::{serve, ModelInfo, ServeConfig};

use crate::llama_model::{LoadArgs, Loaded};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    load: LoadArgs,
    /// The address to listen on (0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port to listen on (0: any free one; the line printed at start says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The most requests decoded together.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// The most requests waiting for a place; more are answered 429.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Require `Authorization: Bearer KEY` on every request.
    #[arg(long)]
    api_key: Option<String>,
    /// The largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 4 << 20)]
    body_limit: usize,
    /// Seconds a client may take to send its request's head, and then its body (408).
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true)]
    read_timeout: f64,
    /// On SIGTERM or SIGINT, seconds the requests in flight may go on before they are
    /// ended (finish_reason "length").
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    shutdown_grace: f64,
}

const FLAGS: &[(&str, &str)] = &[
    ("max_batch", "--max-batch"),
    ("max_queue", "--max-queue"),
    ("body_limit", "--body-limit"),
    ("read_timeout", "--read-timeout"),
    ("api_key", "--api-key"),
    ("port", "--port"),
];

/// Seconds from a flag, positive and finite.
fn seconds(flag: &str, s: f64, zero_ok: bool) -> Result<Duration> {
    anyhow::ensure!(
        s.is_finite() && (s > 0.0 || zero_ok && s == 0.0) && s < 1e9,
        "{flag}: must be a positive number of seconds, got {s}"
    );
    Ok(Duration::from_secs_f64(s))
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.load.check()?;
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        max_batch: args.max_batch,
        max_queue: args.max_queue,
        api_key: args.api_key.clone(),
        body_limit: args.body_limit,
        read_timeout: seconds("--read-timeout", args.read_timeout, false)?,
        shutdown_grace: seconds("--shutdown-grace", args.shutdown_grace, true)?,
    };
    config
        .validate()
        .map_err(|e| crate::with_flag_names(e, FLAGS))?;
    let Loaded {
        vs: _vs,
        model,
        tokenizer,
        name,
    } = args.load.load(|_, _| Ok(()))?;
    let info = ModelInfo {
        id: name,
        tokenizer,
        context_length: model.config.max_position_embeddings.max(0) as usize,
        eos_token_ids: model.config.eos_token_ids.clone(),
    };
    let id = info.id.clone();
    let context = model.config.max_position_embeddings;
    let decoder = Batcher::new(model, config.max_batch, context)?;
    serve(config, info, decoder, |addr| {
        println!("attn serve: {id} on http://{addr}/v1 (Ctrl-C or SIGTERM stops it)");
        let _ = std::io::stdout().flush();
    })
    .map_err(|e| crate::with_flag_names(e, FLAGS))?;
    Ok(ExitCode::SUCCESS)
}
