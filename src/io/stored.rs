//! A tensor as a checkpoint file stores it, described from the file's header alone:
//! dtype, shape, strides, and where in the file its storage lies. Nothing of its data is
//! read until it is loaded, and then only the bytes its view reaches, so a view that
//! repeats 4 bytes a billion times (stride 0) costs 4 bytes, as in `torch.load`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Reading at an offset, without a cursor: a file (positional reads, so the page cache
/// holds the data rather than this process) or bytes already in memory.
pub(crate) trait ReadAt {
    /// Fills `buf` from `offset`, or fails (past the end included).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        match end.and_then(|end| self.get(offset as usize..end as usize)) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// A tensor in a file, not yet read.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    /// Its dtype.
    pub kind: Kind,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its strides, in elements: a `torch.save` view may have any, 0 included.
    pub stride: Vec<i64>,
    /// Its first element, in elements from the start of its storage.
    pub(crate) offset: i64,
    /// Where its storage's bytes lie in the file: the first byte and the length.
    pub(crate) storage: (u64, u64),
}

impl StoredTensor {
    /// A tensor of its own contiguous bytes at `start..start + len` (safetensors).
    pub(crate) fn contiguous(kind: Kind, shape: Vec<i64>, start: u64, len: u64) -> Self {
        let mut stride = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1].max(1);
        }
        StoredTensor {
            kind,
            shape,
            stride,
            offset: 0,
            storage: (start, len),
        }
    }

    /// Its elements (a view may have far more than its storage holds).
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// The bytes it takes once made contiguous: what writing it out needs.
    pub fn contiguous_bytes(&self) -> u64 {
        self.numel() as u64 * self.kind.elt_size_in_bytes() as u64
    }

    /// The bytes of its storage that its view reaches, `(first, len)` relative to the
    /// storage's start: all that loading it reads. Checked by [`Self::check_view`].
    fn extent(&self) -> (u64, u64) {
        let elem = self.kind.elt_size_in_bytes() as u64;
        if self.shape.contains(&0) {
            return (0, 0);
        }
        let last: i64 = self
            .shape
            .iter()
            .zip(&self.stride)
            .map(|(&n, &s)| (n - 1) * s)
            .sum::<i64>()
            + self.offset;
        (
            self.offset as u64 * elem,
            (last - self.offset + 1) as u64 * elem,
        )
    }

    /// Checks the view against its storage of `numel` elements before anything is read:
    /// every element it reaches inside (libtorch would read out of bounds otherwise), and
    /// an element count libtorch can index.
    pub(crate) fn check_view(&self, numel: u64) -> std::result::Result<(), String> {
        let (size, stride, offset) = (&self.shape, &self.stride, self.offset);
        if size.len() != stride.len() {
            return Err(format!(
                "size {size:?} and stride {stride:?} differ in length"
            ));
        }
        if offset < 0 || size.iter().chain(stride).any(|&d| d < 0) {
            return Err(format!(
                "negative offset, size or stride (offset {offset}, size {size:?}, stride \
                 {stride:?})"
            ));
        }
        let elem = self.kind.elt_size_in_bytes() as i64;
        if size
            .iter()
            .try_fold(elem, |acc, &n| acc.checked_mul(n))
            .is_none()
        {
            return Err(format!(
                "size {size:?} has more elements than libtorch can index"
            ));
        }
        if size.contains(&0) {
            return Ok(());
        }
        let last = size.iter().zip(stride).try_fold(offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
        match last {
            Some(last) if (last as u64) < numel => Ok(()),
            _ => Err(format!(
                "view (offset {offset}, size {size:?}, stride {stride:?}) reaches outside \
                 its storage of {numel} elements"
            )),
        }
    }

    /// Reads the bytes its view reaches from `src` and builds the view over them: a
    /// buffer of what the tensor really occupies, never its contiguous size. `name` and
    /// `key` are for errors.
    pub(crate) fn load(
        &self,
        src: &(impl ReadAt + ?Sized),
        name: &str,
        key: &str,
    ) -> Result<Tensor> {
        let (first, len) = self.extent();
        let storage = read_storage(src, self.storage.0 + first, len, self.kind, name, key)?;
        let elem = self.kind.elt_size_in_bytes() as u64;
        self.view(&storage, self.offset - (first / elem) as i64)
    }

    /// Its view of `storage` (a 1-D tensor of its dtype), whose element `offset` is the
    /// view's first.
    pub(crate) fn view(&self, storage: &Tensor, offset: i64) -> Result<Tensor> {
        if self.shape.contains(&0) {
            return Ok(Tensor::f_empty(&self.shape, (self.kind, tch::Device::Cpu))?);
        }
        Ok(storage.f_as_strided(&self.shape, &self.stride, offset)?)
    }
}

/// Every tensor of `tensors` read from `src`, each storage once, its views kept as
/// views: memory is what the file holds, however many views share a storage.
pub(crate) fn load_all(
    src: &(impl ReadAt + ?Sized),
    name: &str,
    tensors: &BTreeMap<String, StoredTensor>,
) -> Result<BTreeMap<String, Tensor>> {
    let mut storages: HashMap<(u64, u64, Kind), Tensor> = HashMap::new();
    let mut out = BTreeMap::new();
    for (key, t) in tensors {
        let id = (t.storage.0, t.storage.1, t.kind);
        let storage = match storages.get(&id) {
            Some(s) => s.shallow_clone(),
            None => {
                let (start, len) = t.storage;
                let s = read_storage(src, start, len, t.kind, name, key)?;
                storages.insert(id, s.shallow_clone());
                s
            }
        };
        out.insert(key.clone(), t.view(&storage, t.offset)?);
    }
    Ok(out)
}

/// A 1-D tensor of `kind` holding the `len` bytes at `at` in `src`, read straight into
/// its memory (no second copy), bools checked.
fn read_storage(
    src: &(impl ReadAt + ?Sized),
    at: u64,
    len: u64,
    kind: Kind,
    name: &str,
    key: &str,
) -> Result<Tensor> {
    let err = |reason: String| Error::malformed(name, format!("tensor {key}: {reason}"));
    let numel = (len / kind.elt_size_in_bytes() as u64) as i64;
    let t = Tensor::f_empty([numel], (kind, tch::Device::Cpu))?;
    if len == 0 {
        return Ok(t);
    }
    // SAFETY: `t` is a new contiguous CPU tensor of exactly `len` bytes that nothing else
    // refers to while `buf` lives; it is filled before anything reads it, and dropped
    // unread if the read fails.
    let buf = unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut u8, len as usize) };
    src.read_exact_at(buf, at)
        .map_err(|e| err(format!("cannot read its {len} bytes: {e}")))?;
    check_bools(kind, buf).map_err(err)?;
    Ok(t)
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
