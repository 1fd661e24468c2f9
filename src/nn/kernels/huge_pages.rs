//! Weights copied into memory the kernel backs with 2 MiB pages where it can
//! (`madvise(MADV_HUGEPAGE)` on a fresh anonymous mapping, before the copy touches it),
//! for a large matrix the kernels stream through once a token: with 4 KiB pages each
//! 4 KiB read costs a TLB miss. Measured on this work's Zen 4 machine (Gemma 3's Q8_0
//! head, 180 MB, one thread, loaded machine; `model_shapes_throughput` in tests/kernels.rs):
//! 17-25 GB/s from 4 KiB pages, 23-31 GB/s from 2 MiB pages, back to back.
//! A file's mapped pages (the page cache) stay 4 KiB, so the copy is what gets them.

use std::ops::{Deref, Range};

/// 2 MiB: the x86-64 huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Bytes [`HugePageBytes::copy_of_releasing`] copies between two calls back: 8 MiB.
pub const COPY_CHUNK: usize = 4 * HUGE_PAGE;

/// A read-only copy of some bytes, 2 MiB-aligned and advised to the kernel for huge
/// pages (Linux; elsewhere, or where the mapping fails, a plain buffer), whole huge pages
/// however short the bytes: for large weights. Usable as a [`crate::nn::SharedBytes`].
pub struct HugePageBytes {
    /// `(start of the mapping, its length, the aligned start)`, or `None` for `fallback`.
    map: Option<(*mut u8, usize, *const u8)>,
    len: usize,
    fallback: Vec<u8>,
}

// SAFETY: the mapping is private to this value, written only in `copy_of`, read-only
// after; it is unmapped once, in `drop`.
unsafe impl Send for HugePageBytes {}
// SAFETY: as above: shared access only reads.
unsafe impl Sync for HugePageBytes {}

impl HugePageBytes {
    /// A copy of `bytes` in memory advised for huge pages.
    pub fn copy_of(bytes: &[u8]) -> HugePageBytes {
        Self::copy_of_releasing(bytes, |_| {})
    }

    /// [`Self::copy_of`], calling `copied` with each range of `bytes` once it is
    /// copied ([`COPY_CHUNK`] at a time), so that the caller can release the source's
    /// pages as the copy goes (a mapped file's): memory never holds both whole.
    pub fn copy_of_releasing(bytes: &[u8], mut copied: impl FnMut(Range<usize>)) -> HugePageBytes {
        let chunks = (0..bytes.len())
            .step_by(COPY_CHUNK)
            .map(|s| s..(s + COPY_CHUNK).min(bytes.len()));
        match Self::map(bytes.len()) {
            Some(map) => {
                for r in chunks {
                    // SAFETY: `map` made `len` writable bytes at the aligned start, which
                    // nothing else references yet; `r` lies within them.
                    unsafe {
                        let dst = (map.2 as *mut u8).add(r.start);
                        std::ptr::copy_nonoverlapping(bytes.as_ptr().add(r.start), dst, r.len());
                    }
                    copied(r);
                }
                HugePageBytes {
                    map: Some(map),
                    len: bytes.len(),
                    fallback: Vec::new(),
                }
            }
            None => {
                let mut fallback = Vec::with_capacity(bytes.len());
                for r in chunks {
                    fallback.extend_from_slice(&bytes[r.clone()]);
                    copied(r);
                }
                HugePageBytes {
                    map: None,
                    len: bytes.len(),
                    fallback,
                }
            }
        }
    }

    /// A fresh mapping for `len` bytes, advised for huge pages: `(start, its length,
    /// the 2 MiB-aligned start)`; `None` where it fails (or is empty).
    #[cfg(target_os = "linux")]
    fn map(len: usize) -> Option<(*mut u8, usize, *const u8)> {
        if len == 0 {
            return None;
        }
        let size = len.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let map_len = size + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping, checked before use; the aligned
        // start plus `size` lies inside it (one huge page of slack for the alignment).
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return None;
            }
            let p = p as *mut u8;
            let aligned = p.add(p.align_offset(HUGE_PAGE));
            // A hint: where it is refused the copy lands on ordinary pages.
            libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
            Some((p, map_len, aligned as *const u8))
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn map(_: usize) -> Option<(*mut u8, usize, *const u8)> {
        None
    }
}

impl Deref for HugePageBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self.map {
            // SAFETY: `len` bytes copied in at `aligned`, alive until `drop`.
            Some((_, _, aligned)) => unsafe { std::slice::from_raw_parts(aligned, self.len) },
            None => &self.fallback,
        }
    }
}

impl AsRef<[u8]> for HugePageBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for HugePageBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugePageBytes")
            .field("len", &self.len)
            .field("mapped", &self.map.is_some())
            .finish()
    }
}

impl Drop for HugePageBytes {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some((p, map_len, _)) = self.map {
            // SAFETY: the mapping made in `map`, unmapped once.
            unsafe { libc::munmap(p as *mut libc::c_void, map_len) };
        }
    }
}
