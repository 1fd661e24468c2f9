//! The CUDA paths, covered by the same checks as the CPU ones. Every test here is
//! `#[ignore]`d, so a plain `cargo test` leaves them out; `cargo test --test cuda --
//! --ignored` runs them, and then each FAILS when libtorch sees no CUDA device (`attn
//! doctor` tells why): a GPU check that passes without a GPU would prove nothing.
//! scripts/gpu_check.sh runs them on a GPU machine.

use std::path::PathBuf;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tch_attention::bench::suites::suite;
use tch_attention::bench::{measure, SUITES};
use tch_attention::models::lecture::{Head, HeadConfig};
use tch_attention::parity::{collect_case_files, Case};

/// The first CUDA device, its backend loaded first (the binaries link libtorch_cpu
/// alone, src/device.rs); panics (fails the test) when libtorch sees none.
fn cuda() -> Device {
    tch_attention::device::cuda_device(0).unwrap_or_else(|e| {
        panic!("no CUDA device available to this libtorch (see `attn doctor`): {e}")
    })
}

/// Parity cases on the GPU against PyTorch's CPU references, in float32 and float64.
/// Train-mode dropout cannot match (the CUDA generator draws other masks), and half
/// types are left to `attn verify --device cuda`: the GPU's half kernels accumulate
/// differently from the CPU references they are compared with.
#[test]
#[ignore = "needs a CUDA device; run with --ignored on a GPU machine"]
fn parity_cases_on_cuda() {
    let device = cuda();
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
#[ignore = "needs a CUDA device; run with --ignored on a GPU machine"]
fn head_fast_path_on_cuda_matches_cpu() {
    let device = cuda();
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
#[ignore = "needs a CUDA device; run with --ignored on a GPU machine"]
fn every_bench_suite_runs_on_cuda() {
    let device = cuda();
    for name in SUITES {
        for config in suite(name, Kind::Float, device, true).unwrap() {
            let m = measure(&config, &mut |_, _| {}).unwrap();
            assert!(m.median_ms > 0.0, "{name}/{}", config.name);
        }
    }
}
