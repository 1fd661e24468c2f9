//! `attn heatmap`: attention weights from a safetensors file (a parity case, the output
//! of `attn run`, or any file with such a tensor) drawn as a PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tch::Kind;
use tch_attention::heatmap::{select_panels, Heatmap};
use tch_attention::io::{contiguous_checked, CheckpointFile, Overwrite};

use crate::with_flag_names;

/// Tensors tried, in order, when --tensor is not given.
const DEFAULT_TENSORS: [&str; 3] = ["expected.attn_weights", "attn_weights", "wei"];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A safetensors file (or a torch.save file) holding attention weights: (L, S),
    /// (N, L, S) or (N, H, L, S).
    file: PathBuf,
    /// The tensor to draw (default: expected.attn_weights, attn_weights or wei).
    #[arg(long)]
    tensor: Option<String>,
    /// Which sequence of a batched tensor.
    #[arg(long, default_value_t = 0)]
    batch: i64,
    /// Read a 3-D tensor as (H, L, S), one unbatched sequence (found by itself for
    /// parity cases).
    #[arg(long)]
    unbatched: bool,
    /// Draw the mean over heads instead of one panel per head.
    #[arg(long, conflicts_with = "head")]
    average: bool,
    /// Draw one head only.
    #[arg(long)]
    head: Option<i64>,
    /// The value drawn in the brightest colour (the darkest is 0).
    #[arg(long, default_value_t = 1.0)]
    vmax: f64,
    /// Where to write the PNG.
    #[arg(long, short)]
    output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    // The header, then the one tensor drawn: a bad or oversized file is refused after
    // its header, and the other tensors are never read.
    let file = CheckpointFile::open(&args.file)?;
    let name = match &args.tensor {
        Some(t) => t.clone(),
        None => DEFAULT_TENSORS
            .iter()
            .find(|t| file.tensors.contains_key(**t))
            .map(|t| t.to_string())
            .with_context(|| {
                format!(
                    "{}: none of {DEFAULT_TENSORS:?} is in the file (it has {:?}); pass --tensor",
                    args.file.display(),
                    file.tensors.keys().collect::<Vec<_>>()
                )
            })?,
    };
    let weights = file.load(&name).with_context(|| {
        format!(
            "{}: no tensor {name:?} (it has {:?})",
            args.file.display(),
            file.tensors.keys().collect::<Vec<_>>()
        )
    })??;
    let weights = &contiguous_checked(&weights, file.name(), &name)?;
    // A parity case says itself whether it is unbatched: its query is 2-D.
    let unbatched = args.unbatched
        || file
            .tensors
            .get("input.query")
            .is_some_and(|q| q.shape.len() == 2);
    let mut panels = select_panels(weights, args.batch, unbatched) // (P, L, S)
        .map_err(|e| with_flag_names(e, &[("batch", "--batch")]))?;
    let p = panels.size()[0];
    let mut titles: Option<Vec<String>> = None;
    if args.average {
        panels = panels
            .f_to_kind(Kind::Float)?
            .f_mean_dim(0, true, None::<Kind>)?;
        titles = Some(vec!["mean over heads".into()]);
    } else if let Some(h) = args.head {
        if !(0..p).contains(&h) {
            bail!(
                "--head must be in 0..{p} for {name} of shape {:?}, got {h}",
                weights.size()
            );
        }
        panels = panels.f_get(h)?.f_unsqueeze(0)?;
        titles = Some(vec![format!("head {h}")]);
    }
    let source = args
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let module = file
        .metadata
        .get("module")
        .map(|m| format!("{m} "))
        .unwrap_or_default();
    let batch = if weights.dim() >= 3 && !(unbatched && weights.dim() == 3) {
        format!(", sequence {}", args.batch)
    } else {
        String::new()
    };
    let mut map = Heatmap::new(&panels)?
        .with_title(format!("{module}{source}: {name}{batch}"))
        .with_subtitle(format!(
            "shape {:?}; rows: query position, columns: key position; colour: weight (grey: NaN)",
            weights.size()
        ))
        .with_range(0.0, args.vmax)?;
    if let Some(t) = titles {
        map = map.with_panel_titles(t)?;
    }
    map.write_png(&args.output, Overwrite::from(args.force))?;
    eprintln!("attn: wrote {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
