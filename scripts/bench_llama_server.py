#!/usr/bin/env python3
"""llama.cpp's side of the serve suite's decode rows (issue 25): llama-cpp-python's
OpenAI-compatible server (`python -m llama_cpp.server`) on loopback, on the same GGUF,
timed with 1, 4 and 8 concurrent greedy completions, as the crate's streamsN rows are.

    python scripts/bench_llama_server.py MODEL.gguf [--threads 1] [--streams 1 4 8]
                                         [--prompt 32] [--new 33] [--repeats 3]

Runs in the bench-only environment of `make bench-llama-cpp-setup` (with the package's
`server` extras), never in `make test`'s. Prints one JSON object per stream count: the
median over --repeats rounds of the aggregate tokens/s (completion tokens of all streams
over the round's wall time, from the first request sent to the last answer) and the
prompt and completion tokens the server counted.

Differences from the crate's rows, by design of the server rather than of this script:
llama-cpp-python's server runs one completion at a time (a lock around its one model),
so concurrent streams queue instead of decoding together; a round's wall time includes
each request's prefill and HTTP, where the crate's rows time the batched steps only. The
prompts are the ids `1000 + s * prompt, ...` (stream s, wrapped into the vocabulary, as
src/bench/serve.rs makes them) detokenised by the server, since it takes text; the
server's own count of prompt tokens is printed. Greedy is temperature 0, top_k 1; a
stream that meets EOS stops early, and only the tokens it did generate are counted.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

PROMPT_START = 1000  # src/bench/serve.rs PROMPT_START


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, timeout=600):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_ready(base, proc, seconds=120):
    """Polls /v1/models until the server answers; exits if it died."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama_cpp.server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v1/models", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit("llama_cpp.server did not answer in time")


def prompts(base, n, t, vocab):
    """The text of stream s's ids 1000 + s * t + j, j < t (wrapped into the vocabulary)."""
    out = []
    for s in range(n):
        ids = [(PROMPT_START + s * t + j) % vocab for j in range(t)]
        out.append(post(base + "/extras/detokenize", {"tokens": ids})["text"])
    return out


def round_of(base, texts, new):
    """One round: every prompt sent at once; (wall seconds, prompt tokens, completion
    tokens), summed over the streams."""
    usage = [None] * len(texts)

    def one(i):
        body = {"prompt": texts[i], "max_tokens": new, "temperature": 0.0, "top_k": 1,
                "repeat_penalty": 1.0, "stream": False}
        usage[i] = post(base + "/v1/completions", body)["usage"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    if any(u is None for u in usage):
        sys.exit("a completion failed")
    return (wall, sum(u["prompt_tokens"] for u in usage),
            sum(u["completion_tokens"] for u in usage))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=33)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vocab", type=int, default=49152, help="the model's (SmolLM2's)")
    a = p.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", a.model,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(a.threads),
           "--n_threads_batch", str(a.threads), "--n_ctx", str(2 * (a.prompt + a.new) + 64),
           "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
    try:
        wait_ready(base, proc)
        for n in a.streams:
            texts = prompts(base, n, a.prompt, a.vocab)
            rounds = [round_of(base, texts, a.new) for _ in range(a.repeats + 1)][1:]
            rates = [c / w for w, _, c in rounds]
            print(json.dumps({
                "engine": "llama-server", "model": os.path.basename(a.model),
                "threads": a.threads, "streams": n, "prompt": a.prompt, "new_tokens": a.new,
                "prompt_tokens": rounds[-1][1], "completion_tokens": rounds[-1][2],
                "tokens_per_s": statistics.median(rates),
                "wall_ms": statistics.median(w for w, _, _ in rounds) * 1e3,
            }), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
