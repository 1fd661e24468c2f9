//! Writing a safetensors file one tensor at a time, so that a file bigger than memory
//! can be written while holding one tensor: the header (names, dtypes, shapes, offsets)
//! is laid out first from a plan, then each tensor's bytes go to their offset, in any
//! order, and the file is published atomically ([`crate::io::atomic`]) once every
//! planned tensor is there.
//!
//! The layout is the `safetensors` crate's own (`serialize`): tensors sorted by dtype
//! alignment, largest first, then by name; the header JSON padded with spaces to a
//! multiple of 8 bytes; only the metadata's keys are in a fixed (sorted) order. The same
//! tensors give the same bytes, whichever order they are put in.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ::safetensors::tensor::{Dtype, Metadata, TensorInfo};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::io::atomic::{write_file_with, Overwrite};
use crate::io::materialise::{check_fits_on_disk, for_each_chunk, CHUNK_BYTES};

/// A tensor the file will hold: its name, dtype and shape.
pub type Planned = (String, Kind, Vec<i64>);

/// Writes the tensors of `plan` and `metadata` to `path` as safetensors: `fill` puts
/// each planned tensor, once, through the [`TensorSink`] it is given. The file is
/// published only if `fill` succeeds and every tensor was put.
pub fn write_safetensors_streamed(
    path: &Path,
    plan: &[Planned],
    metadata: &BTreeMap<String, String>,
    overwrite: Overwrite,
    fill: impl FnOnce(&mut TensorSink) -> Result<()>,
) -> Result<()> {
    let name = path.display().to_string();
    let layout = Layout::new(&name, plan, metadata)?;
    check_fits_on_disk(path, layout.file_bytes())?;
    write_file_with(path, overwrite, |file| {
        let mut sink = TensorSink {
            file,
            layout: &layout,
            written: vec![false; layout.infos.len()],
            name: &name,
        };
        let done = sink
            .begin()
            .and_then(|()| fill(&mut sink))
            .and_then(|()| sink.finish());
        done.map_err(std::io::Error::other)
    })
}

/// Where each planned tensor goes: the header's bytes and every tensor's offsets.
struct Layout {
    header: Vec<u8>,
    infos: Vec<(String, TensorInfo)>,
    index: HashMap<String, usize>,
}

impl Layout {
    fn new(name: &str, plan: &[Planned], metadata: &BTreeMap<String, String>) -> Result<Self> {
        let mut planned = plan
            .iter()
            .map(|(key, kind, shape)| {
                let dtype = dtype_of(*kind).ok_or_else(|| {
                    Error::malformed(
                        name,
                        format!("tensor {key}: dtype {kind:?} cannot be written to safetensors"),
                    )
                })?;
                let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
                Ok((key.clone(), dtype, shape))
            })
            .collect::<Result<Vec<(String, _, Vec<usize>)>>>()?;
        planned.sort_by(|(ln, ld, _), (rn, rd, _)| rd.cmp(ld).then(ln.cmp(rn)));
        let mut offset = 0usize;
        let mut infos = Vec::with_capacity(planned.len());
        for (key, dtype, shape) in planned {
            // Checked: a stride-0 view may describe more bytes than any file can hold.
            let end = shape
                .iter()
                .try_fold(dtype.bitsize() / 8, |n, &d| n.checked_mul(d))
                .and_then(|bytes| offset.checked_add(bytes))
                .ok_or_else(|| {
                    Error::malformed(
                        name,
                        format!("tensor {key}: shape {shape:?} is too large to write"),
                    )
                })?;
            let data_offsets = (offset, end);
            offset = end;
            infos.push((
                key,
                TensorInfo {
                    dtype,
                    shape,
                    data_offsets,
                },
            ));
        }
        let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
        Metadata::new((!meta.is_empty()).then_some(meta), infos.clone())
            .map_err(|e| Error::malformed(name, format!("cannot lay out the tensors: {e}")))?;
        let mut json = header_json(metadata, &infos)
            .map_err(|e| Error::malformed(name, format!("cannot write the header: {e}")))?
            .into_bytes();
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json);
        let index = infos
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        Ok(Layout {
            header: bytes,
            infos,
            index,
        })
    }
}

/// The header's JSON as the `safetensors` crate writes it (`__metadata__` first, then
/// the tensors in the order of their data), except that the metadata's keys are sorted:
/// the crate's come in a `HashMap`'s random order, so the same tensors could give
/// different bytes from one run to the next.
fn header_json(
    metadata: &BTreeMap<String, String>,
    infos: &[(String, TensorInfo)],
) -> serde_json::Result<String> {
    let mut parts = Vec::with_capacity(infos.len() + 1);
    if !metadata.is_empty() {
        parts.push(format!(
            "\"__metadata__\":{}",
            serde_json::to_string(metadata)?
        ));
    }
    for (key, info) in infos {
        parts.push(format!(
            "{}:{}",
            serde_json::to_string(key)?,
            serde_json::to_string(info)?
        ));
    }
    Ok(format!("{{{}}}", parts.join(",")))
}

impl Layout {
    /// The size of the whole file: header and every tensor's bytes.
    fn file_bytes(&self) -> u64 {
        let data = self.infos.last().map_or(0, |(_, i)| i.data_offsets.1);
        self.header.len() as u64 + data as u64
    }
}

/// Where [`write_safetensors_streamed`]'s `fill` puts the planned tensors.
pub struct TensorSink<'a> {
    file: &'a mut File,
    layout: &'a Layout,
    written: Vec<bool>,
    name: &'a str,
}

impl TensorSink<'_> {
    /// Writes `t` as the planned tensor `key`: its dtype and shape must be the plan's.
    /// A view is made contiguous a piece at a time (16 MiB at most).
    pub fn put(&mut self, key: &str, t: &Tensor) -> Result<()> {
        let err = |reason: String| Error::malformed(self.name, format!("tensor {key}: {reason}"));
        let &i = self
            .layout
            .index
            .get(key)
            .ok_or_else(|| err("not in the planned tensors".into()))?;
        let (_, info) = &self.layout.infos[i];
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        if dtype_of(t.kind()) != Some(info.dtype) || shape != info.shape {
            return Err(err(format!(
                "is {:?} {:?}, the plan said {:?} {:?}",
                t.kind(),
                shape,
                info.dtype,
                info.shape
            )));
        }
        if std::mem::replace(&mut self.written[i], true) {
            return Err(err("put twice".into()));
        }
        let (begin, end) = info.data_offsets;
        if end == begin {
            return Ok(());
        }
        // A view is written in pieces (a stride-0 view of 4 bytes may stand for
        // gigabytes): memory holds one piece, never the whole tensor.
        let mut at = (self.layout.header.len() + begin) as u64;
        let (file, name) = (&mut *self.file, self.name);
        for_each_chunk(&t.f_detach()?, CHUNK_BYTES, &mut |piece| {
            let len = piece.numel() * piece.kind().elt_size_in_bytes();
            // SAFETY: `piece` is contiguous on the CPU, so its `len` bytes of elements
            // start at its data pointer; it outlives `data`.
            let data = unsafe { std::slice::from_raw_parts(piece.data_ptr() as *const u8, len) };
            file.write_all_at(data, at).map_err(|source| Error::Io {
                path: name.to_string(),
                source,
            })?;
            at += len as u64;
            Ok(())
        })
    }

    fn begin(&mut self) -> Result<()> {
        self.file
            .write_all_at(&self.layout.header, 0)
            .map_err(|source| Error::Io {
                path: self.name.to_string(),
                source,
            })
    }

    /// Every planned tensor must have been put: a hole would be a corrupt file.
    fn finish(&self) -> Result<()> {
        match self.written.iter().position(|w| !w) {
            Some(i) => Err(Error::invalid(
                "tensors",
                format!("{} was planned but never written", self.layout.infos[i].0),
            )),
            None => Ok(()),
        }
    }
}

/// The safetensors dtype of a tch kind (`None` for kinds safetensors has no name for).
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
