//! Embeds the libtorch library folder as the runpath of every binary, test and example,
//! so `target/release/attn` runs with `LD_LIBRARY_PATH` unset.
//!
//! torch-sys (`links = "tch"`) reports the folder it linked against as `libtorch_lib`,
//! which Cargo hands to direct dependents as `DEP_TCH_LIBTORCH_LIB`.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
        if os == "linux" || os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        // Recorded so that `attn doctor` can say which folder the build expected.
        println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB={lib}");
    } else {
        println!("cargo:rustc-env=TCH_ATTENTION_LIBTORCH_LIB=");
    }
}
