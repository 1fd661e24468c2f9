//! nanoGPT's `train.py` (Karpathy), one process, top to bottom as the script runs it,
//! drawing the same random numbers in the same order from the default generator:
//! `torch.manual_seed(seed)`, `GPT(model_args)`'s init, `configure_optimizers` (AdamW,
//! matrices decayed, the rest not), the first batch fetched before the loop; then per
//! iteration the lr (`get_lr`), `estimate_loss()` when `iter % eval_interval == 0` and
//! `ckpt.pt` when val improved (or `always_save_checkpoint`, never at iteration 0),
//! `gradient_accumulation_steps` micro-steps (forward, `loss / steps`, the next batch,
//! backward), `clip_grad_norm_`, the step; it stops once the counter passes `max_iters`.
//!
//! Data is a folder as nanoGPT's `prepare.py` writes it ([`crate::data::token_files`]).
//!
//! Gradients come from `torch.autograd.grad` per micro-step, summed in order: what
//! `backward()` accumulates into `.grad` after `zero_grad(set_to_none=True)`.
//!
//! `ckpt.pt` is `train.py`'s dict, written by [`crate::io::write_torch_save`] (so
//! `torch.load(weights_only=True)` reads it and `train.py --init_from=resume` continues
//! it).

use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::check;
use crate::data::{Split, TokenData};
use crate::error::{Error, Result};
use crate::io::{write_torch_save, Overwrite, TorchValue};
use crate::models::nanogpt::{Gpt, GptConfig, GPT2_PADDED_VOCAB};
use crate::train::adamw::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup};
use crate::train::estimate::estimate_loss;

mod resume;

/// `train.py`'s settings, each defaulting to its value there.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// `eval_interval`. Default 2000.
    pub eval_interval: i64,
    /// `eval_iters`: batches per split in `estimate_loss`. Default 200.
    pub eval_iters: i64,
    /// `eval_only`: stop after the first evaluation. Default false.
    pub eval_only: bool,
    /// `always_save_checkpoint`: save after every evaluation, not only when val
    /// improved. Default true.
    pub always_save_checkpoint: bool,
    /// `gradient_accumulation_steps`: micro-steps per iteration. Default 40.
    pub gradient_accumulation_steps: i64,
    /// `batch_size`: sequences per micro-step. Default 12.
    pub batch_size: i64,
    /// `block_size`. Default 1024.
    pub block_size: i64,
    /// `n_layer`. Default 12.
    pub n_layer: i64,
    /// `n_head`. Default 12.
    pub n_head: i64,
    /// `n_embd`. Default 768.
    pub n_embd: i64,
    /// `dropout`. Default 0.0.
    pub dropout: f64,
    /// `bias` in Linears and LayerNorms. Default false.
    pub bias: bool,
    /// `learning_rate`: the peak lr. Default 6e-4.
    pub learning_rate: f64,
    /// `max_iters`: the loop stops once the iteration counter passes it. Default 600000.
    pub max_iters: i64,
    /// `weight_decay` of the matrices' group. Default 0.1.
    pub weight_decay: f64,
    /// `beta1`. Default 0.9.
    pub beta1: f64,
    /// `beta2`. Default 0.95.
    pub beta2: f64,
    /// `grad_clip`: the gradients' largest total norm; 0 for no clipping. Default 1.0.
    pub grad_clip: f64,
    /// `decay_lr`: warmup then cosine decay; false keeps `learning_rate`. Default true.
    pub decay_lr: bool,
    /// `warmup_iters`. Default 2000.
    pub warmup_iters: i64,
    /// `lr_decay_iters`: where the cosine reaches `min_lr`. Default 600000.
    pub lr_decay_iters: i64,
    /// `min_lr`. Default 6e-5.
    pub min_lr: f64,
    /// `torch.manual_seed(1337 + seed_offset)`'s seed. Default 1337.
    pub seed: i64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            eval_interval: 2000,
            eval_iters: 200,
            eval_only: false,
            always_save_checkpoint: true,
            gradient_accumulation_steps: 40,
            batch_size: 12,
            block_size: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            dropout: 0.0,
            bias: false,
            learning_rate: 6e-4,
            max_iters: 600000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
            decay_lr: true,
            warmup_iters: 2000,
            lr_decay_iters: 600000,
            min_lr: 6e-5,
            seed: 1337,
        }
    }
}

impl TrainConfig {
    /// Checks the sizes (positive), the optimizer's settings, the schedule (a cosine
    /// needs `lr_decay_iters > warmup_iters`, else `train.py` divides by zero) and the
    /// model's settings.
    pub fn validate(&self) -> Result<()> {
        check::positive("eval_interval", self.eval_interval)?;
        check::positive("eval_iters", self.eval_iters)?;
        check::positive(
            "gradient_accumulation_steps",
            self.gradient_accumulation_steps,
        )?;
        check::positive("batch_size", self.batch_size)?;
        if self.max_iters < 0 || self.warmup_iters < 0 {
            return Err(Error::config(
                "max_iters",
                "max_iters and warmup_iters must not be negative",
            ));
        }
        if self.decay_lr && self.lr_decay_iters <= self.warmup_iters {
            return Err(Error::config(
                "lr_decay_iters",
                format!(
                    "must exceed warmup_iters = {}, got {}",
                    self.warmup_iters, self.lr_decay_iters
                ),
            ));
        }
        if self.grad_clip.is_nan() || self.grad_clip < 0.0 {
            return Err(Error::config(
                "grad_clip",
                format!("invalid value {}", self.grad_clip),
            ));
        }
        for lr in [self.learning_rate, self.min_lr] {
            self.adamw(self.weight_decay).with_lr(lr).validate()?;
        }
        self.model_args(1).validate()
    }

    /// `GPTConfig(**model_args)` for a vocabulary of `vocab_size`.
    pub fn model_args(&self, vocab_size: i64) -> GptConfig {
        GptConfig {
            block_size: self.block_size,
            vocab_size,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            dropout: self.dropout,
            bias: self.bias,
        }
    }

    /// `get_lr(it)`: linear warmup `learning_rate * (it + 1) / (warmup_iters + 1)`, then
    /// cosine decay to `min_lr` at `lr_decay_iters`, then `min_lr`; `learning_rate`
    /// throughout when `decay_lr` is off. Each double in `train.py`'s order.
    pub fn lr(&self, it: i64) -> f64 {
        if !self.decay_lr {
            return self.learning_rate;
        }
        if it < self.warmup_iters {
            return self.learning_rate * (it + 1) as f64 / (self.warmup_iters + 1) as f64;
        }
        if it > self.lr_decay_iters {
            return self.min_lr;
        }
        let decay_ratio =
            (it - self.warmup_iters) as f64 / (self.lr_decay_iters - self.warmup_iters) as f64;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * decay_ratio).cos());
        self.min_lr + coeff * (self.learning_rate - self.min_lr)
    }

    fn adamw(&self, weight_decay: f64) -> AdamWConfig {
        AdamWConfig {
            lr: self.learning_rate,
            betas: (self.beta1, self.beta2),
            weight_decay,
            ..AdamWConfig::default()
        }
    }
}

/// What the loop reports, in the order it happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// `estimate_loss()` at the start of iteration `iter`.
    Eval {
        /// The iteration.
        iter: i64,
        /// The mean train loss (float32, as `losses.mean()`).
        train_loss: f32,
        /// The mean val loss.
        val_loss: f32,
    },
    /// `ckpt.pt` written after the evaluation of `iter`.
    Saved {
        /// The iteration.
        iter: i64,
    },
    /// Iteration `iter` done.
    Step {
        /// The iteration.
        iter: i64,
        /// As `train.py` logs it: `loss.item() * gradient_accumulation_steps` of the last
        /// micro-step.
        loss: f64,
        /// The lr it ran with.
        lr: f64,
    },
}

/// The model, optimizer and data at some iteration of `train.py`'s loop.
#[derive(Debug)]
pub struct Trainer {
    /// The VarStore of the model, under its state_dict names.
    pub vs: VarStore,
    /// `GPT(model_args)`.
    pub model: Gpt,
    /// `configure_optimizers`' AdamW: the matrices (decayed), then the rest.
    pub optimizer: AdamW,
    /// The data folder.
    pub data: TokenData,
    /// The settings.
    pub config: TrainConfig,
    /// `iter_num`: the next iteration.
    pub iter_num: i64,
    /// `best_val_loss`: 1e9 until the first evaluation, then a float32 loss.
    pub best_val_loss: f64,
    /// For each of the optimizer's parameters (group after group), its place in
    /// `model.parameters()`: `clip_grad_norm_` sums the norms in the model's order, and
    /// a different order rounds differently.
    model_order: Vec<usize>,
}

impl Trainer {
    /// `torch.manual_seed(seed)`, `GPT(model_args)`, `configure_optimizers`: the state
    /// before the loop, from scratch (`model_args` from the settings, `vocab_size` from
    /// `meta.pkl` or 50304).
    pub fn new(data: TokenData, config: TrainConfig, device: Device) -> Result<Self> {
        let vocab = data.meta_vocab_size.unwrap_or(GPT2_PADDED_VOCAB);
        Self::with_model_args(data, config.model_args(vocab), config, device)
    }

    /// [`Trainer::new`] with the model's settings given (`train.py` resuming takes them
    /// from the checkpoint).
    pub fn with_model_args(
        data: TokenData,
        model_args: GptConfig,
        config: TrainConfig,
        device: Device,
    ) -> Result<Self> {
        config.validate()?;
        tch::manual_seed(config.seed);
        let vs = VarStore::new(device);
        let model = Gpt::new(vs.root(), model_args)?;
        let (decay, no_decay): (Vec<_>, Vec<_>) = model
            .named_parameters()
            .into_iter()
            .enumerate()
            .partition(|(_, (_, p))| p.dim() >= 2);
        let model_order = decay.iter().chain(&no_decay).map(|(i, _)| *i).collect();
        let unnumbered = |g: Vec<(usize, _)>| g.into_iter().map(|(_, p)| p).collect();
        let (decay, no_decay) = (unnumbered(decay), unnumbered(no_decay));
        let optimizer = AdamW::with_groups(vec![
            ParamGroup {
                params: decay,
                config: config.adamw(config.weight_decay),
            },
            ParamGroup {
                params: no_decay,
                config: config.adamw(0.0),
            },
        ])?;
        Ok(Self {
            vs,
            model,
            optimizer,
            data,
            config,
            iter_num: 0,
            best_val_loss: 1e9,
            model_order,
        })
    }

    fn batch(&self, split: Split) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        self.data
            .split(split)
            .get_batch(c.batch_size, c.block_size, self.vs.device())
    }

    /// `estimate_loss()`: eval mode, no gradients, `eval_iters` batches of train then of
    /// val; each mean in float32 as PyTorch takes it.
    pub fn estimate_loss(&self) -> Result<(f32, f32)> {
        let model = &self.model;
        estimate_loss(
            self.config.eval_iters,
            |split| self.batch(split),
            |x, y| model.f_loss(&model.f_forward_t(x, false)?, y),
        )
    }

    /// The loop from `iter_num`, as `train.py` runs it (see the module docs), writing
    /// `ckpt.pt` into `out_dir` and reporting each event to `on_event`.
    pub fn run(&mut self, out_dir: &Path, mut on_event: impl FnMut(&Event)) -> Result<()> {
        let (mut x, mut y) = self.batch(Split::Train)?;
        loop {
            let iter = self.iter_num;
            let lr = self.config.lr(iter);
            self.optimizer.set_lr(lr)?;
            if iter % self.config.eval_interval == 0 {
                let (train_loss, val_loss) = self.estimate_loss()?;
                on_event(&Event::Eval {
                    iter,
                    train_loss,
                    val_loss,
                });
                if f64::from(val_loss) < self.best_val_loss || self.config.always_save_checkpoint {
                    self.best_val_loss = f64::from(val_loss);
                    if iter > 0 {
                        self.save(&out_dir.join("ckpt.pt"))?;
                        on_event(&Event::Saved { iter });
                    }
                }
            }
            if iter == 0 && self.config.eval_only {
                return Ok(());
            }
            let loss = self.iteration(&mut x, &mut y)?;
            on_event(&Event::Step { iter, loss, lr });
            self.iter_num += 1;
            if self.iter_num > self.config.max_iters {
                return Ok(());
            }
        }
    }

    /// One iteration's micro-steps, clipping and step, `(x, y)` the batch fetched last;
    /// returns the loss as `train.py` logs it.
    fn iteration(&mut self, x: &mut Tensor, y: &mut Tensor) -> Result<f64> {
        let steps = self.config.gradient_accumulation_steps;
        let params: Vec<Tensor> = self
            .optimizer
            .params()
            .iter()
            .map(|(_, p)| p.shallow_clone())
            .collect();
        let mut grads: Vec<Tensor> = Vec::new();
        let mut last = 0f32;
        for _ in 0..steps {
            let logits = self.model.f_forward_t(x, true)?;
            let loss = self.model.f_loss(&logits, y)?.f_div_scalar(steps)?;
            (*x, *y) = self.batch(Split::Train)?;
            let g = Tensor::f_run_backward(&[&loss], &params, false, false)?;
            grads = if grads.is_empty() {
                g
            } else {
                grads
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| a.f_add(b))
                    .collect::<std::result::Result<_, _>>()?
            };
            last = loss.f_double_value(&[])? as f32;
        }
        if self.config.grad_clip != 0.0 {
            let mut in_model_order: Vec<Option<Tensor>> = grads.iter().map(|_| None).collect();
            for (g, &i) in grads.iter().zip(&self.model_order) {
                in_model_order[i] = Some(g.shallow_clone());
            }
            let in_model_order: Vec<Tensor> = in_model_order.into_iter().flatten().collect();
            let _total_norm = clip_grad_norm(&in_model_order, self.config.grad_clip)?;
        }
        self.optimizer.f_step(&grads)?;
        Ok(f64::from(last) * steps as f64)
    }

    /// `ckpt.pt`'s dict as `train.py` saves it: `model` (the state_dict), `optimizer`,
    /// `model_args`, `iter_num`, `best_val_loss` (a float32 scalar tensor) and `config`
    /// (`train.py`'s settings; `out_dir`, `dataset`, `device` as this run has them).
    pub fn checkpoint(&self, out_dir: &Path) -> TorchValue {
        let m = &self.model.config;
        let model_args = TorchValue::dict([
            ("n_layer", TorchValue::Int(m.n_layer)),
            ("n_head", TorchValue::Int(m.n_head)),
            ("n_embd", TorchValue::Int(m.n_embd)),
            ("block_size", TorchValue::Int(m.block_size)),
            ("bias", TorchValue::Bool(m.bias)),
            ("vocab_size", TorchValue::Int(m.vocab_size)),
            ("dropout", TorchValue::Float(m.dropout)),
        ]);
        TorchValue::dict([
            ("model", TorchValue::state_dict(self.model.state_dict())),
            ("optimizer", self.optimizer.state_dict()),
            ("model_args", model_args),
            ("iter_num", TorchValue::Int(self.iter_num)),
            (
                "best_val_loss",
                TorchValue::Tensor(Tensor::from(self.best_val_loss as f32)),
            ),
            ("config", self.config_dict(out_dir)),
        ])
    }

    /// `config = {k: globals()[k] for k in config_keys}`: `train.py`'s settings in its
    /// order, those this loop has no use for at `train.py`'s defaults.
    fn config_dict(&self, out_dir: &Path) -> TorchValue {
        use TorchValue::{Bool, Float, Int};
        let c = &self.config;
        let device = match self.vs.device() {
            Device::Cuda(_) => "cuda",
            _ => "cpu",
        };
        TorchValue::dict([
            ("out_dir", TorchValue::str(out_dir.display().to_string())),
            ("eval_interval", Int(c.eval_interval)),
            ("log_interval", Int(1)),
            ("eval_iters", Int(c.eval_iters)),
            ("eval_only", Bool(c.eval_only)),
            ("always_save_checkpoint", Bool(c.always_save_checkpoint)),
            ("init_from", TorchValue::str("scratch")),
            ("wandb_log", Bool(false)),
            ("wandb_project", TorchValue::str("owt")),
            ("wandb_run_name", TorchValue::str("gpt2")),
            ("dataset", TorchValue::str(self.data.dataset.clone())),
            (
                "gradient_accumulation_steps",
                Int(c.gradient_accumulation_steps),
            ),
            ("batch_size", Int(c.batch_size)),
            ("block_size", Int(c.block_size)),
            ("n_layer", Int(c.n_layer)),
            ("n_head", Int(c.n_head)),
            ("n_embd", Int(c.n_embd)),
            ("dropout", Float(c.dropout)),
            ("bias", Bool(c.bias)),
            ("learning_rate", Float(c.learning_rate)),
            ("max_iters", Int(c.max_iters)),
            ("weight_decay", Float(c.weight_decay)),
            ("beta1", Float(c.beta1)),
            ("beta2", Float(c.beta2)),
            ("grad_clip", Float(c.grad_clip)),
            ("decay_lr", Bool(c.decay_lr)),
            ("warmup_iters", Int(c.warmup_iters)),
            ("lr_decay_iters", Int(c.lr_decay_iters)),
            ("min_lr", Float(c.min_lr)),
            ("backend", TorchValue::str("nccl")),
            ("device", TorchValue::str(device)),
            ("dtype", TorchValue::str("float32")),
            ("compile", Bool(false)),
        ])
    }

    /// Writes [`Trainer::checkpoint`] to `path` atomically: a reader (or a crash) sees
    /// the previous `ckpt.pt` or the whole new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let out_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        write_torch_save(path, &self.checkpoint(&out_dir), Overwrite::Replace)
    }
}
