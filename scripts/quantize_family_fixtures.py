#!/usr/bin/env python3
"""Q8_0 copies of the family fixtures' GGUFs, for `--quant gguf` (the crate's block
kernels) on every architecture: tests/fixtures/families/<family>/model_q8_0.gguf.

    python scripts/quantize_family_fixtures.py [--dir tests/fixtures/families]

Each model.gguf (made by scripts/families_reference.py) is copied key by key and tensor
by tensor, every 2-D layer weight whose rows are whole 32-value blocks (the attention
and MLP projections, Phi-3's fused ones included) quantised to Q8_0 by gguf-py's own
`gguf.quants.quantize`, the rest (embeddings, norms, biases, a projection of 48-wide
rows) kept as they are. Deterministic: the same input gives the same bytes.
"""
import argparse
from pathlib import Path

import gguf
import numpy as np


def copy_fields(reader, writer):
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = gguf.GGUFValueType(field.types[0])
        sub = gguf.GGUFValueType(field.types[-1]) if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)


def quantised(t):
    """A projection weight whose rows are whole Q8_0 blocks."""
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    return (
        t.name.startswith("blk.")
        and t.name.endswith(".weight")
        and ("attn_" in t.name or "ffn_" in t.name)
        and "norm" not in t.name
        and len(t.shape) == 2
        and int(t.shape[0]) % block == 0
    )


def convert(src: Path, dst: Path):
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch)
    copy_fields(reader, writer)
    for t in reader.tensors:
        # numpy's shape is the reverse of GGUF's: (rows, cols).
        data = np.asarray(t.data).reshape([int(d) for d in reversed(t.shape)])
        if quantised(t):
            q = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(t.name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="tests/fixtures/families", type=Path)
    args = parser.parse_args()
    for src in sorted(args.dir.glob("*/model.gguf")):
        dst = src.with_name("model_q8_0.gguf")
        convert(src, dst)
        print(dst)


if __name__ == "__main__":
    main()
