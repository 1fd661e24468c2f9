"""Peak memory and start-to-first-token time of `attn generate` on GGUF models (issue
24's memory targets), beside llama.cpp's on the same files.

    measure_generate_memory.py --attn target/release/attn MODEL.gguf... \\
        [--llama-python PYTHON] [--results bench/RESULTS.md]

Each figure is one process's peak resident memory from wait4(), as tests/big_files.rs
and scripts/measure_files.py measure it (the fastest of three runs):

- `attn-torch --version`: libtorch's own start-up, what the targets add to;
- `attn-torch generate --model M --max-new-tokens 1 --threads 1 Hi`, with
  `--quant gguf` (target: start-up plus 1.5x the file's size) and without (float32:
  start-up plus 1.2x the float32 weights, every tensor's elements times 4 bytes as
  gguf-py counts them);
- llama.cpp (llama-cpp-python, with --llama-python): a Python that loads the file and
  generates one token, and that less a Python that only imports llama_cpp.

Start to first token: the wall time of the quantised generate, process start to exit;
target at most 1.0 s for the first model given (SmolLM2 in `make bench-models`).
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from measure_files import MiB, run, write_results

LLAMA_ONE_TOKEN = ("import sys; from llama_cpp import Llama; "
                   "l = Llama(model_path=sys.argv[1], n_threads=1, verbose=False); "
                   "l.create_completion('Hi', max_tokens=1)")


def best(argv):
    """(peak RSS MiB, wall s, exit code) of the fastest of three runs."""
    rss, _, wall, rc = min((run(argv) for _ in range(3)), key=lambda r: r[2])
    return rss, wall, rc


def float32_mib(model):
    """The model's weights in float32: every tensor's elements times 4 bytes."""
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(model).tensors) * 4 / MiB


def measure(attn, models, llama_python):
    worker = str(Path(attn).with_name("attn-torch"))
    start_rss, start_wall, _ = best([worker, "--version"])
    rows = [("start-up", "-", "attn-torch --version", None, start_rss, start_wall, "-", None)]
    llama_base = None
    if llama_python:
        llama_base = best([llama_python, "-c", "import llama_cpp"])[0]
    for i, model in enumerate(models):
        name, file_mib = Path(model).name, Path(model).stat().st_size / MiB
        generate = [worker, "generate", "--model", model, "--max-new-tokens", "1",
                    "--threads", "1", "Hi"]
        rss, wall, rc = best(generate + ["--quant", "gguf"])
        limit = start_rss + 1.5 * file_mib
        ttft = "; start to first token <= 1.0 s" if i == 0 else ""
        met = rc == 0 and rss <= limit and (i > 0 or wall <= 1.0)
        rows.append(("attn generate --quant gguf", name, f"file {file_mib:.0f} MiB", None,
                     rss, wall, f"<= {limit:.0f} MiB (start-up + 1.5x file){ttft}", met))
        if llama_python:
            l_rss, l_wall, l_rc = best([llama_python, "-c", LLAMA_ONE_TOKEN, model])
            rows.append(("llama.cpp (Python + llama_cpp)", name, "-", llama_base, l_rss, l_wall,
                         "-", None if l_rc == 0 else False))
        f32 = float32_mib(model)
        rss, wall, rc = best(generate)
        limit = start_rss + 1.2 * f32
        rows.append(("attn generate (float32)", name, f"float32 {f32:.0f} MiB", None, rss, wall,
                     f"<= {limit:.0f} MiB (start-up + 1.2x float32)", rc == 0 and rss <= limit))
    return rows


def table(rows):
    lines = [
        "## Memory and start-up of `attn generate` (issue 24)",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"cores; Linux {platform.release()}",
        "- measured by `scripts/measure_generate_memory.py`: peak RSS from wait4, the fastest "
        "of three runs; one new token after the prompt `Hi`, one thread",
        "",
        "| command | model | size | peak RSS MiB | above start-up (llama.cpp: above its "
        "Python) MiB | wall s | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    start = rows[0][4]
    for cmd, model, size, base, rss, wall, target, met in rows:
        above = rss - (start if base is None else base)
        met_s = "-" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {cmd} | {model} | {size or '-'} | {rss:.1f} | {above:.1f} | "
                     f"{wall:.2f} | {target} | {met_s} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attn", required=True)
    ap.add_argument("--llama-python")
    ap.add_argument("--results", type=Path)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    rows = measure(args.attn, args.models, args.llama_python)
    text = table(rows)
    print(text)
    if args.results:
        write_results(args.results, text, "generate-memory", "scripts/measure_generate_memory.py")
    return 0 if all(r[-1] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
