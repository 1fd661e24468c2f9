"""The key under which a reference computed by CPU-dependent kernels is valid.

    from cpu_kernels import cpu_kernel_key
    save_file(tensors, path, metadata={"cpu_kernels": cpu_kernel_key()})

PyTorch's reduced-precision matmuls take different kernels on different x86 CPUs (oneDNN's
native bfloat16 dot products on a CPU with AVX-512 BF16, an emulation elsewhere), and a
whole model's logits differ by more than bfloat16's tolerance between them. Such a fixture
records this key; a test on a machine whose key differs regenerates the reference there
(tests/common/mod.rs, machine_reference). The Rust side computes the same string:
tch_attention::cpu::Capability::kernel_key (src/cpu.rs). Importing this module has no
side effects (unlike fixture_common, which pins ATen's kernels before torch loads).
"""
import torch

# src/cpu.rs REDUCED_PRECISION_FLAGS, in the same order.
REDUCED_PRECISION_FLAGS = ["avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"]


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_kernel_key():
    """libtorch's kernel class and the reduced-precision extensions present, e.g.
    `AVX512+avx512_bf16+avx512_fp16` or `AVX2`."""
    flags = cpu_flags()
    key = torch.backends.cpu.get_cpu_capability()
    return key + "".join("+" + f for f in REDUCED_PRECISION_FLAGS if f in flags)


def made_here(path):
    """Whether the safetensors file at `path` records this machine's key."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        made_for = (f.metadata() or {}).get("cpu_kernels", "unrecorded")
    return made_for == cpu_kernel_key(), made_for


if __name__ == "__main__":
    # cpu_kernels.py            prints this machine's key
    # cpu_kernels.py FILE       exits 1 (saying so) unless FILE was made for this key
    import sys
    if len(sys.argv) == 2:
        same, made_for = made_here(sys.argv[1])
        if not same:
            print(f"{sys.argv[1]}: made for CPU kernels {made_for}, this machine is "
                  f"{cpu_kernel_key()}: not compared")
        sys.exit(0 if same else 1)
    print(cpu_kernel_key())
