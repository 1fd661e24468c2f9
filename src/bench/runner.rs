//! Times a [`BenchConfig`]: warm-up steps, then `repeats` steps each timed alone (the
//! device synchronised before the clock stops), reported as median and 10th/90th
//! percentiles, throughput, and peak resident memory (see [`super::memory`]).

use std::time::Instant;

use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

use super::config::{dtype_name, BenchConfig, BenchModule};
use super::memory;
use super::stats::percentile;
use super::workload::prepare;
use crate::error::Result;

/// What one configuration measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured.
    pub config: BenchConfig,
    /// libtorch's intra-op threads during the measurement.
    pub threads: i32,
    /// One step (forward, forward + backward, one decoded token, one training step or
    /// one whole sample), milliseconds.
    pub median_ms: f64,
    /// The 10th percentile of the step times, milliseconds.
    pub p10_ms: f64,
    /// The 90th percentile of the step times, milliseconds.
    pub p90_ms: f64,
    /// [`BenchConfig::flops`] over the median time.
    pub gflops: f64,
    /// Resident-set high-water mark while the configuration ran, MiB.
    pub peak_rss_mb: Option<f64>,
    /// That mark minus the resident set just before the module was built, MiB.
    pub peak_delta_mb: Option<f64>,
}

/// Progress of a measurement, for a progress bar: `done` of `total` steps.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Builds the workload and times it.
pub fn measure(config: &BenchConfig, progress: Progress) -> Result<Measurement> {
    let baseline = memory::reset_peak();
    let total = config.warmup + config.repeats;
    let mut samples = Vec::with_capacity(config.repeats);
    {
        // Eval without grad, as `torch.no_grad()` on the PyTorch side.
        let _no_grad = (!config.mode.needs_grad()).then(tch::no_grad_guard);
        let mut work = prepare(config)?;
        for i in 0..total {
            let start = Instant::now();
            work.step()?;
            let elapsed = start.elapsed().as_secs_f64() * 1e3;
            if i >= config.warmup {
                samples.push(elapsed);
            }
            progress(i + 1, total);
        }
    }
    let peak = memory::peak();
    let median_ms = percentile(&samples, 50.0);
    Ok(Measurement {
        config: config.clone(),
        threads: tch::get_num_threads(),
        median_ms,
        p10_ms: percentile(&samples, 10.0),
        p90_ms: percentile(&samples, 90.0),
        gflops: config.flops() / (median_ms * 1e-3) / 1e9,
        peak_rss_mb: peak,
        peak_delta_mb: peak.zip(baseline).map(|(p, b)| p - b),
    })
}

/// The machine's own matmul throughput, GFLOP/s: the median of 10 timed
/// `(n, n) @ (n, n)` products after 3 warm-ups, on `device` in `kind` — the practical
/// ceiling for the modules, which are mostly matmuls.
pub fn matmul_gflops(n: i64, kind: Kind, device: Device) -> Result<f64> {
    let a = Tensor::f_randn([n, n], (kind, device))?;
    let b = Tensor::f_randn([n, n], (kind, device))?;
    let mut samples = Vec::new();
    for i in 0..13 {
        let start = Instant::now();
        let _ = a.f_matmul(&b)?;
        if let Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
        if i >= 3 {
            samples.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(2.0 * (n as f64).powi(3) / percentile(&samples, 50.0) / 1e9)
}

impl Measurement {
    /// One JSON object: the configuration's fields, then the figures.
    pub fn to_json(&self, matmul_gflops: f64) -> Value {
        let c = &self.config;
        let mut row = json!({
            "side": "tch",
            "suite": c.suite,
            "name": c.name,
            "module": c.module.to_string(),
            "mode": c.mode.name(),
            "batch": c.batch,
            "seq": c.seq,
            "embd": c.embd,
            "heads": c.heads,
            "head_size": c.head_size,
            "dtype": dtype_name(c.kind),
            "device": device_name(c.device),
            "threads": self.threads,
            "warmup": c.warmup,
            "repeats": c.repeats,
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "gflops": self.gflops,
            "matmul_gflops": matmul_gflops,
            "peak_rss_mb": self.peak_rss_mb,
            "peak_delta_mb": self.peak_delta_mb,
        });
        // Machines differ: every row says which SIMD it ran on, and which kernels.
        let cpu = crate::cpu::Capability::detect();
        row["cpu_simd"] = cpu.summary().into();
        row["libtorch_kernels"] = cpu.libtorch.unwrap_or_default().into();
        row["block_kernels"] = crate::nn::kernels::describe().into();
        if let BenchModule::Model(model) = &c.module {
            model.row_fields(&mut row);
        }
        row
    }
}

/// `cpu` or `cuda`, as `--device` reads it.
pub fn device_name(device: Device) -> &'static str {
    match device {
        Device::Cuda(_) => "cuda",
        _ => "cpu",
    }
}
