//! The memory check of `attn train`: a whole-model training run sized as the `train`
//! suite's step of the same model, refused before the model is built when it cannot fit.

use std::sync::Arc;

use tch::{Device, Kind};

use super::config::{BenchConfig, BenchModule, Mode, WholeModel};
use super::lecture_gpt::{LectureGpt, LectureGptSizes};
use super::limits::available_memory;
use super::nanogpt_gpt::NanoGpt;
use crate::error::Result;

/// The sizes of a whole-model training run, as `attn train` takes them: a run that
/// would not fit in memory is refused before the model is built (a `--n-embd` or
/// `--batch-size` of billions otherwise reaches libtorch's allocator). `nanogpt`
/// picks nanoGPT's GPT over the lecture's; `vocab` is the corpus's.
#[derive(Debug, Clone, Copy)]
pub struct TrainingSizes {
    /// nanoGPT's GPT (else the lecture's).
    pub nanogpt: bool,
    /// `batch_size`.
    pub batch: i64,
    /// `block_size`.
    pub block: i64,
    /// `n_embd`.
    pub embd: i64,
    /// `n_head`.
    pub heads: i64,
    /// `n_layer`.
    pub layers: i64,
    /// The vocabulary's size.
    pub vocab: i64,
    /// Where it trains.
    pub device: Device,
}

/// Refuses a training run whose model, optimizer state and one step's activations
/// ([`BenchConfig::min_bytes`] of the same sizes as a `train` suite's step) exceed `MEMORY_SHARE` of
/// the memory available now, or overflow 64-bit sizes. The sizes must have passed the
/// model's own checks (positive, `embd` divisible by `heads`).
pub fn check_training(t: &TrainingSizes) -> Result<()> {
    let sizes = LectureGptSizes {
        n_layer: t.layers,
        vocab: t.vocab,
        dropout: 0.0,
        learning_rate: None,
        new_tokens: None,
    };
    let model: Arc<dyn WholeModel> = if t.nanogpt {
        Arc::new(NanoGpt(sizes))
    } else {
        Arc::new(LectureGpt(sizes))
    };
    let config = BenchConfig {
        suite: "train".into(),
        name: "train".into(),
        module: BenchModule::Model(model),
        mode: Mode::TrainStep,
        batch: t.batch,
        seq: t.block,
        embd: t.embd,
        heads: t.heads,
        head_size: t.embd / t.heads.max(1),
        kind: Kind::Float,
        device: t.device,
        warmup: 0,
        repeats: 1,
        window: None,
    };
    config.check_memory(available_memory(t.device))
}
