//! safetensors files <-> tch tensors, with the header's `__metadata__`.
//!
//! Reading checks the header (its length against the file's, then with the `safetensors`
//! crate's validation: JSON, dtypes, offsets inside the file, no overlaps) before any
//! tensor is read, so a corrupt or hostile file is an error naming the file after 8 + N
//! bytes, never a crash, a huge allocation or a read of the whole file. Writing is atomic
//! ([`crate::io::atomic`]).

mod writer;

use std::collections::BTreeMap;
use std::path::Path;

use ::safetensors::tensor::{Dtype, Metadata};
use serde::Deserialize;
use tch::{Kind, Tensor};

pub use self::writer::{write_safetensors_streamed, Planned, TensorSink};
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

/// The header's JSON, checked (its length against the file's `len` and the 100 MB cap,
/// then the `safetensors` crate's validation, then the data's length against the
/// file's), and where the data starts.
fn read_json(name: &str, src: &(impl ReadAt + ?Sized), len: u64) -> Result<(Metadata, u64)> {
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
    let raw: serde_json::Value = serde_json::from_slice(&json).map_err(|e| err(e.to_string()))?;
    check_shapes(&raw).map_err(err)?;
    let header: Metadata = serde_json::from_value(raw).map_err(|e| err(e.to_string()))?;
    let data_start = 8 + n;
    let data = header.data_len() as u64;
    if data_start + data != len {
        return Err(err(format!(
            "the header describes {data} bytes of data, the file holds {}",
            len - data_start
        )));
    }
    Ok((header, data_start))
}

/// Reads the [`Header`] of the safetensors file in `src`, `len` bytes long.
pub(crate) fn read_header(name: &str, src: &(impl ReadAt + ?Sized), len: u64) -> Result<Header> {
    let (header, data_start) = read_json(name, src, len)?;
    let mut tensors = BTreeMap::new();
    for (tname, info) in header.tensors() {
        let kind = kind_of(info.dtype).ok_or_else(|| {
            Error::malformed(
                name,
                format!("tensor {tname}: dtype {:?} is not supported", info.dtype),
            )
        })?;
        // Within i64: check_shapes has seen every one.
        let shape = info.shape.iter().map(|&d| d as i64).collect();
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

/// The `__metadata__` of the safetensors file at `path` (regular files only, never
/// opened otherwise: a FIFO would block), from its checked header alone, whatever its
/// tensors' dtypes.
pub(crate) fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let (file, len) = crate::io::regular::open_regular(path)?;
    let (header, _) = read_json(&path.display().to_string(), &file, len)?;
    Ok(header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Every tensor's shape as libtorch needs it, named, before the `safetensors` crate's
/// validation (whose overflow error names no tensor): each size a non-negative integer,
/// and the product of the sizes (counting 0 as 1, as libtorch's strides do) and its
/// bytes within `i64`. A shape such as `[2^63, 0]` holds no bytes, so the format's own
/// checks pass it, and libtorch would then see a negative dimension. Entries of another
/// form are left to the crate.
fn check_shapes(raw: &serde_json::Value) -> std::result::Result<(), String> {
    let Some(entries) = raw.as_object() else {
        return Ok(());
    };
    for (tname, entry) in entries.iter().filter(|(k, _)| *k != "__metadata__") {
        let Some(shape) = entry.get("shape").and_then(|s| s.as_array()) else {
            continue;
        };
        let shown = entry["shape"].to_string();
        let too_large = || {
            format!("tensor {tname}: shape {shown} is too large (sizes must fit in 64-bit signed integers)")
        };
        let bytes = entry
            .get("dtype")
            .and_then(|d| Dtype::deserialize(d).ok())
            .and_then(kind_of)
            .map_or(8, |k| k.elt_size_in_bytes() as i64);
        let mut extent: i64 = 1;
        for d in shape {
            let d = d.as_u64().ok_or_else(|| {
                format!("tensor {tname}: shape {shown}: sizes must be non-negative integers")
            })?;
            let d = i64::try_from(d).map_err(|_| too_large())?;
            extent = extent.checked_mul(d.max(1)).ok_or_else(too_large)?;
        }
        extent.checked_mul(bytes).ok_or_else(too_large)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::read_header;

    /// A header-only file whose one tensor, `x`, has `shape` and no bytes.
    fn file(shape: &str) -> Vec<u8> {
        let json =
            format!(r#"{{"x": {{"dtype": "F32", "shape": {shape}, "data_offsets": [0, 0]}}}}"#);
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json.as_bytes());
        bytes
    }

    #[test]
    fn shapes_that_overflow_or_go_negative_are_refused() {
        let read = |shape: &str| {
            let bytes = file(shape);
            read_header("f", &bytes[..], bytes.len() as u64)
        };
        assert!(read("[2, 3]").is_err()); // 24 bytes declared, none there
        assert!(read("[0, 5]").is_ok());
        for bad in [
            "[9223372036854775808, 0]",
            "[4294967296, 4294967296, 0]",
            "[2305843009213693952, 4]",
            "[-1, 4]",
        ] {
            let err = read(bad).unwrap_err().to_string();
            assert!(err.contains('x') && err.starts_with("f: "), "{bad}: {err}");
        }
    }
}
