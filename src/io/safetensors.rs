//! safetensors files <-> tch tensors, with the header's `__metadata__`.
//!
//! Reading checks the header (its length against the file's, then with the `safetensors`
//! crate's validation: JSON, dtypes, offsets inside the file, no overlaps) before any
//! tensor is read, so a corrupt or hostile file is an error naming the file after 8 + N
//! bytes, never a crash, a huge allocation or a read of the whole file. Writing is atomic
//! ([`crate::io::atomic`]).

use std::collections::BTreeMap;
use std::path::Path;

use ::safetensors::tensor::{Dtype, Metadata};
use tch::{Kind, Tensor};

use super::safetensors_writer::{write_safetensors_streamed, Planned};
use crate::error::{Error, Result};
use crate::io::atomic::Overwrite;
use crate::io::stored::{load_all, ReadAt, StoredTensor};

/// The `safetensors` crate's cap on a header (`MAX_HEADER_SIZE`), which it checks
/// before reading one; Python's `safetensors` has the same.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The tensors of a safetensors file, by name (sorted), and its metadata.
#[derive(Debug, Default)]
pub struct Safetensors {
    /// The tensors, on the CPU, by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The header's `__metadata__` (empty when it has none).
    pub metadata: BTreeMap<String, String>,
}

/// Reads a whole safetensors file onto the CPU. The header is checked against the
/// file's length before any tensor is read.
pub fn read_safetensors(path: &Path) -> Result<Safetensors> {
    let name = path.display().to_string();
    let (file, len) = crate::io::regular::open_regular(path)?;
    let (stored, metadata) = read_header(&name, &file, len)?;
    let tensors = load_all(&file, &name, &stored)?;
    Ok(Safetensors { tensors, metadata })
}

/// The tensors a safetensors file's header describes, and its `__metadata__`, read
/// from the header alone: the 8-byte length, then that much JSON, both checked against
/// the file's length `len` (and the `safetensors` crate's 100 MB cap) before reading,
/// then offsets, dtypes and shapes checked by the crate's own validation.
pub(crate) type Header = (BTreeMap<String, StoredTensor>, BTreeMap<String, String>);

/// Reads the [`Header`] of the safetensors file in `src`, `len` bytes long.
pub(crate) fn read_header(name: &str, src: &(impl ReadAt + ?Sized), len: u64) -> Result<Header> {
    let err =
        |reason: String| Error::malformed(name, format!("not a valid safetensors file: {reason}"));
    let mut n = [0u8; 8];
    src.read_exact_at(&mut n, 0)
        .map_err(|_| err(format!("{len} bytes, too short for a header")))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES {
        return Err(err(format!(
            "a header of {n} bytes, more than the {MAX_HEADER_BYTES} the format allows"
        )));
    }
    if n + 8 > len {
        return Err(err(format!(
            "a header of {n} bytes in a file of {len} bytes"
        )));
    }
    let mut json = vec![0u8; n as usize];
    src.read_exact_at(&mut json, 8)
        .map_err(|e| err(format!("cannot read the header: {e}")))?;
    let header: Metadata = serde_json::from_slice(&json).map_err(|e| err(e.to_string()))?;
    let data_start = 8 + n;
    let data = header.data_len() as u64;
    if data_start + data != len {
        return Err(err(format!(
            "the header describes {data} bytes of data, the file holds {}",
            len - data_start
        )));
    }
    let mut tensors = BTreeMap::new();
    for (tname, info) in header.tensors() {
        let kind = kind_of(info.dtype).ok_or_else(|| {
            Error::malformed(
                name,
                format!("tensor {tname}: dtype {:?} is not supported", info.dtype),
            )
        })?;
        let shape = info
            .shape
            .iter()
            .map(|&d| i64::try_from(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| err(format!("tensor {tname}: shape {:?}", info.shape)))?;
        let (begin, end) = info.data_offsets;
        let stored =
            StoredTensor::contiguous(kind, shape, data_start + begin as u64, (end - begin) as u64);
        tensors.insert(tname, stored);
    }
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((tensors, metadata))
}

/// Writes `tensors` (moved to the CPU, made contiguous) and `metadata` to `path`,
/// replacing any file there, atomically ([`crate::io::atomic`]).
pub fn write_safetensors<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_safetensors_new(path, tensors, metadata, Overwrite::Replace)
}

/// [`write_safetensors`], choosing what happens to an existing `path`: with
/// [`Overwrite::Refuse`] (or `false`) it is left alone and the call fails with
/// [`Error::Exists`]; the check and the publishing are one atomic step, so a file that
/// appears meanwhile is not clobbered either.
pub fn write_safetensors_new<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: &BTreeMap<String, String>,
    overwrite: impl Into<Overwrite>,
) -> Result<()> {
    let tensors: Vec<(&str, &Tensor)> = tensors.into_iter().collect();
    let plan: Vec<Planned> = tensors
        .iter()
        .map(|(k, t)| (k.to_string(), t.kind(), t.size()))
        .collect();
    write_safetensors_streamed(path, &plan, metadata, overwrite.into(), |sink| {
        tensors.iter().try_for_each(|(k, t)| sink.put(k, t))
    })
}

pub(crate) fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

pub(crate) fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}
