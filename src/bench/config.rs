//! What one benchmark runs, and the named suites of `bench/suites.json` (the file
//! scripts/bench_torch.py reads too, so both sides run the same configurations).

use serde::Deserialize;
use tch::{Device, Kind};

use super::lecture_gpt::{self, LectureGptSizes};
use super::limits;
use super::llama::{self, LlamaBench};
use super::nanogpt_gpt;
use crate::error::{Error, Result};
use crate::parity::ModuleKind;

/// The suites, compiled in from `bench/suites.json`.
pub const SUITES_JSON: &str = include_str!("../../bench/suites.json");

/// The suite names, in the order `--suite all` runs them.
pub const SUITES: [&str; 5] = ["small", "gpt2", "long", "decode", "train"];

/// The suites of whole pretrained models, which need a model file from the caller
/// ([`llama::measure`]); not part of `--suite all` (nor of its smoke run).
pub const MODEL_SUITES: [&str; 1] = ["generate"];

/// What one timed step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One forward pass in eval mode, without grad.
    Forward,
    /// One forward pass in train mode (dropout 0), then `output.sum().backward()`.
    Backward,
    /// One new token attended to a KV cache holding `seq - 1` tokens (eval, no grad).
    Decode,
    /// One iteration of the lecture's training loop on a whole model (`lecture_gpt`):
    /// `get_batch`, forward, loss, `zero_grad(set_to_none=True)`, backward, AdamW step.
    #[serde(rename = "train_step")]
    TrainStep,
    /// `generate`: `new_tokens` sampled from a zero context by a whole model
    /// (`lecture_gpt`), in eval mode without grad.
    Sample,
    /// A whole decoder LM (`smollm2`): the prompt's forward pass into the KV cache and
    /// the first token's choice.
    Prefill,
}

impl Mode {
    /// `forward`, `backward` or `decode`, as suites.json names it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Backward => "backward",
            Mode::Decode => "decode",
            Mode::TrainStep => "train_step",
            Mode::Sample => "sample",
            Mode::Prefill => "prefill",
        }
    }

    /// Whether the step needs autograd (the runner turns it off otherwise).
    pub fn needs_grad(self) -> bool {
        matches!(self, Mode::Backward | Mode::TrainStep)
    }
}

/// What a configuration times: an attention module of the parity cases, or a whole
/// model built from them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BenchModule {
    /// One attention module, sized by B, T, C, nh, hs.
    Attention(ModuleKind),
    /// `lecture_gpt`: the lecture's `GPTLanguageModel`, with T its `block_size`, C its
    /// `n_embd`, nh its `n_head` (hs = C / nh), and the sizes the attention fields do
    /// not cover.
    LectureGpt(LectureGptSizes),
    /// `smollm2`: SmolLM2 (any Llama GGUF) generating greedily, with T the prompt's
    /// tokens; the model file comes from the caller ([`llama::measure`]).
    Llama(LlamaBench),
    /// `nanogpt_gpt`: nanoGPT's `GPT` trained as `train.py` trains it, sized as
    /// `lecture_gpt` (T `block_size`, C `n_embd`, nh `n_head`, and the same model fields).
    NanoGpt(LectureGptSizes),
}

impl std::fmt::Display for BenchModule {
    /// The name suites.json gives it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchModule::Attention(m) => m.fmt(f),
            BenchModule::LectureGpt(_) => f.write_str("lecture_gpt"),
            BenchModule::Llama(_) => f.write_str("smollm2"),
            BenchModule::NanoGpt(_) => f.write_str("nanogpt_gpt"),
        }
    }
}

/// One configuration: a module of the parity cases at one size.
///
/// Sizes use PyTorch's letters: `batch` B, `seq` T, `embd` C, `heads` nh, `head_size` hs.
/// `head` has one head of `head_size` over C channels; `multi_head` has nh of them;
/// `causal_self_attention` and `multihead_attention` need `C = nh * hs`; `sdpa` takes
/// q, k, v of `(B, nh, T, hs)` and ignores C. Every configuration is causal.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// The suite it belongs to, or `custom`.
    pub suite: String,
    /// Its name within the suite (joins the two sides of `make bench`).
    pub name: String,
    /// The module (or whole model) it times.
    pub module: BenchModule,
    /// What one step does.
    pub mode: Mode,
    /// B.
    pub batch: i64,
    /// T (for [`Mode::Decode`], the context: `T - 1` cached tokens and one new).
    pub seq: i64,
    /// C.
    pub embd: i64,
    /// nh.
    pub heads: i64,
    /// hs.
    pub head_size: i64,
    /// The dtype of parameters and inputs.
    pub kind: Kind,
    /// Where it runs.
    pub device: Device,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub repeats: usize,
    /// `sdpa` only: a causal sliding window of W keys (transformers' `sliding_window`:
    /// each query sees itself and the `W - 1` before it). `None`: plain causal.
    pub window: Option<i64>,
}

/// `f32`, `f64`, `f16`, `bf16` as dtypes.
pub fn parse_dtype(s: &str) -> Result<Kind> {
    match s {
        "f32" => Ok(Kind::Float),
        "f64" => Ok(Kind::Double),
        "f16" => Ok(Kind::Half),
        "bf16" => Ok(Kind::BFloat16),
        _ => Err(Error::config(
            "dtype",
            format!("expected f32, f64, f16 or bf16, got {s:?}"),
        )),
    }
}

/// The short name of a dtype, as [`parse_dtype`] reads it.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Double => "f64",
        Kind::Half => "f16",
        Kind::BFloat16 => "bf16",
        _ => "f32",
    }
}

impl BenchConfig {
    /// Checks every field once, before anything is built: sizes, the module's
    /// constraints, and that the configuration fits in the memory the machine has now
    /// (see [`limits::check_memory`]).
    pub fn validate(&self) -> Result<()> {
        self.validate_fields()?;
        limits::check_memory(self, limits::available_memory(self.device))
    }

    /// The checks that depend on the fields alone.
    fn validate_fields(&self) -> Result<()> {
        limits::check_steps(self.warmup, self.repeats)?;
        for (field, v) in [
            ("batch", self.batch),
            ("seq", self.seq),
            ("embd", self.embd),
            ("heads", self.heads),
            ("head_size", self.head_size),
        ] {
            if v < 1 {
                return Err(Error::config(field, format!("must be at least 1, got {v}")));
            }
        }
        let m = match self.module {
            BenchModule::Attention(m) => m,
            BenchModule::LectureGpt(sizes) => return lecture_gpt::validate(self, &sizes),
            BenchModule::Llama(bench) => return llama::validate(self, &bench),
            BenchModule::NanoGpt(sizes) => return nanogpt_gpt::validate(self, &sizes),
        };
        if matches!(self.mode, Mode::TrainStep | Mode::Sample | Mode::Prefill) {
            return Err(Error::config(
                "mode",
                format!(
                    "{} runs a whole model (lecture_gpt), not {m}",
                    self.mode.name()
                ),
            ));
        }
        if m == ModuleKind::Head && self.heads != 1 {
            return Err(Error::config(
                "heads",
                format!("head has one head, got {}", self.heads),
            ));
        }
        let fused = matches!(
            m,
            ModuleKind::CausalSelfAttention | ModuleKind::MultiheadAttention
        );
        if fused && Some(self.embd) != self.heads.checked_mul(self.head_size) {
            return Err(Error::config(
                "embd",
                format!(
                    "{m} needs embd = heads * head_size = {} * {}, got {}",
                    self.heads, self.head_size, self.embd
                ),
            ));
        }
        if let Some(w) = self.window {
            if m != ModuleKind::Sdpa || w < 1 {
                return Err(Error::config(
                    "window",
                    format!("a window of W >= 1 keys is for sdpa, got {w} for {m}"),
                ));
            }
        }
        if self.mode == Mode::Decode && (m != ModuleKind::CausalSelfAttention || self.seq < 2) {
            return Err(Error::config(
                "mode",
                "decode runs causal_self_attention with seq >= 2 (seq - 1 cached tokens, one new)",
            ));
        }
        Ok(())
    }

    /// The floating-point operations of one step: matmuls only, 2 per multiply-add.
    /// Causal attention counts the `T (T + 1) / 2` query-key pairs it keeps (as
    /// FlashAttention's papers do); a backward pass counts twice its forward.
    pub fn flops(&self) -> f64 {
        let module = match self.module {
            BenchModule::Attention(m) => m,
            BenchModule::LectureGpt(sizes) => return lecture_gpt::flops(self, &sizes),
            // Known once the model file is loaded: llama::measure counts them.
            BenchModule::Llama(_) => return 0.0,
            BenchModule::NanoGpt(sizes) => return nanogpt_gpt::flops(self, &sizes),
        };
        let (b, t, c, nh, hs) = self.sizes();
        // Queries in this step, and the query-key pairs they score.
        let (tq, pairs) = match (self.mode, self.window) {
            (Mode::Decode, _) => (1.0, t),
            // A window of W keeps W pairs per query, fewer for the first W - 1.
            (_, Some(w)) if (w as f64) < t => {
                let w = w as f64;
                (t, w * (w + 1.0) / 2.0 + (t - w) * w)
            }
            _ => (t, t * (t + 1.0) / 2.0),
        };
        let attention = 2.0 * 2.0 * b * nh * pairs * hs; // q @ k^T and weights @ v
        let linear = |inp: f64, out: f64| 2.0 * b * tq * inp * out;
        let forward = attention
            + match module {
                ModuleKind::Head => nh * linear(c, 3.0 * hs),
                ModuleKind::MultiHead => nh * linear(c, 3.0 * hs) + linear(nh * hs, c),
                ModuleKind::CausalSelfAttention | ModuleKind::MultiheadAttention => {
                    linear(c, 3.0 * c) + linear(c, c)
                }
                ModuleKind::Sdpa => 0.0,
            };
        match self.mode {
            Mode::Backward | Mode::TrainStep => 3.0 * forward,
            _ => forward,
        }
    }

    /// `(B, T, C, nh, hs)` as floats, for estimates.
    pub(crate) fn sizes(&self) -> (f64, f64, f64, f64, f64) {
        (
            self.batch as f64,
            self.seq as f64,
            self.embd as f64,
            self.heads as f64,
            self.head_size as f64,
        )
    }
}

/// `bench/suites.json`: a comment and the four suites, nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuitesFile {
    #[serde(rename = "_comment")]
    _comment: String,
    small: Suite,
    gpt2: Suite,
    long: Suite,
    decode: Suite,
    train: Suite,
    generate: Suite,
}

/// One suite: what it is about, its smoke caps, its configurations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    #[serde(rename = "about")]
    _about: String,
    smoke: SmokeCaps,
    configs: Vec<SuiteEntry>,
}

/// The caps `--smoke` applies; an absent cap leaves the value as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmokeCaps {
    max_batch: Option<i64>,
    max_seq: Option<i64>,
    repeats: Option<usize>,
    warmup: Option<usize>,
    max_new_tokens: Option<i64>,
}

/// One configuration as the file writes it. The `target_*` ratios and `full` are
/// scripts/bench_compare.py's; they are read here only so that a misspelt key fails.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteEntry {
    name: String,
    /// An attention module's name, or `lecture_gpt` (see [`entry_module`]).
    module: String,
    mode: Mode,
    batch: i64,
    seq: i64,
    embd: i64,
    heads: i64,
    head_size: i64,
    warmup: usize,
    repeats: usize,
    #[serde(rename = "target_time_ratio")]
    _target_time_ratio: Option<f64>,
    #[serde(rename = "target_mem_ratio")]
    _target_mem_ratio: Option<f64>,
    #[serde(rename = "target_step_over_full")]
    _target_step_over_full: Option<f64>,
    #[serde(rename = "full")]
    _full: Option<String>,
    /// Whole models only (`lecture_gpt`): see [`LectureGptSizes`].
    n_layer: Option<i64>,
    vocab: Option<i64>,
    dropout: Option<f64>,
    learning_rate: Option<f64>,
    new_tokens: Option<i64>,
    /// [`BenchConfig::window`].
    #[serde(default)]
    window: Option<i64>,
    /// `smollm2` only: [`LlamaBench::quant`] (`int4` or `int8`).
    quant: Option<String>,
    /// `smollm2` only: [`LlamaBench::head`] (`int4` or `int8`).
    head: Option<String>,
}

/// Parses a suites file; errors name `source` and, from serde, the key and line.
fn parse_suites(source: &str, text: &str) -> Result<SuitesFile> {
    serde_json::from_str(text).map_err(|e| Error::malformed(source, e.to_string()))
}

/// The configurations of suite `name` (one of [`SUITES`]); `smoke` applies the suite's
/// smoke caps (sizes and repeats) for a run of seconds.
pub fn suite(name: &str, kind: Kind, device: Device, smoke: bool) -> Result<Vec<BenchConfig>> {
    let file = parse_suites("bench/suites.json", SUITES_JSON)?;
    let s = match name {
        "small" => &file.small,
        "gpt2" => &file.gpt2,
        "long" => &file.long,
        "decode" => &file.decode,
        "train" => &file.train,
        "generate" => &file.generate,
        _ => {
            return Err(Error::config(
                "suite",
                format!("expected one of {SUITES:?}, {MODEL_SUITES:?} or all, got {name:?}"),
            ))
        }
    };
    let caps = if smoke {
        &s.smoke
    } else {
        &SmokeCaps::default()
    };
    s.configs
        .iter()
        .map(|c| {
            let config = BenchConfig {
                suite: name.to_string(),
                name: c.name.clone(),
                module: entry_module(c, caps)?,
                mode: c.mode,
                batch: c.batch.min(caps.max_batch.unwrap_or(i64::MAX)),
                seq: c.seq.min(caps.max_seq.unwrap_or(i64::MAX)),
                embd: c.embd,
                heads: c.heads,
                head_size: c.head_size,
                kind,
                device,
                warmup: c.warmup.min(caps.warmup.unwrap_or(usize::MAX)),
                repeats: c.repeats.min(caps.repeats.unwrap_or(usize::MAX)),
                window: c.window,
            };
            config.validate()?;
            Ok(config)
        })
        .collect()
}

/// The module an entry names: an attention module of the parity cases, or
/// `lecture_gpt` with the sizes from the entry's model fields (`new_tokens` capped by
/// the smoke caps; which of them a mode needs, [`BenchConfig::validate`] checks).
fn entry_module(c: &SuiteEntry, caps: &SmokeCaps) -> Result<BenchModule> {
    const FILE: &str = "bench/suites.json";
    if c.module == "smollm2" {
        return llama_entry(c, caps);
    }
    if c.module != "lecture_gpt" && c.module != "nanogpt_gpt" {
        let m: ModuleKind = c.module.parse().map_err(|e: Error| {
            Error::malformed(
                FILE,
                format!("{}: module: {e} (or lecture_gpt, nanogpt_gpt)", c.name),
            )
        })?;
        return Ok(BenchModule::Attention(m));
    }
    fn required<T>(name: &str, field: &str, v: Option<T>) -> Result<T> {
        v.ok_or_else(|| Error::malformed(FILE, format!("{name}: lecture_gpt needs {field}")))
    }
    let sizes = LectureGptSizes {
        n_layer: required(&c.name, "n_layer", c.n_layer)?,
        vocab: required(&c.name, "vocab", c.vocab)?,
        dropout: required(&c.name, "dropout", c.dropout)?,
        learning_rate: c.learning_rate,
        new_tokens: c
            .new_tokens
            .map(|n| n.min(caps.max_new_tokens.unwrap_or(i64::MAX))),
    };
    Ok(if c.module == "nanogpt_gpt" {
        BenchModule::NanoGpt(sizes)
    } else {
        BenchModule::LectureGpt(sizes)
    })
}

/// A `smollm2` entry: `new_tokens` (capped by the smoke caps) and `quant`.
fn llama_entry(c: &SuiteEntry, caps: &SmokeCaps) -> Result<BenchModule> {
    let new_tokens = c.new_tokens.ok_or_else(|| {
        Error::malformed(
            "bench/suites.json",
            format!("{}: smollm2 needs new_tokens", c.name),
        )
    })?;
    Ok(BenchModule::Llama(LlamaBench {
        new_tokens: new_tokens.min(caps.max_new_tokens.unwrap_or(i64::MAX)),
        quant: c.quant.as_deref().map(llama::parse_quant).transpose()?,
        head: c.head.as_deref().map(llama::parse_quant).transpose()?,
    }))
}

#[cfg(test)]
mod tests {
    use super::{
        entry_module, parse_suites, suite, BenchModule, SmokeCaps, SuiteEntry, MODEL_SUITES,
        SUITES, SUITES_JSON,
    };
    use tch::{Device, Kind};

    #[test]
    fn every_suite_parses_and_validates() {
        for name in SUITES {
            for smoke in [false, true] {
                let configs = suite(name, Kind::Float, Device::Cpu, smoke).unwrap();
                assert!(!configs.is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn the_model_suites_parse_and_validate() {
        for name in MODEL_SUITES {
            for smoke in [false, true] {
                let configs = suite(name, Kind::Float, Device::Cpu, smoke).unwrap();
                assert!(!configs.is_empty(), "{name}");
                assert!(configs
                    .iter()
                    .all(|c| matches!(c.module, BenchModule::Llama(_))));
            }
        }
    }

    #[test]
    fn a_misspelt_key_in_suites_json_names_the_file_and_the_key() {
        for (from, to) in [
            ("\"batch\": 4,", "\"bacth\": 4,"),
            ("\"max_seq\"", "\"max_sequence\""),
            ("\"decode\": {", "\"decoding\": {"),
            ("\"mode\": \"forward\"", "\"mode\": \"fwd\""),
        ] {
            assert!(SUITES_JSON.contains(from), "{from}");
            let text = SUITES_JSON.replacen(from, to, 1);
            let err = parse_suites("bench/suites.json", &text)
                .unwrap_err()
                .to_string();
            let key = to
                .split('"')
                .nth(if to.starts_with("\"mode\"") { 3 } else { 1 });
            assert!(err.starts_with("bench/suites.json: "), "{err}");
            assert!(err.contains(key.unwrap()), "{to}: {err}");
        }
    }

    /// The lecture's train step as suites.json writes it, with `edit` applied.
    fn lecture_gpt_entry(edit: (&str, &str)) -> SuiteEntry {
        let text = r#"{"name": "t", "module": "lecture_gpt", "mode": "train_step",
            "batch": 2, "seq": 8, "embd": 16, "heads": 2, "head_size": 8, "n_layer": 1,
            "vocab": 5, "dropout": 0.0, "learning_rate": 0.001, "warmup": 0, "repeats": 1}"#;
        serde_json::from_str(&text.replacen(edit.0, edit.1, 1)).unwrap()
    }

    fn config_of(entry: &SuiteEntry) -> crate::error::Result<super::BenchConfig> {
        let config = super::BenchConfig {
            suite: "custom".into(),
            name: entry.name.clone(),
            module: entry_module(entry, &SmokeCaps::default())?,
            mode: entry.mode,
            batch: entry.batch,
            seq: entry.seq,
            embd: entry.embd,
            heads: entry.heads,
            head_size: entry.head_size,
            kind: Kind::Float,
            device: Device::Cpu,
            warmup: entry.warmup,
            repeats: entry.repeats,
            window: entry.window,
        };
        config.validate().map(|()| config)
    }

    #[test]
    fn whole_model_entries_need_their_fields_and_modes() {
        assert!(config_of(&lecture_gpt_entry(("", ""))).is_ok());
        for (edit, field) in [
            ((r#""n_layer": 1,"#, ""), "n_layer"),
            ((r#""learning_rate": 0.001,"#, ""), "learning_rate"),
            (
                (r#""mode": "train_step""#, r#""mode": "sample""#),
                "new_tokens",
            ),
            ((r#""mode": "train_step""#, r#""mode": "forward""#), "mode"),
            ((r#""head_size": 8"#, r#""head_size": 4"#), "head_size"),
            ((r#""embd": 16"#, r#""embd": 15"#), "n_embd"),
        ] {
            let err = config_of(&lecture_gpt_entry(edit)).unwrap_err().to_string();
            assert!(err.contains(field), "{edit:?}: {err}");
        }
        // An attention module cannot run a whole model's mode.
        let head = lecture_gpt_entry((r#""lecture_gpt""#, r#""head""#));
        let err = config_of(&head).unwrap_err().to_string();
        assert!(err.contains("mode") && err.contains("lecture_gpt"), "{err}");
    }
}
