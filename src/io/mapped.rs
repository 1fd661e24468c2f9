//! A file's bytes mapped read-only into memory (`mmap(2)`, as llama.cpp's
//! `llama_mmap`), or held in a buffer: what a GGUF reader borrows its tensors from.
//!
//! A mapping costs no memory of its own: pages are read from the page cache when first
//! touched and can be dropped again under memory pressure, so a model that keeps its
//! weights in the file's blocks holds no second copy. As with llama.cpp's mapping, a file
//! truncated by another process while mapped makes a later read of the lost pages fail
//! (`SIGBUS`); a reader checks every size against the length at the time of mapping.

use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::regular::open_regular;
use crate::error::{Error, Result};

/// A file's bytes: mapped, or owned (bytes already in memory, and empty files, which
/// cannot be mapped).
pub enum FileBytes {
    /// Read-only, private mapping of the whole file.
    Mapped(Mapping),
    /// A buffer.
    Owned(Vec<u8>),
}

impl FileBytes {
    /// The regular file at `path` (symbolic links followed), mapped.
    pub fn map(path: &Path) -> Result<FileBytes> {
        let (file, len) = open_regular(path)?;
        if len == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let len = usize::try_from(len).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "larger than the address space",
            ))
        })?;
        // SAFETY: a fresh read-only private mapping of an open file descriptor, of the
        // file's length; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io(std::io::Error::last_os_error()));
        }
        Ok(FileBytes::Mapped(Mapping { ptr, len }))
    }
}

impl FileBytes {
    /// Drops the pages of `range` from this process's resident memory (a hint:
    /// `madvise(MADV_DONTNEED)`): for bytes read once, as a tensor dequantised to a
    /// float copy, so that the file's pages do not stay in the peak beside the copy.
    /// The mapping is private and never written, so a later read faults the same bytes
    /// back in from the page cache; nothing changes for an owned buffer.
    pub fn release(&self, range: std::ops::Range<usize>) {
        let FileBytes::Mapped(m) = self else {
            return;
        };
        let page = 4096;
        let start = range.start.min(m.len) / page * page;
        let end = range.end.min(m.len);
        if end > start {
            // SAFETY: inside the live mapping (start rounded down to a page boundary, which
            // the mapping's own start is); DONTNEED on a private unwritten file mapping
            // keeps its contents.
            unsafe {
                libc::madvise(
                    (m.ptr as *mut u8).add(start) as *mut libc::c_void,
                    end - start,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// A live read-only mapping, unmapped on drop.
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `FileBytes::map`, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
