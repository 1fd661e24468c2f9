//! Files written by `torch.save` (`.pt`, `.pth`, `.bin`), read without Python.
//!
//! Since PyTorch 1.6 `torch.save` writes a zip archive: `<root>/data.pkl` is a pickle of
//! the object, whose tensors are persistent ids `('storage', torch.FloatStorage, key,
//! location, numel)` wrapped in `torch._utils._rebuild_tensor_v2(storage, offset, size,
//! stride, ...)`, and `<root>/data/<key>` holds each storage's raw bytes (stored, not
//! compressed). This reader unpickles with [`super::pickle`], which never imports or
//! calls anything, then checks every view against its storage record, from the zip's
//! central directory and local headers alone: the tensors are described
//! ([`StoredTensor`]) before a byte of their data is read, and a view (stride 0 over 4
//! bytes, say) is kept as a view. The records' CRC-32s are not checked: the data is read
//! where it lies, by position, not through the zip reader.
//!
//! An archive with two entries under one name is refused: PyTorch's reader takes the
//! first and the `zip` crate the last, so one file would hold different tensors for
//! PyTorch and for this crate.
//!
//! Not readable, with an error that says what to do: the legacy format of PyTorch < 1.6
//! (a bare pickle stream), TorchScript archives (`torch.jit.save`), big-endian archives
//! and compressed entries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Seek};

use tch::{Kind, Tensor};

use super::pickle::{unpickle, StorageRef, TensorRef, Value};
use super::writer::TorchValue;
use crate::error::{Error, Result};
use crate::io::stored::StoredTensor;

/// The pickled object's tensors, found as described in [`find_state_dict`], under their
/// keys as saved: described from the zip's central directory and `data.pkl` alone, each
/// view checked against its storage record (size, compression, bounds) before a byte of
/// tensor data is read. `reader` holds the archive, `len` bytes long.
pub(crate) fn read_torch_header<R: Read + Seek>(
    name: &str,
    reader: R,
    len: u64,
) -> Result<BTreeMap<String, StoredTensor>> {
    let err = |reason: String| Error::malformed(name, reason);
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| err(format!("not a readable torch.save zip archive: {e}")))?;
    refuse_duplicates(&mut zip).map_err(err)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let mut zip = Archive { zip, len, name };
    let pkl = find_data_pkl(&names).map_err(err)?;
    let root = pkl.trim_end_matches("data.pkl").to_string();
    if let Some(order) = zip.read_optional(&format!("{root}byteorder"))? {
        if order != b"little" {
            return Err(err(format!(
                "byte order {:?} is not supported; re-save on a little-endian machine",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let data = zip.read(&pkl)?;
    let value = unpickle(&data, &mut persistent_load).map_err(|e| err(format!("{pkl}: {e}")))?;
    let entries = find_state_dict(&value).map_err(err)?;
    drop(value);

    let mut records: HashMap<String, (u64, u64)> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (key, tref) in entries {
        let terr = |reason: String| Error::malformed(name, format!("tensor {key}: {reason}"));
        let s = &tref.storage;
        let (kind, elem) = storage_kind(&s.class)
            .ok_or_else(|| terr(format!("storage type {} is not supported", s.class)))?;
        let storage = match records.get(&s.key) {
            Some(&r) => r,
            None => {
                let nbytes = s.numel.checked_mul(elem as u64).ok_or_else(|| {
                    terr(format!("storage {} declares {} elements", s.key, s.numel))
                })?;
                let record = format!("{root}data/{}", s.key);
                let r = zip.locate(&record, nbytes).map_err(|e| match e {
                    Error::Malformed { reason, .. } => terr(reason),
                    e => e,
                })?;
                records.insert(s.key.clone(), r);
                r
            }
        };
        let stored = StoredTensor {
            kind,
            shape: tref.size,
            stride: tref.stride,
            offset: tref.offset,
            storage,
        };
        stored.check_view(s.numel).map_err(terr)?;
        tensors.insert(key, stored);
    }
    Ok(tensors)
}

/// `<root>/data.pkl`, refusing TorchScript archives (which hold `constants.pkl` beside
/// it) with what to do instead.
fn find_data_pkl(names: &[String]) -> std::result::Result<String, String> {
    let torchscript = "a TorchScript archive (torch.jit.save), not a state_dict: in \
                       PyTorch, torch.save(model.state_dict(), path) instead";
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min()
        .ok_or_else(|| {
            if names.iter().any(|n| n.ends_with("/constants.pkl")) {
                torchscript.to_string()
            } else {
                "a zip archive without <root>/data.pkl: not written by torch.save".to_string()
            }
        })?;
    let root = pkl.trim_end_matches("data.pkl");
    if names.contains(&format!("{root}constants.pkl")) {
        return Err(torchscript.into());
    }
    Ok(pkl.clone())
}

/// Errors on two entries with one name (see the module docs). The `zip` crate's name
/// lookup keeps only the last, so the central directory is walked by index.
fn refuse_duplicates<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
) -> std::result::Result<(), String> {
    if zip.file_names().count() == zip.len() {
        return Ok(());
    }
    let mut seen = HashSet::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        if !seen.insert(entry.name().to_string()) {
            return Err(format!(
                "the archive has two entries named {}; PyTorch would read the first and \
                 other readers the last, so it is refused",
                entry.name()
            ));
        }
    }
    Ok(())
}

/// torch.compile wraps a module as `_orig_mod`, so a compiled model's state_dict keys
/// read `_orig_mod.transformer.h.0...`; the tensors are the plain module's.
pub fn strip_compile_prefix(key: &str) -> String {
    key.split('.')
        .filter(|part| *part != "_orig_mod")
        .collect::<Vec<_>>()
        .join(".")
}

fn persistent_load(pid: &Value) -> std::result::Result<Value, String> {
    let items = pid
        .items()
        .ok_or_else(|| format!("persistent id is {}", pid.describe()))?;
    match items.as_slice() {
        [tag, class, key, _location, numel] if tag.as_str() == Some("storage") => {
            let class = match class {
                Value::Global(c) => c.to_string(),
                other => return Err(format!("storage class is {}", other.describe())),
            };
            let key = key
                .as_str()
                .ok_or_else(|| format!("storage key is {}", key.describe()))?
                .to_string();
            let numel = numel
                .as_int()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("storage {key}: numel is not a count"))?;
            Ok(Value::Storage(StorageRef { class, key, numel }))
        }
        _ => Err("persistent id is not ('storage', class, key, location, numel)".into()),
    }
}

/// Where the tensors are: the object itself when it is a dict of tensors (a plain
/// state_dict), else its `model` or `state_dict` entry (nanoGPT's `ckpt.pt`, Lightning
/// and many training scripts).
fn find_state_dict(value: &Value) -> std::result::Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(top) = value else {
        return Err(format!(
            "the file holds {}, not a state_dict (a dict of tensors)",
            value.describe()
        ));
    };
    let holder = ["model", "state_dict"]
        .iter()
        .find_map(|k| match top.borrow().get_str(k) {
            Some(Value::Dict(d)) => Some(d.clone()),
            _ => None,
        });
    let dict = holder.unwrap_or_else(|| top.clone());
    let dict = dict.borrow();
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let key = k
            .as_str()
            .ok_or_else(|| format!("a state_dict key is {}, not a str", k.describe()))?;
        match v {
            Value::Tensor(t) => out.push((key.to_string(), t.as_ref().clone())),
            other => {
                let keys: Vec<&str> = dict
                    .iter()
                    .filter_map(|(k, _)| k.as_str())
                    .take(8)
                    .collect();
                return Err(format!(
                    "{key} is {}, not a tensor; expected a state_dict, or a dict with one \
                     under 'model' or 'state_dict' (keys seen: {keys:?})",
                    other.describe()
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("the state_dict holds no tensors".into());
    }
    Ok(out)
}

/// The dtype a storage class stands for, and its element size in bytes.
fn storage_kind(class: &str) -> Option<(Kind, usize)> {
    Some(match class.strip_prefix("torch.")? {
        "DoubleStorage" => (Kind::Double, 8),
        "FloatStorage" => (Kind::Float, 4),
        "HalfStorage" => (Kind::Half, 2),
        "BFloat16Storage" => (Kind::BFloat16, 2),
        "LongStorage" => (Kind::Int64, 8),
        "IntStorage" => (Kind::Int, 4),
        "ShortStorage" => (Kind::Int16, 2),
        "CharStorage" => (Kind::Int8, 1),
        "ByteStorage" => (Kind::Uint8, 1),
        "BoolStorage" => (Kind::Bool, 1),
        "ComplexFloatStorage" => (Kind::ComplexFloat, 8),
        "ComplexDoubleStorage" => (Kind::ComplexDouble, 16),
        _ => return None,
    })
}

/// The archive, with its length and the file's name for errors.
struct Archive<'a, R> {
    zip: zip::ZipArchive<R>,
    len: u64,
    name: &'a str,
}

impl<R: Read + Seek> Archive<'_, R> {
    /// Where a stored record's bytes lie in the file, `(first byte, length)`, after
    /// checking its compression and that it holds `expect` bytes, all inside the file.
    fn locate(&mut self, record: &str, expect: u64) -> Result<(u64, u64)> {
        let name = self.name;
        let err = |reason: String| Error::malformed(name, format!("{record}: {reason}"));
        let (f, len) = self.entry(record)?;
        let size = f.size();
        if size != expect {
            return Err(err(format!(
                "holds {size} bytes, the pickle declares {expect}"
            )));
        }
        let start = f.data_start();
        if start.checked_add(size).is_none_or(|end| end > len) {
            return Err(err(format!(
                "truncated: {size} bytes from byte {start} of a {len}-byte file"
            )));
        }
        Ok((start, size))
    }

    /// One stored record's entry, with the archive's length.
    fn entry(&mut self, record: &str) -> Result<(zip::read::ZipFile<'_>, u64)> {
        let name = self.name;
        let err = |reason: String| Error::malformed(name, format!("{record}: {reason}"));
        let f = self.zip.by_name(record).map_err(|e| err(e.to_string()))?;
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(err(format!(
                "compressed ({:?}); torch.save writes stored entries, so re-save the file \
                 with torch.save",
                f.compression()
            )));
        }
        Ok((f, self.len))
    }

    /// Reads one small record whole (`data.pkl`, `byteorder`), checking its declared
    /// size against the archive's length before allocating.
    fn read(&mut self, record: &str) -> Result<Vec<u8>> {
        let name = self.name;
        let err = |reason: String| Error::malformed(name, format!("{record}: {reason}"));
        let (mut f, len) = self.entry(record)?;
        let size = f.size();
        if size > len {
            return Err(err(format!(
                "declares {size} bytes, more than the whole file ({len})"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        f.by_ref()
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| err(e.to_string()))?;
        if data.len() as u64 != size {
            return Err(err(format!("truncated: {} of {size} bytes", data.len())));
        }
        Ok(data)
    }

    fn read_optional(&mut self, record: &str) -> Result<Option<Vec<u8>>> {
        if !self.zip.file_names().any(|n| n == record) {
            return Ok(None);
        }
        self.read(record).map(Some)
    }
}

/// How deep [`read_torch_object`] follows nested containers: a checkpoint nests a few
/// levels (nanoGPT's optimizer state: dict, dict, dict, tensor); the conversion recurses.
const MAX_DEPTH: usize = 64;

/// The whole object a `torch.save` archive at `path` holds, not only its state_dict —
/// nanoGPT's `ckpt.pt` with its optimizer state, ints, floats and strings — every
/// tensor read onto the CPU after its view is checked against its storage record as
/// the header reader checks them. Dicts and `OrderedDict`s both come back as
/// [`TorchValue::Dict`]; anything but plain data (a class, an object, bytes, an int
/// beyond i64) and containers nested deeper than 64 are errors.
pub fn read_torch_object(path: &std::path::Path) -> Result<TorchValue> {
    let name = path.display().to_string();
    let err = |reason: String| Error::malformed(&name, reason);
    let (file, len) = crate::io::regular::open_regular(path)?;
    let mut zip = zip::ZipArchive::new(&file)
        .map_err(|e| err(format!("not a readable torch.save zip archive: {e}")))?;
    refuse_duplicates(&mut zip).map_err(err)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let mut zip = Archive {
        zip,
        len,
        name: &name,
    };
    let pkl = find_data_pkl(&names).map_err(err)?;
    let root = pkl.trim_end_matches("data.pkl").to_string();
    if let Some(order) = zip.read_optional(&format!("{root}byteorder"))? {
        if order != b"little" {
            return Err(err("a big-endian archive is not supported".into()));
        }
    }
    let data = zip.read(&pkl)?;
    let value = unpickle(&data, &mut persistent_load).map_err(|e| err(format!("{pkl}: {e}")))?;
    let mut reader = ObjectReader {
        zip,
        file: &file,
        root,
        tensors: 0,
    };
    reader.convert(&value, 0)
}

/// [`read_torch_object`]'s walk over the unpickled value.
struct ObjectReader<'a, R> {
    zip: Archive<'a, R>,
    file: &'a std::fs::File,
    root: String,
    /// Tensors read so far, to name them in errors.
    tensors: usize,
}

impl<R: Read + Seek> ObjectReader<'_, R> {
    fn convert(&mut self, v: &Value, depth: usize) -> Result<TorchValue> {
        let name = self.zip.name;
        if depth > MAX_DEPTH {
            return Err(Error::malformed(
                name,
                format!("containers nested deeper than {MAX_DEPTH}"),
            ));
        }
        let all = |items: &[Value], this: &mut Self| {
            items
                .iter()
                .map(|x| this.convert(x, depth + 1))
                .collect::<Result<Vec<_>>>()
        };
        Ok(match v {
            Value::None => TorchValue::None,
            Value::Bool(b) => TorchValue::Bool(*b),
            Value::Int(i) => TorchValue::Int(*i),
            Value::Float(f) => TorchValue::Float(*f),
            Value::Str(s) => TorchValue::Str(s.clone()),
            Value::Tuple(t) => TorchValue::Tuple(all(t, self)?),
            Value::List(l) => TorchValue::List(all(&l.borrow(), self)?),
            Value::Dict(d) => {
                let d = d.borrow();
                let mut items = Vec::with_capacity(d.len());
                for (k, x) in d.iter() {
                    items.push((self.convert(k, depth + 1)?, self.convert(x, depth + 1)?));
                }
                TorchValue::Dict(items)
            }
            Value::Tensor(t) => TorchValue::Tensor(self.tensor(t)?),
            other => {
                return Err(Error::malformed(
                    name,
                    format!(
                        "holds {}, which a checkpoint of plain data has not",
                        other.describe()
                    ),
                ))
            }
        })
    }

    fn tensor(&mut self, tref: &TensorRef) -> Result<Tensor> {
        let name = self.zip.name;
        self.tensors += 1;
        let key = format!("tensor #{} (storage {})", self.tensors, tref.storage.key);
        let terr = |reason: String| Error::malformed(name, format!("{key}: {reason}"));
        let s = &tref.storage;
        let (kind, elem) = storage_kind(&s.class)
            .ok_or_else(|| terr(format!("storage type {} is not supported", s.class)))?;
        let nbytes = s
            .numel
            .checked_mul(elem as u64)
            .ok_or_else(|| terr(format!("storage declares {} elements", s.numel)))?;
        let record = format!("{}data/{}", self.root, s.key);
        let storage = self.zip.locate(&record, nbytes)?;
        let stored = StoredTensor {
            kind,
            shape: tref.size.clone(),
            stride: tref.stride.clone(),
            offset: tref.offset,
            storage,
        };
        stored.check_view(s.numel).map_err(terr)?;
        stored.load(self.file, name, &key)
    }
}

#[cfg(test)]
mod tests {
    use super::strip_compile_prefix;

    #[test]
    fn compile_prefix_is_removed_wherever_it_appears() {
        assert_eq!(
            strip_compile_prefix("_orig_mod.transformer.h.0.attn.c_attn.weight"),
            "transformer.h.0.attn.c_attn.weight"
        );
        assert_eq!(strip_compile_prefix("blocks._orig_mod.w"), "blocks.w");
        assert_eq!(strip_compile_prefix("orig_mod.w"), "orig_mod.w");
    }
}
