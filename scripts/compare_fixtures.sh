#!/usr/bin/env bash
# compare_fixtures.sh COMMITTED FRESH: fails unless both folders hold the same files
# (safetensors cases, torch.save checkpoints, ...) with the same bytes.
set -euo pipefail
committed=$1 fresh=$2
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
status=0
( cd "$committed" && find . -type f | sort ) > "$lists/committed"
( cd "$fresh" && find . -type f | sort ) > "$lists/fresh"
if ! diff -u "$lists/committed" "$lists/fresh" >&2; then
  echo "fixtures: the set of files differs from what scripts/make_fixtures.py writes (run 'make fixtures')" >&2
  status=1
fi
while read -r f; do
  [ -f "$fresh/$f" ] || continue
  if ! cmp -s "$committed/$f" "$fresh/$f"; then
    echo "fixtures: $f differs from what scripts/make_fixtures.py writes now (run 'make fixtures')" >&2
    status=1
  fi
done < "$lists/committed"
n=$(wc -l < "$lists/committed")
[ $status -eq 0 ] && echo "fixtures: all $n committed fixtures reproduced byte for byte"
exit $status
