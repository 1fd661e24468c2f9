//! `attn convert` and `attn inspect`: checkpoints between attention layouts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::ValueEnum;
use tch_attention::checkpoint::{
    convert_file as convert_streamed, detect_file, BiasPolicy, ConvertOptions, Layout, BLOCK_SIZE,
    HEADS,
};
use tch_attention::io::{sniff_file, CheckpointFile, Format, Overwrite};
use tch_attention::models::llama::gguf_to_hf_safetensors;

/// The layouts, as `--from`/`--to` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutArg {
    Lecture,
    Nanogpt,
    TorchMha,
    HfGpt2,
    HfBert,
    /// llama.cpp's GGUF file of a Llama-architecture model (only with --to hf-llama).
    Gguf,
    /// Hugging Face's Llama names (model.layers.{i}.self_attn.q_proj.weight, ...), in
    /// float32 (only from --from gguf).
    HfLlama,
}

impl LayoutArg {
    /// The attention layout of the block converter; `None` for the whole-model pair
    /// gguf -> hf-llama.
    fn attention(self) -> Option<Layout> {
        Some(match self {
            LayoutArg::Lecture => Layout::Lecture,
            LayoutArg::Nanogpt => Layout::NanoGpt,
            LayoutArg::TorchMha => Layout::TorchMha,
            LayoutArg::HfGpt2 => Layout::HfGpt2,
            LayoutArg::HfBert => Layout::HfBert,
            LayoutArg::Gguf | LayoutArg::HfLlama => return None,
        })
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
    /// A state_dict: .safetensors, or a torch.save file (.pt, .pth, .bin); with --from
    /// gguf, a GGUF file.
    input: PathBuf,
    /// Where to write the converted state_dict (safetensors).
    output: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A state_dict: .safetensors, or a torch.save file (.pt, .pth, .bin); or a GGUF file.
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
    let (from, to) = match (args.from.attention(), args.to.attention()) {
        (Some(from), Some(to)) => (from, to),
        _ if (args.from, args.to) == (LayoutArg::Gguf, LayoutArg::HfLlama) => {
            return convert_gguf(&args)
        }
        _ => bail!("--from gguf goes with --to hf-llama, and hf-llama is written only from gguf"),
    };
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
    // Block by block: memory holds one block, never the whole checkpoint.
    let written = convert_streamed(
        &args.input,
        &args.output,
        from,
        to,
        &opts,
        Overwrite::from(args.force),
    )
    .map_err(option_to_flag)?;
    eprintln!(
        "attn: wrote {written} tensors ({from} -> {to}) to {}",
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A Llama-architecture GGUF to Hugging Face's names in float32 safetensors
/// ([`gguf_to_hf_safetensors`]), after refusing the attention layouts' flags.
fn convert_gguf(args: &ConvertArgs) -> Result<ExitCode> {
    for (flag, given) in [
        ("--prefix", args.prefix.is_some()),
        ("--heads", args.heads.is_some()),
        ("--block-size", args.block_size.is_some()),
        ("--mask-buffer", args.mask_buffer.is_some()),
        ("--bias", !matches!(args.bias, BiasArg::Auto)),
    ] {
        if given {
            bail!("{flag}: applies to attention layouts, not to --from gguf (the whole model is written)");
        }
    }
    let written = gguf_to_hf_safetensors(&args.input, &args.output, Overwrite::from(args.force))?;
    eprintln!(
        "attn: wrote {written} tensors (gguf -> hf-llama, float32) to {}",
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

/// Headers only: no tensor is read, however big the file (a GGUF file is read whole:
/// its reader checks every tensor against the file).
pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    // Unreadable: the checkpoint reader below says why.
    if let Ok(Some(Format::Gguf)) = sniff_file(&args.file) {
        return super::inspect_gguf::inspect(&args.file, args.json);
    }
    let ckpt = CheckpointFile::open(&args.file)?;
    let found = detect_file(&ckpt)?;
    if args.json {
        let tensors: Vec<_> = ckpt
            .tensors
            .iter()
            .map(|(k, t)| serde_json::json!({"name": k, "dtype": format!("{:?}", t.kind), "shape": t.shape}))
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
    let total: i128 = ckpt.tensors.values().map(|t| t.numel() as i128).sum();
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
            format!("{:?}", t.kind),
            t.shape
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
