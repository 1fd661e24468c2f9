//! The CUDA paths, covered by the same checks as the CPU ones when a CUDA device is
//! present; without one each test says it skipped and passes (`attn doctor` tells which).
//! scripts/gpu_check.sh runs them on a GPU machine through `cargo test` or the binaries.

use std::path::PathBuf;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::bench::config::suite;
use tch_attention::bench::{measure, SUITES};
use tch_attention::models::lecture::{Head, HeadConfig};
use tch_attention::parity::{collect_case_files, Case};

fn cuda() -> Option<Device> {
    // Loads libtorch_cuda first: the binaries link libtorch_cpu alone (src/device.rs).
    if tch_attention::device::cuda_device(0).is_ok() {
        Some(Device::Cuda(0))
    } else {
        eprintln!("skipped: no CUDA device available to this libtorch");
        None
    }
}

/// Parity cases on the GPU against PyTorch's CPU references, in float32 and float64.
/// Train-mode dropout cannot match (the CUDA generator draws other masks), and half
/// types are left to `attn verify --device cuda`: the GPU's half kernels accumulate
/// differently from the CPU references they are compared with.
#[test]
fn parity_cases_on_cuda() {
    let Some(device) = cuda() else { return };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases");
    let (files, _) = collect_case_files(&[dir]).unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("dropout") && name.contains("train") {
            continue;
        }
        let case = Case::read(file).unwrap();
        if !matches!(case.kind(), Kind::Float | Kind::Double) {
            continue;
        }
        ran += 1;
        let outcome = case.run(device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = case.compare(&outcome).unwrap();
        if !report.passed() {
            failures.push(name);
        }
    }
    assert!(ran > 50, "only {ran} cases ran");
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn head_fast_path_on_cuda_matches_cpu() {
    let Some(device) = cuda() else { return };
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let h = Head::new(vs.root(), HeadConfig::new(32, 16, 8)).unwrap();
    let x = Tensor::randn([4, 8, 32], (Kind::Float, Device::Cpu));
    let cpu = tch::no_grad(|| h.f_forward_t(&x, false).unwrap());
    let mut vs_gpu = VarStore::new(device);
    let hg = Head::new(vs_gpu.root(), HeadConfig::new(32, 16, 8)).unwrap();
    vs_gpu.copy(&vs).unwrap();
    vs_gpu.set_device(device);
    let gpu = tch::no_grad(|| hg.f_forward_t(&x.to(device), false).unwrap());
    assert!(gpu.to(Device::Cpu).allclose(&cpu, 1e-4, 1e-5, false));
}

#[test]
fn every_bench_suite_runs_on_cuda() {
    let Some(device) = cuda() else { return };
    for name in SUITES {
        for config in suite(name, Kind::Float, device, true).unwrap() {
            let m = measure(&config, &mut |_, _| {}).unwrap();
            assert!(m.median_ms > 0.0, "{name}/{}", config.name);
        }
    }
}
