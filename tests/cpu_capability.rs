//! The CPU's capability as the crate reads it (src/cpu.rs) against PyTorch's own answer
//! on the same machine, and `attn doctor`'s lines for it.

mod common;

use std::process::Command;

use tch_attention::cpu::Capability;

fn python(code: &str) -> String {
    let out = Command::new(common::setup_python())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))
        .env_remove("ATEN_CPU_CAPABILITY")
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn libtorch_class_and_kernel_key_equal_pytorchs() {
    let c = Capability::detect();
    eprintln!("{} / {:?} / {}", c.summary(), c.libtorch, c.kernel_key());
    let torch = python("import torch; print(torch.backends.cpu.get_cpu_capability())");
    assert_eq!(c.libtorch.as_deref(), Some(torch.as_str()));
    let key = python("from cpu_kernels import cpu_kernel_key; print(cpu_kernel_key())");
    assert_eq!(c.kernel_key(), key);
}

#[test]
fn doctor_prints_the_simd_capability_and_libtorchs_class() {
    let out = common::attn(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let c = Capability::detect();
    let simd = format!("CPU SIMD           {}", c.summary());
    let class = format!(
        "libtorch kernels   {} ",
        c.libtorch.as_deref().unwrap_or("unknown")
    );
    assert!(stdout.contains(&simd), "{stdout}");
    assert!(stdout.contains(&class), "{stdout}");
    assert!(stdout.contains(&c.kernel_key()), "{stdout}");
    let kernels = format!(
        "block kernels      {} ",
        tch_attention::nn::kernels::describe()
    );
    assert!(stdout.contains(&kernels), "{stdout}");
}
