"""Joins `attn bench --json` and `scripts/bench_torch.py --json` into the ratio table of
`make bench`, printed and written into bench/RESULTS.md between its CPU markers (the
rest of that file, such as the CUDA section of scripts/gpu_check.sh, is kept).

    python scripts/bench_compare.py TCH.jsonl TORCH.jsonl [--results bench/RESULTS.md]
        [--title TEXT] [--section cpu|cuda]

Ratios are tch over PyTorch, below 1 = the crate is faster. Targets come from
bench/suites.json (target_time_ratio, target_mem_ratio, target_step_over_full); a row
says `yes` when the measured ratio meets its target. Rows without a PyTorch peer (suite
serve, module smollm2_serve) get a table of their own: each row's throughput over its
`baseline` row's in the same run, at least `target_speedup`. Exits 0 whatever the verdicts:
benchmarks are reports, not tests.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The decoder modules of the generate suite (src/bench/llama.rs BenchDecoder).
DECODERS = ("smollm2", "gemma3")


def markers(section):
    return (f"<!-- bench:{section}:begin (written by a script; do not edit by hand) -->",
            f"<!-- bench:{section}:end -->")


def read_jsonl(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[(r["suite"], r["name"])] = r
    return rows


def targets():
    with open(os.path.join(ROOT, "bench", "suites.json")) as f:
        suites = json.load(f)
    out = {}
    for name, s in suites.items():
        if name.startswith("_"):
            continue
        for c in s["configs"]:
            out[(name, c["name"])] = c
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def verdict(value, target):
    if value is None or target is None:
        return ""
    return "yes" if value <= target else "**no**"


def verdict_at_least(value, target):
    if value is None or target is None:
        return ""
    return "yes" if value >= target else "**no**"


# Modules without a PyTorch peer, compared within their suite (serve_lines).
NO_PEER = ("smollm2_serve",)


def table(tch, torch_rows, server_rows=()):
    spec = targets()
    lines = [
        "| suite | name | mode | B | T | C | nh | hs | tch ms (p10-p90) | PyTorch ms (p10-p90) "
        "| time ratio | target | met | tch GFLOP/s | PyTorch GFLOP/s | tch peak +MiB "
        "| PyTorch peak +MiB | mem ratio | target | met |",
        "|" + "---|" * 20,
    ]
    decode_lines = []
    for key, a in tch.items():
        if a.get("module") in NO_PEER:
            continue
        b = torch_rows.get(key)
        t = spec.get(key, {})
        ratio = a["median_ms"] / b["median_ms"] if b else None
        da, db = a.get("peak_delta_mb"), (b or {}).get("peak_delta_mb")
        mem = da / db if da is not None and db else None
        tt, tm = t.get("target_time_ratio"), t.get("target_mem_ratio")
        lines.append(
            f"| {a['suite']} | {a['name']} | {a['mode']} | {a['batch']} | {a['seq']} "
            f"| {a['embd']} | {a['heads']} | {a['head_size']} "
            f"| {a['median_ms']:.4g} ({a['p10_ms']:.4g}-{a['p90_ms']:.4g}) "
            f"| {fmt(b and b['median_ms'], '.4g')}"
            + (f" ({b['p10_ms']:.4g}-{b['p90_ms']:.4g})" if b else "")
            + f" | {fmt(ratio, '.3f')} | {fmt(tt, 'g')} | {verdict(ratio, tt)} "
            f"| {a['gflops']:.1f} | {fmt(b and b['gflops'], '.1f')} "
            f"| {fmt(da, '.1f')} | {fmt(db, '.1f')} | {fmt(mem, '.3f')} | {fmt(tm, 'g')} "
            f"| {verdict(mem, tm)} |"
        )
        full_name = t.get("full")
        if full_name:
            target = t.get("target_step_over_full")
            for side, rows in (("tch", tch), ("PyTorch", torch_rows)):
                step, full = rows.get(key), rows.get((key[0], full_name))
                if step and full:
                    r = step["median_ms"] / full["median_ms"]
                    decode_lines.append(
                        f"| {side} | {key[1]} over {full_name} | {step['median_ms']:.4g} ms "
                        f"| {full['median_ms']:.4g} ms | {r:.4f} (1/{1 / r:.0f}) "
                        f"| {fmt(target, 'g')} | {verdict(r, target) if side == 'tch' else ''} |"
                    )
    if len(lines) == 2:
        # Only rows without a peer (suite serve alone): no ratio table.
        lines = []
    lines += model_lines(tch, torch_rows, spec)
    lines += decoder_lines(tch, torch_rows, spec)
    lines += serve_lines(tch, spec, server_rows)
    if decode_lines:
        lines += [
            "",
            "Incremental decoding: one new token with a KV cache over recomputing the whole "
            "sequence, each side on its own (the target applies to the crate):",
            "",
            "| side | ratio of | one step | full recompute | ratio | target | met |",
            "|---|---|---|---|---|---|---|",
        ] + decode_lines
    return lines


def model_lines(tch, torch_rows, spec):
    """Whole models (modules lecture_gpt, nanogpt_gpt): their own sizes, and per token
    for sampling."""
    out = []
    for key, a in tch.items():
        if a.get("module") not in ("lecture_gpt", "nanogpt_gpt"):
            continue
        b = torch_rows.get(key)
        target = spec.get(key, {}).get("target_time_ratio")
        ratio = a["median_ms"] / b["median_ms"] if b else None
        n = a.get("new_tokens") if a["mode"] == "sample" else None
        per = (lambda r: f"{r['median_ms'] / n:.4g}") if n else (lambda r: "-")
        out.append(
            f"| {key[1]} | {a['mode']} | {a['batch']} | {a['seq']} | {a['embd']} | {a['heads']} "
            f"| {a.get('n_layer')} | {a.get('vocab')} | {fmt(n, 'd')} | {a['median_ms']:.4g} "
            f"| {fmt(b and b['median_ms'], '.4g')} | {per(a)} | {per(b) if b else '-'} "
            f"| {fmt(ratio, '.3f')} | {fmt(target, 'g')} | {verdict(ratio, target)} |")
    if not out:
        return []
    return [
        "",
        "The lecture's whole GPT (suite train): the crate's training step and KV-cached "
        "sampling over PyTorch's gpt.py loop and `generate` (B, block_size, n_embd, n_head, "
        "n_layer, vocab; ms per sampled token for sampling):",
        "",
        "| name | mode | B | block | C | nh | layers | vocab | new tokens | tch ms | PyTorch ms "
        "| tch ms/token | PyTorch ms/token | time ratio | target | met |",
        "|" + "---|" * 16,
    ] + out


def decoder_lines(tch, torch_rows, spec):
    """SmolLM2 and Gemma 3 generating (modules smollm2, gemma3; suite generate): prefill and ms per decoded
    token over transformers' float32 generate, and each row's physical floor, the bytes of
    weights one token reads over the read bandwidth measured in the same run, and the
    kernels' floor: one token's projections and head timed alone (decode rows)."""
    out = []
    for key, a in tch.items():
        if a.get("module") not in DECODERS:
            continue
        b = torch_rows.get(key)
        target = spec.get(key, {}).get("target_time_ratio")
        ratio = a["median_ms"] / b["median_ms"] if b else None
        floor = a.get("floor_ms") if a["mode"] == "decode" else None
        over = a["median_ms"] / floor if floor else None
        kernels = a.get("projections_ms")
        kernels_ratio = kernels / b["median_ms"] if kernels and b else None
        out.append(
            f"| {key[1]} | {a['mode']} | {a.get('quant')} | {a.get('head')} | {a['seq']} | {a.get('new_tokens')} "
            f"| {a['median_ms']:.4g} ({a['p10_ms']:.4g}-{a['p90_ms']:.4g}) "
            f"| {fmt(b and b['median_ms'], '.4g')} | {fmt(ratio, '.3f')} | {fmt(target, 'g')} "
            f"| {verdict(ratio, target)} | {a.get('weight_bytes_per_token', 0) / 1e6:.1f} "
            f"| {fmt(a.get('read_gbs'), '.1f')} | {fmt(floor, '.1f')} | {fmt(over, '.2f')} "
            f"| {fmt(kernels, '.1f')} | {fmt(kernels_ratio, '.3f')} |")
    if not out:
        return []
    return [
        "",
        "SmolLM2-135M-Instruct and Gemma 3 270M generating (suite generate): the crate's prefill and ms per "
        "decoded token over transformers' `generate` in float32 (for a `quant` row too); "
        "floor: the weights one token reads over the read bandwidth measured in the run; "
        "kernels: one token's projections and head alone (the least a step on these "
        "kernels takes), and that time over transformers':",
        "",
        "| name | mode | quant | head | prompt | new tokens | tch ms (p10-p90) | transformers ms "
        "| time ratio | target | met | weights MB/token | read GB/s | floor ms | tch / floor "
        "| kernels ms | kernels / transformers |",
        "|" + "---|" * 17,
    ] + out


def agreement(mine, theirs):
    """How many of the first greedy tokens two runs share before they first differ, as
    `k/n` (n: the shorter list); after a difference the two continue different texts."""
    if not mine or not theirs:
        return "-"
    n = min(len(mine), len(theirs))
    k = next((i for i in range(n) if mine[i] != theirs[i]), n)
    return f"{k}/{n}"


def llama_cpp_lines(tch, llama_rows, torch_rows=None):
    """llama.cpp (scripts/bench_llama_cpp.py, through llama-cpp-python) on the same
    machine and thread count, beside the crate's `--quant gguf` rows on the same file
    (the generate suite's SmolLM2 and Gemma 3 rows, joined by file, mode and prompt
    length), with the CPU's
    SIMD flags of the row and the floor: the file's bytes (a step reads nearly every
    weight once, a tied head its whole table) over the read bandwidth measured by the
    crate's run. Targets (issue 24): decode at most 1.0x llama.cpp's, prefill of 128
    tokens at most 1.5x."""
    if not llama_rows:
        return []
    ours = {(a["module"], a["mode"], a["seq"]): (key, a) for key, a in tch.items()
            if a.get("module") in DECODERS and a.get("quant") == "gguf"}
    gbs = next((a.get("read_gbs") for a in tch.values() if a.get("read_gbs")), None)
    out = []
    for r in llama_rows:
        name = os.path.basename(r["model"])
        module = "smollm2" if name.startswith("SmolLM2") else "gemma3" if name.startswith("gemma-3") else None
        floor = os.path.getsize(r["model"]) / (gbs * 1e6) if gbs and os.path.exists(r["model"]) else None
        for mode, theirs, target in (("prefill", r["prefill_ms"], 1.5),
                                     ("decode", r["decode_ms_per_token"], 1.0)):
            key, a = ours.get((module, mode, r["prompt"]), (None, None))
            mine = a["median_ms"] if a else None
            tokens = a.get("first_tokens") if a else None
            transformers = (torch_rows or {}).get(key, {}).get("first_tokens")
            agree = (f"{agreement(tokens, r.get('first_tokens'))} / "
                     f"{agreement(tokens, transformers)}") if mode == "decode" and tokens else "-"

            ratio = mine / theirs if mine else None
            out.append(
                f"| {name} | {r['threads']} | {mode} | {r['prompt']} | {fmt(theirs, '.4g')} "
                f"| {fmt(mine, '.4g')} | {fmt(ratio, '.3f')} | {target:g} | {verdict(ratio, target)} "
                f"| {fmt(floor if mode == 'decode' else None, '.1f')} | {agree} "
                f"| {r.get('cpu_flags', '?')} / {fmt(a and a.get('cpu_simd'), 's')}"
                f"{', kernels ' + a['block_kernels'] if a and a.get('block_kernels') else ''} |")
    return [
        "",
        "llama.cpp on the same machine (scripts/bench_llama_cpp.py, llama-cpp-python; its "
        "per-token time includes the Python sampling loop) beside the crate's `--quant gguf` "
        "on the same file; floor: the file's bytes over the run's read bandwidth; first 16: "
        "of the crate's first 16 greedy tokens, how many precede the first that differs from "
        "llama.cpp's / from transformers' (float32); flags: llama.cpp's row / the crate's row "
        "and its block kernel set:",
        "",
        "| file | threads | mode | prompt | llama.cpp ms | tch ms | tch / llama.cpp | target "
        "| met | floor ms | first 16 = llama.cpp / transformers | CPU flags |",
        "|" + "---|" * 12,
    ] + out


def read_llama_cpp(path):
    """The JSON lines of scripts/bench_llama_cpp.py (or bench_llama_server.py)."""
    if not path:
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def throughput(row):
    """Requests' tokens per second: the streams of a decode step over its time, or one
    first token over the time to it."""
    return row.get("streams", row["batch"]) * 1e3 / row["median_ms"]


def serve_lines(tch, spec, server_rows=()):
    """The served model (module smollm2_serve, suite serve), which has no PyTorch peer:
    aggregate tokens/s of N streams decoded together, and time to first token cold and
    with a cached system prompt, each row's throughput over its baseline's in the run;
    beside each decode row, llama-server's aggregate tokens/s at as many concurrent
    streams (scripts/bench_llama_server.py's rows, when given)."""
    server = {(r["streams"], r["prompt"]): r["tokens_per_s"] for r in server_rows}
    out = []
    for key, a in tch.items():
        if a.get("module") not in NO_PEER:
            continue
        t = spec.get(key, {})
        base = tch.get((key[0], t["baseline"])) if t.get("baseline") else None
        speedup = throughput(a) / throughput(base) if base else None
        target = t.get("target_speedup")
        decode = a["mode"] == "decode"
        out.append(
            f"| {key[1]} | {a['mode']} | {a.get('quant')} | {a.get('streams', a['batch'])} "
            f"| {a['seq']} | {'-' if decode else a.get('user_tokens')} "
            f"| {a.get('prefix', '-')} | {a.get('new_tokens')} "
            f"| {a['median_ms']:.4g} ({a['p10_ms']:.4g}-{a['p90_ms']:.4g}) "
            f"| {fmt(throughput(a) if decode else None, '.1f')} | {t.get('baseline', '-')} "
            f"| {fmt(speedup, '.2f')} | {fmt(target, 'g')} | {verdict_at_least(speedup, target)} "
            f"| {fmt(server.get((a.get('streams', a['batch']), a['seq'])) if decode else None, '.1f')} |")
    if not out:
        return []
    return [
        "",
        "SmolLM2-135M-Instruct served (suite serve; no PyTorch peer): the crate's "
        "continuous batcher, as `attn serve` drives it. decode: N greedy streams decoded "
        "together, ms per batched step and aggregate tokens/s; prefill: time to first token "
        "of a request of a system prompt and a user turn, cold or with the system prompt "
        "cached by an earlier request; speedup: throughput (tokens/s, or 1 / time to first "
        "token) over the baseline row's; llama-server tokens/s: llama-cpp-python's server "
        "on the same GGUF (Q4_1) with as many concurrent greedy completions "
        "(scripts/bench_llama_server.py; it runs one completion at a time, and its wall "
        "time includes each prompt's prefill and HTTP):",
        "",
        "| name | mode | quant | streams | prompt | user turn | prefix | new tokens "
        "| ms per step or to first token (p10-p90) | tokens/s | baseline | speedup "
        "| target | met | llama-server tokens/s |",
        "|" + "---|" * 15,
    ] + out


def machine(tch, torch_rows):
    any_tch = next(iter(tch.values()), {})
    any_torch = next(iter(torch_rows.values()), {})
    try:
        kernel = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
    except OSError:
        kernel = platform.platform()
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; {kernel}",
        f"- SIMD: {any_tch.get('cpu_simd', '?')}; libtorch's kernels "
        f"{any_tch.get('libtorch_kernels', '?')}, the crate's block kernels "
        f"{any_tch.get('block_kernels', '?')}",
        f"- threads: {any_tch.get('threads')} (tch) / {any_torch.get('threads')} (PyTorch), "
        f"device {any_tch.get('device')}, dtype {any_tch.get('dtype')}",
        f"- libtorch: {any_tch.get('libtorch', '?')} loaded by the crate, PyTorch "
        f"{any_torch.get('torch_version', '?')} on the PyTorch side",
        f"- matmul ceiling (1024x1024): {fmt(any_tch.get('matmul_gflops'), '.1f')} GFLOP/s "
        f"measured by tch, {fmt(any_torch.get('matmul_gflops'), '.1f')} by PyTorch",
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tch")
    p.add_argument("torch")
    p.add_argument("--results", help="write the section into this markdown file")
    p.add_argument("--title", default="CPU")
    p.add_argument("--section", default="cpu",
                   help="which marked section of --results to replace (cpu, cuda)")
    p.add_argument("--llama-cpp", help="scripts/bench_llama_cpp.py's JSON lines, to set "
                   "beside the crate's --quant gguf rows")
    p.add_argument("--llama-server", help="scripts/bench_llama_server.py's JSON lines, to "
                   "set beside the serve suite's decode rows")
    a = p.parse_args()
    BEGIN, END = markers(a.section)
    tch, torch_rows = read_jsonl(a.tch), read_jsonl(a.torch)
    server = read_llama_cpp(a.llama_server)
    section = [BEGIN, f"## {a.title}", ""] + machine(tch, torch_rows) + [""] + table(
        tch, torch_rows, server) + llama_cpp_lines(tch, read_llama_cpp(a.llama_cpp), torch_rows) + ["", END]
    text = "\n".join(section)
    print("\n".join(section[1:-1]))
    if a.results:
        old = open(a.results).read() if os.path.exists(a.results) else ""
        if BEGIN in old and END in old:
            head, rest = old.split(BEGIN, 1)
            new = head + text + rest.split(END, 1)[1]
        else:
            new = (old.rstrip() + "\n\n" if old else "# Benchmark results\n\n") + text + "\n"
        with open(a.results, "w") as f:
            f.write(new)


if __name__ == "__main__":
    main()
