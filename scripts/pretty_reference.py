#!/usr/bin/env python
"""PyTorch's own `str(tensor)` for a set of tensors, the reference for `src/pretty.rs`.

Writes `pretty/reprs.safetensors` under the output folder (default `tests/fixtures`):

- one tensor per case, under the case's name;
- in `__metadata__`: under each case's name, `str()` of that tensor as PyTorch 2.13 prints
  it with the default print options; `cases`, a JSON array of
  `{"name", "size"[, "complex"][, "requires_grad"][, "suffixes"][, "device"]}` in the
  order the cases were made (`size` is `str(t.shape)`; `complex`: the stored tensor is
  `view_as_real` of the printed one; `requires_grad`: the printed tensor was a leaf that
  requires grad; `suffixes`: what the caller must pass to `tensor_repr_with`, here the
  `grad_fn=<...>` tch cannot name; `device`: the string is that of the tensor moved to
  `cuda:0`); `torch_version`; `seed`.

The bytes are the same on every run and every machine: the file is written here, with
sorted keys, rather than by `safetensors.torch.save_file` (whose metadata order varies
from run to run), and no value comes from a kernel whose rounding depends on the CPU.

    python scripts/pretty_reference.py [--out DIR]
"""

import argparse
import json
import math
import struct
import warnings
from pathlib import Path

import torch
from torch._tensor_str import _add_suffixes, _tensor_str

SEED = 20240613
RELATIVE_PATH = Path("pretty") / "reprs.safetensors"

SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def normalish(gen, *shape, dtype=torch.float32):
    """Bell-shaped pseudo-random values (mean 0, deviation about 1.15) that are bit-identical
    on every machine: the sum of four uniform integers from torch's generator, divided by
    2**20, exact in float32. torch.randn is not used because its float32 CPU kernel takes
    a different path (and rounds differently) depending on the CPU's vector instructions."""
    k = torch.randint(-(2**20), 2**20, (4, *shape), generator=gen).sum(0)
    return (k.to(torch.float64) / 2**20).to(dtype)


def cuda_str(t):
    """`str(t.to("cuda:0"))`, built with PyTorch's own helpers so no GPU is needed: the
    contents print as on the CPU and `device='cuda:0'` is the first suffix."""
    suffixes = ["device='cuda:0'"]
    if t.dtype not in (torch.float32, torch.complex64, torch.int64, torch.bool):
        suffixes.append(f"dtype={t.dtype}")
    text = _add_suffixes("tensor(" + _tensor_str(t, len("tensor(")), suffixes, 7, False)
    if torch.cuda.is_available():
        assert text == str(t.to("cuda:0")), (text, str(t.to("cuda:0")))
    return text


def make_cases():
    """[(name, tensor to store, expected string, extra case fields)], in a fixed order."""
    gen = torch.Generator().manual_seed(SEED)
    nan, inf = math.nan, math.inf
    f32, f64 = torch.float32, torch.float64
    cases = []

    def case(name, t, **extra):
        cases.append((name, t, str(t), extra))

    # Shapes from one to five dimensions.
    case("randn_1d", normalish(gen, 5))
    case("randn_2d", normalish(gen, 4, 8))
    case("randn_3d", normalish(gen, 2, 3, 4))
    case("randn_4d", normalish(gen, 2, 2, 3, 4))
    case("randn_5d", normalish(gen, 2, 1, 2, 1, 3))
    case("single", normalish(gen, 1))
    case("unit_dims", normalish(gen, 1, 1, 3))
    # Rows wider than 80 columns wrap.
    case("wide_1d", normalish(gen, 30))
    case("wide_rows", normalish(gen, 3, 25) * 100)
    case("wide_4d", normalish(gen, 2, 1, 2, 20))
    # Scientific notation: tiny, huge, and a spread over more than three decades.
    case("sci_small", normalish(gen, 2, 5) * 1e-5)
    case("sci_large", normalish(gen, 4) * 1e9)
    case("sci_ratio", torch.tensor([0.001, 1.5, 2000.5]))
    case("sci_extremes_f32", torch.tensor([1e-38, -3e38, 1.0]))
    case("sci_extremes_f64", torch.tensor([1e-300, -1e300, 1.0], dtype=f64))
    case("sci_wide", normalish(gen, 20) * 1e-6)
    # The edges of the mode choice: 1e-4 is below 1e-4 in float32 but not in float64;
    # a ratio of exactly 1000 is not above 1000.
    case("edge_min_f32", torch.tensor([0.0001, 0.1]))
    case("edge_min_f64", torch.tensor([0.0001, 0.1], dtype=f64))
    case("edge_ratio_int", torch.tensor([1.0, 1000.0]))
    case("edge_ratio_frac", torch.tensor([0.5, 500.0]))
    case("edge_max", torch.tensor([1e8, 5e7], dtype=f64))
    case("over_max", torch.tensor([1.5e8, 1e8], dtype=f64))
    # Integral floats print as "3."; also in scientific notation.
    case("int_mode", torch.tensor([1.0, -2.0, 300.0, 0.0, -0.0]))
    case("int_mode_sci", torch.tensor([1e9, 2.0, -3.0]))
    case("int_mode_2d", torch.arange(-6.0, 6.0).reshape(3, 4))
    # NaN, infinities and zeros take no part in the choice of mode and width.
    case("nonfinite", torch.tensor([nan, inf, -inf, 0.0, 1.5, -0.0]))
    case("nonfinite_int", torch.tensor([1.0, inf, 0.0, nan]))
    case("nonfinite_sci", torch.tensor([1e-5, -inf, nan]))
    case("negative_nan", -torch.tensor([nan, 2.25]))
    case("all_zero", torch.zeros(2, 3))
    case("signed_zeros", torch.tensor([-0.0, 0.0]))
    case("all_nan", torch.tensor([nan, nan]))
    case("all_inf", torch.tensor([inf, -inf]))
    # Ties at the fourth decimal round to even.
    case("ties", torch.tensor([0.03125, 0.09375, -0.15625, 1.00005, 0.5]))
    # What attention code prints: causal weights and masked scores.
    tril = torch.tril(torch.ones(8, 8))
    case("causal_weights", tril / tril.sum(1, keepdim=True))
    scores = normalish(gen, 5, 5)
    case("masked_scores", scores.masked_fill(torch.triu(torch.ones(5, 5), 1) == 1, -inf))
    # More than 1000 elements: the middle of every long dimension is elided, and the
    # formatter sees only the printed elements (a huge hidden value changes nothing).
    case("at_threshold", torch.arange(-500, 500, dtype=torch.int16).reshape(10, 100))
    case("over_threshold_1d", normalish(gen, 1001))
    case("summary_2d", normalish(gen, 30, 40))
    case("summary_3d", normalish(gen, 12, 10, 11))
    case("summary_partial", normalish(gen, 4, 300))
    case("summary_4d", normalish(gen, 7, 2, 3, 30))
    case("summary_sci", normalish(gen, 40, 30) * 1e-6)
    hidden = normalish(gen, 1100)
    hidden[550] = 1e10
    case("summary_hidden_outlier", hidden)
    case("summary_int", torch.arange(1200, dtype=torch.int32).reshape(30, 40) - 600)
    case("summary_bool", torch.randint(0, 2, (40, 30), generator=gen).bool())
    # Dtypes other than float32 are named, except int64 and bool.
    case("float64", normalish(gen, 3, 3, dtype=f64))
    case("float64_wrap", normalish(gen, 8, dtype=f64))
    case("float16", normalish(gen, 6).half())
    case("float16_summary", normalish(gen, 40, 30).half())
    case("bfloat16", normalish(gen, 2, 4).bfloat16())
    case("float8_e4m3fn", torch.tensor([0.5, -1.25, 448.0, 0.0]).to(torch.float8_e4m3fn))
    case("float8_e5m2", torch.tensor([0.5, 57344.0, -0.0625]).to(torch.float8_e5m2))
    case("int64", torch.randint(-1000, 1000, (4, 5), generator=gen))
    case("int64_wide", torch.arange(-30, 30))
    case("int64_extremes", torch.tensor([2**62, -(2**63), 0]))
    case("int32", torch.randint(-50, 50, (3, 3), generator=gen, dtype=torch.int32))
    case("int16", torch.tensor([-32768, 7, 32767], dtype=torch.int16))
    case("int8", torch.tensor([[-128, 0], [5, 127]], dtype=torch.int8))
    case("uint8", torch.randint(0, 256, (2, 6), generator=gen, dtype=torch.uint8))
    case("bool", torch.randint(0, 2, (3, 4), generator=gen).bool())
    case("bool_all_true", torch.ones(3, dtype=torch.bool))
    # Zero-dimensional tensors.
    case("scalar_float", torch.tensor(3.14159))
    case("scalar_int_mode", torch.tensor(3.0))
    case("scalar_zero", torch.tensor(0.0))
    case("scalar_negative", torch.tensor(-0.5))
    case("scalar_sci", torch.tensor(1e-7))
    case("scalar_nan", torch.tensor(nan))
    case("scalar_neg_inf", torch.tensor(-inf))
    case("scalar_float64", torch.tensor(2.5, dtype=f64))
    case("scalar_float16", torch.tensor(0.1, dtype=torch.float16))
    case("scalar_int64", torch.tensor(7))
    case("scalar_int32", torch.tensor(-7, dtype=torch.int32))
    case("scalar_bool", torch.tensor(True))
    # Empty tensors spell out their shape (unless it is (0,)) and any dtype but float32.
    case("empty_1d", torch.zeros(0))
    case("empty_2d", torch.zeros(0, 3))
    case("empty_3d_float64", torch.zeros(2, 0, 4, dtype=f64))
    case("empty_int64", torch.zeros(0, dtype=torch.int64))
    case("empty_bool", torch.zeros(3, 0, dtype=torch.bool))
    case("empty_long_suffixes", torch.zeros(0, 1000, 1000, 1000, 1000, dtype=torch.bfloat16))
    # _add_suffixes counts two more than the last line's length: this line (61 columns)
    # and its suffix (17) would fit in 80, yet the suffix goes on a new line.
    case("suffix_margin", torch.arange(1000, 1009, dtype=torch.int32))

    # Autograd: a leaf that requires grad says so; a non-leaf names its grad_fn.
    for name, t in [
        ("requires_grad", normalish(gen, 2, 3)),
        ("requires_grad_float64_wrap", normalish(gen, 8, dtype=f64)),
        ("requires_grad_scalar", torch.tensor(1.5)),
        ("requires_grad_margin", torch.tensor([-1e-5, 2e-5, 3e-5, 4e-5])),
    ]:
        cases.append((name, t, str(t.requires_grad_()), {"requires_grad": True}))
        t.requires_grad_(False)
    x = normalish(gen, 3, 4).requires_grad_()
    for name, y in [("grad_fn_select", x[1]), ("grad_fn_wrap", normalish(gen, 8) * x[0, 0])]:
        grad_fn = f"grad_fn=<{type(y.grad_fn).__name__}>"
        cases.append((name, y.detach(), str(y), {"suffixes": [grad_fn]}))

    # Complex tensors are stored as view_as_real (last dimension: real, imaginary).
    for name, c in [
        ("complex64", torch.complex(normalish(gen, 4), normalish(gen, 4))),
        ("complex128", torch.complex(normalish(gen, 2, 3, dtype=f64), normalish(gen, 2, 3, dtype=f64))),
        ("complex_int_mode", torch.complex(torch.tensor([1.0, -2.0]), torch.tensor([0.0, -1.0]))),
        ("complex_nonfinite", torch.complex(torch.tensor([nan, 1.5]), torch.tensor([2.0, inf]))),
        ("complex_scalar", torch.complex(torch.tensor(0.25), torch.tensor(-3.0))),
        ("complex_wrap", torch.complex(normalish(gen, 10).abs(), normalish(gen, 10).abs())),
        ("complex_summary", torch.complex(normalish(gen, 1001), normalish(gen, 1001) * 1e-5)),
    ]:
        cases.append((name, torch.view_as_real(c), str(c), {"complex": True}))

    # On a GPU the device is the first suffix (checked in the Rust test only where CUDA is).
    for name, t in [
        ("cuda_float32", normalish(gen, 2, 3)),
        ("cuda_float64_wrap", normalish(gen, 8, dtype=f64)),
        ("cuda_summary", normalish(gen, 30, 40)),
    ]:
        cases.append((name, t, cuda_str(t), {"device": "cuda"}))
    return cases


def tensor_bytes(t):
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def serialize(tensors, metadata):
    """A safetensors file: 8-byte little-endian header length, the JSON header (sorted keys,
    padded with spaces to a multiple of 8), then the tensors' bytes in name order."""
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        data = tensor_bytes(t)
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write(out_dir):
    """Writes `pretty/reprs.safetensors` under `out_dir`; returns its path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = make_cases()
    tensors, metadata, index = {}, {}, []
    for name, t, expected, extra in cases:
        assert name not in tensors and name not in ("cases", "seed", "torch_version")
        tensors[name] = t
        metadata[name] = expected
        size = torch.Size(t.shape[:-1]) if extra.get("complex") else t.shape
        index.append({"name": name, "size": str(size), **extra})
    metadata["cases"] = json.dumps(index, sort_keys=True)
    metadata["seed"] = str(SEED)
    metadata["torch_version"] = torch.__version__.split("+")[0]
    path = Path(out_dir) / RELATIVE_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialize(tensors, metadata))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures", help="output folder (default: tests/fixtures)")
    args = parser.parse_args()
    path = write(args.out)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
