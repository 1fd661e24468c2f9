//! What a machine can run: the thread count and the memory a configuration needs,
//! checked before anything is allocated, so that an absurd request (`--seq 10000000`,
//! `--threads 100000`) is a clear error instead of a process the kernel kills.

use tch::{Device, Kind};

use super::config::{dtype_name, BenchConfig, BenchModule, Mode};
use super::lecture_gpt::{self, LectureGptSizes};
use super::nanogpt_gpt;
use crate::error::{Error, Result};
use crate::parity::ModuleKind;

/// Threads allowed per CPU the process may use: oversubscribing a little can be an
/// experiment worth running; a thousand threads a core cannot.
pub const THREADS_PER_CPU: usize = 4;

/// The share of the available memory a configuration may take: the estimate counts
/// only the tensors it must hold, not libtorch's own allocations and workspaces.
const MEMORY_SHARE: f64 = 0.75;

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

/// Refuses `config` when [`min_bytes`] exceeds `MEMORY_SHARE` of `available` bytes,
/// or (whatever the machine) when its sizes overflow libtorch's 64-bit sizes.
pub fn check_memory(config: &BenchConfig, available: Option<f64>) -> Result<()> {
    let need = min_bytes(config);
    let gib = |bytes: f64| format!("{:.1} GiB", bytes / (1u64 << 30) as f64);
    let c = config;
    let what = format!(
        "{} {} at B={}, T={}, C={}, nh={}, hs={} in {}",
        c.module,
        c.mode.name(),
        c.batch,
        c.seq,
        c.embd,
        c.heads,
        c.head_size,
        dtype_name(c.kind)
    );
    if need > i64::MAX as f64 {
        return Err(Error::config(
            "memory",
            format!("{what}: its sizes overflow 64-bit integers"),
        ));
    }
    match available {
        Some(free) if need > MEMORY_SHARE * free => Err(Error::config(
            "memory",
            format!(
                "{what} needs at least {}, more than {:.0}% of the {} this machine has available",
                gib(need),
                MEMORY_SHARE * 100.0,
                gib(free)
            ),
        )),
        _ => Ok(()),
    }
}

/// The sizes of a whole-model training run, as `attn train` takes them: a run that
/// would not fit in memory is refused before the model is built (a `--n-embd` or
/// `--batch-size` of billions otherwise reaches libtorch's allocator). `nanogpt`
/// picks nanoGPT's GPT over the lecture's; `vocab` is the corpus's.
#[derive(Debug, Clone, Copy)]
pub struct TrainingSizes {
    /// nanoGPT's GPT (else the lecture's).
    pub nanogpt: bool,
    /// `batch_size`.
    pub batch: i64,
    /// `block_size`.
    pub block: i64,
    /// `n_embd`.
    pub embd: i64,
    /// `n_head`.
    pub heads: i64,
    /// `n_layer`.
    pub layers: i64,
    /// The vocabulary's size.
    pub vocab: i64,
    /// Where it trains.
    pub device: Device,
}

/// Refuses a training run whose model, optimizer state and one step's activations
/// ([`min_bytes`] of the same sizes as a `train` suite's step) exceed `MEMORY_SHARE` of
/// the memory available now, or overflow 64-bit sizes. The sizes must have passed the
/// model's own checks (positive, `embd` divisible by `heads`).
pub fn check_training(t: &TrainingSizes) -> Result<()> {
    let sizes = LectureGptSizes {
        n_layer: t.layers,
        vocab: t.vocab,
        dropout: 0.0,
        learning_rate: None,
        new_tokens: None,
    };
    let config = BenchConfig {
        suite: "train".into(),
        name: "train".into(),
        module: if t.nanogpt {
            BenchModule::NanoGpt(sizes)
        } else {
            BenchModule::LectureGpt(sizes)
        },
        mode: Mode::TrainStep,
        batch: t.batch,
        seq: t.block,
        embd: t.embd,
        heads: t.heads,
        head_size: t.embd / t.heads.max(1),
        kind: Kind::Float,
        device: t.device,
        warmup: 0,
        repeats: 1,
        window: None,
    };
    check_memory(&config, available_memory(t.device))
}

/// A lower bound on the bytes one configuration holds at once: parameters, inputs,
/// outputs and the activations its step must keep, counting a `T x T` score matrix
/// only for the lecture's modules, which materialise it (the others use the fused
/// kernel). Floats, so that absurd sizes cannot overflow.
pub fn min_bytes(config: &BenchConfig) -> f64 {
    let (b, t, c, nh, hs) = config.sizes();
    let elem = match config.kind {
        Kind::Double => 8.0,
        Kind::Half | Kind::BFloat16 => 2.0,
        _ => 4.0,
    };
    let module = match config.module {
        BenchModule::Attention(m) => m,
        BenchModule::LectureGpt(sizes) => return elem * lecture_gpt::min_elements(config, &sizes),
        // The model file's tensors are checked against its size when it is read.
        BenchModule::Llama(_) => return 0.0,
        BenchModule::NanoGpt(sizes) => return elem * nanogpt_gpt::min_elements(config, &sizes),
    };
    // Per head of the lecture: tril, then q, k, v and the scores, masked and softmaxed.
    let lecture_head = t * t + b * t * 3.0 * hs + 3.0 * b * t * t;
    let (params, activations) = match module {
        ModuleKind::Head => (3.0 * c * hs, lecture_head),
        ModuleKind::MultiHead => (
            nh * 3.0 * c * hs + nh * hs * c,
            nh * b * t * hs + lecture_head,
        ),
        ModuleKind::CausalSelfAttention => (4.0 * c * c, 4.0 * b * t * c),
        // The additive causal mask is T x T.
        ModuleKind::MultiheadAttention => (4.0 * c * c, 4.0 * b * t * c + t * t),
        ModuleKind::Sdpa => (0.0, 3.0 * b * nh * t * hs),
    };
    let output = b
        * t
        * match module {
            ModuleKind::Head => hs,
            ModuleKind::Sdpa => nh * hs,
            _ => c,
        };
    let held = match config.mode {
        // The backward pass keeps the forward's activations and makes gradients of all.
        Mode::Backward => 2.0 * (params + activations + output),
        // Decoding prefills the cache: a forward pass over T - 1 tokens, whose keys and
        // values it keeps.
        Mode::Decode => params + 4.0 * b * t * c,
        // Whole-model modes are refused for attention modules by `validate`.
        Mode::Forward | Mode::TrainStep | Mode::Sample | Mode::Prefill => {
            params + activations + output
        }
    };
    elem * held
}

#[cfg(test)]
mod tests {
    use super::{check_memory, check_steps, check_threads, min_bytes, MAX_STEPS};
    use crate::bench::{BenchConfig, BenchModule, Mode};
    use crate::parity::ModuleKind;
    use tch::{Device, Kind};

    fn sdpa(seq: i64) -> BenchConfig {
        BenchConfig {
            suite: "custom".into(),
            name: "sdpa".into(),
            module: BenchModule::Attention(ModuleKind::Sdpa),
            mode: Mode::Forward,
            batch: 4,
            seq,
            embd: 32,
            heads: 1,
            head_size: 32,
            kind: Kind::Float,
            device: Device::Cpu,
            warmup: 1,
            repeats: 1,
            window: None,
        }
    }

    #[test]
    fn a_configuration_larger_than_the_machine_is_refused() {
        // q, k, v and the output: 4 tensors of 4 * 10^7 * 32 floats, 20.5 GB.
        let big = sdpa(10_000_000);
        assert!((min_bytes(&big) - 4.0 * 4.0 * 4e7 * 32.0).abs() < 1.0);
        let err = check_memory(&big, Some(16e9)).unwrap_err().to_string();
        assert!(
            err.contains("memory") && err.contains("T=10000000"),
            "{err}"
        );
        assert!(check_memory(&big, Some(64e9)).is_ok());
        assert!(check_memory(&sdpa(8192), Some(1e9)).is_ok());
        // Whatever the machine, sizes beyond 64 bits are refused.
        let err = check_memory(&sdpa(i64::MAX), None).unwrap_err().to_string();
        assert!(err.contains("overflow"), "{err}");
    }

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
