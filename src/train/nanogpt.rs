//! nanoGPT's `train.py` (Karpathy), one process, top to bottom as the script runs it,
//! drawing the same random numbers in the same order from the default generator:
//! `torch.manual_seed(seed)`, `GPT(model_args)`'s init, `configure_optimizers` (AdamW,
//! matrices decayed, the rest not), the first batch fetched before the loop; then per
//! iteration the lr (`get_lr`), `estimate_loss()` when `iter % eval_interval == 0` and
//! `ckpt.pt` when val improved (or `always_save_checkpoint`, never at iteration 0),
//! `gradient_accumulation_steps` micro-steps (forward, `loss / steps`, the next batch,
//! backward), `clip_grad_norm_`, the step; it stops once the counter passes `max_iters`.
//!
//! Data is a folder as nanoGPT's `prepare.py` writes it: `train.bin`, `val.bin` (uint16
//! tokens) and optionally `meta.pkl` (`vocab_size`, `itos`, `stoi`), read with the
//! crate's restricted unpickler. Batches read their windows from the files, as
//! `np.memmap` does, so a corpus bigger than memory trains too.
//!
//! Gradients come from `torch.autograd.grad` per micro-step, summed in order: what
//! `backward()` accumulates into `.grad` after `zero_grad(set_to_none=True)`.
//!
//! `ckpt.pt` is `train.py`'s dict, written by [`crate::io::write_torch_save`] (so
//! `torch.load(weights_only=True)` reads it and `train.py --init_from=resume` continues
//! it).

use std::fs::File;
use std::path::Path;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::check;
use crate::error::{Error, Result};
use crate::io::pickle::{unpickle, Value};
use crate::io::{write_torch_save, Overwrite, TorchValue};
use crate::models::nanogpt::{Gpt, GptConfig};
use crate::train::adamw::{AdamW, AdamWConfig, ParamGroup, ParamState};
use crate::train::data::Split;

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

impl AdamWConfig {
    /// This config with `lr`.
    fn with_lr(self, lr: f64) -> Self {
        Self { lr, ..self }
    }
}

/// One of `train.bin` / `val.bin`: uint16 tokens, read where a batch needs them.
#[derive(Debug)]
pub struct TokenFile {
    file: File,
    len: i64,
    name: String,
}

impl TokenFile {
    /// Opens `path`, checking it holds whole uint16 tokens, more than `block_size` of
    /// them, every one below `vocab_size` (read through once, in chunks).
    pub fn open(path: &Path, block_size: i64, vocab_size: i64) -> Result<Self> {
        use std::os::unix::fs::FileExt;
        let name = path.display().to_string();
        let io = |source| Error::Io {
            path: name.clone(),
            source,
        };
        let (file, bytes) = crate::io::open_regular(path)?;
        if bytes % 2 != 0 {
            return Err(Error::malformed(
                &name,
                format!("truncated: {bytes} bytes is not a whole number of uint16 tokens"),
            ));
        }
        let len = (bytes / 2) as i64;
        if len <= block_size {
            return Err(Error::malformed(
                &name,
                format!("holds {len} tokens; batches need more than block_size = {block_size}"),
            ));
        }
        let mut chunk = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < bytes {
            let n = chunk.len().min((bytes - at) as usize);
            file.read_exact_at(&mut chunk[..n], at).map_err(io)?;
            let max = chunk[..n]
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .max()
                .unwrap_or(0);
            if i64::from(max) >= vocab_size {
                return Err(Error::malformed(
                    &name,
                    format!("token {max} is not below the vocabulary size {vocab_size}"),
                ));
            }
            at += n as u64;
        }
        Ok(Self { file, len, name })
    }

    /// Tokens in the file.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether the file holds no token (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `get_batch`: `ix = torch.randint(len(data) - block_size, (batch_size,))` on the
    /// default generator, then the windows `data[i:i+block_size]` and
    /// `data[i+1:i+1+block_size]` as int64 `(x, y)`, both `(batch_size, block_size)` on
    /// `device`.
    pub fn get_batch(
        &self,
        batch_size: i64,
        block_size: i64,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        use std::os::unix::fs::FileExt;
        let ix = Tensor::f_randint(
            self.len - block_size,
            [batch_size],
            (Kind::Int64, Device::Cpu),
        )?;
        let ix: Vec<i64> = Vec::<i64>::try_from(&ix)?;
        let t = block_size as usize;
        let mut window = vec![0u8; 2 * (t + 1)];
        let (mut x, mut y) = (
            Vec::with_capacity(ix.len() * t),
            Vec::with_capacity(ix.len() * t),
        );
        for i in ix {
            self.file
                .read_exact_at(&mut window, 2 * i as u64)
                .map_err(|source| Error::Io {
                    path: self.name.clone(),
                    source,
                })?;
            let tokens: Vec<i64> = window
                .chunks_exact(2)
                .map(|b| i64::from(u16::from_le_bytes([b[0], b[1]])))
                .collect();
            x.extend_from_slice(&tokens[..t]);
            y.extend_from_slice(&tokens[1..]);
        }
        let shape = [batch_size, block_size];
        let x = Tensor::f_from_slice(&x)?
            .f_view(shape)?
            .f_to_device(device)?;
        let y = Tensor::f_from_slice(&y)?
            .f_view(shape)?
            .f_to_device(device)?;
        Ok((x, y))
    }
}

/// A data folder as `prepare.py` writes it.
#[derive(Debug)]
pub struct TokenData {
    /// `train.bin`.
    pub train: TokenFile,
    /// `val.bin`.
    pub val: TokenFile,
    /// `meta.pkl`'s `vocab_size`, when there is one.
    pub meta_vocab_size: Option<i64>,
    /// `meta.pkl`'s `itos` (id to string) in id order, when there is one.
    pub itos: Option<Vec<String>>,
    /// The folder's name (`train.py`'s `dataset`).
    pub dataset: String,
}

impl TokenData {
    /// Opens `dir/train.bin`, `dir/val.bin` and `dir/meta.pkl` if present; the tokens are
    /// checked against the vocabulary: `meta.pkl`'s, else GPT-2's padded 50304.
    pub fn open(dir: &Path, block_size: i64) -> Result<Self> {
        let meta_path = dir.join("meta.pkl");
        let (meta_vocab_size, itos) = if meta_path.exists() {
            let (v, itos) = read_meta(&meta_path)?;
            (Some(v), itos)
        } else {
            (None, None)
        };
        let vocab = meta_vocab_size.unwrap_or(50304);
        Ok(Self {
            train: TokenFile::open(&dir.join("train.bin"), block_size, vocab)?,
            val: TokenFile::open(&dir.join("val.bin"), block_size, vocab)?,
            meta_vocab_size,
            itos,
            dataset: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    /// The split `get_batch` names.
    pub fn split(&self, split: Split) -> &TokenFile {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }
}

/// `meta.pkl`: `vocab_size` and, when it is a char vocabulary, `itos` in id order. Read
/// with the restricted unpickler: a pickle that would import or call anything is only
/// data here, and anything but plain data where these are expected is an error.
pub fn read_meta(path: &Path) -> Result<(i64, Option<Vec<String>>)> {
    let name = path.display().to_string();
    let bytes = crate::io::read_regular(path)?;
    let err = |reason: String| Error::malformed(&name, reason);
    let value = unpickle(&bytes, &mut |_| {
        Err("meta.pkl holds no persistent ids".into())
    })
    .map_err(err)?;
    let Value::Dict(meta) = &value else {
        return Err(err(format!("holds {}, not a dict", value.describe())));
    };
    let meta = meta.borrow();
    let vocab_size = match meta.get_str("vocab_size") {
        Some(Value::Int(v)) if *v > 0 => *v,
        Some(other) => return Err(err(format!("vocab_size is {other:?}, not a positive int"))),
        None => return Err(err("has no vocab_size".into())),
    };
    let itos = match meta.get_str("itos") {
        None => None,
        Some(Value::Dict(itos)) => {
            let itos = itos.borrow();
            let mut out = vec![None; itos.len()];
            for (k, v) in itos.iter() {
                let (Some(i), Some(s)) = (k.as_int(), v.as_str()) else {
                    return Err(err("itos is not a dict of int to str".into()));
                };
                match usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                    Some(slot) => *slot = Some(s.to_string()),
                    None => return Err(err(format!("itos has id {i} out of 0..{}", itos.len()))),
                }
            }
            Some(
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err("itos skips an id".into()))?,
            )
        }
        Some(other) => return Err(err(format!("itos is {}, not a dict", other.describe()))),
    };
    Ok((vocab_size, itos))
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
        let vocab = data.meta_vocab_size.unwrap_or(50304);
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

/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm)` on the CPU, `grads` in
/// `parameters`' order (which the rounding of the total depends on): each gradient's
/// 2-norm, the 2-norm of those, `clip_coef = max_norm / (total + 1e-6)` (which PyTorch
/// computes as `(total + 1e-6).reciprocal() * max_norm`), clamped to 1, multiplied into
/// every gradient. Returns the total norm before clipping.
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<Tensor> {
    let norms = grads
        .iter()
        .map(|g| g.f_norm())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
    let coef = total
        .f_add_scalar(1e-6)?
        .f_reciprocal()?
        .f_mul_scalar(max_norm)?
        .f_clamp_max(1.0)?;
    for g in grads {
        let _ = g.shallow_clone().f_mul_(&coef)?;
    }
    Ok(total)
}

impl Trainer {
    /// `init_from='resume'` from `ckpt` (a `ckpt.pt` `train.py` or [`Trainer::save`]
    /// wrote): `torch.manual_seed(seed)` and `GPT(model_args)` as from scratch (so the
    /// draws that follow are `train.py`'s), then the checkpoint's model (keys with
    /// torch.compile's `_orig_mod.` accepted), optimizer state and hyperparameters,
    /// `iter_num` and `best_val_loss`.
    ///
    /// `train.py` takes `n_layer`, `n_head`, `n_embd`, `block_size`, `bias` and
    /// `vocab_size` from the checkpoint whatever the settings say; here a setting that
    /// disagrees (or a vocabulary other than the data's) is an error naming both values.
    pub fn resume(
        data: TokenData,
        config: TrainConfig,
        device: Device,
        ckpt: &Path,
    ) -> Result<Self> {
        let value = crate::io::read_torch_object(ckpt)?;
        let c = Ckpt {
            name: ckpt.display().to_string(),
        };
        let top = c.dict(&value, "the checkpoint")?;
        let args = c.dict(c.get(top, "model_args")?, "model_args")?;
        let vocab = data.meta_vocab_size.unwrap_or(50304);
        let fixed = [
            ("n_layer", config.n_layer),
            ("n_head", config.n_head),
            ("n_embd", config.n_embd),
            ("block_size", config.block_size),
            ("bias", i64::from(config.bias)),
            ("vocab_size", vocab),
        ];
        for (key, want) in fixed {
            let got = c.int(c.get(args, key)?, key)?;
            if got != want {
                return Err(Error::config(
                    key,
                    format!(
                        "{} was trained with {key} = {got}, not {want}; it cannot change on resume",
                        c.name
                    ),
                ));
            }
        }
        let mut trainer = Self::new(data, config, device)?;
        let model = c.dict(c.get(top, "model")?, "model")?;
        let tensors = model
            .iter()
            .map(|(k, v)| {
                Ok((
                    c.str(k, "a model key")?.to_string(),
                    c.tensor(v, "a model value")?.shallow_clone(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        trainer.model.load_state_dict(&tensors)?;
        trainer.load_optimizer(&c, c.get(top, "optimizer")?)?;
        trainer.iter_num = c.int(c.get(top, "iter_num")?, "iter_num")?;
        trainer.best_val_loss = match c.get(top, "best_val_loss")? {
            TorchValue::Tensor(t) => t.f_double_value(&[])?,
            other => c.float(other, "best_val_loss")?,
        };
        Ok(trainer)
    }

    /// `optimizer.load_state_dict(...)`: groups and their sizes must match; each
    /// group's hyperparameters and every parameter's state come from the checkpoint.
    fn load_optimizer(&mut self, c: &Ckpt, v: &TorchValue) -> Result<()> {
        let opt = c.dict(v, "optimizer")?;
        let groups = c.list(c.get(opt, "param_groups")?, "param_groups")?;
        let own: Vec<(AdamWConfig, usize)> = self.optimizer.groups().to_vec();
        if groups.len() != own.len() {
            return Err(c.err(format!(
                "the optimizer has {} param groups, expected {}",
                groups.len(),
                own.len()
            )));
        }
        let mut ids = Vec::new();
        for (g, (saved, (_, n))) in groups.iter().zip(own).enumerate() {
            let saved = c.dict(saved, "a param group")?;
            let params = c.list(c.get(saved, "params")?, "params")?;
            if params.len() != n {
                return Err(c.err(format!(
                    "param group {g} has {} parameters, the model's {n}",
                    params.len()
                )));
            }
            for p in params {
                ids.push(c.int(p, "a parameter id")?);
            }
            let f = |k: &str| c.float(c.get(saved, k)?, k);
            let betas = c.list(c.get(saved, "betas")?, "betas")?;
            let [b1, b2] = betas else {
                return Err(c.err("betas is not a pair".into()));
            };
            let config = AdamWConfig {
                lr: f("lr")?,
                betas: (c.float(b1, "betas")?, c.float(b2, "betas")?),
                eps: f("eps")?,
                weight_decay: f("weight_decay")?,
            };
            self.optimizer.set_group_config(g, config)?;
        }
        self.load_param_states(c, c.dict(c.get(opt, "state")?, "state")?, &ids)
    }

    /// The optimizer's `state`: each entry under its saved id, `ids` listing the saved
    /// id of each of the optimizer's parameters in order; tensors moved to the
    /// parameter's dtype and device, as `optimizer.load_state_dict` moves them.
    fn load_param_states(
        &mut self,
        c: &Ckpt,
        saved: &[(TorchValue, TorchValue)],
        ids: &[i64],
    ) -> Result<()> {
        let params: Vec<Tensor> = self
            .optimizer
            .params()
            .iter()
            .map(|(_, p)| p.shallow_clone())
            .collect();
        let mut state: Vec<Option<ParamState>> = params.iter().map(|_| None).collect();
        for (k, entry) in saved {
            let id = c.int(k, "a state key")?;
            let at = ids
                .iter()
                .position(|&i| i == id)
                .ok_or_else(|| c.err(format!("state of parameter {id}, which no group lists")))?;
            let e = c.dict(entry, "a parameter's state")?;
            let like = |key: &str| -> Result<Tensor> {
                let t = c.tensor(c.get(e, key)?, key)?;
                Ok(t.f_to_kind(params[at].kind())?
                    .f_to_device(params[at].device())?)
            };
            let step = match c.get(e, "step")? {
                TorchValue::Tensor(t) => t.f_double_value(&[])?,
                other => c.float(other, "step")?,
            };
            state[at] = Some(ParamState {
                step,
                exp_avg: like("exp_avg")?,
                exp_avg_sq: like("exp_avg_sq")?,
            });
        }
        self.optimizer.set_state(state)
    }
}

/// Reading a checkpoint's values, each wrong type an error naming the file.
struct Ckpt {
    name: String,
}

impl Ckpt {
    fn err(&self, reason: String) -> Error {
        Error::malformed(&self.name, reason)
    }

    fn expected(&self, what: &str, ty: &str) -> Error {
        self.err(format!("{what} is not {ty}"))
    }

    fn get<'v>(&self, dict: &'v [(TorchValue, TorchValue)], key: &str) -> Result<&'v TorchValue> {
        dict.iter()
            .find(|(k, _)| matches!(k, TorchValue::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| self.err(format!("has no {key}")))
    }

    fn dict<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v [(TorchValue, TorchValue)]> {
        match v {
            TorchValue::Dict(d) | TorchValue::OrderedDict(d) => Ok(d),
            _ => Err(self.expected(what, "a dict")),
        }
    }

    fn list<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v [TorchValue]> {
        match v {
            TorchValue::List(l) | TorchValue::Tuple(l) => Ok(l),
            _ => Err(self.expected(what, "a list")),
        }
    }

    fn int(&self, v: &TorchValue, what: &str) -> Result<i64> {
        match v {
            TorchValue::Int(i) => Ok(*i),
            TorchValue::Bool(b) => Ok(i64::from(*b)),
            _ => Err(self.expected(what, "an int")),
        }
    }

    fn float(&self, v: &TorchValue, what: &str) -> Result<f64> {
        match v {
            TorchValue::Float(f) => Ok(*f),
            TorchValue::Int(i) => Ok(*i as f64),
            _ => Err(self.expected(what, "a float")),
        }
    }

    fn str<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v str> {
        match v {
            TorchValue::Str(s) => Ok(s),
            _ => Err(self.expected(what, "a str")),
        }
    }

    fn tensor<'v>(&self, v: &'v TorchValue, what: &str) -> Result<&'v Tensor> {
        match v {
            TorchValue::Tensor(t) => Ok(t),
            _ => Err(self.expected(what, "a tensor")),
        }
    }
}

/// `data/shakespeare_char/prepare.py` for the text at `text`: its characters sorted into
/// a vocabulary, the first 90% (`int(n * 0.9)` characters) into `dir/train.bin`, the
/// rest into `dir/val.bin` (uint16 ids), and `dir/meta.pkl` (`{'vocab_size', 'itos',
/// 'stoi'}`, pickled), each written atomically. The text is read as Python reads it
/// (UTF-8, universal newlines). Returns the vocabulary's size.
pub fn prepare_chars(text: &Path, dir: &Path) -> Result<usize> {
    let raw = crate::io::read_text(text)?;
    let text_str = crate::train::data::universal_newlines(&raw);
    let vocab = crate::train::data::CharVocab::from_text(&text_str);
    if vocab.len() > 1 << 16 {
        return Err(Error::malformed(
            text.display().to_string(),
            format!("{} distinct characters do not fit uint16 ids", vocab.len()),
        ));
    }
    let ids = vocab.encode(&text_str)?;
    let n = (ids.len() as f64 * 0.9) as usize;
    let bytes =
        |ids: &[i64]| -> Vec<u8> { ids.iter().flat_map(|&i| (i as u16).to_le_bytes()).collect() };
    let write =
        |name: &str, data: &[u8]| crate::io::write_file(&dir.join(name), data, Overwrite::Replace);
    write("train.bin", &bytes(&ids[..n]))?;
    write("val.bin", &bytes(&ids[n..]))?;
    let chars = vocab.chars();
    let itos = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (TorchValue::Int(i as i64), TorchValue::str(c.to_string())))
        .collect();
    let stoi = chars
        .iter()
        .enumerate()
        .map(|(i, c)| (TorchValue::str(c.to_string()), TorchValue::Int(i as i64)))
        .collect();
    let meta = TorchValue::dict([
        ("vocab_size", TorchValue::Int(vocab.len() as i64)),
        ("itos", TorchValue::Dict(itos)),
        ("stoi", TorchValue::Dict(stoi)),
    ]);
    write("meta.pkl", &crate::io::to_pickle(&meta)?)?;
    Ok(vocab.len())
}
