#!/usr/bin/env python3
"""nanoGPT's sample.py with init_from='resume', on the CPU in float32: what `attn sample
--checkpoint DIR/ckpt.pt` is checked against (tests/nanogpt_sample.rs).

Written from the semantics of karpathy/nanoGPT's sample.py (torch.manual_seed(seed)
before GPT(gptconf); the `_orig_mod.` prefix dropped; the char vocabulary from
meta.pkl; `start` encoded, each sample `model.generate(x, max_new_tokens, temperature,
top_k)` printed and followed by a line of dashes) and model.py's `generate` (the context
cropped to block_size, the last position's logits / temperature, logits below the k-th
largest set to -inf, softmax, torch.multinomial), with the model of
scripts/nanogpt_reference.py. The vocabulary is the meta.pkl beside the checkpoint
(where `attn train --data FILE.txt` puts it).

  python scripts/nanogpt_sample_reference.py --ckpt OUT/ckpt.pt --num-samples 3 \\
      --max-new-tokens 50
"""

import argparse
import os
import pickle
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nanogpt_reference import GPT, Config  # noqa: E402


def last_logits(model, idx):
    """GPT.forward(idx) without targets: lm_head on the last position only."""
    t = idx.size(1)
    pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
    tr = model.transformer
    x = tr.drop(tr.wte(idx) + tr.wpe(pos))
    for block in tr.h:
        x = block(x)
    return model.lm_head(tr.ln_f(x)[:, [-1], :])


@torch.no_grad()
def generate(model, idx, max_new_tokens, temperature, top_k):
    for _ in range(max_new_tokens):
        bs = model.config.block_size
        idx_cond = idx if idx.size(1) <= bs else idx[:, -bs:]
        logits = last_logits(model, idx_cond)[:, -1, :] / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("Inf")
        probs = F.softmax(logits, dim=-1)
        idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
    return idx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--start", default="\n")
    ap.add_argument("--num-samples", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=500)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    torch.manual_seed(a.seed)
    checkpoint = torch.load(a.ckpt, map_location="cpu", weights_only=True)
    model = GPT(Config(**checkpoint["model_args"]))
    state_dict = checkpoint["model"]
    for k in list(state_dict):
        if k.startswith("_orig_mod."):
            state_dict[k[len("_orig_mod."):]] = state_dict.pop(k)
    model.load_state_dict(state_dict)
    model.eval()

    with open(os.path.join(os.path.dirname(a.ckpt), "meta.pkl"), "rb") as f:
        meta = pickle.load(f)
    stoi, itos = meta["stoi"], meta["itos"]
    x = torch.tensor([stoi[c] for c in a.start], dtype=torch.long)[None, ...]
    for _ in range(a.num_samples):
        y = generate(model, x, a.max_new_tokens, a.temperature, a.top_k)
        print("".join(itos[i] for i in y[0].tolist()))
        print("---------------")


if __name__ == "__main__":
    main()
