"""compare_native_fixture.py COMMITTED FRESH: exit 0 when two native-kernel fixtures
(scripts/make_fixtures.py --native-only) hold the same tensors and metadata, the random
draws (inputs, initial weights) bit for bit and computed tensors to
torch.testing.assert_close's defaults; they were made on different CPUs, whose native
kernels differ in the last bits. Prints what differs otherwise."""

import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

# Tensors computed by kernels (not drawn): the notebook's attention and output.
COMPUTED = {"wei", "out"}


def metadata(path):
    with safe_open(path, "pt") as f:
        return f.metadata()


def main(committed, fresh):
    a, b = load_file(committed), load_file(fresh)
    if a.keys() != b.keys() or metadata(committed) != metadata(fresh):
        print(f"fixtures: {committed}: other tensors or metadata", file=sys.stderr)
        return 1
    for name in sorted(a):
        try:
            if name in COMPUTED:
                torch.testing.assert_close(b[name], a[name])
            elif not torch.equal(a[name], b[name]):
                raise AssertionError("random draws differ")
        except AssertionError as e:
            print(f"fixtures: {committed}: {name}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
