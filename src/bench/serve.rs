//! A served model as a benchmark (`module: smollm2_serve`, suite `serve`): SmolLM2 (any
//! Llama GGUF the caller names) decoding through the continuous [`Batcher`] that
//! `attn serve`'s engine drives, the way concurrent requests meet it. It has no PyTorch
//! peer: scripts/bench_compare.py compares its rows with each other.
//!
//! - `decode` (rows `streamsN`): B = N greedy sequences, each after its own prompt of T
//!   tokens (ids that share no prefix), joined (untimed: each prefill runs alone), then
//!   stepped together until each has `new_tokens`. A sample is the mean time of one step
//!   over the `new_tokens - 1` steps that run the batched forward (the first step's
//!   tokens come from the prefills); the aggregate throughput is `N / step`.
//! - `prefill` (rows `ttft_*`): the time to first token of one request (its join and
//!   first step) whose prompt is a system prompt of T tokens then a user turn of
//!   `user_tokens`. `cold`: the batcher's prefix store emptied first, so the whole prompt
//!   is computed; `cached`: an earlier request with the same system prompt and another
//!   user turn finished just before, so the join copies the T cached positions and
//!   computes only the user turn. The timed request then leaves (a client gone), so that
//!   storing its cache is not timed.
//!
//! Prompts are plain ids (`1000, 1001, ...`, wrapped into the vocabulary) rather than
//! rendered text: the work depends on the count of tokens, not on which they are.

use std::any::Any;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::config::{BenchConfig, Mode, WholeModel};
use super::llama::{self, quant_name, BenchDecoder, LlamaBench};
use super::memory;
use super::runner::{Measurement, Progress};
use super::stats::percentile;
use crate::check;
use crate::error::{Error, Result};
use crate::generate::{Batcher, GenerateOptions};
use crate::models::llama::{LlamaForCausalLM, Quant};
use crate::nn::kernels;

/// The first id of the system prompt, and of the streams' prompts.
const PROMPT_START: i64 = 1000;
/// The first id of the user turns (each repeat's differ from the one before).
const USER_START: i64 = 20000;
/// The finished caches `attn serve`'s batcher keeps for reuse (its default).
const STORE: usize = 4;

/// A `smollm2_serve` configuration's own fields (suites.json's names): B is the streams
/// decoded together (`decode`), T the prompt of each (`decode`) or the system prompt
/// (`prefill`); C, nh and hs are the model's (informative: the file decides).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeBench {
    /// Tokens each sequence asks for (at least 2: the first comes from its prefill).
    pub new_tokens: i64,
    /// The layers' projections quantised as `attn serve --quant` does (the rest in
    /// bfloat16); `None`: float32 throughout.
    pub quant: Option<Quant>,
    /// `prefill` only: the user turn after the system prompt (at least 1).
    pub user_tokens: i64,
    /// `prefill` only: whether the system prompt is cached by an earlier request.
    pub cached_prefix: bool,
}

impl ServeBench {
    /// `cold` or `cached` for a `prefill` row, `none` for a `decode` row.
    fn prefix_name(&self, mode: Mode) -> &'static str {
        match (mode, self.cached_prefix) {
            (Mode::Prefill, true) => "cached",
            (Mode::Prefill, false) => "cold",
            _ => "none",
        }
    }
}

/// `module: smollm2_serve`: see the module's docs; the model file comes from the
/// caller ([`measure`]).
impl WholeModel for ServeBench {
    fn name(&self) -> &'static str {
        "smollm2_serve"
    }
    fn validate(&self, config: &BenchConfig) -> Result<()> {
        validate(config, self)
    }
    fn prepare(&self, config: &BenchConfig) -> Result<super::step::Workload> {
        let _ = config;
        Err(Error::config(
            "module",
            "smollm2_serve needs a model file: time it with bench::serve::measure",
        ))
    }
    fn row_fields(&self, row: &mut Value) {
        row["new_tokens"] = self.new_tokens.into();
        row["quant"] = quant_name(self.quant).into();
        row["head"] = "none".into();
        row["user_tokens"] = self.user_tokens.into();
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The checks of a `smollm2_serve` configuration.
fn validate(config: &BenchConfig, bench: &ServeBench) -> Result<()> {
    check::positive("new_tokens", bench.new_tokens)?;
    if bench.new_tokens < 2 {
        let got = format!(
            "needs at least 2 (the first is the prefill's), got {}",
            bench.new_tokens
        );
        return Err(Error::config("new_tokens", got));
    }
    match config.mode {
        Mode::Decode if bench.cached_prefix || bench.user_tokens != 0 => Err(Error::config(
            "user_tokens",
            "a decode row's streams have one prompt each: no user_tokens nor cached_prefix",
        )),
        Mode::Decode => Ok(()),
        Mode::Prefill if config.batch != 1 => Err(Error::config(
            "batch",
            format!("time to first token is one request's, got {}", config.batch),
        )),
        Mode::Prefill => check::positive("user_tokens", bench.user_tokens),
        m => Err(Error::config(
            "mode",
            format!("smollm2_serve runs decode or prefill, got {}", m.name()),
        )),
    }?;
    llama::check_quant_device(bench.quant, config.device)
}

/// Loads `model_file` (a GGUF) as `config` asks, into a [`Batcher`] of `B` sequences,
/// then times `warmup + repeats` samples: the mean batched step of `B` streams
/// (`decode`), or one request's time to first token (`prefill`). Peak memory counts
/// from after the load.
pub fn measure(
    config: &BenchConfig,
    bench: &ServeBench,
    model_file: &Path,
    progress: Progress,
) -> Result<ServeMeasurement> {
    llama::with_threads(bench.quant, || {
        measure_on(config, bench, model_file, progress)
    })
}

fn measure_on(
    config: &BenchConfig,
    bench: &ServeBench,
    model_file: &Path,
    progress: Progress,
) -> Result<ServeMeasurement> {
    config.validate()?;
    validate(config, bench)?;
    let as_llama = LlamaBench {
        model: BenchDecoder::SmolLm2,
        new_tokens: bench.new_tokens,
        quant: bench.quant,
        head: None,
    };
    let model = llama::load(model_file, config, &as_llama)?;
    let flops = sample_flops(&model, config, bench);
    let baseline = memory::reset_peak();
    let vocab = model.config.vocab_size;
    let context = config.seq + bench.user_tokens + bench.new_tokens;
    let mut batcher = Batcher::new(model, config.batch as usize, context)?;
    if config.mode == Mode::Decode {
        // Steady decoding: a finished stream's cache is not copied into the store.
        batcher = batcher.with_prefix_store(0);
    }
    let total = config.warmup + config.repeats;
    let mut samples = Vec::with_capacity(config.repeats);
    for i in 0..total {
        let ms = match config.mode {
            Mode::Decode => step_ms(&mut batcher, config, bench, vocab)?,
            _ => {
                // Emptied (cold), or emptied before this repeat's earlier request (cached).
                batcher = batcher.with_prefix_store(0).with_prefix_store(STORE);
                first_token_ms(&mut batcher, config, bench, vocab, i as i64)?
            }
        };
        if i >= config.warmup {
            samples.push(ms);
        }
        progress(i + 1, total);
    }
    let peak = memory::peak();
    let median_ms = percentile(&samples, 50.0);
    Ok(ServeMeasurement {
        measurement: Measurement {
            config: config.clone(),
            threads: kernels::threads() as i32,
            median_ms,
            p10_ms: percentile(&samples, 10.0),
            p90_ms: percentile(&samples, 90.0),
            gflops: flops / (median_ms * 1e-3) / 1e9,
            peak_rss_mb: peak,
            peak_delta_mb: peak.zip(baseline).map(|(p, b)| p - b),
        },
        prefix: bench.prefix_name(config.mode),
        prefix_reused: match (config.mode, bench.cached_prefix) {
            (Mode::Prefill, true) => config.seq,
            _ => 0,
        },
    })
}

/// One decode sample: B streams joined, then the mean milliseconds of the steps that
/// run the batched forward, each of which must give every stream a token.
fn step_ms(
    batcher: &mut Batcher<LlamaForCausalLM>,
    config: &BenchConfig,
    bench: &ServeBench,
    vocab: i64,
) -> Result<f64> {
    let (n, t) = (config.batch, config.seq);
    let options = GenerateOptions::greedy(bench.new_tokens);
    for s in 0..n {
        let prompt: Vec<i64> = (0..t).map(|j| (PROMPT_START + s * t + j) % vocab).collect();
        batcher.join(&prompt, &options)?;
    }
    // Their first tokens, from the prefills' logits: no forward.
    batcher.step()?;
    let mut total = 0.0;
    for _ in 1..bench.new_tokens {
        let start = Instant::now();
        let tokens = batcher.step()?;
        total += start.elapsed().as_secs_f64() * 1e3;
        if tokens.len() as i64 != n {
            let got = format!("{n} streams decoded together, got {} tokens", tokens.len());
            return Err(Error::invalid("batch", got));
        }
    }
    Ok(total / (bench.new_tokens - 1) as f64)
}

/// One prefill sample (repeat `i`): for `cached`, first a request of the system prompt
/// and another user turn runs to its end; then the timed request's join and first step.
/// Errors unless the timed join reused exactly the system prompt (cached) or nothing
/// (cold), so that the row measures what it says.
fn first_token_ms(
    batcher: &mut Batcher<LlamaForCausalLM>,
    config: &BenchConfig,
    bench: &ServeBench,
    vocab: i64,
    i: i64,
) -> Result<f64> {
    let u = bench.user_tokens;
    let prompt = |turn: i64| -> Vec<i64> {
        let system = (0..config.seq).map(|j| (PROMPT_START + j) % vocab);
        let user = (0..u).map(move |j| (USER_START + turn * u + j) % vocab);
        system.chain(user).collect()
    };
    let options = GenerateOptions::greedy(bench.new_tokens);
    if bench.cached_prefix {
        batcher.join(&prompt(2 * i), &options)?;
        while batcher.active() > 0 {
            batcher.step()?;
        }
    }
    let before = batcher.prefix_tokens_reused();
    let start = Instant::now();
    let id = batcher.join(&prompt(2 * i + 1), &options)?;
    batcher.step()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    batcher.leave(id);
    let reused = batcher.prefix_tokens_reused() - before;
    let want = if bench.cached_prefix { config.seq } else { 0 };
    if reused as i64 != want {
        let got = format!("the request was to reuse {want} cached tokens, it reused {reused}");
        return Err(Error::invalid("cached_prefix", got));
    }
    Ok(ms)
}

/// Matmul FLOPs of one sample: B tokens at context T (`decode`), or the tokens the
/// request computes, the whole prompt (cold) or the user turn after the cached system
/// prompt (cached; the projections and attention of those tokens).
fn sample_flops(model: &LlamaForCausalLM, config: &BenchConfig, bench: &ServeBench) -> f64 {
    let with_seq = |seq: i64| {
        let mut c = config.clone();
        c.seq = seq;
        llama::forward_flops(model, &c)
    };
    match config.mode {
        Mode::Decode => config.batch as f64 * with_seq(config.seq),
        _ => {
            let whole = with_seq(config.seq + bench.user_tokens);
            if bench.cached_prefix {
                whole - with_seq(config.seq)
            } else {
                whole
            }
        }
    }
}

/// What a `smollm2_serve` configuration measured: the common figures (median: ms per
/// batched step, or to the first token), and what they mean for a server.
#[derive(Debug, Clone)]
pub struct ServeMeasurement {
    /// The median, percentiles, memory.
    pub measurement: Measurement,
    /// `cold`, `cached` (prefill rows) or `none`.
    pub prefix: &'static str,
    /// The prompt tokens the timed request took from the cache.
    pub prefix_reused: i64,
}

impl ServeMeasurement {
    /// The tokens per second of all streams together (`decode` rows).
    pub fn tokens_per_s(&self) -> Option<f64> {
        let m = &self.measurement;
        (m.config.mode == Mode::Decode).then(|| m.config.batch as f64 * 1e3 / m.median_ms)
    }

    /// [`Measurement::to_json`] with the server's figures added.
    pub fn to_json(&self, matmul_gflops: f64) -> Value {
        let mut row = self.measurement.to_json(matmul_gflops);
        let decode = self.measurement.config.mode == Mode::Decode;
        row["streams"] = self.measurement.config.batch.into();
        row["tokens_per_s"] = self.tokens_per_s().into();
        row["ms_per_step"] = decode.then_some(self.measurement.median_ms).into();
        row["ttft_ms"] = (!decode).then_some(self.measurement.median_ms).into();
        row["prefix"] = self.prefix.into();
        row["prefix_tokens_reused"] = self.prefix_reused.into();
        row
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tch::{Device, Kind};

    use super::ServeBench;
    use crate::bench::{BenchConfig, BenchModule, Mode};

    fn config(mode: Mode, batch: i64, bench: ServeBench) -> BenchConfig {
        BenchConfig {
            suite: "serve".into(),
            name: "t".into(),
            module: BenchModule::Model(Arc::new(bench)),
            mode,
            batch,
            seq: 8,
            embd: 576,
            heads: 9,
            head_size: 64,
            kind: Kind::Float,
            device: Device::Cpu,
            warmup: 0,
            repeats: 1,
            window: None,
        }
    }

    #[test]
    fn serve_rows_need_a_mode_of_theirs_and_sizes_that_mean_something() {
        let decode = ServeBench {
            new_tokens: 4,
            quant: None,
            user_tokens: 0,
            cached_prefix: false,
        };
        let ttft = ServeBench {
            user_tokens: 4,
            cached_prefix: true,
            ..decode
        };
        assert!(config(Mode::Decode, 8, decode).validate().is_ok());
        assert!(config(Mode::Prefill, 1, ttft).validate().is_ok());
        for (c, field) in [
            (config(Mode::Forward, 1, decode), "mode"),
            (config(Mode::Decode, 4, ttft), "user_tokens"),
            (config(Mode::Prefill, 2, ttft), "batch"),
            (config(Mode::Prefill, 1, decode), "user_tokens"),
            (
                config(
                    Mode::Decode,
                    1,
                    ServeBench {
                        new_tokens: 1,
                        ..decode
                    },
                ),
                "new_tokens",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }
}
