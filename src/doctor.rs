//! What `attn doctor` reports about the libtorch this process actually loaded.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

/// The libtorch version this crate is built for (tch 0.26).
#[cfg(not(feature = "torch-2-11"))]
pub const EXPECTED_LIBTORCH: &str = "2.13.0";
/// The libtorch version this crate is built for (tch 0.24, compat/torch-2.11).
#[cfg(feature = "torch-2-11")]
pub const EXPECTED_LIBTORCH: &str = "2.11.0";

/// The scaled-dot-product-attention kernels, numbered as libtorch's `SDPBackend`.
pub fn sdp_backend_name(code: i64) -> &'static str {
    match code {
        0 => "math",
        1 => "flash_attention",
        2 => "efficient_attention",
        3 => "cudnn_attention",
        4 => "overrideable",
        _ => "none",
    }
}

/// A snapshot of the linked libtorch.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The folder `libtorch_cpu` was loaded from (from `/proc/self/maps`).
    pub lib_dir: Option<PathBuf>,
    /// The version found beside it (`torch/version.py` of a wheel, or `build-version`).
    pub version: Option<String>,
    /// The folder the crate was built against.
    pub built_against: String,
    /// Whether `libtorch_cuda` is loaded: without it CUDA can never be available, GPU
    /// or not (`collect` loads it, as `--device cuda` does; start-up does not).
    pub cuda_backend_loaded: bool,
    /// Whether libtorch sees at least one CUDA device.
    pub cuda_available: bool,
    /// Whether cuDNN is available to libtorch.
    pub cudnn_available: bool,
    /// How many CUDA devices libtorch sees.
    pub cuda_devices: i64,
    /// libtorch's intra-op thread count.
    pub threads: i32,
    /// `(device, dtype, kernel libtorch picks for a small causal call)`.
    pub sdp_choices: Vec<(String, String, String)>,
    /// The CPU's SIMD extensions and libtorch's kernel class on it.
    pub cpu: crate::cpu::Capability,
    /// The crate's own GGUF block kernels this CPU gets (`scalar`, `avx2`,
    /// `avx512-vnni`, `avx512`), chosen by feature at run time.
    pub block_kernels: &'static str,
}

impl Diagnosis {
    /// Looks at the running process: which libtorch it loaded, from where, CUDA, threads
    /// and the SDPA kernel choices. Loads the CUDA backend first (see
    /// [`crate::device::load_cuda_backend`]).
    pub fn collect() -> Self {
        // Before any CUDA query: libtorch looks its CUDA hooks up once (src/device.rs).
        // A failure to load shows as `cuda_backend_loaded: false`.
        let _ = crate::device::load_cuda_backend();
        let lib_dir = crate::device::loaded_library_dir("libtorch_cpu.");
        let version = lib_dir.as_ref().and_then(|d| version_beside(d));
        let cuda_available = tch::Cuda::is_available();
        let mut devices = vec![Device::Cpu];
        if cuda_available {
            devices.push(Device::Cuda(0));
        }
        let mut sdp_choices = Vec::new();
        for device in devices {
            for kind in [Kind::Float, Kind::Half, Kind::BFloat16, Kind::Double] {
                let choice = fused_choice(device, kind)
                    .map(sdp_backend_name)
                    .unwrap_or("error");
                sdp_choices.push((
                    format!("{device:?}"),
                    format!("{kind:?}"),
                    choice.to_string(),
                ));
            }
        }
        Self {
            lib_dir,
            version,
            built_against: env!("TCH_ATTENTION_LIBTORCH_LIB").to_string(),
            cuda_backend_loaded: crate::device::loaded_library_dir("libtorch_cuda.").is_some(),
            cuda_available,
            cudnn_available: tch::Cuda::cudnn_is_available(),
            cuda_devices: tch::Cuda::device_count(),
            threads: tch::get_num_threads(),
            sdp_choices,
            cpu: crate::cpu::Capability::detect(),
            block_kernels: crate::nn::kernels::describe(),
        }
    }

    /// Healthy when the loaded libtorch is the version this crate was built for;
    /// otherwise what is wrong (how to fix it depends on how the crate was built, so
    /// that is the caller's to say).
    pub fn problem(&self) -> Option<String> {
        match &self.version {
            Some(v) if v.split('+').next() == Some(EXPECTED_LIBTORCH) => None,
            Some(v) => Some(format!(
                "libtorch {v} is loaded but this build needs {EXPECTED_LIBTORCH}"
            )),
            None => Some(format!(
                "cannot tell which libtorch is loaded (folder {:?}); this build needs {EXPECTED_LIBTORCH}",
                self.lib_dir
            )),
        }
    }
}

/// The version of the libtorch this process loaded, e.g. `2.13.0+cu130`.
pub fn loaded_libtorch_version() -> Option<String> {
    crate::device::loaded_library_dir("libtorch_cpu.").and_then(|d| version_beside(&d))
}

/// The kernel libtorch's dispatcher picks for a small causal self-attention call.
fn fused_choice(device: Device, kind: Kind) -> Option<i64> {
    let q = Tensor::f_zeros([1, 2, 8, 16], (kind, device)).ok()?;
    Tensor::f_internal_fused_sdp_choice(&q, &q, &q, None::<Tensor>, 0.0, true, None, false).ok()
}

fn version_beside(lib_dir: &std::path::Path) -> Option<String> {
    let parent = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(parent.join("version.py")) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let v = rest.trim_start_matches([' ', '=', ':']).trim();
                let v = v
                    .rsplit('=')
                    .next()
                    .unwrap_or(v)
                    .trim()
                    .trim_matches(['\'', '"']);
                return Some(v.to_string());
            }
        }
    }
    std::fs::read_to_string(parent.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
}
