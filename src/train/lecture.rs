//! The lecture's training loop (`gpt.py`, Karpathy's "Let's build GPT"), top to bottom as
//! the script runs it, drawing the same random numbers in the same order from the
//! default generator: `torch.manual_seed(seed)`, the model's init, then per iteration
//! `estimate_loss()` (every `eval_interval` and at the last iteration: `eval_iters`
//! train batches, then `eval_iters` val batches, in eval mode), `get_batch('train')`,
//! the forward (dropout masks in the forward's order), backward, and
//! `torch.optim.AdamW(lr)`'s step.
//!
//! The gradients come from `torch.autograd.grad` over the parameters rather than
//! `loss.backward()` into `.grad`: that is `zero_grad(set_to_none=True)` then
//! `backward()` — each step's gradients are fresh tensors — without `.grad` fields to
//! clear, and the values are the same.

use std::ops::ControlFlow;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::check;
use crate::error::{Error, Result};
use crate::models::lecture::{GptConfig, GptLanguageModel};
use crate::train::adamw::{AdamW, AdamWConfig};
use crate::train::data::{get_batch, Corpus, Split};

/// `gpt.py`'s hyperparameters, each defaulting to the lecture's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// `batch_size`: sequences per step. Default 64.
    pub batch_size: i64,
    /// `block_size`: the context length. Default 256.
    pub block_size: i64,
    /// `max_iters`: training steps. Default 5000.
    pub max_iters: i64,
    /// `eval_interval`: steps between evaluations. Default 500.
    pub eval_interval: i64,
    /// `learning_rate`: AdamW's `lr`. Default 3e-4.
    pub learning_rate: f64,
    /// `eval_iters`: batches per split in `estimate_loss`. Default 200.
    pub eval_iters: i64,
    /// `n_embd`. Default 384.
    pub n_embd: i64,
    /// `n_head`. Default 6.
    pub n_head: i64,
    /// `n_layer`. Default 6.
    pub n_layer: i64,
    /// `dropout`. Default 0.2.
    pub dropout: f64,
    /// `torch.manual_seed(1337)`.
    pub seed: i64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            block_size: 256,
            max_iters: 5000,
            eval_interval: 500,
            learning_rate: 3e-4,
            eval_iters: 200,
            n_embd: 384,
            n_head: 6,
            n_layer: 6,
            dropout: 0.2,
            seed: 1337,
        }
    }
}

impl TrainConfig {
    /// The model these settings build for a vocabulary of `vocab_size`.
    pub fn model(&self, vocab_size: i64) -> GptConfig {
        GptConfig {
            vocab_size,
            block_size: self.block_size,
            n_embd: self.n_embd,
            n_head: self.n_head,
            n_layer: self.n_layer,
            dropout: self.dropout,
        }
    }

    /// Checks every size (positive), the learning rate and the model's settings.
    pub fn validate(&self) -> Result<()> {
        check::positive("batch_size", self.batch_size)?;
        check::positive("max_iters", self.max_iters)?;
        check::positive("eval_interval", self.eval_interval)?;
        check::positive("eval_iters", self.eval_iters)?;
        AdamWConfig::new(self.learning_rate).validate()?;
        self.model(1).validate()
    }
}

/// What the loop reports, in the order it happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A training step: the loss of its batch, before the update.
    Step {
        /// The iteration, from 0.
        iter: i64,
        /// `loss.item()`.
        loss: f32,
    },
    /// `estimate_loss()` before the step of `iter`.
    Eval {
        /// The iteration it precedes.
        iter: i64,
        /// The mean loss over `eval_iters` train batches (float32, as `losses.mean()`).
        train_loss: f32,
        /// Likewise over val batches.
        val_loss: f32,
    },
}

/// The model, its optimizer and its data, at some iteration of `gpt.py`'s loop.
#[derive(Debug)]
pub struct Trainer {
    /// The VarStore holding the model under its state_dict names.
    pub vs: VarStore,
    /// The model.
    pub model: GptLanguageModel,
    /// `torch.optim.AdamW(model.parameters(), lr=learning_rate)`.
    pub optimizer: AdamW,
    /// The encoded, split text.
    pub corpus: Corpus,
    /// The settings.
    pub config: TrainConfig,
    /// The next iteration to run.
    pub iter: i64,
}

impl Trainer {
    /// `torch.manual_seed(seed)`, `GPTLanguageModel()`, `AdamW(lr)`: the state before the
    /// loop. The corpus must have been read with the same `block_size`.
    pub fn new(corpus: Corpus, config: TrainConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let need = config.block_size + 1;
        for (name, split) in [("train", &corpus.train), ("val", &corpus.val)] {
            if split.size1()? < need {
                return Err(Error::invalid(
                    "corpus",
                    format!("the {name} split needs at least block_size + 1 = {need} ids"),
                ));
            }
        }
        tch::manual_seed(config.seed);
        let vs = VarStore::new(device);
        let model = GptLanguageModel::new(vs.root(), config.model(corpus.vocab.len() as i64))?;
        let optimizer = AdamW::new(
            model.named_parameters(),
            AdamWConfig::new(config.learning_rate),
        )?;
        Ok(Self {
            vs,
            model,
            optimizer,
            corpus,
            config,
            iter: 0,
        })
    }

    /// `estimate_loss()`: eval mode, no gradients, `eval_iters` batches of the train
    /// split then of the val split; each mean taken in float32 as PyTorch does.
    pub fn estimate_loss(&self) -> Result<(f32, f32)> {
        tch::no_grad(|| -> Result<(f32, f32)> {
            let mut out = [0f32; 2];
            for (slot, split) in out.iter_mut().zip([Split::Train, Split::Val]) {
                // Grown, not reserved: eval_iters is the user's count, and reserving
                // 2^63 - 1 of them was a capacity overflow (a panic) before one batch.
                let mut losses = Vec::new();
                for _ in 0..self.config.eval_iters {
                    let (x, y) = self.batch(split)?;
                    let logits = self.model.f_forward_t(&x, false)?;
                    losses.push(self.model.f_loss(&logits, &y)?.f_double_value(&[])? as f32);
                }
                *slot = Tensor::f_from_slice(&losses)?
                    .f_mean(Kind::Float)?
                    .f_double_value(&[])? as f32;
            }
            Ok((out[0], out[1]))
        })
    }

    /// One iteration's training: `get_batch('train')`, forward in train mode, the loss,
    /// its gradients, the AdamW step. Returns the loss before the update.
    pub fn train_step(&mut self) -> Result<f32> {
        let (x, y) = self.batch(Split::Train)?;
        let logits = self.model.f_forward_t(&x, true)?;
        let loss = self.model.f_loss(&logits, &y)?;
        let params: Vec<&Tensor> = self.optimizer.params().iter().map(|(_, p)| p).collect();
        let grads = Tensor::f_run_backward(&[&loss], &params, false, false)?;
        self.optimizer.f_step(&grads)?;
        self.iter += 1;
        Ok(loss.f_double_value(&[])? as f32)
    }

    /// The loop from the current iteration to `max_iters`, reporting each evaluation
    /// and step to `on_event` (which sees the trainer, to save a checkpoint, say);
    /// `ControlFlow::Break` stops after the event. The callback's error type is the
    /// caller's (anything a library [`Error`] converts into).
    pub fn run<E: From<Error>>(
        &mut self,
        mut on_event: impl FnMut(&Self, &Event) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let max_iters = self.config.max_iters;
        while self.iter < max_iters {
            let iter = self.iter;
            if iter % self.config.eval_interval == 0 || iter == max_iters - 1 {
                let (train_loss, val_loss) = self.estimate_loss()?;
                let event = Event::Eval {
                    iter,
                    train_loss,
                    val_loss,
                };
                if on_event(self, &event)?.is_break() {
                    return Ok(());
                }
            }
            let loss = self.train_step()?;
            if on_event(self, &Event::Step { iter, loss })?.is_break() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn batch(&self, split: Split) -> Result<(Tensor, Tensor)> {
        get_batch(
            self.corpus.split(split),
            self.config.batch_size,
            self.config.block_size,
            self.vs.device(),
        )
    }
}
