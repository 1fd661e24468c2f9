//! A safetensors file's JSON header, read without its tensors: the metadata that says
//! whether a file is a case, and the shapes, checked before libtorch sees any of them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The safetensors crate's own header limit: nothing larger is a valid file.
const MAX_HEADER: u64 = 100_000_000;

/// The parts of a header this module reads; other keys of a tensor entry are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Header {
    #[serde(rename = "__metadata__", default)]
    pub metadata: BTreeMap<String, String>,
    /// Each tensor's entry, parsed one by one so that an error can name the tensor.
    #[serde(flatten)]
    pub tensors: BTreeMap<String, Value>,
}

/// One tensor's entry. Negative dimensions fail here: they are not `u64`.
#[derive(Debug, Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<u64>,
}

/// Reads the header of the file at `path`: its 8-byte length, then that much JSON.
/// `None` when it is not a regular file (never opened: a FIFO would block), or cannot
/// be read or parsed; the caller decides what that means.
pub(crate) fn read_header(path: &Path) -> Option<Header> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return None;
    }
    let mut json = vec![0u8; usize::try_from(len).ok()?];
    file.read_exact(&mut json).ok()?;
    serde_json::from_slice(&json).ok()
}

impl Header {
    /// Checks every tensor's shape as libtorch will need it: each dimension, the product
    /// of the dimensions (counting 0 as 1, as libtorch's strides do), and the bytes, all
    /// within `i64`. A shape such as `[2^63, 0]` holds no bytes, so the safetensors
    /// checks pass it, and libtorch would then see a negative dimension.
    pub(crate) fn check_shapes(&self) -> Result<(), String> {
        for (name, entry) in &self.tensors {
            let entry =
                TensorEntry::deserialize(entry).map_err(|e| format!("tensor {name:?}: {e}"))?;
            let too_large = || {
                format!(
                    "tensor {name:?}: shape {:?} is too large (sizes must fit in 64-bit signed integers)",
                    entry.shape
                )
            };
            let mut extent: i64 = 1;
            for &d in &entry.shape {
                let d = i64::try_from(d).map_err(|_| too_large())?;
                extent = extent.checked_mul(d.max(1)).ok_or_else(too_large)?;
            }
            extent
                .checked_mul(dtype_bytes(&entry.dtype))
                .ok_or_else(too_large)?;
        }
        Ok(())
    }
}

/// Bytes per element of a safetensors dtype name; 8 (the widest) for names not known
/// here, which the safetensors reader reports itself.
fn dtype_bytes(dtype: &str) -> i64 {
    match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::Header;

    fn header(json: &str) -> Header {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn shapes_that_overflow_or_go_negative_are_refused() {
        let entry = |shape: &str| {
            header(&format!(
                r#"{{"x": {{"dtype": "F32", "shape": {shape}, "data_offsets": [0, 0]}}}}"#
            ))
            .check_shapes()
        };
        assert!(entry("[2, 3]").is_ok());
        assert!(entry("[0, 5]").is_ok());
        for bad in [
            "[9223372036854775808, 0]",
            "[4294967296, 4294967296, 0]",
            "[2305843009213693952, 4]",
            "[-1, 4]",
        ] {
            let err = entry(bad).unwrap_err();
            assert!(err.contains("\"x\""), "{bad}: {err}");
        }
    }
}
