//! The kernels' thread setting, apart from libtorch's.
//!
//! libtorch parallelises its operators with OpenMP, whose workers spin for a while after
//! each parallel region (libgomp's default wait policy). The kernels' own pool
//! (`pool.rs`) spins too, between products. When both have two threads on a 2-core
//! machine, a decoding step — products, then libtorch's norms and attention, then
//! products — has four threads spinning for two cores: `--quant gguf` decoded SmolLM2 at
//! 17.8 ms/token on two threads against 11.9 on one (bench/RESULTS.md). A step on the
//! kernels spends its time in their products; the operators between them act on one
//! token's vectors and gain nothing from threads. So [`dedicate_threads`] gives the
//! kernels the threads and libtorch's operators one: no OpenMP worker ever wakes, and
//! prefill's dequantised tiles run on the kernels' threads too (one libtorch matmul per
//! thread, `block_linear.rs`).
//!
//! Unset (0), the kernels follow libtorch's setting (`tch::get_num_threads()`).

use std::sync::atomic::{AtomicUsize, Ordering};

static KERNEL_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The threads a product may use: [`set_threads`]'s value, or libtorch's intra-op
/// thread count where none was set.
pub fn threads() -> usize {
    match KERNEL_THREADS.load(Ordering::Relaxed) {
        0 => tch::get_num_threads().max(1) as usize,
        n => n,
    }
}

/// Sets the threads a product may use (0: follow libtorch's setting).
pub fn set_threads(n: usize) {
    KERNEL_THREADS.store(n, Ordering::Relaxed);
}

/// Both thread settings, as they were before [`dedicate_threads`] changed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "restore() puts the settings back; drop it to keep the new ones"]
pub struct ThreadSettings {
    kernels: usize,
    libtorch: i32,
}

impl ThreadSettings {
    /// Puts both settings back.
    pub fn restore(self) {
        set_threads(self.kernels);
        tch::set_num_threads(self.libtorch);
    }
}

/// Gives the kernels `n` threads (at least 1) and libtorch's operators one, for a model
/// whose products run on the kernels (`--quant gguf`); returns the settings before.
pub fn dedicate_threads(n: usize) -> ThreadSettings {
    let before = ThreadSettings {
        kernels: KERNEL_THREADS.load(Ordering::Relaxed),
        libtorch: tch::get_num_threads(),
    };
    set_threads(n.max(1));
    tch::set_num_threads(1);
    before
}
