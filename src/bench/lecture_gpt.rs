//! The lecture's whole model as a benchmark (`module: lecture_gpt`), mirrored in
//! scripts/bench_torch.py on scripts/lecture_gpt_reference.py's `GPTLanguageModel`:
//!
//! - `train_step`: one iteration of `gpt.py`'s loop as `attn train` runs it
//!   ([`Trainer::train_step`]): `get_batch('train')`, the forward in train mode, the
//!   loss, the gradients (`zero_grad(set_to_none=True)` then `backward()`), the AdamW
//!   step;
//! - `sample`: `generate` of `new_tokens` from a zero context (`B` rows), eval mode, no
//!   grad — the crate with its KV cache ([`crate::generate::generate_batch`]), PyTorch with
//!   `gpt.py`'s `generate`, which recomputes the cropped context for every token.
//!
//! The text is random ids over a vocabulary of `vocab` (the lecture's Shakespeare has
//! 65 characters): what is in the batches does not change the time a step takes.

use serde_json::Value;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use super::config::{whole_model, BenchConfig, Mode};
use super::step::Workload;
use crate::check;
use crate::data::{CharVocab, Corpus};
use crate::error::{Error, Result};
use crate::generate::{generate_batch, GenerateOptions, SamplingConfig};
use crate::models::lecture::{GptConfig, GptLanguageModel};
use crate::train::{AdamW, AdamWConfig, TrainConfig, Trainer};

/// Ids in the random text, split 90/10 as the lecture splits its text.
const TEXT_LEN: i64 = 100_000;

/// The model's sizes beyond B, T, C, nh, hs (suites.json's fields of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LectureGptSizes {
    /// `n_layer`: blocks.
    pub n_layer: i64,
    /// `vocab_size`.
    pub vocab: i64,
    /// `dropout` (active in `train_step`; `sample` runs in eval mode).
    pub dropout: f64,
    /// AdamW's `lr`; `train_step` needs it.
    pub learning_rate: Option<f64>,
    /// Tokens sampled per step; `sample` needs it.
    pub new_tokens: Option<i64>,
}

impl LectureGptSizes {
    /// The model of `config`: T is `block_size`, C `n_embd`, nh `n_head`.
    fn model(&self, config: &BenchConfig) -> GptConfig {
        GptConfig {
            vocab_size: self.vocab,
            block_size: config.seq,
            n_embd: config.embd,
            n_head: config.heads,
            n_layer: self.n_layer,
            dropout: self.dropout,
        }
    }

    /// Its fields under suites.json's names, added to a row.
    pub(super) fn row_fields(&self, row: &mut Value) {
        row["n_layer"] = self.n_layer.into();
        row["vocab"] = self.vocab.into();
        row["dropout"] = self.dropout.into();
        row["learning_rate"] = self.learning_rate.into();
        row["new_tokens"] = self.new_tokens.into();
    }
}

/// `module: lecture_gpt`: the lecture's `GPTLanguageModel` with T its `block_size`, C
/// its `n_embd`, nh its `n_head` (hs = C / nh), and the sizes the attention fields do
/// not cover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LectureGpt(pub LectureGptSizes);

whole_model!(LectureGpt, "lecture_gpt");

/// The checks of a `lecture_gpt` configuration: a whole-model mode, the model's own
/// (positive sizes, `n_embd` divisible by `n_head`, dropout in `[0, 1]`),
/// `head_size = embd / heads`, and the mode's own field.
pub(super) fn validate(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<()> {
    sizes.model(config).validate()?;
    if config.head_size.checked_mul(config.heads) != Some(config.embd) {
        return Err(Error::config(
            "head_size",
            format!(
                "lecture_gpt has head_size = embd / heads = {}, got {}",
                config.embd / config.heads,
                config.head_size
            ),
        ));
    }
    match config.mode {
        Mode::TrainStep => match sizes.learning_rate {
            Some(lr) => AdamWConfig::new(lr).validate(),
            None => Err(Error::config("learning_rate", "train_step needs one")),
        },
        Mode::Sample => match sizes.new_tokens {
            Some(n) => check::positive("new_tokens", n),
            None => Err(Error::config("new_tokens", "sample needs one")),
        },
        other => Err(Error::config(
            "mode",
            format!(
                "lecture_gpt runs train_step or sample, got {}",
                other.name()
            ),
        )),
    }
}

/// Matmul FLOPs (2 per multiply-add) of `q` new positions of `b` rows after `past`
/// cached ones: per block the heads' key/query/value (3C^2), `proj` (C^2) and the
/// feed-forward (8C^2), the kept query-key pairs of the attention, then `lm_head`.
fn forward_flops(config: &BenchConfig, sizes: &LectureGptSizes, q: f64, past: f64) -> f64 {
    let (b, _t, c, nh, hs) = config.sizes();
    let (l, v) = (sizes.n_layer as f64, sizes.vocab as f64);
    let pairs = q * past + q * (q + 1.0) / 2.0;
    let linear = 2.0 * b * q * (l * 12.0 * c * c + c * v);
    linear + l * 2.0 * 2.0 * b * nh * pairs * hs
}

/// The FLOPs of one step. `train_step`: 3x the forward over T. `sample`: the work exact
/// sampling needs, as the crate does it — one cached position per token while the
/// context fits in `block_size`, the whole window once it slides — on both sides, so
/// PyTorch's recomputation shows as a lower rate.
pub(super) fn flops(config: &BenchConfig, sizes: &LectureGptSizes) -> f64 {
    let bs = config.seq;
    match config.mode {
        Mode::Sample => (0..sizes.new_tokens.unwrap_or(0))
            .map(|i| {
                let t = 1 + i; // the context before token i: one zero, then i sampled
                if t <= bs {
                    forward_flops(config, sizes, 1.0, (t - 1) as f64)
                } else {
                    forward_flops(config, sizes, bs as f64, 0.0)
                }
            })
            .sum(),
        _ => 3.0 * forward_flops(config, sizes, bs as f64, 0.0),
    }
}

/// A lower bound on the bytes a step holds, in elements of the dtype: the parameters
/// (with AdamW's two moments and the gradients when training) and, for a training step,
/// what the backward pass keeps — per block and head the `(B, T, T)` scores, masked,
/// softmaxed and dropped out, and a few `(B, T, C)` and `(B, T, 4C)` activations — or,
/// for sampling, the KV caches.
pub(super) fn min_elements(config: &BenchConfig, sizes: &LectureGptSizes) -> f64 {
    let (b, t, c, nh, _hs) = config.sizes();
    let (l, v) = (sizes.n_layer as f64, sizes.vocab as f64);
    let params = sizes
        .model(config)
        .parameter_count()
        .map_or(f64::INFINITY, |p| p as f64);
    match config.mode {
        Mode::TrainStep => {
            let per_block = nh * 4.0 * b * t * t + 8.0 * b * t * c + 2.0 * b * t * 4.0 * c;
            4.0 * params + l * per_block + 2.0 * b * t * v
        }
        _ => params + l * 2.0 * b * t * c + nh * b * t * t,
    }
}

/// The seeded model and one timed step of `config`.
pub(super) fn prepare(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<Workload> {
    match config.mode {
        Mode::TrainStep => train_step(config, sizes),
        _ => sample(config, sizes),
    }
}

/// `Trainer::new` (seed 1337, the model, `AdamW(lr)`) on a random text; the step is
/// [`Trainer::train_step`]. Other dtypes than float32 cast the model, then start a
/// fresh AdamW on the cast parameters, as `model.to(dtype)` before the optimizer does.
fn train_step(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<Workload> {
    let lr = sizes.learning_rate.unwrap_or_default();
    let train = TrainConfig {
        batch_size: config.batch,
        block_size: config.seq,
        learning_rate: lr,
        n_embd: config.embd,
        n_head: config.heads,
        n_layer: sizes.n_layer,
        dropout: sizes.dropout,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(random_corpus(sizes.vocab)?, train, config.device)?;
    if config.kind != Kind::Float {
        trainer.vs.set_kind(config.kind);
        trainer.optimizer = AdamW::new(trainer.model.named_parameters(), AdamWConfig::new(lr))?;
    }
    Ok(Workload::new(
        Box::new(move || trainer.train_step().map(drop)),
        config.device,
    ))
}

/// `TEXT_LEN` random ids below `vocab`, split 90/10, with a vocabulary of `vocab`
/// placeholder characters (only its size matters).
fn random_corpus(vocab: i64) -> Result<Corpus> {
    let chars = (0..=u32::MAX)
        .filter_map(char::from_u32)
        .take(vocab as usize)
        .collect();
    let data = Tensor::f_randint(vocab, [TEXT_LEN], (Kind::Int64, Device::Cpu))?;
    let n = (0.9 * TEXT_LEN as f64) as i64;
    Ok(Corpus {
        vocab: CharVocab::from_chars(chars)?,
        train: data.f_narrow(0, 0, n)?,
        val: data.f_narrow(0, n, TEXT_LEN - n)?,
    })
}

/// The seeded model in eval mode; the step samples `new_tokens` after a zero token in
/// each of the B rows, with the KV cache.
fn sample(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<Workload> {
    let mut vs = VarStore::new(config.device);
    let model = GptLanguageModel::new(vs.root(), sizes.model(config))?;
    vs.set_kind(config.kind);
    let idx = Tensor::f_zeros([config.batch, 1], (Kind::Int64, config.device))?;
    let sample =
        GenerateOptions::sampled(sizes.new_tokens.unwrap_or_default(), SamplingConfig::none());
    Ok(Workload::new(
        Box::new(move || generate_batch(&model, &idx, &sample).map(drop)),
        config.device,
    ))
}
