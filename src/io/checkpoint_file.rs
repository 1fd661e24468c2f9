//! One entry point for every checkpoint file: the format is told by the bytes, not the
//! extension (`.bin` is a torch.save zip in Hugging Face repos and may be anything
//! elsewhere).

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

use super::safetensors::parse_safetensors;
use super::torch_file::{read_torch_zip, strip_compile_prefix};
use crate::error::{Error, Result};

/// What a checkpoint file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    /// `torch.save`'s zip archive (PyTorch >= 1.6).
    TorchZip,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::TorchZip => "torch.save (zip)",
        })
    }
}

/// A state_dict read from a file, on the CPU, by key (sorted).
#[derive(Debug)]
pub struct Checkpoint {
    pub format: Format,
    pub tensors: BTreeMap<String, Tensor>,
    /// The safetensors header's `__metadata__` (empty for torch.save files).
    pub metadata: BTreeMap<String, String>,
}

/// Reads a `.safetensors` file or a `torch.save` file (`.pt`, `.pth`, `.bin`): a
/// state_dict, or a dict holding one under `model` or `state_dict` (nanoGPT's
/// `ckpt.pt`). torch.compile's `_orig_mod.` is removed from every key.
pub fn read_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = crate::io::read_regular(path)?;
    read_checkpoint_bytes(&name, &bytes)
}

/// [`read_checkpoint`] on a file's bytes already in memory; `name` is used in errors.
pub fn read_checkpoint_bytes(name: &str, bytes: &[u8]) -> Result<Checkpoint> {
    let name = name.to_string();
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Checkpoint {
            format: Format::TorchZip,
            tensors: strip_keys(&name, read_torch_zip(&name, bytes)?)?,
            metadata: BTreeMap::new(),
        });
    }
    if bytes.first() == Some(&0x80) {
        return Err(Error::malformed(
            &name,
            "the legacy torch.save format of PyTorch < 1.6, which needs Python to read; in \
             PyTorch, torch.save(torch.load(path), new_path) writes the zip format, or \
             safetensors.torch.save_file(state_dict, new_path) writes safetensors",
        ));
    }
    if looks_like_safetensors(bytes) {
        let st = parse_safetensors(&name, bytes)?;
        return Ok(Checkpoint {
            format: Format::Safetensors,
            tensors: strip_keys(&name, st.tensors)?,
            metadata: st.metadata,
        });
    }
    Err(Error::malformed(
        &name,
        "neither a safetensors file nor a torch.save zip archive",
    ))
}

/// An 8-byte little-endian header length, then JSON.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[8] == b'{'
}

/// Removes torch.compile's `_orig_mod.` from every key; two keys that become one are an
/// error rather than a silent choice.
fn strip_keys(name: &str, tensors: BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (key, t) in tensors {
        let stripped = strip_compile_prefix(&key);
        if out.insert(stripped.clone(), t).is_some() {
            return Err(Error::malformed(
                name,
                format!("{key}: without torch.compile's _orig_mod. it collides with another key, {stripped}"),
            ));
        }
    }
    Ok(out)
}
