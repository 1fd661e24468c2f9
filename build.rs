//! Embeds the libtorch library folder as the runpath of every binary, test and example,
//! so `target/release/attn` runs with `LD_LIBRARY_PATH` unset.
//!
//! torch-sys (`links = "tch"`) reports the folder it linked against as `libtorch_lib`,
//! which Cargo hands to direct dependents as `DEP_TCH_LIBTORCH_LIB`.
//!
//! With a CUDA libtorch, torch-sys asks for `torch_cuda` but rustc links with
//! `--as-needed`, and no Rust symbol refers to `torch_cuda`: the linker drops it, the
//! CUDA backend never registers, and `tch::Cuda::is_available()` is false even on a GPU
//! machine. So the binaries name it with `--no-as-needed` around it.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
        if os == "linux" || os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
            let cuda = std::path::Path::new(&lib).join("libtorch_cuda.so");
            if os == "linux" && cuda.exists() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
            }
        }
        // Recorded so that `attn doctor` can say which folder the build expected.
        println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB={lib}");
    } else {
        println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB=");
    }
}
