"""What every fixture-writing script shares: the kernel pins, torch's deterministic
settings, and the safetensors writer whose bytes do not change from run to run.

    import fixture_common as fc   # first, before anything imports torch

Used by scripts/make_fixtures.py, scripts/checkpoint_reference.py and
scripts/bert_reference.py. Scripts here import their siblings by plain `import name`:
Python puts the running script's folder first on sys.path, so no script adds it again
and none loads another by file path. Nothing here imports a sibling, so there is no cycle
(before this module, make_fixtures.py and checkpoint_reference.py imported each other,
and running one executed the other twice).

Importing this module sets the pins (one thread, MKL's conditional numerical
reproducibility, ATen's portable kernels) in the environment, because libtorch reads them
once, when it loads: it must be imported before torch. The one exception is a process run
with `--native-only` (make_fixtures.py's child for the notebook and init fixtures), which
must see libtorch's native kernels, as the crate does.

scripts/random_cases.py keeps its own writer on purpose (it is written from
docs/parity-cases.md alone), and scripts/pretty_reference.py keeps its own layout
(tensors in name order), which its committed fixture's bytes depend on.
"""

import json
import os
import struct
import sys

NATIVE_ONLY = "--native-only" in sys.argv
PINS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_CBWR": "COMPATIBLE",  # the same MKL code path on every x86 CPU
    "ATEN_CPU_CAPABILITY": "default",  # no AVX2/AVX512 variants of ATen kernels
}
if not NATIVE_ONLY:
    # Must precede `import torch`: these are read once, when the libraries load.
    os.environ.update(PINS)

import safetensors  # noqa: E402  (the Rust core only: safetensors.torch needs `packaging`)
import torch  # noqa: E402

# Without the local suffix: the CUDA (+cu130) and CPU-only (+cpu) wheels must write the
# same bytes.
TORCH_VERSION = torch.__version__.split("+")[0]


def pin_torch():
    """The settings read at run time rather than load time: one thread, deterministic
    algorithms, no oneDNN, and nn.MultiheadAttention's fast path off (the cases check the
    general path, which the crate follows)."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    torch.backends.mha.set_fastpath_enabled(False)


def check_torch(script):
    """Exits unless torch is the crate's libtorch version (2.13.0)."""
    if TORCH_VERSION != "2.13.0":
        sys.exit(f"{script}: needs torch 2.13.0 (the crate's libtorch), found "
                 f"{torch.__version__}; run scripts/setup.sh and use its python")


def dumps(obj):
    """JSON with sorted keys and no spaces: the same text for the same object."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------------------
# safetensors writing and reading
# --------------------------------------------------------------------------------------

ST_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16",
            torch.float16: "F16", torch.bool: "BOOL", torch.int64: "I64"}


def serialize(tensors, metadata):
    """safetensors bytes with the metadata keys sorted, so equal input gives equal bytes.

    Written here rather than by `safetensors.torch.save_file`, whose header lists the
    metadata in a hash-map order that changes from process to process; the layout is
    otherwise the library's (tensors sorted by element size then name, header padded
    with spaces to 8 bytes)."""
    for k, v in metadata.items():  # ASCII: serde_json and json.dumps agree on it
        assert isinstance(k, str) and isinstance(v, str) and (k + v).isascii(), (k, v)
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in order:
        t = tensors[name].detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        assert sys.byteorder == "little"
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def deserialize(data):
    """(tensors, metadata) of safetensors bytes, read with the safetensors library."""
    (n,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8:8 + n]).get("__metadata__", {})
    dtypes = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16,
              "F16": torch.float16, "BOOL": torch.bool, "I64": torch.int64,
              "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8}
    tensors = {}
    for name, info in safetensors.deserialize(data):
        dtype = dtypes[info["dtype"].upper()]
        if not info["data"]:  # frombuffer refuses an empty buffer
            tensors[name] = torch.empty(info["shape"], dtype=dtype)
            continue
        raw = torch.frombuffer(bytearray(info["data"]), dtype=torch.uint8)
        tensors[name] = raw.view(dtype).reshape(info["shape"])
    return tensors, metadata


def write_file(path, tensors, metadata):
    """Writes `tensors` and `metadata` to `path` (folders made as needed) after reading
    the bytes back with the safetensors library as a check; returns the size in bytes."""
    data = serialize(tensors, metadata)
    back, meta_back = deserialize(data)
    assert meta_back == metadata and set(back) == set(tensors), path
    for k, t in tensors.items():
        t = t.detach()
        assert back[k].dtype == t.dtype and back[k].shape == t.shape, (path, k)
        assert torch.equal(back[k].view(torch.uint8), t.contiguous().view(torch.uint8)), k
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)
