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

.PHONY: setup build release demo test check-fixtures check-random-cases check-checkpoints fixtures \
	clean-venv

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
	$(MAKE) --no-print-directory check-fixtures check-random-cases check-checkpoints

# Regenerates every fixture into a temporary folder and fails if any differs from the
# committed bytes: the fixtures in git are exactly what the script makes.
check-fixtures: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/make_fixtures.py --out "$$tmp"; \
	scripts/compare_fixtures.sh tests/fixtures "$$tmp"

# Cases written by scripts/random_cases.py, an independent generator made from
# docs/parity-cases.md alone, must pass `attn verify` too (built by `cargo test`).
check-random-cases: setup
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) scripts/random_cases.py --out "$$tmp" --count 60 --seed 0 >/dev/null; \
	$(CARGO) build --quiet --bin attn; \
	target/debug/attn verify "$$tmp" >"$$tmp/verify.txt" || { cat "$$tmp/verify.txt"; exit 1; }

# Every attention layout, saved by PyTorch as its users do, converted by `attn convert`
# to every other, loaded back by PyTorch with strict=True: same outputs, and the way
# back gives the original bits.
check-checkpoints: setup
	@$(CARGO) build --quiet --bin attn --example save_layouts
	@$(PYTHON) scripts/checkpoint_reference.py roundtrip --attn target/debug/attn \
		--save-layouts target/debug/examples/save_layouts

# Rewrites tests/fixtures from scripts/make_fixtures.py (commit the result).
fixtures: setup
	$(PYTHON) scripts/make_fixtures.py --out tests/fixtures

clean-venv:
	rm -rf "$(TCH_ATTENTION_VENV)"
