#!/usr/bin/env bash
# compare_fixtures.sh COMMITTED FRESH: fails unless both folders hold the same files
# (safetensors cases, torch.save checkpoints, ...) with the same bytes.
#
# Except the two fixtures made with libtorch's native kernels (notebook.safetensors,
# init.safetensors; see scripts/make_fixtures.py): their last bits depend on the CPU, so
# on another CPU than the committing one they must match to torch.testing.assert_close
# (random draws exactly); tests/notebook.rs checks the crate bit for bit against PyTorch
# on the CPU it runs on.
set -euo pipefail
committed=$1 fresh=$2
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
status=0
# The tiny Llama's, SmolLM2's and the quantised linears' fixtures come from
# `scripts/llama_reference.py` alone (native kernels; minutes of transformers for SmolLM2): `make check-llama-fixtures`.
# tests/fixtures/cli/ is the CLI's help snapshot, written by `ATTN_CLI_SNAPSHOT=write cargo test
# --test cli_snapshot` from the binary itself (tests/cli_snapshot.rs); gemma3/ comes from
# scripts/gemma_reference.py (transformers on the installed Gemma 3 file); families/ from
# scripts/families_reference.py (`make check-families-fixtures`, part of `make test`).
slow='^\./(llama/(smollm|tiny/|quant_linear\.)|cli/|gemma3/|families/)'
( cd "$committed" && find . -type f | sort | grep -Ev "$slow" ) > "$lists/committed"
skipped=$( cd "$committed" && find . -type f | grep -Ec "$slow" || true )
( cd "$fresh" && find . -type f | sort ) > "$lists/fresh"
if ! diff -u "$lists/committed" "$lists/fresh" >&2; then
  echo "fixtures: the set of files differs from what scripts/make_fixtures.py writes (run 'make fixtures')" >&2
  status=1
fi
while read -r f; do
  [ -f "$fresh/$f" ] || continue
  if ! cmp -s "$committed/$f" "$fresh/$f"; then
    case "$f" in
      ./notebook.safetensors|./init.safetensors)
        if "${PYTHON:-python3}" "$(dirname "$0")/compare_native_fixture.py" "$committed/$f" "$fresh/$f"; then
          native_close=$((${native_close:-0} + 1)); continue
        fi ;;
    esac
    echo "fixtures: $f differs from what scripts/make_fixtures.py writes now (run 'make fixtures')" >&2
    status=1
  fi
done < "$lists/committed"
n=$(wc -l < "$lists/committed")
if [ $status -eq 0 ]; then
  if [ "${skipped:-0}" -gt 0 ]; then
    echo "fixtures: $skipped made by other scripts not regenerated here (llama_reference.py: make check-llama-fixtures; gemma_reference.py; families_reference.py: make check-families-fixtures; the CLI snapshot: tests/cli_snapshot.rs)"
  fi
  if [ "${native_close:-0}" -gt 0 ]; then
    echo "fixtures: all $n committed fixtures reproduced, byte for byte but for ${native_close} made with this CPU's native kernels, which agree to assert_close"
  else
    echo "fixtures: all $n committed fixtures reproduced byte for byte"
  fi
fi
exit $status
