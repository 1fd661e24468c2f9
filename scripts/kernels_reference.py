#!/usr/bin/env python3
"""Fixture for the block kernels (src/nn/kernels, tests/kernels.rs), from gguf-py alone.

    python scripts/kernels_reference.py [--out tests/fixtures/kernels/gguf_blocks.safetensors]

For each block type the kernels take (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K): 12
blocks of random bytes (numpy seed 0) whose half-precision scales are overwritten with
random finite values in [0.001, 0.05) (Q4_1's minimum of either sign), saved as
"<TYPE>.blocks" (uint8), and gguf-py's `gguf.quants.dequantize` of them as
"<TYPE>.dequant" (float32, one row of the type's block length per block).

Also "q8_0.x" (float32, 8 blocks of 32 drawn from a normal distribution, one block all
zeros and one with an exact tie at .5 after scaling) and gguf-py's `Q8_0.quantize` of
it, "q8_0.quantized" (uint8): the activation quantiser must give the same codes and
the same half scale (gguf-py's Q8_0 is bit-exact with ggml's quantize_row_q8_0_ref).
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from safetensors.numpy import save_file

# (type, byte offsets of its half scales, whether the half may be negative)
HALVES = {
    T.Q8_0: [(0, False)],
    T.Q4_0: [(0, False)],
    T.Q4_1: [(0, False), (2, True)],
    T.Q5_0: [(0, False)],
    T.Q4_K: [(0, False), (2, False)],
    T.Q5_K: [(0, False), (2, False)],
    T.Q6_K: [(208, False)],
}
N_BLOCKS = 12


def random_blocks(rng, qtype):
    block_len, block_bytes = quants.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(N_BLOCKS, block_bytes), dtype=np.uint8)
    for at, signed in HALVES[qtype]:
        v = rng.uniform(0.001, 0.05, size=N_BLOCKS).astype(np.float32)
        if signed:
            v *= np.where(rng.integers(0, 2, size=N_BLOCKS) == 1, -1, 1).astype(np.float32)
        blocks[:, at:at + 2] = v.astype(np.float16).view(np.uint8).reshape(N_BLOCKS, 2)
    return blocks, block_len


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "kernels",
                                                  "gguf_blocks.safetensors"))
    args = ap.parse_args()
    write(args.out)
    print(f"wrote {args.out}")


def write(path):
    """The fixture at `path` (scripts/make_fixtures.py writes it too, so `make
    check-fixtures` reproduces it byte for byte)."""
    rng = np.random.default_rng(0)
    out = {}
    for qtype in HALVES:
        blocks, block_len = random_blocks(rng, qtype)
        deq = quants.dequantize(blocks, qtype).reshape(N_BLOCKS, block_len)
        out[f"{qtype.name}.blocks"] = np.ascontiguousarray(blocks)
        out[f"{qtype.name}.dequant"] = np.ascontiguousarray(deq.astype(np.float32))
    x = rng.standard_normal((8, 32)).astype(np.float32)
    x[3] = 0.0
    # amax 127 makes d = 1 exactly, so 2.5 and -0.5 are ties: roundf takes them away from 0.
    x[5] = np.linspace(-3, 3, 32).astype(np.float32)
    x[5, 0], x[5, 1], x[5, 2] = 127.0, 2.5, -0.5
    out["q8_0.x"] = x
    out["q8_0.quantized"] = np.ascontiguousarray(quants.quantize(x, T.Q8_0))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(out, str(path))


if __name__ == "__main__":
    main()
