//! What a machine can run: the thread count and the memory a configuration needs,
//! checked before anything is allocated, so that an absurd request (`--seq 10000000`,
//! `--threads 100000`) is a clear error instead of a process the kernel kills.

use tch::Device;

use crate::error::{Error, Result};

/// Threads allowed per CPU the process may use: oversubscribing a little can be an
/// experiment worth running; a thousand threads a core cannot.
pub const THREADS_PER_CPU: usize = 4;

/// The share of the available memory a configuration may take: the estimate counts
/// only the tensors it must hold, not libtorch's own allocations and workspaces.
pub(super) const MEMORY_SHARE: f64 = 0.75;

/// The most warm-up steps, and the most timed steps, one configuration may ask for:
/// each timed step's time is kept (8 bytes), and ten million steps of the smallest
/// configuration already take minutes. A larger count is a typing error, refused before
/// anything is allocated (`--repeats 18446744073709551615` once reached an allocation).
pub const MAX_STEPS: usize = 10_000_000;

/// Checks the warm-up and timed step counts: `repeats` at least 1, both at most
/// [`MAX_STEPS`].
pub fn check_steps(warmup: usize, repeats: usize) -> Result<()> {
    for (field, steps, min) in [("warmup", warmup, 0), ("repeats", repeats, 1)] {
        if steps < min || steps > MAX_STEPS {
            return Err(Error::config(
                field,
                format!("must be between {min} and {MAX_STEPS}, got {steps}"),
            ));
        }
    }
    Ok(())
}

/// Checks an intra-op thread count: at least 1, at most [`THREADS_PER_CPU`] times the
/// CPUs this process may use (`std::thread::available_parallelism`).
pub fn check_threads(threads: i64) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let max = cpus.saturating_mul(THREADS_PER_CPU);
    if threads < 1 || usize::try_from(threads).map_or(true, |t| t > max) {
        return Err(Error::config(
            "threads",
            format!("must be between 1 and {max} ({THREADS_PER_CPU} per available CPU, {cpus} CPUs), got {threads}"),
        ));
    }
    Ok(())
}

/// The memory that can be allocated now, in bytes: `MemAvailable` from `/proc/meminfo`
/// for the CPU on Linux; `None` where it is not known (other systems, CUDA devices,
/// whose allocator fails with an error of its own instead of being killed).
pub fn available_memory(device: Device) -> Option<f64> {
    if device != Device::Cpu {
        return None;
    }
    crate::memory::available_memory().map(|bytes| bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::{check_steps, check_threads, MAX_STEPS};

    #[test]
    fn step_counts_are_bounded_before_anything_is_allocated() {
        assert!(check_steps(0, 1).is_ok());
        assert!(check_steps(MAX_STEPS, MAX_STEPS).is_ok());
        for (warmup, repeats, field, got) in [
            (0, 0, "repeats", 0),
            (0, MAX_STEPS + 1, "repeats", MAX_STEPS + 1),
            (0, usize::MAX, "repeats", usize::MAX),
            (MAX_STEPS + 1, 1, "warmup", MAX_STEPS + 1),
            (usize::MAX, usize::MAX, "warmup", usize::MAX),
        ] {
            let err = check_steps(warmup, repeats).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains(&got.to_string()) && err.contains("10000000"),
                "{err}"
            );
        }
    }

    #[test]
    fn thread_counts_are_bounded_by_the_cpus() {
        assert!(check_threads(1).is_ok());
        for bad in [0, -1, 100_000, i64::MAX] {
            let err = check_threads(bad).unwrap_err().to_string();
            assert!(
                err.contains("threads") && err.contains(&bad.to_string()),
                "{err}"
            );
        }
    }
}
