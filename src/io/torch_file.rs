//! Files written by `torch.save` (`.pt`, `.pth`, `.bin`), read without Python.
//!
//! Since PyTorch 1.6 `torch.save` writes a zip archive: `<root>/data.pkl` is a pickle of
//! the object, whose tensors are persistent ids `('storage', torch.FloatStorage, key,
//! location, numel)` wrapped in `torch._utils._rebuild_tensor_v2(storage, offset, size,
//! stride, ...)`, and `<root>/data/<key>` holds each storage's raw bytes (stored, not
//! compressed). This reader unpickles with [`super::pickle`], which never imports or
//! calls anything, then checks every view against its storage before a byte is copied.
//!
//! An archive with two entries under one name is refused: PyTorch's reader takes the
//! first and the `zip` crate the last, so one file would hold different tensors for
//! PyTorch and for this crate.
//!
//! Not readable, with an error that says what to do: the legacy format of PyTorch < 1.6
//! (a bare pickle stream), TorchScript archives (`torch.jit.save`), big-endian archives
//! and compressed entries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Cursor, Read};
use std::rc::Rc;

use tch::{Kind, Tensor};

use super::pickle::{unpickle, StorageRef, TensorRef, Value};
use crate::error::{Error, Result};

/// The pickled object's tensors, found as described in [`find_state_dict`], under their
/// keys as saved.
pub(crate) fn read_torch_zip(name: &str, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let err = |reason: String| Error::malformed(name, reason);
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| err(format!("not a readable torch.save zip archive: {e}")))?;
    refuse_duplicates(&mut zip).map_err(err)?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let mut zip = Archive {
        zip,
        len: bytes.len() as u64,
        name,
    };
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
    let data = zip.read(&pkl, None)?;
    let value = unpickle(&data, &mut persistent_load).map_err(|e| err(format!("{pkl}: {e}")))?;
    let entries = find_state_dict(&value).map_err(err)?;

    let mut storages: HashMap<String, Rc<Tensor>> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (key, tref) in entries {
        let storage = match storages.get(&tref.storage.key) {
            Some(s) => s.clone(),
            None => {
                let s = Rc::new(read_storage(&mut zip, &root, &tref.storage, &key)?);
                storages.insert(tref.storage.key.clone(), s.clone());
                s
            }
        };
        let t = view(&storage, &tref).map_err(|e| err(format!("tensor {key}: {e}")))?;
        tensors.insert(key, t);
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
fn refuse_duplicates(zip: &mut zip::ZipArchive<Cursor<&[u8]>>) -> std::result::Result<(), String> {
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
pub(crate) fn strip_compile_prefix(key: &str) -> String {
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

fn read_storage(zip: &mut Archive, root: &str, s: &StorageRef, tensor: &str) -> Result<Tensor> {
    let name = zip.name;
    let err = |reason: String| Error::malformed(name, format!("tensor {tensor}: {reason}"));
    let (kind, elem) = storage_kind(&s.class)
        .ok_or_else(|| err(format!("storage type {} is not supported", s.class)))?;
    let nbytes = s
        .numel
        .checked_mul(elem as u64)
        .ok_or_else(|| err(format!("storage {} declares {} elements", s.key, s.numel)))?;
    let record = format!("{root}data/{}", s.key);
    let data = zip.read(&record, Some(nbytes)).map_err(|e| match e {
        Error::Malformed { reason, .. } => err(reason),
        e => e,
    })?;
    check_bools(kind, &data).map_err(err)?;
    let numel = i64::try_from(s.numel).map_err(|_| err("storage too large".into()))?;
    Ok(Tensor::f_from_data_size(&data, &[numel], kind)?)
}

/// A bool tensor's bytes must be 0 or 1: other values are undefined behaviour in
/// libtorch's kernels.
pub(crate) fn check_bools(kind: Kind, data: &[u8]) -> std::result::Result<(), String> {
    match data.iter().position(|&b| b > 1) {
        Some(i) if kind == Kind::Bool => {
            Err(format!("bool element {i} is {}, not 0 or 1", data[i]))
        }
        _ => Ok(()),
    }
}

/// The archive, with its length and the file's name for errors.
struct Archive<'a> {
    zip: zip::ZipArchive<Cursor<&'a [u8]>>,
    len: u64,
    name: &'a str,
}

impl Archive<'_> {
    /// Reads one record, checking its declared size (against `expect`, and against the
    /// archive's own length) before allocating.
    fn read(&mut self, record: &str, expect: Option<u64>) -> Result<Vec<u8>> {
        let name = self.name;
        let err = |reason: String| Error::malformed(name, format!("{record}: {reason}"));
        let mut f = self.zip.by_name(record).map_err(|e| err(e.to_string()))?;
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(err(format!(
                "compressed ({:?}); torch.save writes stored entries, so re-save the file \
                 with torch.save",
                f.compression()
            )));
        }
        let size = f.size();
        if let Some(want) = expect {
            if size != want {
                return Err(err(format!(
                    "holds {size} bytes, the pickle declares {want}"
                )));
            }
        }
        if size > self.len {
            return Err(err(format!(
                "declares {size} bytes, more than the whole file ({})",
                self.len
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
        self.read(record, None).map(Some)
    }
}

/// `storage.as_strided(size, stride, offset)`, copied into a tensor of its own, after
/// checking that every element it reaches lies inside the storage (libtorch would read
/// out of bounds otherwise).
fn view(storage: &Tensor, t: &TensorRef) -> std::result::Result<Tensor, String> {
    let numel = storage.size()[0];
    if t.size.len() != t.stride.len() {
        return Err(format!(
            "size {:?} and stride {:?} differ in length",
            t.size, t.stride
        ));
    }
    if t.offset < 0 || t.size.iter().chain(&t.stride).any(|&d| d < 0) {
        return Err(format!(
            "negative offset, size or stride (offset {}, size {:?}, stride {:?})",
            t.offset, t.size, t.stride
        ));
    }
    let empty = t.size.contains(&0);
    if !empty {
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&n, &s)| {
                (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            });
        match last {
            Some(last) if last < numel => {}
            _ => {
                return Err(format!(
                    "view (offset {}, size {:?}, stride {:?}) reaches outside its storage of \
                     {numel} elements",
                    t.offset, t.size, t.stride
                ))
            }
        }
    }
    let out = if empty {
        Tensor::f_empty(&t.size, (storage.kind(), storage.device()))
    } else {
        storage
            .f_as_strided(&t.size, &t.stride, t.offset)
            .and_then(|v| v.f_contiguous())
            .map(|v| v.copy())
    };
    out.map_err(|e| e.to_string())
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
