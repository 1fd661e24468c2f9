//! GGUF files (llama.cpp's model format, versions 2 and 3): the header, the metadata
//! key/value pairs (arrays included), the tensor infos (`gguf/types.rs`: ggml's types
//! and block sizes), and each tensor dequantised to float32 (`gguf/dequant.rs`).
//!
//! The layout follows ggml's `docs/gguf.md` and gguf-py's `GGUFReader`: magic `GGUF`,
//! version, tensor and key/value counts, the pairs, the tensor infos, padding to
//! `general.alignment` (default 32), then the tensor data. Every count, length, offset
//! and size is checked against the bytes really in the file before anything is
//! allocated or read, and every tensor's element count against its type's block size,
//! so a truncated or hostile file is a [`Error::Malformed`] naming the file, never a
//! crash or a huge allocation.
//!
//! Shapes: GGUF lists dimensions fastest first (ggml's `ne`); [`GgufTensorInfo::shape`]
//! gives them in PyTorch's order (slowest first), as gguf-py and transformers do.

mod dequant;
mod half;
mod iquants;
mod kquants;
mod legacy;
mod types;
mod value;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use tch::Tensor;

use super::mapped::FileBytes;
use crate::error::{Error, Result};

pub use types::GgmlType;
pub use value::GgufValue;

/// The magic number every GGUF file starts with (`GGUF` in ASCII).
const MAGIC: &[u8; 4] = b"GGUF";
/// `general.alignment` when the file does not set it.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// How deeply arrays may nest: ggml writes one level; a few allow for odd writers while
/// a hostile file cannot exhaust the stack.
const MAX_ARRAY_DEPTH: usize = 4;

/// Where one tensor lives in the file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// The tensor's GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The dimensions in PyTorch's order (slowest first): GGUF's `ne` reversed.
    pub shape: Vec<i64>,
    /// How its elements are stored.
    pub ggml_type: GgmlType,
    /// Its offset from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Its size in bytes, from the element count and the type's block size.
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    /// The number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// A whole GGUF file, mapped (or in memory) and checked.
pub struct Gguf {
    /// The file's name, for errors.
    pub source_name: String,
    /// The format version (2 or 3).
    pub version: u32,
    /// The metadata key/value pairs, by key.
    pub metadata: BTreeMap<String, GgufValue>,
    /// The tensor infos, in the file's order.
    pub tensors: Vec<GgufTensorInfo>,
    /// `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub alignment: u64,
    /// Where the data section starts in `bytes`.
    data_start: usize,
    /// The whole file, shared with the layers that run on its blocks in place.
    bytes: Arc<FileBytes>,
}

impl std::fmt::Debug for Gguf {
    // Without the file's bytes, which would fill a terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("source_name", &self.source_name)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish_non_exhaustive()
    }
}

impl Gguf {
    /// Where the data section starts in the file (tensor offsets count from here).
    pub fn data_offset(&self) -> u64 {
        self.data_start as u64
    }

    /// Maps and checks the GGUF file at `path` (a regular file): nothing is read but
    /// the header and the tables until a tensor is asked for.
    pub fn read(path: &Path) -> Result<Gguf> {
        let bytes = FileBytes::map(path)?;
        Gguf::parse(path.display().to_string(), bytes)
    }

    /// [`Gguf::read`] on bytes already in memory; `source_name` is for errors.
    pub fn from_bytes(source_name: impl Into<String>, bytes: Vec<u8>) -> Result<Gguf> {
        Gguf::parse(source_name.into(), FileBytes::Owned(bytes))
    }

    fn parse(source_name: String, bytes: FileBytes) -> Result<Gguf> {
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
            name: &source_name,
        };
        let (version, n_tensors, n_kv) = read_header(&mut r)?;
        let metadata = read_metadata(&mut r, n_kv)?;
        let alignment = alignment_of(&metadata).map_err(|e| r.err(e))?;
        let infos = read_tensor_infos(&mut r, n_tensors)?;
        let data_start = align(r.pos as u64, alignment)
            .filter(|&s| s <= bytes.len() as u64)
            .ok_or_else(|| r.err("the data section starts past the end of the file".into()))?;
        let tensors = check_tensors(infos, alignment, bytes.len() as u64 - data_start)
            .map_err(|e| r.err(e))?;
        Ok(Gguf {
            source_name,
            version,
            metadata,
            tensors,
            alignment,
            data_start: data_start as usize,
            bytes: Arc::new(bytes),
        })
    }

    /// The metadata value under `key`, or [`Error::Malformed`] naming it.
    pub fn get(&self, key: &str) -> Result<&GgufValue> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::malformed(&self.source_name, format!("no metadata key {key}")))
    }

    /// The unsigned integer under `key`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.get(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong_type(key, "an unsigned integer", v))
    }

    /// The float under `key` (`FLOAT32` widened exactly, or `FLOAT64`).
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| self.wrong_type(key, "a float", v))
    }

    /// The string under `key`.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.get(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "a string", v))
    }

    /// The array of strings under `key`.
    pub fn get_strings(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.get(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "an array", v))?;
        items
            .iter()
            .map(|s| s.as_str().ok_or_else(|| self.wrong_type(key, "strings", s)))
            .collect()
    }

    /// The array of integers under `key`.
    pub fn get_i64s(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.get(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "an array", v))?;
        items
            .iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| self.wrong_type(key, "integers", x))
            })
            .collect()
    }

    fn wrong_type(&self, key: &str, expected: &str, got: &GgufValue) -> Error {
        let got = format!("{got:?}");
        let got: String = got.chars().take(40).collect();
        Error::malformed(
            &self.source_name,
            format!("metadata {key}: expected {expected}, got {got}"),
        )
    }

    /// The info of the tensor named `name`.
    pub fn tensor_info(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::malformed(&self.source_name, format!("no tensor {name}")))
    }

    /// The stored bytes of tensor `info` (checked to lie inside the file when read).
    pub fn raw_data(&self, info: &GgufTensorInfo) -> &[u8] {
        &self.bytes[self.raw_range(info)]
    }

    /// Where tensor `info`'s bytes lie in [`Gguf::file_bytes`].
    pub fn raw_range(&self, info: &GgufTensorInfo) -> Range<usize> {
        let start = self.data_start + info.offset as usize;
        start..start + info.n_bytes as usize
    }

    /// Drops tensor `info`'s pages from resident memory once it has been read
    /// ([`FileBytes::release`]: a later read still sees the same bytes).
    pub fn release(&self, info: &GgufTensorInfo) {
        self.bytes.release(self.raw_range(info));
    }

    /// The whole file's bytes, shared: a layer that runs on a tensor's blocks in place
    /// keeps them (and the mapping) alive after this reader is dropped.
    pub fn file_bytes(&self) -> Arc<FileBytes> {
        Arc::clone(&self.bytes)
    }

    /// Rows `rows` (along the slowest dimension) of tensor `info`, dequantised to
    /// float32, on the CPU, shaped `[rows.len(), ...]`: a large tensor a slice at a time,
    /// so that its temporaries stay small.
    pub fn tensor_rows(&self, info: &GgufTensorInfo, rows: Range<i64>) -> Result<Tensor> {
        let n = info.shape.first().copied().unwrap_or(1);
        if rows.start < 0 || rows.start > rows.end || rows.end > n {
            return Err(Error::invalid(
                "rows",
                format!(
                    "expected a range inside 0..{n} of {}, got {rows:?}",
                    info.name
                ),
            ));
        }
        // Every row along the slowest dimension is whole rows of whole blocks.
        let row_bytes = info.n_bytes / n.max(1) as u64;
        let mut part = info.clone();
        if let Some(first) = part.shape.first_mut() {
            *first = rows.end - rows.start;
        }
        part.n_bytes = row_bytes * (rows.end - rows.start) as u64;
        let start = self.raw_range(info).start + (row_bytes * rows.start as u64) as usize;
        let bytes = &self.bytes[start..start + part.n_bytes as usize];
        let values = dequant::tensor(&self.source_name, &part, bytes)?;
        Ok(values.f_reshape(&part.shape)?)
    }

    /// The tensor named `name`, dequantised to float32, on the CPU, shaped as PyTorch
    /// (slowest dimension first).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let info = self.tensor_info(name)?;
        let values = dequant::tensor(&self.source_name, info, self.raw_data(info))?;
        Ok(values.f_reshape(&info.shape)?)
    }
}

/// A cursor over the file's bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    name: &'a str,
}

impl Reader<'_> {
    fn err(&self, reason: String) -> Error {
        Error::malformed(self.name, reason)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        if n > self.remaining() as u64 {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes at offset {}, the file has {} left",
                self.pos,
                self.remaining()
            )));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let at = self.pos;
        let bytes = self.take(len, what)?.to_vec();
        String::from_utf8(bytes)
            .map_err(|_| self.err(format!("{what} at offset {at} is not UTF-8")))
    }
}

/// Magic, version, tensor count, key/value count.
fn read_header(r: &mut Reader) -> Result<(u32, u64, u64)> {
    let magic = r.array::<4>("the magic number")?;
    if &magic != MAGIC {
        return Err(r.err(format!(
            "not a GGUF file: expected the magic bytes \"GGUF\", got {}",
            magic.escape_ascii()
        )));
    }
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(r.err(format!(
            "GGUF version {version} is not supported (expected 2 or 3)"
        )));
    }
    Ok((
        version,
        r.u64("the tensor count")?,
        r.u64("the metadata count")?,
    ))
}

fn read_metadata(r: &mut Reader, n_kv: u64) -> Result<BTreeMap<String, GgufValue>> {
    // Each pair takes at least 8 (key length) + 4 (type) + 1 bytes.
    if n_kv > r.remaining() as u64 / 13 {
        return Err(r.err(format!(
            "the header declares {n_kv} metadata pairs, more than the file can hold"
        )));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = r.string("a metadata key")?;
        let ty = r.u32("a metadata type")?;
        let value = read_value(r, ty, 0).map_err(|e| with_context(e, &key))?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.err(format!("metadata key {key} appears twice")));
        }
    }
    Ok(metadata)
}

fn with_context(e: Error, key: &str) -> Error {
    match e {
        Error::Malformed {
            source_name,
            reason,
        } => Error::Malformed {
            source_name,
            reason: format!("metadata {key}: {reason}"),
        },
        e => e,
    }
}

/// The smallest encoded size of a value of type `ty`, for bounding array counts.
fn min_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

fn read_value(r: &mut Reader, ty: u32, depth: usize) -> Result<GgufValue> {
    use GgufValue as V;
    Ok(match ty {
        0 => V::U8(r.array::<1>("a u8")?[0]),
        1 => V::I8(i8::from_le_bytes(r.array("an i8")?)),
        2 => V::U16(u16::from_le_bytes(r.array("a u16")?)),
        3 => V::I16(i16::from_le_bytes(r.array("an i16")?)),
        4 => V::U32(r.u32("a u32")?),
        5 => V::I32(i32::from_le_bytes(r.array("an i32")?)),
        6 => V::F32(f32::from_le_bytes(r.array("an f32")?)),
        7 => match r.array::<1>("a bool")?[0] {
            0 => V::Bool(false),
            1 => V::Bool(true),
            b => return Err(r.err(format!("a bool must be 0 or 1, got {b}"))),
        },
        8 => V::String(r.string("a string")?),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(r.err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
            }
            let elem = r.u32("an array's element type")?;
            let count = r.u64("an array's length")?;
            let min = min_size(elem)
                .ok_or_else(|| r.err(format!("unknown array element type {elem}")))?;
            if count > r.remaining() as u64 / min {
                return Err(r.err(format!(
                    "an array of {count} elements of type {elem} does not fit in the {} bytes left",
                    r.remaining()
                )));
            }
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_value(r, elem, depth + 1)?);
            }
            V::Array(items)
        }
        10 => V::U64(r.u64("a u64")?),
        11 => V::I64(i64::from_le_bytes(r.array("an i64")?)),
        12 => V::F64(f64::from_le_bytes(r.array("an f64")?)),
        _ => return Err(r.err(format!("unknown metadata value type {ty}"))),
    })
}

fn alignment_of(metadata: &BTreeMap<String, GgufValue>) -> std::result::Result<u64, String> {
    let Some(v) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match v.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(format!(
            "general.alignment must be a power of two, got {v:?}"
        )),
    }
}

/// `pos` rounded up to a multiple of `alignment` (a power of two), if no overflow.
fn align(pos: u64, alignment: u64) -> Option<u64> {
    Some(pos.checked_add(alignment - 1)? & !(alignment - 1))
}

/// Name, dims, type and offset of each tensor; sizes are checked by [`check_tensors`].
fn read_tensor_infos(r: &mut Reader, n_tensors: u64) -> Result<Vec<GgufTensorInfo>> {
    // Each info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    if n_tensors > r.remaining() as u64 / 24 {
        return Err(r.err(format!(
            "the header declares {n_tensors} tensors, more than the file can hold"
        )));
    }
    let mut infos = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = r.string("a tensor name")?;
        let n_dims = r.u32("a tensor's dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(r.err(format!(
                "tensor {name}: {n_dims} dimensions, at most {MAX_DIMS} allowed"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(r.u64("a tensor dimension")?);
        }
        let ty = r.u32("a tensor type")?;
        let ggml_type = GgmlType::from_id(ty)
            .ok_or_else(|| r.err(format!("tensor {name}: unknown ggml type {ty}")))?;
        let offset = r.u64("a tensor offset")?;
        let shape = shape_of(&ne).ok_or_else(|| {
            r.err(format!(
                "tensor {name}: dimensions {ne:?} overflow (or exceed i64)"
            ))
        })?;
        infos.push(GgufTensorInfo {
            name,
            shape,
            ggml_type,
            offset,
            n_bytes: 0,
        });
    }
    Ok(infos)
}

/// GGUF's `ne` (fastest first) as PyTorch's shape, if the element count fits in i64.
fn shape_of(ne: &[u64]) -> Option<Vec<i64>> {
    let numel = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    i64::try_from(numel).ok()?;
    ne.iter().rev().map(|&d| i64::try_from(d).ok()).collect()
}

/// Sizes from block sizes; offsets aligned, inside the data section, names unique.
fn check_tensors(
    mut infos: Vec<GgufTensorInfo>,
    alignment: u64,
    data_len: u64,
) -> std::result::Result<Vec<GgufTensorInfo>, String> {
    let mut seen = std::collections::HashSet::new();
    for t in &mut infos {
        if !seen.insert(t.name.clone()) {
            return Err(format!("tensor {} appears twice", t.name));
        }
        let (block, block_bytes) = t.ggml_type.block();
        // ggml stores whole blocks along the fastest dimension (the last in PyTorch's order).
        let row = t.shape.last().copied().unwrap_or(1) as u64;
        if !row.is_multiple_of(block) {
            return Err(format!(
                "tensor {}: its rows of {row} elements are not whole {:?} blocks of {block}",
                t.name, t.ggml_type
            ));
        }
        let n_blocks = t.numel() / block;
        t.n_bytes = n_blocks
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("tensor {}: its size overflows", t.name))?;
        if !t.offset.is_multiple_of(alignment) {
            return Err(format!(
                "tensor {}: offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            ));
        }
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|end| end > data_len) {
            let what = match block {
                1 => format!("{} bytes", t.n_bytes),
                _ => format!("{n_blocks} {:?} blocks ({} bytes)", t.ggml_type, t.n_bytes),
            };
            return Err(format!(
                "tensor {}: {what} at offset {} run past the end of the data section ({data_len} bytes)",
                t.name, t.offset
            ));
        }
    }
    Ok(infos)
}
