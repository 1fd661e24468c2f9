//! What the machine can still allocate, asked before a large allocation so that a
//! hostile file or an absurd configuration is a clear [`Error::TooLarge`] instead of a
//! process the kernel kills.
//!
//! [`Error::TooLarge`]: crate::Error::TooLarge

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

/// `bytes` in the largest binary unit that keeps a number of at least 1 (`4.0 TiB`).
pub fn human_bytes(bytes: u64) -> String {
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

/// Makes glibc's `malloc` keep the memory libtorch frees for its next allocations,
/// instead of handing it back to the kernel: every block comes from the heap (no
/// `mmap` per large tensor) and the heap is never trimmed. Returns whether the
/// setting took (`false` off glibc, where nothing changes).
///
/// Why: glibc serves each block above its mmap threshold (at most 32 MiB) with a fresh
/// `mmap` and returns it with `munmap` when freed. A training step of nanoGPT's
/// shakespeare_char configuration allocates its `(B, nh, T, T)` attention tensors
/// (100 MB each) anew in every layer, forward and backward, so the kernel maps and
/// zeroes over a million pages per step; on this project's 2-core virtual machine that
/// was a third of the run's time (`attn train`, 2 iterations: 35 s of system time in
/// 93 s). With this setting a step after the first reuses the pages it already has
/// (bench/RESULTS.md). The price: the process keeps its peak memory until it exits.
///
/// It helps what the main thread allocates (glibc's main arena, the `brk` heap): the
/// arenas of other threads are made of mmap'd heaps of at most 64 MiB and keep mapping
/// larger blocks afresh. libtorch allocates a tensor on the thread that calls the op,
/// so a program that trains on its main thread, as `attn` does, gets it all.
///
/// It changes the whole process, so the library never calls it; the `attn` binary
/// does for `train`, `sample`, `generate` and the bench suites of whole models (`train`,
/// `generate`), and so may any program that trains. A Python process
/// can be given the same settings through glibc's environment variables
/// (`MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets malloc's parameters; both values are documented
        // ones (man 3 mallopt: -1 disables trimming; 0 disables the use of mmap).
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Makes every freed block of at least 1 MiB go straight back to the system: glibc's
/// `M_MMAP_THRESHOLD` fixed at 1 MiB, which also turns off its dynamic threshold. By
/// default glibc raises the threshold to the size of each large block freed, after which
/// blocks of that size come from the heap and its freed pages stay mapped; a command
/// that streams a tensor through one 16 MiB piece at a time then grew by about 100 MiB
/// (`attn convert` of a 512 MiB stride-0 view) instead of one piece.
///
/// The opposite of [`keep_freed_memory`], for commands that move data rather than
/// repeat steps; process-wide, so the library never calls it (the `attn` binary does
/// for `convert`).
pub fn return_freed_memory() -> bool {
    return_freed_memory_above(1 << 20)
}

/// [`return_freed_memory`] for blocks of at least `bytes` (glibc's `M_MMAP_THRESHOLD`):
/// `attn generate` loads a model with 64 KiB, so that the key/value projections'
/// dequantised temporaries (a few hundred KiB each) go back too instead of leaving holes
/// in the heap between the weights (SmolLM2's float32 load peaked 58 MiB higher with
/// 1 MiB).
pub fn return_freed_memory_above(bytes: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets malloc's parameters; M_MMAP_THRESHOLD takes a size.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = bytes;
        false
    }
}
