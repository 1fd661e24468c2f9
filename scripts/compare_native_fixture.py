"""compare_native_fixture.py COMMITTED FRESH [--all-computed [--atol A]]: exit 0 when two
native-kernel fixtures (scripts/make_fixtures.py --native-only, scripts/llama_reference.py)
hold the same tensors and metadata, the random draws (inputs, initial weights) bit for
bit and computed tensors to torch.testing.assert_close's defaults; they were made on
different CPUs, whose native kernels differ in the last bits. Prints what differs
otherwise.

--all-computed: every floating-point tensor is computed (integer ones, token ids, must be
equal); --atol A: computed tensors within A absolutely instead (rtol 0), the bound the
fixture's own test states (SmolLM2's logits: 1e-4, tests/llama_smollm.rs)."""

import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

# Tensors computed by kernels (not drawn): the notebook's attention and output.
COMPUTED = {"wei", "out"}


def metadata(path):
    with safe_open(path, "pt") as f:
        return f.metadata()


def main(committed, fresh, all_computed=False, atol=None):
    a, b = load_file(committed), load_file(fresh)
    if a.keys() != b.keys() or metadata(committed) != metadata(fresh):
        print(f"fixtures: {committed}: other tensors or metadata", file=sys.stderr)
        return 1
    for name in sorted(a):
        try:
            if name in COMPUTED or (all_computed and a[name].is_floating_point()):
                if atol is None:
                    torch.testing.assert_close(b[name], a[name])
                else:
                    torch.testing.assert_close(b[name], a[name], atol=atol, rtol=0)
            elif not torch.equal(a[name], b[name]):
                raise AssertionError("random draws differ")
        except AssertionError as e:
            print(f"fixtures: {committed}: {name}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    atol = float(args[args.index("--atol") + 1]) if "--atol" in args else None
    sys.exit(main(args[0], args[1], "--all-computed" in args, atol))
