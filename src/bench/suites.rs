//! The named suites of `bench/suites.json` (the file scripts/bench_torch.py reads too,
//! so both sides run the same configurations): each entry as a [`BenchConfig`]. The one
//! place in `bench/` that names every whole model, to build it from its entry.

use std::sync::Arc;

use serde::Deserialize;
use tch::{Device, Kind};

use super::config::{BenchConfig, BenchModule, Mode};
use super::lecture_gpt::{LectureGpt, LectureGptSizes};
use super::llama::{self, BenchDecoder, LlamaBench};
use super::nanogpt_gpt::NanoGpt;
use super::serve::ServeBench;
use crate::error::{Error, Result};
use crate::parity::ModuleKind;

/// The suites, compiled in from `bench/suites.json`.
pub const SUITES_JSON: &str = include_str!("../../bench/suites.json");

/// The suite names, in the order `--suite all` runs them.
pub const SUITES: [&str; 5] = ["small", "gpt2", "long", "decode", "train"];

/// The suites of whole pretrained models, which need a model file from the caller
/// ([`llama::measure`], [`super::serve::measure`]); not part of `--suite all` (nor of its smoke run).
pub const MODEL_SUITES: [&str; 2] = ["generate", "serve"];

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
    serve: Suite,
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
    #[serde(rename = "baseline")]
    _baseline: Option<String>,
    #[serde(rename = "target_speedup")]
    _target_speedup: Option<f64>,
    /// Whole models only (`lecture_gpt`): see [`LectureGptSizes`].
    n_layer: Option<i64>,
    vocab: Option<i64>,
    dropout: Option<f64>,
    learning_rate: Option<f64>,
    new_tokens: Option<i64>,
    /// [`BenchConfig::window`].
    #[serde(default)]
    window: Option<i64>,
    /// Decoders only: [`LlamaBench::quant`] (`int4`, `int8` or `gguf`).
    quant: Option<String>,
    /// Decoders only: [`LlamaBench::head`] (`int4` or `int8`).
    head: Option<String>,
    /// `smollm2_serve` only: [`ServeBench::user_tokens`].
    user_tokens: Option<i64>,
    /// `smollm2_serve` only: [`ServeBench::cached_prefix`].
    cached_prefix: Option<bool>,
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
        "serve" => &file.serve,
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
    match c.module.as_str() {
        "smollm2" => return llama_entry(c, caps, BenchDecoder::SmolLm2),
        "gemma3" => return llama_entry(c, caps, BenchDecoder::Gemma3),
        _ => {}
    }
    if c.module == "smollm2_serve" {
        return serve_entry(c, caps);
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
    Ok(BenchModule::Model(if c.module == "nanogpt_gpt" {
        Arc::new(NanoGpt(sizes))
    } else {
        Arc::new(LectureGpt(sizes))
    }))
}

/// A decoder's entry (`smollm2`, `gemma3`): `new_tokens` (capped by the smoke caps),
/// `quant` and `head`.
fn llama_entry(c: &SuiteEntry, caps: &SmokeCaps, model: BenchDecoder) -> Result<BenchModule> {
    let new_tokens = c.new_tokens.ok_or_else(|| {
        Error::malformed(
            "bench/suites.json",
            format!("{}: {} needs new_tokens", c.name, model.name()),
        )
    })?;
    Ok(BenchModule::Model(Arc::new(LlamaBench {
        model,
        new_tokens: new_tokens.min(caps.max_new_tokens.unwrap_or(i64::MAX)),
        quant: c.quant.as_deref().map(llama::parse_quant).transpose()?,
        head: c.head.as_deref().map(llama::parse_quant).transpose()?,
    })))
}

/// A `smollm2_serve` entry: `new_tokens` (capped by the smoke caps, at least 2),
/// `quant`, and for prefill rows `user_tokens` and `cached_prefix`.
fn serve_entry(c: &SuiteEntry, caps: &SmokeCaps) -> Result<BenchModule> {
    let new_tokens = c.new_tokens.ok_or_else(|| {
        Error::malformed(
            "bench/suites.json",
            format!("{}: smollm2_serve needs new_tokens", c.name),
        )
    })?;
    Ok(BenchModule::Model(Arc::new(ServeBench {
        new_tokens: new_tokens.min(caps.max_new_tokens.unwrap_or(i64::MAX).max(2)),
        quant: c.quant.as_deref().map(llama::parse_quant).transpose()?,
        user_tokens: c.user_tokens.unwrap_or(0),
        cached_prefix: c.cached_prefix.unwrap_or(false),
    })))
}

#[cfg(test)]
mod tests {
    use super::{
        entry_module, parse_suites, suite, SmokeCaps, SuiteEntry, MODEL_SUITES, SUITES, SUITES_JSON,
    };
    use crate::bench::serve::ServeBench;
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
                assert!(configs.iter().all(|c| c
                    .module
                    .model::<crate::bench::llama::LlamaBench>()
                    .is_some()
                    || c.module.model::<ServeBench>().is_some()));
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

    fn config_of(entry: &SuiteEntry) -> crate::error::Result<crate::bench::BenchConfig> {
        let config = crate::bench::BenchConfig {
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
