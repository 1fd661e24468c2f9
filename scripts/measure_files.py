"""Start-up and big-checkpoint memory of `attn` (issue 16's targets), measured, not hoped.

    measure_files.py --attn target/release/attn [--size-mib 1024] [--results bench/RESULTS.md]

Writes a ~SIZE MiB checkpoint of nanoGPT attention blocks twice (safetensors, and
torch.save's zip as nanoGPT's ckpt.pt holds it) into a temporary folder, then runs, each
as its own process, reading its peak resident memory and CPU time from wait4():

- `attn --version` (start-up of the front door, which does not load libtorch) and
  `attn-torch --version` (start-up with libtorch loaded, as every computing command
  starts: what every other figure is measured above);
- `attn inspect FILE` for both files (headers only: target at most 64 MiB above start-up);
- `attn convert --from nanogpt --to hf-gpt2 FILE OUT` for both (target at most 1.1x the
  file above start-up).

Start-up targets: at most 150 MiB and 0.3 s of CPU on a CPU machine. With --results, the
table replaces the section between the `files` markers of bench/RESULTS.md.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20


def run(argv):
    """(peak RSS MiB, user+sys CPU s, wall s, exit code) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(f"measure_files: {' '.join(map(str, argv))} exited {proc.returncode}: {err}",
              file=sys.stderr)
    # Linux reports ru_maxrss in KiB.
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, wall, proc.returncode


def libtorch_floor():
    """(peak RSS MiB, added MiB, CPU s, wall s) of loading libtorch_cpu and nothing else:
    a Python that dlopens it, less a Python that does not (best of three each). The
    torch package is found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    lib = Path(spec.origin).parent / "lib" / "libtorch_cpu.so"
    if not lib.is_file():
        return None
    load = [sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])", str(lib)]
    bare = [sys.executable, "-c", "pass"]
    with_lib = min((run(load) for _ in range(3)), key=lambda r: r[1])
    without = min((run(bare) for _ in range(3)), key=lambda r: r[1])
    return (with_lib[0], 0.0, with_lib[1] - without[1], with_lib[2] - without[2])


def write_checkpoints(folder, size_mib):
    """The two files, written by a child process: a process's peak RSS counts what it
    inherited when forked, so the measuring process must stay small (no torch here)."""
    subprocess.run([sys.executable, __file__, "--write-only", str(folder), str(size_mib)],
                   check=True)
    return [folder / "big.safetensors", folder / "ckpt.pt"]


def write_only(folder, size_mib):
    """nanoGPT blocks (c_attn [3C, C], c_proj [C, C], biases) at C = 1024 until ~size."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    c = 1024
    per_block = (3 * c * c + 3 * c + c * c + c) * 4
    blocks = max(1, size_mib * MiB // per_block)
    state = {}
    for i in range(blocks):
        p = f"transformer.h.{i}.attn."
        state[p + "c_attn.weight"] = torch.randn(3 * c, c)
        state[p + "c_attn.bias"] = torch.randn(3 * c)
        state[p + "c_proj.weight"] = torch.randn(c, c)
        state[p + "c_proj.bias"] = torch.randn(c)
    st = folder / "big.safetensors"
    save_file(state, st)
    pt = folder / "ckpt.pt"
    torch.save({"model": state, "iter_num": 0}, pt)


def measure(attn, size_mib):
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp)
        files = write_checkpoints(folder, size_mib)
        rss, cpu, wall, _ = min((run([attn, "--version"]) for _ in range(3)),
                                key=lambda r: r[1])
        rows.append(("start-up", "attn --version", None, rss, 0.0, cpu, wall,
                     "<= 150 MiB, <= 0.3 s CPU", rss <= 150 and cpu <= 0.3))
        # Every command that computes starts as attn-torch: libtorch loaded.
        worker = str(Path(attn).with_name("attn-torch"))
        base_rss, base_cpu, base_wall, _ = min(
            (run([worker, "--version"]) for _ in range(3)), key=lambda r: r[1])
        rows.append(("start-up", "attn-torch --version (libtorch loaded)", None, base_rss,
                     0.0, base_cpu, base_wall, "<= 150 MiB, <= 0.3 s CPU",
                     base_rss <= 150 and base_cpu <= 0.3))
        floor = libtorch_floor()
        if floor is not None:
            rows.append(("floor", "libtorch_cpu loaded alone", None, *floor, "(what start-up "
                         "cannot go below)", True))
        for f in files:
            size = f.stat().st_size / MiB
            rss, cpu, wall, rc = run([attn, "inspect", f])
            added = rss - base_rss
            rows.append(("inspect", f.name, size, rss, added, cpu, wall, "<= 64 MiB added",
                         rc == 0 and added <= 64))
            out = folder / "out.safetensors"
            rss, cpu, wall, rc = run([attn, "convert", "--from", "nanogpt", "--to", "hf-gpt2",
                                      "--force", f, out])
            added = rss - base_rss
            rows.append(("convert", f.name, size, rss, added, cpu, wall,
                         f"<= {1.1 * size:.0f} MiB added (1.1x)",
                         rc == 0 and added <= 1.1 * size))
            out.unlink(missing_ok=True)
    return rows


def table(rows, attn):
    lines = [
        "## Start-up and big files",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"cores; Linux {platform.release()}",
        f"- binary: `{attn}`; measured by `scripts/measure_files.py` (peak RSS and CPU from wait4)",
        "",
        "| command | file | file MiB | peak RSS MiB | above start-up MiB | CPU s | wall s | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cmd, f, size, rss, added, cpu, wall, target, met in rows:
        size_s = "-" if size is None else f"{size:.0f}"
        lines.append(f"| {cmd} | {f} | {size_s} | {rss:.0f} | {added:.0f} | {cpu:.2f} | "
                     f"{wall:.2f} | {target} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def write_results(path, text, section="files", writer="scripts/measure_files.py"):
    """Replaces (or appends) the section between `section`'s markers of `path`, written
    whole to a temporary file then renamed."""
    begin = f"<!-- bench:{section}:begin (written by {writer}; do not edit by hand) -->"
    end = f"<!-- bench:{section}:end -->"
    old = path.read_text()
    block = f"{begin}\n{text}{end}"
    if begin in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)


def main():
    if sys.argv[1:2] == ["--write-only"]:
        return write_only(Path(sys.argv[2]), int(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attn", required=True)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    rows = measure(args.attn, args.size_mib)
    text = table(rows, args.attn)
    print(text)
    if args.results:
        write_results(args.results, text)
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
