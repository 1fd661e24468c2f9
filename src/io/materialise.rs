//! Making a tensor read from a file contiguous only after checking that the machine has
//! the memory. A `torch.save` view may describe far more elements than the file holds
//! (stride 0 repeats one element a billion times in 611 bytes); reading keeps it a view,
//! and whatever needs every element (writing it out, a conversion) checks first, so a
//! hostile file is a clear error instead of a process the kernel kills.

use tch::Tensor;

use crate::error::{Error, Result};
use crate::memory::available_memory;

/// An error unless `bytes` more fit in [`available_memory`]; `source` (the file) and
/// `what` (the tensor, and why it needs them) are for the message.
pub(crate) fn check_fits(bytes: u64, source: &str, what: &str) -> Result<()> {
    match available_memory() {
        Some(available) if bytes > available => Err(Error::TooLarge {
            what: format!("{source}: {what}"),
            needed: bytes,
            available,
        }),
        _ => Ok(()),
    }
}

/// `t` itself if it is contiguous (it already has its memory); else its contiguous copy,
/// after checking that copy's size fits in memory ([`Error::TooLarge`] otherwise).
/// `source` and `key` name the file and the
/// tensor in the error.
pub fn contiguous_checked(t: &Tensor, source: &str, key: &str) -> Result<Tensor> {
    if t.is_contiguous() {
        return Ok(t.shallow_clone());
    }
    let bytes = t.numel() as u64 * t.kind().elt_size_in_bytes() as u64;
    let what = format!(
        "tensor {key} (a view of shape {:?}, strides {:?}) made contiguous",
        t.size(),
        t.stride()
    );
    check_fits(bytes, source, &what)?;
    Ok(t.f_contiguous()?)
}
