//! `memory::keep_freed_memory`: once set, a large tensor freed and allocated again
//! reuses the pages it had, where glibc's default maps (and the kernel zeroes) fresh
//! ones. Its own test binary without libtest's harness: the setting is process-wide,
//! and libtest would run the check on a worker thread whose malloc arena predates it.

use tch::{Kind, Tensor};

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage only fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    usage.ru_minflt
}

/// The faults of allocating and filling a 64 MiB float tensor (16384 pages), after one
/// such tensor has been allocated and freed.
fn faults_of_second_allocation() -> i64 {
    let size = [16 * 1024 * 1024];
    drop(Tensor::ones(size, (Kind::Float, tch::Device::Cpu)));
    let before = minor_faults();
    let t = Tensor::ones(size, (Kind::Float, tch::Device::Cpu));
    let after = minor_faults();
    assert_eq!(t.double_value(&[0]), 1.0);
    after - before
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    let default = faults_of_second_allocation();
    assert!(
        default > 8000,
        "glibc's default was expected to map fresh pages: {default} faults"
    );
    assert!(tch_attention::memory::keep_freed_memory());
    let kept = faults_of_second_allocation();
    assert!(
        kept < 500,
        "with the setting, a second 64 MiB allocation faulted {kept} pages (default {default})"
    );
    println!("keep_freed_memory: {default} faults by default, {kept} kept: ok");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    assert!(!tch_attention::memory::keep_freed_memory());
    println!("keep_freed_memory: not glibc, nothing changes: ok");
}
