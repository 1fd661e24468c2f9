#!/usr/bin/env bash
# The CUDA check of issue 6, for a GPU machine that carries PyTorch 2.11 and the
# prebuilt binaries (compat/torch-2.11, tch 0.24). It runs, in under 10 minutes:
#   1. `attn doctor`: libtorch 2.11, libtorch_cuda loaded, CUDA available;
#   2. `attn verify --device cuda tests/fixtures`: every parity case on the GPU against
#      PyTorch's CPU references (train-mode dropout cases cannot match there: the CUDA
#      generator draws other masks; they are listed apart);
#   3. the gpt2 and long suites on CUDA, the crate and PyTorch side by side;
# and prints a markdown section (also written into bench/RESULTS.md with --results).
#
#   TORCH_VENV=~/.cache/tch-attention/torch-2.11.0 scripts/gpu_check.sh [--results]
#
# ATTN (default compat/torch-2.11/target/release/attn, built by `make build-torch211`)
# picks the binary. Peak memory in these rows is host RSS, not GPU memory.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VENV=${TORCH_VENV:-$HOME/.cache/tch-attention/torch-2.11.0}
PYTHON=$TORCH_VENV/bin/python
ATTN=${ATTN:-compat/torch-2.11/target/release/attn}
THREADS=${THREADS:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
step() { echo "gpu_check: $*" >&2; }

step "doctor"
timeout 60 "$ATTN" doctor | tee "$out/doctor.txt" >&2
grep -q "CUDA available     true" "$out/doctor.txt" || { echo "gpu_check: CUDA is not available to $ATTN" >&2; exit 2; }

step "parity cases on CUDA"
set +e
timeout 180 "$ATTN" verify --device cuda --json tests/fixtures >"$out/verify.jsonl"
set -e
read -r passed failed dropout_failed < <("$PYTHON" - "$out/verify.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
passed = sum(1 for r in rows if r.get("pass"))
failed = [r["case"] for r in rows if not r.get("pass")]
def draws_dropout(case):
    name = case.rsplit("/", 1)[-1]
    return "dropout" in name and "train" in name
dropout = [c for c in failed if draws_dropout(c)]
print(passed, len(failed) - len(dropout), len(dropout))
PY
)

step "gpt2 and long suites on CUDA (tch)"
for s in gpt2 long; do
  timeout 200 "$ATTN" bench --suite "$s" --device cuda --threads "$THREADS" --json >>"$out/tch.jsonl"
done
step "gpt2 and long suites on CUDA (PyTorch)"
for s in gpt2 long; do
  timeout 200 "$PYTHON" scripts/bench_torch.py --suite "$s" --device cuda --threads "$THREADS" --json >>"$out/torch.jsonl"
done

results=()
[[ "${1:-}" == "--results" ]] && results=(--results bench/RESULTS.md)
{
  echo "Parity cases on CUDA: $passed passed, $failed failed, $dropout_failed train-mode dropout case(s) that cannot match on CUDA."
  echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
} >&2
"$PYTHON" scripts/bench_compare.py "$out/tch.jsonl" "$out/torch.jsonl" \
  --title "CUDA (scripts/gpu_check.sh; parity on CUDA: $passed passed, $failed failed, $dropout_failed dropout cases skipped)" \
  --section cuda "${results[@]}"
test "$failed" = 0
