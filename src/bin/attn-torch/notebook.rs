//! `attn notebook`: replay the notebook cell by cell.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use tch_attention::io::Overwrite;
use tch_attention::notebook::{Notebook, NotebookConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// manual_seed before anything is drawn.
    #[arg(long, default_value_t = 1337)]
    seed: i64,
    /// B: sequences in the batch.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
    batch: i64,
    /// T: tokens per sequence.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
    time: i64,
    /// C: channels per token.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
    channels: i64,
    /// Channels of the key, query and value projections.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i64).range(1..=4096), allow_negative_numbers = true)]
    head_size: i64,
    /// Also draw the first sequence's `wei` (both parts) as a PNG heatmap.
    #[arg(long, value_name = "FILE")]
    heatmap: Option<PathBuf>,
    /// Replace the --heatmap file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let nb = Notebook::replay(NotebookConfig {
        seed: args.seed,
        batch: args.batch,
        time: args.time,
        channels: args.channels,
        head_size: args.head_size,
    })?;
    print!("{}", nb.render()?);
    if let Some(out) = &args.heatmap {
        nb.heatmap()?.write_png(out, Overwrite::from(args.force))?;
        eprintln!("attn: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
