//! Gives this crate's binaries, tests and examples the libtorch folder as their runpath,
//! so they start with `LD_LIBRARY_PATH` unset. tch-attention's build script reports the
//! folder it was built against (its `links` key makes it `DEP_TCH_ATTENTION_LIBTORCH_LIB`
//! here); a runpath is only ever given by the build script of the crate that owns the
//! binary, so every dependent needs these lines.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_ATTENTION_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_ATTENTION_LIBTORCH_LIB").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !lib.is_empty() && (os == "linux" || os == "macos") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
