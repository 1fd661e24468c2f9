//! `attn explain`: a sentence through the pretrained encoder (or a decoder's GGUF, whose
//! attention is causal); one layer's attention drawn as a heatmap, and each token's most
//! attended tokens printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use tch_attention::explain::{check_layer, Heads};
use tch_attention::io::Overwrite;

use crate::model::ModelArgs;
use crate::with_flag_names;

/// The notebook's example: reading "ran", the model should look at "cat", not "mat".
const NOTEBOOK_SENTENCE: &str = "The cat, which sat on the mat, ran away.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The sentence.
    #[arg(default_value = NOTEBOOK_SENTENCE)]
    sentence: String,
    /// Which layer, from 0 (default: the last).
    #[arg(long)]
    layer: Option<usize>,
    /// One head, from 0 (default: every head, one panel each).
    #[arg(long, conflicts_with = "average")]
    head: Option<usize>,
    /// The mean over heads, one panel.
    #[arg(long)]
    average: bool,
    /// How many attended tokens to print per token.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    top: u32,
    /// Leave the special tokens ([CLS], [SEP]) out of the printed ranking (they soak up
    /// much attention).
    #[arg(long)]
    skip_special: bool,
    /// The weight drawn in the brightest colour (larger ones too; the darkest is 0).
    /// Below 1 it brings out the small weights beside [CLS].
    #[arg(long, default_value_t = 1.0)]
    vmax: f64,
    /// Where to write the heatmap PNG (without it, only the summary is printed).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let heads = match (args.head, args.average) {
        (Some(h), _) => Heads::One(h),
        (None, true) => Heads::Average,
        (None, false) => Heads::All,
    };
    let flags = [("layer", "--layer"), ("head", "--head")];
    let (explanation, name) = match args.model.decoder() {
        Some(file) => {
            let mut layer = 0;
            let (model, tokenizer, name) = ModelArgs::load_decoder(file, |config| {
                let n_layers = config.num_hidden_layers as usize;
                layer = args.layer.unwrap_or(n_layers.saturating_sub(1));
                check_layer(layer, n_layers)
                    .and_then(|()| heads.check(config.num_attention_heads as usize))
                    .map_err(|e| with_flag_names(e, &flags))
            })?;
            let e = model.explain(&tokenizer, &args.sentence, layer, heads);
            (e.map_err(|e| with_flag_names(e, &flags))?, name)
        }
        None => {
            let (model, name) = args.model.load()?;
            let last = model.model.layers.len().saturating_sub(1);
            let layer = args.layer.unwrap_or(last);
            let e = model.explain(&args.sentence, layer, heads);
            (e.map_err(|e| with_flag_names(e, &flags))?, name)
        }
    };
    print!(
        "{}",
        explanation.summary(args.top as usize, args.skip_special)?
    );
    if let Some(out) = &args.output {
        explanation
            .heatmap(&name)?
            .with_range(0.0, args.vmax)?
            .write_png(out, Overwrite::from(args.force))?;
        eprintln!("attn: wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
