#!/usr/bin/env python3
"""llama.cpp's side of the quantised-decoding comparison (issue 24), through
llama-cpp-python, on the same GGUF file and the same prompt ids as `attn bench`'s
generate rows: the prefill of the prompt and the mean time of one greedy decoding step.

    python scripts/bench_llama_cpp.py MODEL.gguf [--threads 1] [--prompt 32] [--new 32]
                                      [--repeats 3]

Runs in its own environment, never in `make test`'s (llama-cpp-python builds llama.cpp
from source, minutes on two cores): `make bench-llama-cpp-setup` makes it. Prints one
JSON object: the medians over --repeats runs, the ids it generated, and the CPU's flags.
The prompt is `1000, 1001, ...` wrapped into the vocabulary, as src/bench/llama.rs makes
it; greedy is llama.cpp's sampler at top_k 1 (llama.cpp's own arithmetic: activations
quantised per block to 8 bits). The decoding step is the difference between a run of
`--new` tokens and one of a single token, divided by the `--new - 1` later steps.
"""
import argparse
import json
import statistics
import time

from llama_cpp import Llama

PROMPT_START = 1000  # src/bench/llama.rs PROMPT_START


def complete(llm, prompt, n):
    """Seconds for the prompt plus n greedy tokens (llama.cpp's sampler with top_k 1),
    and the ids; a fresh context each time (no prefix reuse)."""
    llm.reset()
    start = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1,
                                repeat_penalty=1.0, stream=False)
    elapsed = time.perf_counter() - start
    return elapsed, out["choices"][0]["text"]


def run_once(llm, prompt, new):
    """The prefill (the prompt and the first token) and the mean decoding step: the
    difference between `new` tokens and one, over the `new - 1` steps."""
    first, _ = complete(llm, prompt, 1)
    whole, text = complete(llm, prompt, new)
    return first * 1e3, (whole - first) * 1e3 / max(new - 1, 1), text


def first_tokens(llm, prompt, n=16):
    """The first n greedy ids after the prompt (untimed; src/bench/llama.rs
    FIRST_TOKENS), for bench_compare.py's agreement column."""
    llm.reset()
    ids = []
    for tok in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        ids.append(int(tok))
        if len(ids) == n:
            break
    return ids


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    llm = Llama(model_path=a.model, n_threads=a.threads, n_threads_batch=a.threads,
                n_ctx=a.prompt + a.new + 8, n_batch=512, verbose=False)
    vocab = llm.n_vocab()
    prompt = [(PROMPT_START + i) % vocab for i in range(a.prompt)]
    runs = [run_once(llm, prompt, a.new) for _ in range(a.repeats + 1)][1:]  # 1 warm-up
    flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = " ".join(x for x in line.split(":")[1].split()
                                 if x.startswith(("avx2", "avx512", "amx", "fma")))
                break
    print(json.dumps({
        "side": "llama.cpp", "model": a.model, "threads": a.threads, "prompt": a.prompt,
        "new_tokens": a.new,
        "prefill_ms": statistics.median(r[0] for r in runs),
        "decode_ms_per_token": statistics.median(r[1] for r in runs),
        "text": runs[0][2], "first_tokens": first_tokens(llm, prompt), "cpu_flags": flags,
    }))


if __name__ == "__main__":
    main()
