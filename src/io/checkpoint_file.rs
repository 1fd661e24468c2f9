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
    /// A safetensors file.
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
    /// The file's format.
    pub format: Format,
    /// The state_dict's tensors, by key.
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
    match sniff(bytes) {
        Some(Format::Safetensors) => {
            let st = parse_safetensors(name, bytes)?;
            Ok(Checkpoint {
                format: Format::Safetensors,
                tensors: strip_keys(name, st.tensors)?,
                metadata: st.metadata,
            })
        }
        Some(Format::TorchZip) => Ok(Checkpoint {
            format: Format::TorchZip,
            tensors: strip_keys(name, read_torch_zip(name, bytes)?)?,
            metadata: BTreeMap::new(),
        }),
        None if is_legacy_torch(bytes) => Err(Error::malformed(
            name,
            "the legacy torch.save format of PyTorch < 1.6, which needs Python to read; in \
             PyTorch, torch.save(torch.load(path), new_path) writes the zip format, or \
             safetensors.torch.save_file(state_dict, new_path) writes safetensors",
        )),
        None => Err(Error::malformed(
            name,
            "neither a safetensors file nor a torch.save zip archive",
        )),
    }
}

/// The format by its signature, safetensors first: its first byte is the low byte of
/// the header length, which may be anything (0x80 for a 384-byte header, so a test of
/// the first byte alone takes 1 valid file in 32 for a pickle).
fn sniff(bytes: &[u8]) -> Option<Format> {
    if is_safetensors(bytes) {
        Some(Format::Safetensors)
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some(Format::TorchZip)
    } else if bytes.get(8) == Some(&b'{') && !is_legacy_torch(bytes) {
        // A JSON header whose length does not fit: the safetensors reader says what is
        // wrong with it.
        Some(Format::Safetensors)
    } else {
        None
    }
}

/// An 8-byte little-endian header length N, then N bytes of JSON (an object) within
/// the file.
fn is_safetensors(bytes: &[u8]) -> bool {
    let Some(len) = bytes.get(..8) else {
        return false;
    };
    let n = u64::from_le_bytes(len.try_into().unwrap_or_default());
    bytes.get(8) == Some(&b'{')
        && n.checked_add(8)
            .is_some_and(|end| end <= bytes.len() as u64)
}

/// The legacy `torch.save` format (PyTorch < 1.6) opens with a protocol-2 pickle of its
/// magic number `0x1950a86a20f9469cfc6c`: `PROTO 2`, then `LONG1` of 10 bytes.
fn is_legacy_torch(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x80\x02\x8a\x0a")
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
