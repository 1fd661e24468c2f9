//! Embeds the libtorch library folder as the runpath of every binary, test and example,
//! so `target/release/attn` runs with `LD_LIBRARY_PATH` unset.
//!
//! torch-sys (`links = "tch"`) reports the folder it linked against as `libtorch_lib`,
//! which Cargo hands to direct dependents as `DEP_TCH_LIBTORCH_LIB`.
//!
//! `libtorch_cuda` is deliberately not linked: rustc links with `--as-needed`, no Rust
//! symbol refers to it, so the linker drops it, and a CPU start-up does not load the
//! CUDA libraries. `tch_attention::device::load_cuda_backend` opens it at run time when
//! a CUDA device is asked for (src/device.rs).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
        if os == "linux" || os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        // Recorded so that `attn doctor` can say which folder the build expected, and
        // so that the CUDA backend is found beside it.
        println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB={lib}");
    } else {
        println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB=");
    }
}
