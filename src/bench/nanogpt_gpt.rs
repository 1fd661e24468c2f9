//! nanoGPT's whole model as a benchmark (`module: nanogpt_gpt`), mirrored in
//! scripts/bench_torch.py on scripts/nanogpt_reference.py's `GPT`:
//!
//! - `train_step`: one iteration of `train.py`'s loop as `attn train --model nanogpt`
//!   runs it ([`Trainer::run`] for one iteration, without evaluation): the forward in
//!   train mode, the loss, `get_batch('train')` for the next micro-step, `backward()`,
//!   `clip_grad_norm_(grad_clip)`, the AdamW step of `configure_optimizers`' two groups,
//!   `zero_grad(set_to_none=True)`.
//!
//! The settings beyond suites.json's sizes are those `config/train_shakespeare_char.py`
//! gives `train.py` ([`SHAKESPEARE_CHAR`]). The text is random ids over a vocabulary
//! of `vocab` in a `train.bin` written to a temporary file: what is in the batches does
//! not change the time a step takes.

use std::io::Write;

use tch::{Kind, Tensor};

use super::config::{whole_model, BenchConfig, Mode};
use super::lecture_gpt::LectureGptSizes;
use super::step::Workload;
use crate::data::{TokenData, TokenFile};
use crate::error::{Error, Result};
use crate::train::nanogpt::{TrainConfig, Trainer};

/// Ids in the random `train.bin` (and `val.bin`).
const TEXT_LEN: i64 = 100_000;

/// `config/train_shakespeare_char.py`'s settings that suites.json does not size:
/// `bias=False` (model.py's default, which the config keeps),
/// `gradient_accumulation_steps=1`, `beta2=0.99`, and `train.py`'s `grad_clip=1.0`,
/// `weight_decay=1e-1`, `beta1=0.9`. The lr is constant here (`decay_lr` off): a
/// schedule changes a number, not the time.
pub const SHAKESPEARE_CHAR: TrainConfig = TrainConfig {
    eval_interval: i64::MAX, // no evaluation inside the timed iteration
    eval_iters: 1,
    eval_only: false,
    always_save_checkpoint: false,
    gradient_accumulation_steps: 1,
    batch_size: 64,
    block_size: 256,
    n_layer: 6,
    n_head: 6,
    n_embd: 384,
    dropout: 0.2,
    bias: false,
    learning_rate: 1e-3,
    max_iters: 1,
    weight_decay: 0.1,
    beta1: 0.9,
    beta2: 0.99,
    grad_clip: 1.0,
    decay_lr: false,
    warmup_iters: 100,
    lr_decay_iters: 5000,
    min_lr: 1e-4,
    seed: 1337,
};

/// `module: nanogpt_gpt`: nanoGPT's `GPT` trained as `train.py` trains it, sized as
/// `lecture_gpt` (T `block_size`, C `n_embd`, nh `n_head`, and the same model fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NanoGpt(pub LectureGptSizes);

whole_model!(NanoGpt, "nanogpt_gpt");

/// The checks of a `nanogpt_gpt` configuration: `train_step` only, float32 (as
/// `train.py` runs on the CPU), `head_size = embd / heads`, and the settings'.
pub(super) fn validate(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<()> {
    if config.mode != Mode::TrainStep {
        return Err(Error::config(
            "mode",
            format!("nanogpt_gpt runs train_step, got {}", config.mode.name()),
        ));
    }
    if config.kind != Kind::Float {
        return Err(Error::config(
            "dtype",
            format!(
                "nanogpt_gpt's train_step runs float32, got {:?}",
                config.kind
            ),
        ));
    }
    if config.head_size.checked_mul(config.heads) != Some(config.embd) {
        return Err(Error::config(
            "head_size",
            format!(
                "nanogpt_gpt has head_size = embd / heads = {}, got {}",
                config.embd / config.heads,
                config.head_size
            ),
        ));
    }
    train_config(config, sizes)?.validate()
}

/// [`SHAKESPEARE_CHAR`] with suites.json's sizes: B, T (`block_size`), C, nh, the
/// layers, dropout and lr.
fn train_config(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<TrainConfig> {
    let learning_rate = sizes
        .learning_rate
        .ok_or_else(|| Error::config("learning_rate", "train_step needs one"))?;
    Ok(TrainConfig {
        batch_size: config.batch,
        block_size: config.seq,
        n_embd: config.embd,
        n_head: config.heads,
        n_layer: sizes.n_layer,
        dropout: sizes.dropout,
        learning_rate,
        ..SHAKESPEARE_CHAR
    })
}

/// The matmul FLOPs of a step: the lecture's GPT does the same matmuls per position
/// (attention's 4C^2, the MLP's 8C^2, `lm_head` over every position), so its count.
pub(super) fn flops(config: &BenchConfig, sizes: &LectureGptSizes) -> f64 {
    super::lecture_gpt::flops(config, sizes)
}

/// A lower bound on the elements a step holds: the parameters with their gradients and
/// AdamW's two moments, per block a few `(B, T, C)` and `(B, T, 4C)` activations the
/// backward keeps (the fused attention keeps no `(B, nh, T, T)` scores), the logits.
pub(super) fn min_elements(config: &BenchConfig, sizes: &LectureGptSizes) -> f64 {
    let (b, t, c, _nh, _hs) = config.sizes();
    let (l, v) = (sizes.n_layer as f64, sizes.vocab as f64);
    let params = l * 12.0 * c * c + (v + t) * c;
    let per_block = 8.0 * b * t * c + 2.0 * b * t * 4.0 * c;
    4.0 * params + l * per_block + 2.0 * b * t * v
}

/// `Trainer::new` (seed 1337, `GPT`, `configure_optimizers`) on a random `train.bin`;
/// the step is one iteration of [`Trainer::run`] (its first `get_batch` included).
pub(super) fn prepare(config: &BenchConfig, sizes: &LectureGptSizes) -> Result<Workload> {
    let train = train_config(config, sizes)?;
    let data = TokenData {
        train: random_tokens(sizes.vocab, train.block_size)?,
        val: random_tokens(sizes.vocab, train.block_size)?,
        meta_vocab_size: Some(sizes.vocab),
        itos: None,
        dataset: "bench".into(),
    };
    let mut trainer = Trainer::new(data, train, config.device)?;
    let out_dir = std::env::temp_dir(); // never written: no evaluation, no checkpoint
    Ok(Workload::new(
        Box::new(move || {
            // Iteration 1 of max_iters 1: no evaluation (1 % eval_interval != 0), one
            // iteration, then the loop stops.
            trainer.iter_num = 1;
            trainer.run(&out_dir, |_| {})
        }),
        config.device,
    ))
}

/// `TEXT_LEN` random uint16 ids below `vocab` in an unlinked temporary file, opened as
/// a `train.bin`.
fn random_tokens(vocab: i64, block_size: i64) -> Result<TokenFile> {
    if !(1..=i64::from(u16::MAX) + 1).contains(&vocab) {
        return Err(Error::config(
            "vocab",
            format!("must be in [1, 65536] (uint16 tokens), got {vocab}"),
        ));
    }
    let ids = Tensor::f_randint(vocab, [TEXT_LEN], (Kind::Int64, tch::Device::Cpu))?;
    let bytes: Vec<u8> = Vec::<i64>::try_from(&ids)?
        .into_iter()
        .flat_map(|i| (i as u16).to_le_bytes())
        .collect();
    let io = |source| Error::Io {
        path: "a temporary train.bin".into(),
        source,
    };
    let mut file = tempfile::NamedTempFile::new().map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.flush().map_err(io)?;
    TokenFile::open(file.path(), block_size, vocab)
}
