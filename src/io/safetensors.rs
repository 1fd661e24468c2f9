//! safetensors files <-> tch tensors, with the header's `__metadata__`.
//!
//! Reading goes through the `safetensors` crate, which checks the header (size, JSON,
//! dtypes, offsets inside the file, no overlaps) before any tensor is built, so a
//! corrupt or hostile file is an error naming the file, never a crash or a huge
//! allocation. Writing is atomic ([`crate::io::atomic`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ::safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::io::atomic::{write_file, Overwrite};

/// The tensors of a safetensors file, by name (sorted), and its metadata.
#[derive(Debug, Default)]
pub struct Safetensors {
    /// The tensors, on the CPU, by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// The header's `__metadata__` (empty when it has none).
    pub metadata: BTreeMap<String, String>,
}

/// Reads a whole safetensors file onto the CPU.
pub fn read_safetensors(path: &Path) -> Result<Safetensors> {
    let name = path.display().to_string();
    let bytes = crate::io::read_regular(path)?;
    parse_safetensors(&name, &bytes)
}

/// [`read_safetensors`] on bytes already read; `name` is for errors.
pub(crate) fn parse_safetensors(name: &str, bytes: &[u8]) -> Result<Safetensors> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::malformed(name, format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::malformed(name, format!("not a valid safetensors file: {e}")))?;
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    for (tname, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            Error::malformed(
                name,
                format!("tensor {tname}: dtype {:?} is not supported", view.dtype()),
            )
        })?;
        super::torch_file::check_bools(kind, view.data())
            .map_err(|e| Error::malformed(name, format!("tensor {tname}: {e}")))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| Error::malformed(name, format!("tensor {tname}: {e}")))?;
        tensors.insert(tname, t);
    }
    Ok(Safetensors { tensors, metadata })
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
    let bytes = serialize(path, tensors, metadata)?;
    write_file(path, &bytes, overwrite.into())
}

fn serialize<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let views = tensors
        .into_iter()
        .map(|(n, t)| {
            Ok((
                n.to_string(),
                TensorBytes::new(t)
                    .map_err(|e| Error::malformed(&name, format!("tensor {n}: {e}")))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    ::safetensors::tensor::serialize(views, (!meta.is_empty()).then_some(meta))
        .map_err(|e| Error::malformed(&name, format!("cannot serialize: {e}")))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
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

fn dtype_of(kind: Kind) -> Option<Dtype> {
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

/// A tensor's bytes on the CPU, in the form `safetensors` serialises.
struct TensorBytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl TensorBytes {
    fn new(t: &Tensor) -> std::result::Result<Self, String> {
        let kind = t.kind();
        let dtype = dtype_of(kind)
            .ok_or_else(|| format!("dtype {kind:?} cannot be written to safetensors"))?;
        let t = t
            .detach()
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| e.to_string())?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * kind.elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel)
            .map_err(|e| e.to_string())?;
        let shape = t.size().iter().map(|&d| d as usize).collect();
        Ok(Self { dtype, shape, data })
    }
}

impl View for TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}
