//! Devices, and loading libtorch's CUDA backend only when a CUDA device is asked for.
//!
//! The PyPI wheel's libtorch is a CUDA build. Linking `libtorch_cuda` into every binary
//! made each start-up load the CUDA libraries (measured on a CPU machine: `attn
//! --version` 0.45 s of CPU and 497 MB resident, against 0.29 s and 112 MB with
//! `libtorch_cpu` alone), so the binaries link only what Rust calls, and
//! [`load_cuda_backend`] opens `libtorch_cuda` at run time. Its static initialisers
//! register libtorch's CUDA hooks exactly as when it is linked.
//!
//! libtorch looks the hooks up once, on the first CUDA query (`getCUDAHooks` caches what
//! it finds), so the backend must be loaded before anything asks about CUDA: call
//! [`load_cuda_backend`] (or [`cuda_device`]) first.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tch::Device;

use crate::error::{Error, Result};

/// Loads `libtorch_cuda` from the folder the running libtorch came from. `Ok(true)` when
/// it is loaded (now or before), `Ok(false)` when this libtorch has no CUDA backend (a
/// CPU-only build); an error when the library is there but cannot be loaded. Idempotent
/// and cheap after the first call.
pub fn load_cuda_backend() -> Result<bool> {
    static LOADED: OnceLock<std::result::Result<bool, String>> = OnceLock::new();
    LOADED
        .get_or_init(open_cuda_library)
        .clone()
        .map_err(|reason| Error::invalid("libtorch_cuda", reason))
}

/// CUDA device `index`, its backend loaded; an error when none is available.
pub fn cuda_device(index: usize) -> Result<Device> {
    if !load_cuda_backend()? {
        return Err(Error::invalid(
            "device",
            "this libtorch is a CPU-only build: it has no libtorch_cuda",
        ));
    }
    let count = tch::Cuda::device_count();
    if (index as i64) < count {
        Ok(Device::Cuda(index))
    } else {
        Err(Error::invalid(
            "device",
            format!("CUDA device {index} requested, {count} available to this libtorch"),
        ))
    }
}

/// Whether `libtorch_cuda` is mapped into this process.
pub fn cuda_backend_loaded() -> bool {
    loaded_library_dir("libtorch_cuda.").is_some()
}

/// The folder a library of this process whose file name starts with `prefix` was loaded
/// from (from `/proc/self/maps`; `None` elsewhere).
pub fn loaded_library_dir(prefix: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|f| f.starts_with(prefix))
        })
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
}

fn open_cuda_library() -> std::result::Result<bool, String> {
    if cuda_backend_loaded() {
        return Ok(true);
    }
    // The running libtorch's folder first, so the backend always matches it; then the
    // folder the build linked against.
    let built = env!("TCH_ATTENTION_LIBTORCH_LIB");
    let dirs = loaded_library_dir("libtorch_cpu.")
        .into_iter()
        .chain((!built.is_empty()).then(|| PathBuf::from(built)));
    let Some(lib) = dirs.map(|d| d.join(library_name())).find(|p| p.is_file()) else {
        return Ok(false);
    };
    let c_path = CString::new(lib.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: a path with a NUL byte", lib.display()))?;
    // SAFETY: dlopen with a valid C string; the handle is kept for the process's life
    // (never dlclose'd), as a linked library would be.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(format!("cannot load {}: {why}", lib.display()));
    }
    Ok(true)
}

fn library_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libtorch_cuda.dylib"
    } else {
        "libtorch_cuda.so"
    }
}
