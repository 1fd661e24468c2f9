//! Peak resident memory of one configuration, measured in-process the same way on both
//! sides of `make bench` (scripts/bench_torch.py does exactly this through ctypes):
//!
//! 1. `malloc_trim(0)` hands freed heap back to the system, so memory that an earlier
//!    configuration freed is not silently reused below the baseline;
//! 2. writing `5` to `/proc/self/clear_refs` resets the kernel's high-water mark
//!    (`VmHWM`) to the current resident set (Linux >= 4.0);
//! 3. after the configuration ran, `VmHWM` is its peak and `VmHWM - baseline` is what it
//!    added (module, inputs, activations, workspace).
//!
//! On other systems, or when `/proc` is not writable, the figures are `None`.

/// Resets the high-water mark; returns the resident set (MiB) it starts from.
pub fn reset_peak() -> Option<f64> {
    trim_heap();
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_mib("VmRSS:")
}

/// The resident-set high-water mark (MiB) since the last [`reset_peak`].
pub fn peak() -> Option<f64> {
    status_mib("VmHWM:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only releases free heap pages; any pad is valid.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}
