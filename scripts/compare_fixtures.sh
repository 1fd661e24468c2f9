#!/usr/bin/env bash
# compare_fixtures.sh COMMITTED FRESH: fails unless both folders hold the same
# .safetensors files with the same bytes.
set -euo pipefail
committed=$1 fresh=$2
status=0
( cd "$committed" && find . -name '*.safetensors' | sort ) > "$fresh/.committed.list"
( cd "$fresh" && find . -name '*.safetensors' | sort ) > "$fresh/.fresh.list"
if ! diff -u "$fresh/.committed.list" "$fresh/.fresh.list" >&2; then
  echo "fixtures: the set of files differs from what scripts/make_fixtures.py writes (run 'make fixtures')" >&2
  status=1
fi
while read -r f; do
  [ -f "$fresh/$f" ] || continue
  if ! cmp -s "$committed/$f" "$fresh/$f"; then
    echo "fixtures: $f differs from what scripts/make_fixtures.py writes now (run 'make fixtures')" >&2
    status=1
  fi
done < "$fresh/.committed.list"
n=$(wc -l < "$fresh/.committed.list")
[ $status -eq 0 ] && echo "fixtures: all $n committed fixtures reproduced byte for byte"
exit $status
