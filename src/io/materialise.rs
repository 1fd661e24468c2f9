//! Making a tensor read from a file contiguous only after checking that the machine has
//! the memory. A `torch.save` view may describe far more elements than the file holds
//! (stride 0 repeats one element a billion times in 611 bytes); reading keeps it a view,
//! and whatever needs every element (writing it out, a conversion) checks first, so a
//! hostile file is a clear error instead of a process the kernel kills.

use tch::Tensor;

use crate::error::{Error, Result};

/// Bytes the kernel could give a new allocation now without swapping: `MemAvailable`
/// of `/proc/meminfo`, else (other systems) the free physical pages; `None` if neither
/// is known.
pub fn available_memory() -> Option<u64> {
    let from_meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    from_meminfo.or_else(|| {
        // SAFETY: sysconf only reads configuration values.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_AVPHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
    })
}

/// An error unless `bytes` more fit in [`available_memory`]; `source` (the file) and
/// `what` (the tensor, and why it needs them) are for the message.
pub(crate) fn check_fits(bytes: u64, source: &str, what: &str) -> Result<()> {
    match available_memory() {
        Some(available) if bytes > available => Err(Error::malformed(
            source,
            format!(
                "{what} needs {} in memory, more than the {} available",
                human(bytes),
                human(available)
            ),
        )),
        _ => Ok(()),
    }
}

/// `t` itself if it is contiguous (it already has its memory); else its contiguous copy,
/// after [`check_fits`] for that copy's size. `source` and `key` name the file and the
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

/// `bytes` in the largest binary unit that keeps a number of at least 1.
fn human(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}
