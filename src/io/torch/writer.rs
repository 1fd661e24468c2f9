//! Files `torch.load` reads, written without Python: `torch.save`'s zip archive
//! (`torch/serialization.py`, `_save`, PyTorch 2.13) for a tree of plain values and
//! tensors — a `state_dict`, an optimizer's `state_dict()`, nanoGPT's `ckpt.pt`.
//!
//! The archive is what `torch.save(obj, "NAME.pt")` writes: stored (uncompressed)
//! records under the root `NAME/`, in its order — `data.pkl`, `.format_version` (`1`),
//! `.storage_alignment` (`64`), `byteorder` (`little`), `data/0`, `data/1`, ... (one per
//! storage, numbered as the pickle first meets them), `version` (`3`) and
//! `.data/serialization_id` — every record's bytes starting at a multiple of 64, padded
//! as PyTorch pads them (an extra field `FB` of `Z`s in the local header).
//!
//! `data.pkl` is a protocol-2 pickle that only PyTorch's `weights_only` unpickler's
//! allowed globals appear in: `collections.OrderedDict`, `torch._utils.
//! _rebuild_tensor_v2` and the storage classes (`torch.FloatStorage`, ...). A tensor is
//! `_rebuild_tensor_v2(persistent_id, storage_offset, size, stride, requires_grad=False,
//! OrderedDict())` with the persistent id `('storage', torch.FloatStorage, key,
//! location, numel)`.
//!
//! One difference from `torch.save`: a tensor that is a view of a larger storage is
//! written as its own contiguous storage (PyTorch writes the whole storage it views).
//! The same tensor met twice (nanoGPT's `lm_head.weight`, tied to `transformer.wte.
//! weight`) is written once and both keys name that storage, as in PyTorch, so
//! `torch.load` gives back one tensor shared by both.

use std::collections::HashMap;
use std::io::{Seek, Write};
use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::pickle::op;
use crate::error::{Error, Result};
use crate::io::atomic::{write_file_with, Overwrite};
use crate::io::materialise::contiguous_checked;

/// A Python value `torch.save` can write and `torch.load(weights_only=True)` reads back.
#[derive(Debug)]
pub enum TorchValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float` (a double, as Python's).
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `tuple`.
    Tuple(Vec<TorchValue>),
    /// A `list`.
    List(Vec<TorchValue>),
    /// A `dict`, items in this order (Python keeps insertion order).
    Dict(Vec<(TorchValue, TorchValue)>),
    /// A `collections.OrderedDict`: what `Module.state_dict()` returns.
    OrderedDict(Vec<(TorchValue, TorchValue)>),
    /// A tensor, written from wherever it lives (CPU or CUDA, whose device the file
    /// records as PyTorch does: `torch.load` puts it back there unless `map_location`).
    Tensor(Tensor),
}

impl TorchValue {
    /// A `str`.
    pub fn str(s: impl Into<String>) -> Self {
        TorchValue::Str(s.into())
    }

    /// A `dict` with `str` keys, in this order.
    pub fn dict<K: Into<String>>(items: impl IntoIterator<Item = (K, TorchValue)>) -> Self {
        TorchValue::Dict(
            items
                .into_iter()
                .map(|(k, v)| (TorchValue::Str(k.into()), v))
                .collect(),
        )
    }

    /// An `OrderedDict` of tensors under `str` keys: a `state_dict`.
    pub fn state_dict<K: Into<String>>(tensors: impl IntoIterator<Item = (K, Tensor)>) -> Self {
        TorchValue::OrderedDict(
            tensors
                .into_iter()
                .map(|(k, t)| (TorchValue::Str(k.into()), TorchValue::Tensor(t)))
                .collect(),
        )
    }
}

/// `torch.save(value, path)`, written atomically ([`crate::io::atomic`]): readers see the old
/// file or the whole new one. The archive's root folder is the file's name without its
/// extension (`ckpt.pt` -> `ckpt/`), as PyTorch names it.
pub fn write_torch_save(path: &Path, value: &TorchValue, overwrite: Overwrite) -> Result<()> {
    let name = path.display().to_string();
    let mut pickler = Pickler::default();
    pickler.out.extend([op::PROTO, 2]);
    pickler.value(value, &name)?;
    pickler.out.push(op::STOP);
    let root = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    write_file_with(path, overwrite, |file| {
        write_archive(file, &root, &pickler, &name).map_err(std::io::Error::other)
    })
}

/// `pickle.dumps(value, protocol=2)` of a value without tensors (a plain pickle, such as
/// nanoGPT's `meta.pkl`); a tensor in it is an error, there being no archive to hold its
/// storage.
pub fn to_pickle(value: &TorchValue) -> Result<Vec<u8>> {
    let mut pickler = Pickler::default();
    pickler.out.extend([op::PROTO, 2]);
    pickler.value(value, "pickle")?;
    if !pickler.storages.is_empty() {
        return Err(Error::invalid(
            "value",
            "holds a tensor, which a plain pickle cannot; write it with write_torch_save",
        ));
    }
    pickler.out.push(op::STOP);
    Ok(pickler.out)
}

/// The pickle being written and the storages it names, in key order.
#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
    storages: Vec<Tensor>,
    /// The same tensor (data pointer, dtype, shape, strides) is one storage.
    seen: HashMap<(usize, String, Vec<i64>, Vec<i64>), usize>,
}

impl Pickler {
    /// Appends `v`. Nothing here recurses deeper than the value tree the caller built.
    fn value(&mut self, v: &TorchValue, name: &str) -> Result<()> {
        match v {
            TorchValue::None => self.out.push(op::NONE),
            TorchValue::Bool(b) => self.out.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
            TorchValue::Int(i) => self.int(*i),
            TorchValue::Float(f) => {
                self.out.push(op::BINFLOAT);
                self.out.extend(f.to_be_bytes());
            }
            TorchValue::Str(s) => self.str(s),
            TorchValue::Tuple(items) => self.tuple(items, name)?,
            TorchValue::List(items) => {
                self.out.extend([op::EMPTY_LIST, op::MARK]);
                for item in items {
                    self.value(item, name)?;
                }
                self.out.push(op::APPENDS);
            }
            TorchValue::Dict(items) => {
                self.out.push(op::EMPTY_DICT);
                self.items(items, name)?;
            }
            TorchValue::OrderedDict(items) => {
                self.ordered_dict();
                self.items(items, name)?;
            }
            TorchValue::Tensor(t) => self.tensor(t, name)?,
        }
        Ok(())
    }

    /// The smallest of pickle's int encodings that holds `i`, as `pickle.py` picks it.
    fn int(&mut self, i: i64) {
        match i {
            0..=0xff => self.out.extend([op::BININT1, i as u8]),
            0x100..=0xffff => {
                self.out.push(op::BININT2);
                self.out.extend((i as u16).to_le_bytes());
            }
            _ if i32::try_from(i).is_ok() => {
                self.out.push(op::BININT);
                self.out.extend((i as i32).to_le_bytes());
            }
            _ => {
                // LONG1: little-endian two's complement, as few bytes as keep the sign.
                let bytes = i.to_le_bytes();
                let mut n = 8;
                while n > 1 && {
                    let (last, prev) = (bytes[n - 1], bytes[n - 2]);
                    (last == 0 && prev < 0x80) || (last == 0xff && prev >= 0x80)
                } {
                    n -= 1;
                }
                self.out.extend([op::LONG1, n as u8]);
                self.out.extend(&bytes[..n]);
            }
        }
    }

    fn str(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        self.out.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn tuple(&mut self, items: &[TorchValue], name: &str) -> Result<()> {
        match items.len() {
            0 => self.out.push(op::EMPTY_TUPLE),
            n @ 1..=3 => {
                for item in items {
                    self.value(item, name)?;
                }
                self.out.push([op::TUPLE1, op::TUPLE2, op::TUPLE3][n - 1]);
            }
            _ => {
                self.out.push(op::MARK);
                for item in items {
                    self.value(item, name)?;
                }
                self.out.push(op::TUPLE);
            }
        }
        Ok(())
    }

    fn int_tuple(&mut self, xs: &[i64]) {
        let items: Vec<TorchValue> = xs.iter().map(|&x| TorchValue::Int(x)).collect();
        self.tuple(&items, "").expect("ints always pickle");
    }

    /// `collections.OrderedDict()`, empty, on the stack.
    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.extend([op::EMPTY_TUPLE, op::REDUCE]);
    }

    /// Sets the items of the dict on top of the stack.
    fn items(&mut self, items: &[(TorchValue, TorchValue)], name: &str) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        self.out.push(op::MARK);
        for (k, v) in items {
            self.value(k, name)?;
            self.value(v, name)?;
        }
        self.out.push(op::SETITEMS);
        Ok(())
    }

    /// `_rebuild_tensor_v2(('storage', class, key, location, numel), 0, size, stride,
    /// False, OrderedDict())`, the tensor's bytes kept for `data/{key}`.
    fn tensor(&mut self, t: &Tensor, name: &str) -> Result<()> {
        let class = storage_class(t.kind()).ok_or_else(|| {
            Error::malformed(
                name,
                format!("dtype {:?} has no torch.save storage class", t.kind()),
            )
        })?;
        let size = t.size();
        let numel = t.numel() as i64;
        let id = (
            t.data_ptr() as usize,
            class.to_string(),
            size.clone(),
            t.stride(),
        );
        let key = match self.seen.get(&id) {
            Some(&k) if numel > 0 => k,
            _ => {
                self.storages.push(t.shallow_clone());
                self.seen.insert(id, self.storages.len() - 1);
                self.storages.len() - 1
            }
        };
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.extend([op::MARK, op::MARK]);
        self.str("storage");
        self.global("torch", class);
        self.str(&key.to_string());
        self.str(&location(t.device()));
        self.int(numel);
        self.out.extend([op::TUPLE, op::BINPERSID]);
        self.int(0);
        self.int_tuple(&size);
        self.int_tuple(&contiguous_strides(&size));
        self.out.push(op::NEWFALSE);
        self.ordered_dict();
        self.out.extend([op::TUPLE, op::REDUCE]);
        Ok(())
    }
}

/// Row-major strides of `size`, as `torch.empty(size).stride()` gives them.
fn contiguous_strides(size: &[i64]) -> Vec<i64> {
    let mut strides = vec![1; size.len()];
    for i in (0..size.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * size[i + 1].max(1);
    }
    strides
}

/// `location_tag(storage)`: `cpu` or `cuda:N`.
fn location(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// The storage class `torch.save` names a dtype by (the reader's table, reversed).
fn storage_class(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Double => "DoubleStorage",
        Kind::Float => "FloatStorage",
        Kind::Half => "HalfStorage",
        Kind::BFloat16 => "BFloat16Storage",
        Kind::Int64 => "LongStorage",
        Kind::Int => "IntStorage",
        Kind::Int16 => "ShortStorage",
        Kind::Int8 => "CharStorage",
        Kind::Uint8 => "ByteStorage",
        Kind::Bool => "BoolStorage",
        Kind::ComplexFloat => "ComplexFloatStorage",
        Kind::ComplexDouble => "ComplexDoubleStorage",
        _ => return None,
    })
}

/// `_save`'s records into `file`, each 64-byte aligned (see the module docs).
fn write_archive<W: Write + Seek>(
    file: W,
    root: &str,
    pickler: &Pickler,
    name: &str,
) -> Result<()> {
    let zip_err = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(source) => Error::Io {
            path: name.to_string(),
            source,
        },
        e => Error::malformed(name, format!("writing the zip archive: {e}")),
    };
    let mut zip = zip::ZipWriter::new(QuietAfterError::new(file));
    let record =
        |zip: &mut zip::ZipWriter<QuietAfterError<W>>, record: &str, data: &[u8]| -> Result<()> {
            start_aligned(zip, &format!("{root}/{record}"), data.len() as u64).map_err(zip_err)?;
            zip.write_all(data).map_err(|source| Error::Io {
                path: name.to_string(),
                source,
            })
        };
    record(&mut zip, "data.pkl", &pickler.out)?;
    record(&mut zip, ".format_version", b"1")?;
    record(
        &mut zip,
        ".storage_alignment",
        ALIGNMENT.to_string().as_bytes(),
    )?;
    record(&mut zip, "byteorder", b"little")?;
    for (key, t) in pickler.storages.iter().enumerate() {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?;
        let t = contiguous_checked(&t, name, &format!("storage {key}"))?;
        let nbytes = t.numel() * t.kind().elt_size_in_bytes();
        let data: &[u8] = if nbytes == 0 {
            &[]
        } else {
            // SAFETY: `t` is contiguous on the CPU, so its `nbytes` bytes start at its
            // data pointer; it outlives `data`.
            unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, nbytes) }
        };
        record(&mut zip, &format!("data/{key}"), data)?;
    }
    record(&mut zip, "version", b"3\n")?;
    record(
        &mut zip,
        ".data/serialization_id",
        serialization_id().as_bytes(),
    )?;
    zip.finish().map_err(zip_err)?;
    Ok(())
}

/// The archive's sink. After its first failed write or seek (a full disk), the later
/// ones only move a position, as if they had worked: the first error is the one
/// returned, and the `ZipWriter` dropped on that error path, which finishes an
/// unfinished archive and prints to stderr when that fails, stays silent. The atomic
/// writer then removes the temporary.
struct QuietAfterError<W> {
    inner: W,
    failed: bool,
    /// Where the next byte goes, and the furthest byte so far (the end, for seeks).
    pos: u64,
    end: u64,
}

impl<W> QuietAfterError<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            failed: false,
            pos: 0,
            end: 0,
        }
    }

    fn moved_to(&mut self, pos: u64) -> u64 {
        self.pos = pos;
        self.end = self.end.max(pos);
        pos
    }
}

impl<W: Write> Write for QuietAfterError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = if self.failed {
            buf.len()
        } else {
            match self.inner.write(buf) {
                Ok(n) => n,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        };
        self.moved_to(self.pos + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}

impl<W: Seek> Seek for QuietAfterError<W> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        if !self.failed {
            return match self.inner.seek(to) {
                Ok(pos) => Ok(self.moved_to(pos)),
                Err(e) => {
                    self.failed = true;
                    Err(e)
                }
            };
        }
        let pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            SeekFrom::End(d) => self.end.saturating_add_signed(d),
        };
        Ok(self.moved_to(pos))
    }
}

/// `_get_storage_alignment()`: where every record's bytes start.
const ALIGNMENT: u64 = 64;

/// Starts a stored record whose bytes begin at a multiple of [`ALIGNMENT`]: PyTorch's
/// padding, an extra field `FB` of `Z`s in the local header only.
fn start_aligned<W: Write + Seek>(
    zip: &mut zip::ZipWriter<W>,
    record: &str,
    len: u64,
) -> zip::result::ZipResult<()> {
    let options = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(len >= u32::MAX as u64);
    let data_start = zip.start_file_with_extra_data(record, options)?;
    let pad = (ALIGNMENT - (data_start + 4) % ALIGNMENT) % ALIGNMENT;
    zip.write_all(b"FB")?;
    zip.write_all(&(pad as u16).to_le_bytes())?;
    zip.write_all(&vec![b'Z'; pad as usize])?;
    zip.end_local_start_central_extra_data()?;
    zip.end_extra_data()?;
    Ok(())
}

/// A 40-digit id, different for every file, as PyTorch writes one (it only tells
/// archives apart; nothing reads a meaning into it).
fn serialization_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut digits = String::new();
    for i in 0..3u64 {
        let mut h = state.build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        digits.push_str(&format!("{:020}", h.finish()));
    }
    digits[..40].to_string()
}

#[cfg(test)]
mod tests {
    use super::super::pickle::{unpickle, StorageRef, Value};
    use super::*;

    fn pickle_of(v: &TorchValue) -> Pickler {
        let mut p = Pickler::default();
        p.out.extend([op::PROTO, 2]);
        p.value(v, "test").unwrap();
        p.out.push(op::STOP);
        p
    }

    fn storage(pid: &Value) -> std::result::Result<Value, String> {
        let items = pid.items().unwrap();
        Ok(Value::Storage(StorageRef {
            class: match &items[1] {
                Value::Global(c) => c.to_string(),
                _ => unreachable!(),
            },
            key: items[2].as_str().unwrap().into(),
            numel: items[4].as_int().unwrap() as u64,
        }))
    }

    #[test]
    fn ints_take_every_width_and_read_back() {
        for i in [
            0,
            255,
            256,
            65535,
            65536,
            -1,
            -129,
            i32::MAX as i64,
            1 << 40,
            i64::MIN,
        ] {
            let p = pickle_of(&TorchValue::Int(i));
            let v = unpickle(&p.out, &mut storage).unwrap();
            assert_eq!(v.as_int(), Some(i), "{i}");
        }
    }

    #[test]
    fn a_tensor_met_twice_is_one_storage() {
        let t = Tensor::from_slice(&[1f32, 2., 3.]);
        let v = TorchValue::state_dict([("a", t.shallow_clone()), ("b", t)]);
        let p = pickle_of(&v);
        assert_eq!(p.storages.len(), 1);
        let v = unpickle(&p.out, &mut storage).unwrap();
        let Value::Dict(d) = &v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        for key in ["a", "b"] {
            let Some(Value::Tensor(t)) = d.get_str(key) else {
                panic!("{key} is not a tensor")
            };
            assert_eq!((t.storage.key.as_str(), t.size.as_slice()), ("0", &[3][..]));
        }
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), [12, 4, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<i64>::new());
        assert_eq!(contiguous_strides(&[3, 0, 2]), [2, 2, 1]);
    }
}
