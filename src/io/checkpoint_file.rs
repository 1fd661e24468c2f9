//! One entry point for every checkpoint file: the format is told by the bytes, not the
//! extension (`.bin` is a torch.save zip in Hugging Face repos and may be anything
//! elsewhere). Every file is described from its header first ([`CheckpointFile`]), so a
//! bad or oversized file is refused before its data is read, and a program that needs a
//! few tensors (`attn inspect` none, `attn convert` one block at a time) reads no more.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use tch::Tensor;

use super::safetensors::read_header as read_safetensors_header;
use super::stored::{load_all, ReadAt, StoredTensor};
use super::torch::{read_torch_header, strip_compile_prefix, BlockReader};
use crate::error::{Error, Result};

/// What a checkpoint file was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A safetensors file.
    Safetensors,
    /// `torch.save`'s zip archive (PyTorch >= 1.6).
    TorchZip,
    /// A GGUF file (llama.cpp's): a whole model, read by [`crate::io::Gguf`], not a
    /// state_dict.
    Gguf,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::TorchZip => "torch.save (zip)",
            Format::Gguf => "GGUF",
        })
    }
}

/// A state_dict read from a file, on the CPU, by key (sorted).
#[derive(Debug)]
pub struct Checkpoint {
    /// The file's format.
    pub format: Format,
    /// The state_dict's tensors, by key. A `torch.save` view is kept as a view of its
    /// storage (as `torch.load` keeps it), not copied out.
    pub tensors: BTreeMap<String, Tensor>,
    /// The safetensors header's `__metadata__` (empty for torch.save files).
    pub metadata: BTreeMap<String, String>,
}

/// A checkpoint file opened and described from its header alone (a safetensors header,
/// or a `torch.save` zip's central directory and `data.pkl`): keys, dtypes, shapes and
/// where each tensor lies, with nothing of the tensors read. [`CheckpointFile::load`]
/// reads one tensor, so that a program can go through a file bigger than memory.
#[derive(Debug)]
pub struct CheckpointFile {
    /// The file's format.
    pub format: Format,
    /// Every tensor, by key (torch.compile's `_orig_mod.` removed), not yet read.
    pub tensors: BTreeMap<String, StoredTensor>,
    /// The safetensors header's `__metadata__` (empty for torch.save files).
    pub metadata: BTreeMap<String, String>,
    name: String,
    file: File,
}

impl CheckpointFile {
    /// Opens a `.safetensors` file or a `torch.save` file (`.pt`, `.pth`, `.bin`) as
    /// [`read_checkpoint`] reads it, reading its header only: a file that is not a
    /// checkpoint, or whose header does not fit its length, is refused after its first
    /// bytes, however long it is.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let (file, len) = crate::io::regular::open_regular(path)?;
        let mut head = [0u8; 16];
        let n = (len as usize).min(head.len());
        file.read_exact_at(&mut head[..n], 0)
            .map_err(|source| Error::Io {
                path: name.clone(),
                source,
            })?;
        let reader = BlockReader::new(&file, len);
        let (format, tensors, metadata) = read_header(&name, &head[..n], &file, reader, len)?;
        Ok(CheckpointFile {
            format,
            tensors,
            metadata,
            name,
            file,
        })
    }

    /// Reads the tensor under `key`: only the bytes its view reaches, kept as a view (a
    /// stride-0 view of 4 bytes costs 4 bytes). `None` if there is no such key.
    pub fn load(&self, key: &str) -> Option<Result<Tensor>> {
        let t = self.tensors.get(key)?;
        Some(t.load(&self.file, &self.name, key))
    }

    /// Reads every tensor, each storage once: [`read_checkpoint`]'s result.
    pub fn load_all(self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            format: self.format,
            tensors: load_all(&self.file, &self.name, &self.tensors)?,
            metadata: self.metadata,
        })
    }

    /// The file's name as errors give it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Reads a `.safetensors` file or a `torch.save` file (`.pt`, `.pth`, `.bin`): a
/// state_dict, or a dict holding one under `model` or `state_dict` (nanoGPT's
/// `ckpt.pt`). torch.compile's `_orig_mod.` is removed from every key. The header is
/// read and checked first ([`CheckpointFile::open`]); then every storage once.
pub fn read_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint> {
    CheckpointFile::open(path)?.load_all()
}

/// [`read_checkpoint`] on a file's bytes already in memory; `name` is used in errors.
pub fn read_checkpoint_bytes(name: &str, bytes: &[u8]) -> Result<Checkpoint> {
    let head = &bytes[..bytes.len().min(16)];
    let reader = std::io::Cursor::new(bytes);
    let (format, stored, metadata) = read_header(name, head, bytes, reader, bytes.len() as u64)?;
    Ok(Checkpoint {
        format,
        tensors: load_all(bytes, name, &stored)?,
        metadata,
    })
}

/// What [`read_header`] finds: the format, the tensors by stripped key, the metadata.
type Described = (
    Format,
    BTreeMap<String, StoredTensor>,
    BTreeMap<String, String>,
);

/// The format told by `head` (the first 16 bytes), then that format's header, read
/// through `src` (positional) or `reader` (the zip's, sequential); `len` is the file's.
fn read_header(
    name: &str,
    head: &[u8],
    src: &(impl ReadAt + ?Sized),
    reader: impl Read + Seek,
    len: u64,
) -> Result<Described> {
    match sniff(head, len) {
        Some(Format::Safetensors) => {
            let (tensors, metadata) = read_safetensors_header(name, src, len)?;
            Ok((Format::Safetensors, strip_keys(name, tensors)?, metadata))
        }
        Some(Format::TorchZip) => {
            let tensors = read_torch_header(name, reader, len)?;
            Ok((
                Format::TorchZip,
                strip_keys(name, tensors)?,
                BTreeMap::new(),
            ))
        }
        Some(Format::Gguf) => Err(Error::malformed(
            name,
            "a GGUF file, a whole model rather than a state_dict (attn inspect and attn \
             generate read it; attn convert --from gguf writes transformers' tensors)",
        )),
        None if is_legacy_torch(head) => Err(Error::malformed(
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

/// The format of the file at `path` by its first bytes (`None`: none the crate reads),
/// without reading further: the one place a file's kind is told, for every reader and
/// command.
pub fn sniff_file(path: &Path) -> Result<Option<Format>> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = Vec::with_capacity(16);
    file.take(16).read_to_end(&mut head).map_err(io)?;
    Ok(sniff(&head, len))
}

/// The format by its signature, safetensors first: its first byte is the low byte of
/// the header length, which may be anything (0x80 for a 384-byte header, so a test of
/// the first byte alone takes 1 valid file in 32 for a pickle).
fn sniff(bytes: &[u8], len: u64) -> Option<Format> {
    if bytes.starts_with(b"GGUF") {
        Some(Format::Gguf)
    } else if is_safetensors(bytes, len) {
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
/// the file of `len` bytes.
fn is_safetensors(bytes: &[u8], len: u64) -> bool {
    let Some(n) = bytes.get(..8) else {
        return false;
    };
    let n = u64::from_le_bytes(n.try_into().unwrap_or_default());
    bytes.get(8) == Some(&b'{') && n.checked_add(8).is_some_and(|end| end <= len)
}

/// The legacy `torch.save` format (PyTorch < 1.6) opens with a protocol-2 pickle of its
/// magic number `0x1950a86a20f9469cfc6c`: `PROTO 2`, then `LONG1` of 10 bytes.
fn is_legacy_torch(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x80\x02\x8a\x0a")
}

/// Removes torch.compile's `_orig_mod.` from every key; two keys that become one are an
/// error rather than a silent choice.
fn strip_keys<T>(name: &str, tensors: BTreeMap<String, T>) -> Result<BTreeMap<String, T>> {
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
