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
