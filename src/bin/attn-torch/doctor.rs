//! `attn doctor`: what libtorch this binary loaded, and whether it is the one it expects.

use std::process::ExitCode;

use anyhow::Result;
use tch_attention::doctor::Diagnosis;

pub fn run() -> Result<ExitCode> {
    let d = Diagnosis::collect();
    let dir = d
        .lib_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "unknown".into());
    let version = d.version.clone().unwrap_or_else(|| "unknown".into());
    let ok = d.problem().is_none();
    let expected = tch_attention::doctor::EXPECTED_LIBTORCH;
    println!(
        "libtorch version   {version} ({})",
        if ok {
            format!("the {expected} this build expects")
        } else {
            format!("NOT the {expected} this build expects")
        }
    );
    println!("loaded from        {dir}");
    println!("built against      {}", d.built_against);
    println!(
        "CUDA backend       {}",
        if d.cuda_backend_loaded {
            "libtorch_cuda loaded"
        } else {
            "not loaded (a CPU-only libtorch)"
        }
    );
    println!(
        "CUDA available     {} ({} device(s))",
        d.cuda_available, d.cuda_devices
    );
    println!("cuDNN available    {}", d.cudnn_available);
    println!("threads            {}", d.threads);
    println!("CPU SIMD           {}", d.cpu.summary());
    println!("  flags            {}", d.cpu.flags.join(" "));
    println!(
        "libtorch kernels   {} (torch.backends.cpu.get_cpu_capability())",
        d.cpu.libtorch.as_deref().unwrap_or("unknown")
    );
    println!(
        "block kernels      {} (the crate's GGUF block matmuls, --quant gguf)",
        d.block_kernels
    );
    println!(
        "reference key      {} (CPU-dependent test references are valid where this matches)",
        d.cpu.kernel_key()
    );
    println!("SDPA kernels       math is always available; the fused dispatcher picks, for a causal (1, 2, 8, 16) call:");
    for (device, kind, choice) in &d.sdp_choices {
        println!("  {device:<8} {kind:<9} {choice}");
    }
    match d.problem() {
        None => Ok(ExitCode::SUCCESS),
        Some(p) => {
            let fix = if d.version.is_some() {
                format!("rebuild with `make` (or point LIBTORCH at a libtorch {expected})")
            } else {
                format!("run `make setup` and rebuild, or point LIBTORCH at a libtorch {expected}")
            };
            eprintln!("attn: {p}: {fix}");
            Ok(ExitCode::from(2))
        }
    }
}
