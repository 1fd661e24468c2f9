//! A decoder's GGUF written as Hugging Face's float32 safetensors (`attn convert --from
//! gguf --to hf-llama`): every tensor dequantised as [`LlamaForCausalLM::from_gguf`]
//! loads it (llama.cpp's query/key row order undone), under the names transformers'
//! `save_pretrained` writes (a tied head is the embedding: no `lm_head.weight`).

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Tensor};

use super::model::LlamaForCausalLM;
use crate::error::Result;
use crate::io::{write_safetensors_new, Gguf, Overwrite};

/// Converts the GGUF `input` into the safetensors file `output` (written atomically,
/// as `overwrite` allows); returns the number of tensors written.
pub fn gguf_to_hf_safetensors(input: &Path, output: &Path, overwrite: Overwrite) -> Result<usize> {
    let gguf = Gguf::read(input)?;
    let (vs, _model) = LlamaForCausalLM::from_gguf(&gguf, Device::Cpu)?;
    drop(gguf);
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    write_safetensors_new(
        output,
        variables.iter().map(|(k, t)| (k.as_str(), t)),
        &BTreeMap::from([("format".to_string(), "pt".to_string())]),
        overwrite,
    )?;
    Ok(variables.len())
}
