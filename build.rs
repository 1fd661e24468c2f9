//! Embeds the libtorch library folder as the runpath of every binary, test and example,
//! so `target/release/attn` runs with `LD_LIBRARY_PATH` unset, and hands the folder on
//! to crates that depend on this one.
//!
//! torch-sys (`links = "tch"`) reports the folder it linked against as `libtorch_lib`,
//! which Cargo hands to direct dependents as `DEP_TCH_LIBTORCH_LIB`. A runpath given
//! here reaches only this package's own binaries, so this crate declares `links =
//! "tch_attention"` and passes the folder on the same way: a dependent's build script
//! reads `DEP_TCH_ATTENTION_LIBTORCH_LIB` and embeds it (README, "Use it in your crate";
//! examples/downstream/build.rs).
//!
//! `libtorch_cuda` is deliberately not linked: rustc links with `--as-needed`, no Rust
//! symbol refers to it, so the linker drops it, and a CPU start-up does not load the
//! CUDA libraries. `tch_attention::device::load_cuda_backend` opens it at run time when
//! a CUDA device is asked for (src/device.rs), from the folder the running libtorch came
//! from, so a dependent needs nothing more than the runpath.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // Unset in torch-sys's documentation-only mode (feature `doc-only`, docs.rs), where
    // there is no libtorch to point at.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !lib.is_empty() {
        let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
        if os == "linux" || os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        // For dependents: DEP_TCH_ATTENTION_LIBTORCH_LIB (the `links` key in Cargo.toml).
        println!("cargo:libtorch_lib={lib}");
    }
    // Recorded so that `attn doctor` can say which folder the build expected, and so
    // that the CUDA backend is found beside it.
    println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB={lib}");
}
