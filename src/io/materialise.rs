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
    let bytes = (t.numel() as u64).saturating_mul(t.kind().elt_size_in_bytes() as u64);
    let what = format!(
        "tensor {key} (a view of shape {:?}, strides {:?}) made contiguous",
        t.size(),
        t.stride()
    );
    check_fits(bytes, source, &what)?;
    Ok(t.f_contiguous()?)
}

/// The most bytes [`for_each_chunk`] makes contiguous at once: small beside any
/// machine's memory, large enough that a tensor of gigabytes takes few libtorch calls.
pub(crate) const CHUNK_BYTES: u64 = 16 << 20;

/// Calls `f` with `t`'s elements in row-major order, as contiguous CPU tensors of at
/// most `max_bytes` each (or of one element, if that is larger): `t` itself if it is
/// contiguous on the CPU, else pieces of it made contiguous one at a time, so that
/// writing a view that repeats a few bytes (stride 0) takes one piece's memory, never
/// the whole tensor's. Concatenated, the pieces' bytes are those of `t.contiguous()`.
pub(crate) fn for_each_chunk(
    t: &Tensor,
    max_bytes: u64,
    f: &mut dyn FnMut(&Tensor) -> Result<()>,
) -> Result<()> {
    let elt = t.kind().elt_size_in_bytes() as u64;
    let bytes = (t.numel() as u64).saturating_mul(elt);
    if bytes <= max_bytes || t.dim() == 0 {
        return f(&t.f_to_device(tch::Device::Cpu)?.f_contiguous()?);
    }
    let rows = t.size()[0];
    let row_bytes = bytes / rows as u64;
    if row_bytes > max_bytes {
        // One row is too big: each row in pieces of its own.
        for i in 0..rows {
            for_each_chunk(&t.f_select(0, i)?, max_bytes, f)?;
        }
        return Ok(());
    }
    let per = (max_bytes / row_bytes.max(1)).max(1) as i64;
    let mut start = 0;
    while start < rows {
        let n = per.min(rows - start);
        let piece = t.f_narrow(0, start, n)?;
        f(&piece.f_to_device(tch::Device::Cpu)?.f_contiguous()?)?;
        start += n;
    }
    Ok(())
}

/// An error unless a file of `bytes` can be written at `path`: at most the space free
/// in its folder (`statvfs`'s blocks available to this user) and the process's
/// file-size limit (`ulimit -f`). Checked before writing, so that an output of
/// terabytes (a stride-0 view written out) is refused at once, not after filling the
/// disk. Where either is unknown, it is not checked.
pub(crate) fn check_fits_on_disk(path: &std::path::Path, bytes: u64) -> Result<()> {
    use crate::memory::human_bytes;
    let too_large = |limit: String| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("the output needs {}, more than {limit}", human_bytes(bytes)),
        ),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if let Some(free) = free_bytes(dir) {
        if bytes > free {
            return Err(too_large(format!(
                "the {} free in {}",
                human_bytes(free),
                dir.display()
            )));
        }
    }
    // SAFETY: getrlimit only writes the struct it is given.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY
        && bytes > limit.rlim_cur
    {
        return Err(too_large(format!(
            "the file-size limit of {} (ulimit -f)",
            human_bytes(limit.rlim_cur)
        )));
    }
    Ok(())
}

/// The bytes free to this user in the file system holding `dir`, if `statvfs` knows.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value for statvfs to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::for_each_chunk;
    use tch::{Device, Kind, Tensor};

    /// The pieces, concatenated, are `t.contiguous()`, whatever the view and the piece
    /// size; none is larger than asked (or than one element).
    #[test]
    fn pieces_concatenate_to_the_contiguous_tensor() {
        let base = Tensor::arange(60, (Kind::Float, Device::Cpu));
        let views = [
            base.view([3, 4, 5]),                          // contiguous: one piece
            base.view([3, 4, 5]).transpose(0, 2),          // (5, 4, 3), strided
            base.narrow(0, 7, 1).expand([6, 7, 2], false), // stride 0 everywhere
            base.view([6, 10]).narrow(1, 3, 4),            // rows with gaps
            base.view([60]).get(5),                        // 0-d
        ];
        for t in &views {
            for max_bytes in [1, 4, 12, 40, 1 << 20] {
                let mut pieces = Vec::new();
                for_each_chunk(t, max_bytes, &mut |p| {
                    assert!(p.is_contiguous());
                    let bytes = p.numel() as u64 * 4;
                    assert!(bytes <= max_bytes.max(4) || t.is_contiguous(), "{bytes}");
                    pieces.push(p.reshape([-1]));
                    Ok(())
                })
                .unwrap();
                let got = Tensor::cat(&pieces, 0);
                assert!(got.equal(&t.contiguous().reshape([-1])), "{:?}", t.size());
            }
        }
    }
}
