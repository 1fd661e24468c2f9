//! Benchmarks of the crate's modules, run the same way as `scripts/bench_torch.py` runs
//! the PyTorch references, so that the two can be compared side by side (`make bench`).
//!
//! - [`config`]: one configuration, and the [`WholeModel`] trait of whole models;
//! - [`suites`]: the named suites of `bench/suites.json`;
//! - [`limits`]: the threads and memory a machine allows, checked before allocating;
//! - [`step`]: one timed step; [`workload`]: an attention module's, for a configuration;
//! - [`training`]: the memory check of `attn train`;
//! - [`lecture_gpt`]: the lecture's whole model: a training step, and sampling;
//! - [`llama`]: SmolLM2 (a Llama GGUF) generating: prefill and per-token decoding;
//! - [`serve`]: SmolLM2 served: streams decoded together, time to first token;
//! - [`nanogpt_gpt`]: nanoGPT's whole model: a `train.py` iteration;
//! - [`runner`]: warm-up, repeats, timing, throughput and peak memory;
//! - [`stats`], [`memory`]: medians and percentiles, resident-set measurement.

pub mod config;
pub mod lecture_gpt;
pub mod limits;
pub mod llama;
pub mod memory;
pub mod nanogpt_gpt;
pub mod runner;
pub mod serve;
pub mod stats;
pub mod step;
pub mod suites;
pub mod training;
pub mod workload;

pub use config::{BenchConfig, BenchModule, Mode, WholeModel};
pub use limits::check_threads;
pub use runner::{matmul_gflops, measure, Measurement};
pub use suites::{MODEL_SUITES, SUITES};
