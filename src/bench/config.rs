//! What one benchmark runs: an attention module at one size, or a whole model through
//! the [`WholeModel`] trait that each model's benchmark implements in its own file, so
//! that nothing here (nor the runner) names a model. The named suites that build these
//! configurations from `bench/suites.json` are `super::suites`.

use std::any::Any;
use std::sync::Arc;

use serde::Deserialize;
use tch::{Device, Kind};

use super::limits;
use super::step::Workload;
use crate::error::{Error, Result};
use crate::parity::ModuleKind;

/// What one timed step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One forward pass in eval mode, without grad.
    Forward,
    /// One forward pass in train mode (dropout 0), then `output.sum().backward()`.
    Backward,
    /// One new token attended to a KV cache holding `seq - 1` tokens (eval, no grad).
    Decode,
    /// One iteration of the lecture's training loop on a whole model (`lecture_gpt`):
    /// `get_batch`, forward, loss, `zero_grad(set_to_none=True)`, backward, AdamW step.
    #[serde(rename = "train_step")]
    TrainStep,
    /// `generate`: `new_tokens` sampled from a zero context by a whole model
    /// (`lecture_gpt`), in eval mode without grad.
    Sample,
    /// A whole decoder LM (`smollm2`): the prompt's forward pass into the KV cache and
    /// the first token's choice.
    Prefill,
}

impl Mode {
    /// `forward`, `backward` or `decode`, as suites.json names it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Backward => "backward",
            Mode::Decode => "decode",
            Mode::TrainStep => "train_step",
            Mode::Sample => "sample",
            Mode::Prefill => "prefill",
        }
    }

    /// Whether the step needs autograd (the runner turns it off otherwise).
    pub fn needs_grad(self) -> bool {
        matches!(self, Mode::Backward | Mode::TrainStep)
    }
}

/// A whole model as a benchmark (`lecture_gpt`, `nanogpt_gpt`, `smollm2`): its own
/// sizes beyond B, T, C, nh, hs, and what the runner and the limits need of it.
pub trait WholeModel: std::fmt::Debug + Send + Sync {
    /// The name suites.json gives it.
    fn name(&self) -> &'static str;
    /// The checks of a configuration that runs it (B, T, C, nh, hs are positive).
    fn validate(&self, config: &BenchConfig) -> Result<()>;
    /// The matmul FLOPs of one step; 0 (the default) where only the loaded model knows
    /// them (a decoder's file: its `measure` counts them).
    fn flops(&self, _config: &BenchConfig) -> f64 {
        0.0
    }
    /// A lower bound on the elements of the dtype one step holds; 0 (the default) where
    /// a model file's own sizes are checked when it is read.
    fn min_elements(&self, _config: &BenchConfig) -> f64 {
        0.0
    }
    /// The seeded model and one timed step.
    fn prepare(&self, config: &BenchConfig) -> Result<Workload>;
    /// Its own fields, under suites.json's names, added to its JSON row.
    fn row_fields(&self, row: &mut serde_json::Value);
    /// For callers that need the concrete benchmark (a model file to hand it).
    fn as_any(&self) -> &dyn Any;
}

/// [`WholeModel`] for a benchmark type `$ty` (a newtype over its sizes) whose module
/// has the free functions `validate`, `flops`, `min_elements` and `prepare` of
/// `(config, &sizes)`, and whose sizes have `row_fields`: the two GPTs.
macro_rules! whole_model {
    ($ty:ty, $name:literal) => {
        impl $crate::bench::WholeModel for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn validate(&self, config: &BenchConfig) -> Result<()> {
                validate(config, &self.0)
            }
            fn flops(&self, config: &BenchConfig) -> f64 {
                flops(config, &self.0)
            }
            fn min_elements(&self, config: &BenchConfig) -> f64 {
                min_elements(config, &self.0)
            }
            fn prepare(&self, config: &BenchConfig) -> Result<Workload> {
                prepare(config, &self.0)
            }
            fn row_fields(&self, row: &mut serde_json::Value) {
                self.0.row_fields(row)
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
        }
    };
}
pub(super) use whole_model;

/// What a configuration times: an attention module of the parity cases, or a whole
/// model built from them.
#[derive(Debug, Clone)]
pub enum BenchModule {
    /// One attention module, sized by B, T, C, nh, hs.
    Attention(ModuleKind),
    /// A whole model: T, C, nh as the model reads them (see each [`WholeModel`]).
    Model(Arc<dyn WholeModel>),
}

impl BenchModule {
    /// The whole model's benchmark as its concrete type, if it is one of `T`.
    pub fn model<T: 'static>(&self) -> Option<&T> {
        match self {
            BenchModule::Model(m) => m.as_any().downcast_ref(),
            BenchModule::Attention(_) => None,
        }
    }
}

/// The same module kind, or the same whole model with the same sizes.
impl PartialEq for BenchModule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BenchModule::Attention(a), BenchModule::Attention(b)) => a == b,
            (BenchModule::Model(a), BenchModule::Model(b)) => format!("{a:?}") == format!("{b:?}"),
            _ => false,
        }
    }
}

impl std::fmt::Display for BenchModule {
    /// The name suites.json gives it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchModule::Attention(m) => m.fmt(f),
            BenchModule::Model(m) => f.write_str(m.name()),
        }
    }
}

/// One configuration: a module of the parity cases at one size.
///
/// Sizes use PyTorch's letters: `batch` B, `seq` T, `embd` C, `heads` nh, `head_size` hs.
/// `head` has one head of `head_size` over C channels; `multi_head` has nh of them;
/// `causal_self_attention` and `multihead_attention` need `C = nh * hs`; `sdpa` takes
/// q, k, v of `(B, nh, T, hs)` and ignores C. Every configuration is causal.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// The suite it belongs to, or `custom`.
    pub suite: String,
    /// Its name within the suite (joins the two sides of `make bench`).
    pub name: String,
    /// The module (or whole model) it times.
    pub module: BenchModule,
    /// What one step does.
    pub mode: Mode,
    /// B.
    pub batch: i64,
    /// T (for [`Mode::Decode`], the context: `T - 1` cached tokens and one new).
    pub seq: i64,
    /// C.
    pub embd: i64,
    /// nh.
    pub heads: i64,
    /// hs.
    pub head_size: i64,
    /// The dtype of parameters and inputs.
    pub kind: Kind,
    /// Where it runs.
    pub device: Device,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub repeats: usize,
    /// `sdpa` only: a causal sliding window of W keys (transformers' `sliding_window`:
    /// each query sees itself and the `W - 1` before it). `None`: plain causal.
    pub window: Option<i64>,
}

/// `f32`, `f64`, `f16`, `bf16` as dtypes.
pub fn parse_dtype(s: &str) -> Result<Kind> {
    match s {
        "f32" => Ok(Kind::Float),
        "f64" => Ok(Kind::Double),
        "f16" => Ok(Kind::Half),
        "bf16" => Ok(Kind::BFloat16),
        _ => Err(Error::config(
            "dtype",
            format!("expected f32, f64, f16 or bf16, got {s:?}"),
        )),
    }
}

/// The short name of a dtype, as [`parse_dtype`] reads it.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Double => "f64",
        Kind::Half => "f16",
        Kind::BFloat16 => "bf16",
        _ => "f32",
    }
}

impl BenchConfig {
    /// Checks every field once, before anything is built: sizes, the module's
    /// constraints, and that the configuration fits in the memory the machine has now
    /// (see [`BenchConfig::check_memory`]).
    pub fn validate(&self) -> Result<()> {
        self.validate_fields()?;
        self.check_memory(limits::available_memory(self.device))
    }

    /// The checks that depend on the fields alone.
    fn validate_fields(&self) -> Result<()> {
        limits::check_steps(self.warmup, self.repeats)?;
        for (field, v) in [
            ("batch", self.batch),
            ("seq", self.seq),
            ("embd", self.embd),
            ("heads", self.heads),
            ("head_size", self.head_size),
        ] {
            if v < 1 {
                return Err(Error::config(field, format!("must be at least 1, got {v}")));
            }
        }
        let m = match &self.module {
            BenchModule::Attention(m) => *m,
            BenchModule::Model(model) => return model.validate(self),
        };
        if matches!(self.mode, Mode::TrainStep | Mode::Sample | Mode::Prefill) {
            return Err(Error::config(
                "mode",
                format!(
                    "{} runs a whole model (lecture_gpt), not {m}",
                    self.mode.name()
                ),
            ));
        }
        if m == ModuleKind::Head && self.heads != 1 {
            return Err(Error::config(
                "heads",
                format!("head has one head, got {}", self.heads),
            ));
        }
        let fused = matches!(
            m,
            ModuleKind::CausalSelfAttention | ModuleKind::MultiheadAttention
        );
        if fused && Some(self.embd) != self.heads.checked_mul(self.head_size) {
            return Err(Error::config(
                "embd",
                format!(
                    "{m} needs embd = heads * head_size = {} * {}, got {}",
                    self.heads, self.head_size, self.embd
                ),
            ));
        }
        if let Some(w) = self.window {
            if m != ModuleKind::Sdpa || w < 1 {
                return Err(Error::config(
                    "window",
                    format!("a window of W >= 1 keys is for sdpa, got {w} for {m}"),
                ));
            }
        }
        if self.mode == Mode::Decode && (m != ModuleKind::CausalSelfAttention || self.seq < 2) {
            return Err(Error::config(
                "mode",
                "decode runs causal_self_attention with seq >= 2 (seq - 1 cached tokens, one new)",
            ));
        }
        Ok(())
    }

    /// The floating-point operations of one step: matmuls only, 2 per multiply-add.
    /// Causal attention counts the `T (T + 1) / 2` query-key pairs it keeps (as
    /// FlashAttention's papers do); a backward pass counts twice its forward.
    pub fn flops(&self) -> f64 {
        let module = match &self.module {
            BenchModule::Attention(m) => *m,
            BenchModule::Model(model) => return model.flops(self),
        };
        let (b, t, c, nh, hs) = self.sizes();
        // Queries in this step, and the query-key pairs they score.
        let (tq, pairs) = match (self.mode, self.window) {
            (Mode::Decode, _) => (1.0, t),
            // A window of W keeps W pairs per query, fewer for the first W - 1.
            (_, Some(w)) if (w as f64) < t => {
                let w = w as f64;
                (t, w * (w + 1.0) / 2.0 + (t - w) * w)
            }
            _ => (t, t * (t + 1.0) / 2.0),
        };
        let attention = 2.0 * 2.0 * b * nh * pairs * hs; // q @ k^T and weights @ v
        let linear = |inp: f64, out: f64| 2.0 * b * tq * inp * out;
        let forward = attention
            + match module {
                ModuleKind::Head => nh * linear(c, 3.0 * hs),
                ModuleKind::MultiHead => nh * linear(c, 3.0 * hs) + linear(nh * hs, c),
                ModuleKind::CausalSelfAttention | ModuleKind::MultiheadAttention => {
                    linear(c, 3.0 * c) + linear(c, c)
                }
                ModuleKind::Sdpa => 0.0,
            };
        match self.mode {
            Mode::Backward | Mode::TrainStep => 3.0 * forward,
            _ => forward,
        }
    }

    /// A lower bound on the bytes one configuration holds at once: parameters, inputs,
    /// outputs and the activations its step must keep, counting a `T x T` score matrix
    /// only for the lecture's modules, which materialise it (the others use the fused
    /// kernel). Floats, so that absurd sizes cannot overflow.
    pub fn min_bytes(&self) -> f64 {
        let (b, t, c, nh, hs) = self.sizes();
        let elem = match self.kind {
            Kind::Double => 8.0,
            Kind::Half | Kind::BFloat16 => 2.0,
            _ => 4.0,
        };
        let module = match &self.module {
            BenchModule::Attention(m) => *m,
            BenchModule::Model(model) => return elem * model.min_elements(self),
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
        let held = match self.mode {
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

    /// Refuses `config` when [`BenchConfig::min_bytes`] exceeds `limits::MEMORY_SHARE` of
    /// `available` bytes,
    /// or (whatever the machine) when its sizes overflow libtorch's 64-bit sizes.
    pub fn check_memory(&self, available: Option<f64>) -> Result<()> {
        let need = self.min_bytes();
        let gib = |bytes: f64| format!("{:.1} GiB", bytes / (1u64 << 30) as f64);
        let c = self;
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
            Some(free) if need > limits::MEMORY_SHARE * free => Err(Error::config(
                "memory",
                format!(
                    "{what} needs at least {}, more than {:.0}% of the {} this machine has available",
                    gib(need),
                    limits::MEMORY_SHARE * 100.0,
                    gib(free)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `(B, T, C, nh, hs)` as floats, for estimates.
    pub(crate) fn sizes(&self) -> (f64, f64, f64, f64, f64) {
        (
            self.batch as f64,
            self.seq as f64,
            self.embd as f64,
            self.heads as f64,
            self.head_size as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{BenchConfig, BenchModule, Mode};
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
        assert!((big.min_bytes() - 4.0 * 4.0 * 4e7 * 32.0).abs() < 1.0);
        let err = big.check_memory(Some(16e9)).unwrap_err().to_string();
        assert!(
            err.contains("memory") && err.contains("T=10000000"),
            "{err}"
        );
        assert!(big.check_memory(Some(64e9)).is_ok());
        assert!(sdpa(8192).check_memory(Some(1e9)).is_ok());
        // Whatever the machine, sizes beyond 64 bits are refused.
        let err = sdpa(i64::MAX).check_memory(None).unwrap_err().to_string();
        assert!(err.contains("overflow"), "{err}");
    }
}
