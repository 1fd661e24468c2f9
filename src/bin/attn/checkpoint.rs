//! `attn convert` and `attn inspect`: checkpoints between attention layouts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::ValueEnum;
use tch_attention::checkpoint::{
    convert, detect, BiasPolicy, ConvertOptions, Layout, BLOCK_SIZE, HEADS,
};
use tch_attention::io::{read_checkpoint, write_safetensors_new, Overwrite};

/// The layouts, as `--from`/`--to` values.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LayoutArg {
    Lecture,
    Nanogpt,
    TorchMha,
    HfGpt2,
    HfBert,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Lecture => Layout::Lecture,
            LayoutArg::Nanogpt => Layout::NanoGpt,
            LayoutArg::TorchMha => Layout::TorchMha,
            LayoutArg::HfGpt2 => Layout::HfGpt2,
            LayoutArg::HfBert => Layout::HfBert,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BiasArg {
    Auto,
    Yes,
    No,
}

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The layout IN holds.
    #[arg(long, value_enum)]
    from: LayoutArg,
    /// The layout to write. The same as --from: every tensor as it is, only the file
    /// format changes (torch.save to safetensors).
    #[arg(long, value_enum)]
    to: LayoutArg,
    /// Convert only the block under this prefix (e.g. transformer.h.3.attn.); default:
    /// every block of the --from layout.
    #[arg(long)]
    prefix: Option<String>,
    /// Heads: needed to write the lecture layout (one key/query/value per head).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..), allow_negative_numbers = true)]
    heads: Option<i64>,
    /// The causal mask size, for lecture's tril buffers (or --mask-buffer) when IN does
    /// not record it.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..), allow_negative_numbers = true)]
    block_size: Option<i64>,
    /// Biases where the target makes them optional (nanogpt, torch-mha): auto = as IN
    /// has them; yes = bias=True modules; no = bias=False modules.
    #[arg(long, value_enum, default_value_t = BiasArg::Auto)]
    bias: BiasArg,
    /// Write nanoGPT's / GPT-2's causal mask buffer `bias` (non-flash nanoGPT, old GPT-2
    /// checkpoints). Default: only when IN has it and --to is IN's own layout.
    #[arg(long)]
    mask_buffer: Option<bool>,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    /// A state_dict: .safetensors, or a torch.save file (.pt, .pth, .bin).
    input: PathBuf,
    /// Where to write the converted state_dict (safetensors).
    output: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A state_dict: .safetensors, or a torch.save file (.pt, .pth, .bin).
    file: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn convert_file(args: ConvertArgs) -> Result<ExitCode> {
    if args.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the output is written as safetensors; name it *.safetensors",
            args.output.display()
        );
    }
    let (from, to) = (Layout::from(args.from), Layout::from(args.to));
    let ckpt = read_checkpoint(&args.input)?;
    let opts = ConvertOptions {
        prefix: args.prefix,
        heads: args.heads,
        block_size: args.block_size,
        bias: match args.bias {
            BiasArg::Auto => BiasPolicy::Auto,
            BiasArg::Yes => BiasPolicy::Yes,
            BiasArg::No => BiasPolicy::No,
        },
        mask_buffer: args.mask_buffer,
    };
    let source = args.input.display().to_string();
    let out = convert(&ckpt.tensors, from, to, &opts, &source).map_err(option_to_flag)?;
    let mut meta = ckpt.metadata.clone();
    meta.insert("layout".into(), to.name().into());
    meta.insert("converted_from".into(), from.name().into());
    write_safetensors_new(
        &args.output,
        out.iter().map(|(k, v)| (k.as_str(), v)),
        &meta,
        Overwrite::from(args.force),
    )?;
    eprintln!(
        "attn: wrote {} tensors ({from} -> {to}) to {}",
        out.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The library names the [`ConvertOptions`] field an error is about; the user sets it
/// with a flag.
fn option_to_flag(e: tch_attention::Error) -> anyhow::Error {
    match &e {
        tch_attention::Error::Invalid { arg, reason } if arg == HEADS => {
            anyhow::anyhow!("--heads: {reason}")
        }
        tch_attention::Error::Invalid { arg, reason } if arg == BLOCK_SIZE => {
            anyhow::anyhow!("--block-size: {reason}")
        }
        _ => e.into(),
    }
}

pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let ckpt = read_checkpoint(&args.file)?;
    let found = detect(&ckpt.tensors);
    if args.json {
        let tensors: Vec<_> = ckpt
            .tensors
            .iter()
            .map(|(k, t)| serde_json::json!({"name": k, "dtype": format!("{:?}", t.kind()), "shape": t.size()}))
            .collect();
        let layouts: Vec<_> = found
            .iter()
            .map(|f| {
                serde_json::json!({"layout": f.layout.name(), "prefix": f.prefix,
                    "embed_dim": f.embed_dim, "heads": f.heads, "qkv_bias": f.qkv_bias,
                    "out_bias": f.out_bias,
                    "dtype": format!("{:?}", f.dtype)})
            })
            .collect();
        let obj = serde_json::json!({"file": args.file.display().to_string(),
            "format": ckpt.format.to_string(), "tensors": tensors, "layouts": layouts,
            "metadata": ckpt.metadata});
        println!("{obj}");
        return Ok(ExitCode::SUCCESS);
    }
    let total: usize = ckpt.tensors.values().map(|t| t.numel()).sum();
    println!(
        "{}: {}, {} tensors, {total} elements",
        args.file.display(),
        ckpt.format,
        ckpt.tensors.len()
    );
    let width = ckpt.tensors.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, t) in &ckpt.tensors {
        println!(
            "  {k:<width$}  {:<9} {:?}",
            format!("{:?}", t.kind()),
            t.size()
        );
    }
    if found.is_empty() {
        println!("attention layouts: none recognised");
    } else {
        let mut by_layout: BTreeMap<Layout, Vec<_>> = BTreeMap::new();
        for f in &found {
            by_layout.entry(f.layout).or_default().push(f);
        }
        println!("attention layouts:");
        for (layout, blocks) in by_layout {
            let f = blocks[0];
            let heads = f
                .heads
                .map(|h| format!("{h} heads"))
                .unwrap_or_else(|| "heads not recorded".into());
            let yes_no = |b: bool| if b { "yes" } else { "no" };
            println!(
                "  {layout:<10} {} block(s), C = {}, {heads}, bias: q/k/v {}, out {}",
                blocks.len(),
                f.embed_dim,
                yes_no(f.qkv_bias),
                yes_no(f.out_bias)
            );
            for b in blocks {
                println!("    prefix {:?}", b.prefix);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
