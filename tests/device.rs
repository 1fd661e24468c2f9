//! libtorch's CUDA backend is loaded only when asked for (src/device.rs): a start-up on a
//! CPU machine maps `libtorch_cpu` alone, and `load_cuda_backend` maps `libtorch_cuda`
//! from the running libtorch's folder.

use tch_attention::device::{cuda_backend_loaded, load_cuda_backend, loaded_library_dir};

/// One test, so no other test in this process loads the backend first.
#[test]
fn the_cuda_backend_loads_only_when_asked_for() {
    let cpu = loaded_library_dir("libtorch_cpu.").expect("libtorch_cpu is mapped");
    assert!(
        !cuda_backend_loaded(),
        "libtorch_cuda was loaded at start-up (is it linked with --no-as-needed again?)"
    );
    let has_cuda_build = cpu.join("libtorch_cuda.so").is_file();
    assert_eq!(
        load_cuda_backend().expect("load libtorch_cuda"),
        has_cuda_build
    );
    assert_eq!(cuda_backend_loaded(), has_cuda_build);
    if has_cuda_build {
        assert_eq!(loaded_library_dir("libtorch_cuda."), Some(cpu));
    }
    // Idempotent.
    assert_eq!(load_cuda_backend().expect("again"), has_cuda_build);
}
