//! What this CPU offers: its SIMD extensions, and the kernel class libtorch picks on it.
//!
//! Two x86 CPUs can give different answers for the same reduced-precision computation:
//! PyTorch's bfloat16 matmuls run oneDNN's native `vdpbf16ps` dot products on a CPU with
//! AVX-512 BF16 and an emulation on one without. A reference whose value depends on the
//! CPU's kernels is therefore only valid on a machine with the same
//! [`Capability::kernel_key`]: tests regenerate such references where the key differs
//! (README, "Testing").

/// The x86 extensions that decide which kernels libtorch (ATen, oneDNN, MKL) and the
/// crate's own kernels can use, as Linux names them in `/proc/cpuinfo`.
pub const SIMD_FLAGS: [&str; 13] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

/// The extensions that change the arithmetic of reduced-precision matmuls (native
/// bfloat16 / float16 dot products and tiles), beyond ATen's own class.
pub const REDUCED_PRECISION_FLAGS: [&str; 4] =
    ["avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"];

/// A snapshot of the CPU's capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The flags of [`SIMD_FLAGS`] and [`REDUCED_PRECISION_FLAGS`] this CPU has, in
    /// `/proc/cpuinfo`'s spelling (empty where that file does not exist).
    pub flags: Vec<String>,
    /// libtorch's own class, as `torch.backends.cpu.get_cpu_capability()` reports it
    /// (`"DEFAULT"`, `"AVX2"`, `"AVX512"`, ...); `None` where it cannot be asked.
    pub libtorch: Option<String>,
}

impl Capability {
    /// Reads `/proc/cpuinfo` and asks the loaded libtorch.
    pub fn detect() -> Self {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            flags: flags_of(&text),
            libtorch: libtorch_capability(),
        }
    }

    /// Whether the CPU has `flag` (`/proc/cpuinfo`'s spelling).
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// One line for people: the widest vector extension and what it adds, e.g.
    /// `AVX-512 (VNNI, BF16, FP16)`, `AVX2 (FMA)` or `no AVX2`.
    pub fn summary(&self) -> String {
        let (base, extras): (&str, &[(&str, &str)]) = if self.has("avx512f") {
            (
                "AVX-512",
                &[
                    ("avx512_vnni", "VNNI"),
                    ("avx512_bf16", "BF16"),
                    ("avx512_fp16", "FP16"),
                ],
            )
        } else if self.has("avx2") {
            ("AVX2", &[("fma", "FMA"), ("avx_vnni", "AVX-VNNI")])
        } else {
            return "no AVX2".to_string();
        };
        let mut extras: Vec<&str> = extras
            .iter()
            .filter(|(flag, _)| self.has(flag))
            .map(|(_, name)| *name)
            .collect();
        if self.has("amx_tile") {
            extras.push("AMX");
        }
        if extras.is_empty() {
            base.to_string()
        } else {
            format!("{base} ({})", extras.join(", "))
        }
    }

    /// The key under which a CPU-dependent reference is valid: libtorch's class and the
    /// reduced-precision extensions, e.g. `AVX512+avx512_bf16+avx512_fp16` or `AVX2`.
    /// `scripts/fixture_common.py`'s `cpu_kernel_key()` computes the same string from
    /// Python, and writes it into such fixtures' metadata as `cpu_kernels`.
    pub fn kernel_key(&self) -> String {
        let mut key = self
            .libtorch
            .clone()
            .unwrap_or_else(|| "UNKNOWN".to_string());
        for flag in REDUCED_PRECISION_FLAGS {
            if self.has(flag) {
                key.push('+');
                key.push_str(flag);
            }
        }
        key
    }
}

/// The flags of the first `flags` line of a `/proc/cpuinfo` text that are in
/// [`SIMD_FLAGS`] or [`REDUCED_PRECISION_FLAGS`], in that order.
pub fn flags_of(cpuinfo: &str) -> Vec<String> {
    let present: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.split_whitespace().collect())
        .unwrap_or_default();
    SIMD_FLAGS
        .iter()
        .chain(
            REDUCED_PRECISION_FLAGS
                .iter()
                .filter(|f| !SIMD_FLAGS.contains(f)),
        )
        .filter(|f| present.contains(f))
        .map(|f| f.to_string())
        .collect()
}

/// libtorch's `at::get_cpu_capability()`, which `torch.backends.cpu.get_cpu_capability()`
/// returns: the ATen kernel class (after `ATEN_CPU_CAPABILITY`, which overrides it).
///
/// tch binds no such function, so it is looked up in the loaded `libtorch_cpu` by its
/// C++ name. It returns a `std::string` (libstdc++'s C++11 ABI: pointer, length, and a
/// 16-byte inline buffer, returned through a hidden pointer); anything unexpected gives
/// `None` rather than a guess.
#[cfg(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu"))]
pub fn libtorch_capability() -> Option<String> {
    #[repr(C)]
    struct StdString {
        ptr: *const u8,
        len: usize,
        buf: [u8; 16],
    }
    const NAME: &[u8] = b"_ZN2at18get_cpu_capabilityB5cxx11Ev\0";
    // SAFETY: dlsym on the process's global scope with a NUL-terminated name.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, NAME.as_ptr().cast()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: the symbol is `std::string at::get_cpu_capability()`; on x86-64 SysV a
    // std::string is returned through a hidden pointer to caller-owned storage of its
    // size (32 bytes), which `out` is.
    let f: extern "C" fn(*mut StdString) = unsafe { std::mem::transmute(sym) };
    let mut out = std::mem::MaybeUninit::<StdString>::zeroed();
    f(out.as_mut_ptr());
    let p = out.as_ptr();
    // SAFETY: the function wrote a valid std::string into `out`, which stays in place.
    let (ptr, len, buf) = unsafe {
        (
            (*p).ptr,
            (*p).len,
            std::ptr::addr_of!((*p).buf).cast::<u8>(),
        )
    };
    // The class names are short, so they live in the inline buffer; a heap string would
    // mean another ABI (and is left alone rather than freed with a guessed allocator).
    if ptr != buf || len == 0 || len > 15 {
        return None;
    }
    // SAFETY: `len` bytes of the inline buffer were written by the callee.
    let bytes = unsafe { std::slice::from_raw_parts(buf, len) };
    let name = std::str::from_utf8(bytes).ok()?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| name.to_string())
}

/// libtorch's `at::get_cpu_capability()` (not looked up on this platform).
#[cfg(not(all(target_os = "linux", target_arch = "x86_64", target_env = "gnu")))]
pub fn libtorch_capability() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_from_the_first_flags_line() {
        let text = "processor: 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 sse\n\
                    flags\t\t: avx512_fp16\n";
        assert_eq!(flags_of(text), ["avx2", "fma", "avx512f", "avx512_bf16"]);
        let c = Capability {
            flags: flags_of(text),
            libtorch: Some("AVX512".into()),
        };
        assert_eq!(c.summary(), "AVX-512 (BF16)");
        assert_eq!(c.kernel_key(), "AVX512+avx512_bf16");
    }

    #[test]
    fn an_avx2_cpu_and_an_unknown_libtorch() {
        let c = Capability {
            flags: vec!["avx2".into(), "fma".into()],
            libtorch: None,
        };
        assert_eq!(c.summary(), "AVX2 (FMA)");
        assert_eq!(c.kernel_key(), "UNKNOWN");
        let bare = Capability {
            flags: vec![],
            libtorch: None,
        };
        assert_eq!(bare.summary(), "no AVX2");
    }
}
