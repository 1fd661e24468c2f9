#!/usr/bin/env python3
"""nanoGPT's GPT and train.py in PyTorch, single process: what the crate's nanoGPT
model (src/models/nanogpt/gpt.rs) and training loop (src/train/nanogpt.rs) are checked
against (tests/nanogpt.rs).

Written from the semantics of karpathy/nanoGPT's model.py (GPT: wte, wpe, drop, h of
Blocks with ln_1, CausalSelfAttention (scripts/reference_modules.py, the flash path),
ln_2, MLP with exact GELU; ln_f; lm_head tied to wte; LayerNorm with optional bias;
_init_weights then the scaled c_proj init; configure_optimizers' two AdamW groups) and
train.py (seed 1337, get_batch from train.bin/val.bin by torch.randint on the default
generator, get_lr with linear warmup and cosine decay, estimate_loss, the checkpoint
dict, gradient accumulation, clip_grad_norm_, zero_grad(set_to_none=True), the stop
after max_iters), on the CPU in float32, with train.py's globals as flags in kebab case.

Modes:
  --check-out FILE   build the model (seed --seed), then write FILE (safetensors): the
                     state_dict after init, a batch `idx`/`targets` (targets with some
                     -1), eval-mode `logits`/`loss`, and train-mode `train_loss` after
                     torch.manual_seed(seed + 1) (dropout masks).
  otherwise          train as train.py does, printing one JSON object per line:
                     {"iter", "loss", "lr"} per iteration (loss as train.py logs it) and
                     {"iter", "train_loss", "val_loss"} per evaluation; ckpt.pt goes to
                     --out-dir as train.py writes it.

  python scripts/nanogpt_reference.py --data-dir DIR --out-dir OUT --max-iters 8 \\
      --eval-interval 4 --eval-iters 2 --batch-size 4 --block-size 16 --n-layer 2 \\
      --n-head 2 --n-embd 32 --dropout 0.1 --gradient-accumulation-steps 2 ...
"""

import argparse
import json
import math
import os
import pickle
import sys

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_modules import CausalSelfAttention  # noqa: E402


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = LayerNorm(c.n_embd, bias=c.bias)
        self.attn = CausalSelfAttention(c.n_embd, c.n_head, c.block_size, c.bias, c.dropout)
        self.ln_2 = LayerNorm(c.n_embd, bias=c.bias)
        self.mlp = MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd),
            wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout),
            h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            ln_f=LayerNorm(c.n_embd, bias=c.bias),
        ))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = [p for _, p in self.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)


# train.py's globals with their defaults, in its order (the checkpoint's `config`).
DEFAULTS = dict(
    out_dir="out", eval_interval=2000, log_interval=1, eval_iters=200, eval_only=False,
    always_save_checkpoint=True, init_from="scratch", wandb_log=False,
    wandb_project="owt", wandb_run_name="gpt2", dataset="openwebtext",
    gradient_accumulation_steps=40, batch_size=12, block_size=1024, n_layer=12,
    n_head=12, n_embd=768, dropout=0.0, bias=False, learning_rate=6e-4,
    max_iters=600000, weight_decay=1e-1, beta1=0.9, beta2=0.95, grad_clip=1.0,
    decay_lr=True, warmup_iters=2000, lr_decay_iters=600000, min_lr=6e-5,
    backend="nccl", device="cpu", dtype="float32", compile=False,
)


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-out")
    for k, v in DEFAULTS.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            ap.add_argument(flag, type=lambda s: {"true": True, "false": False}[s], default=v)
        else:
            ap.add_argument(flag, type=type(v), default=v)
    return ap.parse_args()


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    a.dataset = os.path.basename(os.path.normpath(a.data_dir))
    cfg = {k: getattr(a, k) for k in DEFAULTS}
    torch.manual_seed(a.seed)
    train_data = np.memmap(os.path.join(a.data_dir, "train.bin"), dtype=np.uint16, mode="r")
    val_data = np.memmap(os.path.join(a.data_dir, "val.bin"), dtype=np.uint16, mode="r")
    meta_vocab_size = None
    meta_path = os.path.join(a.data_dir, "meta.pkl")
    if os.path.exists(meta_path):
        with open(meta_path, "rb") as f:
            meta_vocab_size = pickle.load(f)["vocab_size"]

    def get_batch(split):
        data = train_data if split == "train" else val_data
        ix = torch.randint(len(data) - a.block_size, (a.batch_size,))
        x = torch.stack([torch.from_numpy(data[i:i + a.block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + a.block_size].astype(np.int64)) for i in ix])
        return x, y

    model_args = dict(n_layer=a.n_layer, n_head=a.n_head, n_embd=a.n_embd,
                      block_size=a.block_size, bias=a.bias, vocab_size=None, dropout=a.dropout)
    ckpt_path = os.path.join(a.out_dir, "ckpt.pt")
    if a.init_from == "scratch":
        model_args["vocab_size"] = meta_vocab_size if meta_vocab_size is not None else 50304
        model = GPT(Config(**model_args))
        iter_num, best_val_loss = 0, 1e9
    else:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        for k in ["n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size"]:
            model_args[k] = checkpoint["model_args"][k]
        model = GPT(Config(**model_args))
        state_dict = checkpoint["model"]
        for k in list(state_dict):
            if k.startswith("_orig_mod."):
                state_dict[k[len("_orig_mod."):]] = state_dict.pop(k)
        model.load_state_dict(state_dict)
        iter_num, best_val_loss = checkpoint["iter_num"], checkpoint["best_val_loss"]

    if a.check_out:
        return check(model, a)

    optimizer = model.configure_optimizers(a.weight_decay, a.learning_rate, (a.beta1, a.beta2))
    if a.init_from == "resume":
        optimizer.load_state_dict(checkpoint["optimizer"])
    checkpoint = None

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

    def get_lr(it):
        if it < a.warmup_iters:
            return a.learning_rate * (it + 1) / (a.warmup_iters + 1)
        if it > a.lr_decay_iters:
            return a.min_lr
        decay_ratio = (it - a.warmup_iters) / (a.lr_decay_iters - a.warmup_iters)
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
        return a.min_lr + coeff * (a.learning_rate - a.min_lr)

    X, Y = get_batch("train")
    while True:
        lr = get_lr(iter_num) if a.decay_lr else a.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        if iter_num % a.eval_interval == 0:
            losses = estimate_loss()
            print(json.dumps({"iter": iter_num, "train_loss": losses["train"].item(),
                              "val_loss": losses["val"].item()}), flush=True)
            if losses["val"] < best_val_loss or a.always_save_checkpoint:
                best_val_loss = losses["val"]
                if iter_num > 0:
                    os.makedirs(a.out_dir, exist_ok=True)
                    torch.save({
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "model_args": model_args,
                        "iter_num": iter_num,
                        "best_val_loss": best_val_loss,
                        "config": cfg,
                    }, ckpt_path)
        if iter_num == 0 and a.eval_only:
            break
        for _ in range(a.gradient_accumulation_steps):
            _, loss = model(X, Y)
            loss = loss / a.gradient_accumulation_steps
            X, Y = get_batch("train")
            loss.backward()
        if a.grad_clip != 0.0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lossf = loss.item() * a.gradient_accumulation_steps
        print(json.dumps({"iter": iter_num, "loss": lossf, "lr": lr}), flush=True)
        iter_num += 1
        if iter_num > a.max_iters:
            break


def check(model, a):
    """The --check-out file: init, one batch, its logits and losses."""
    from safetensors.torch import save_file

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(a.seed + 2)
    idx = torch.randint(model.config.vocab_size, (3, a.block_size), generator=g)
    targets = torch.randint(model.config.vocab_size, (3, a.block_size), generator=g)
    targets[0, :3] = -1  # ignored positions
    model.eval()
    with torch.no_grad():
        logits, loss = model(idx, targets)
    model.train()
    torch.manual_seed(a.seed + 1)
    with torch.no_grad():
        _, train_loss = model(idx, targets)
    sd.update(idx=idx, targets=targets, logits=logits, loss=loss, train_loss=train_loss)
    save_file(sd, a.check_out)


if __name__ == "__main__":
    main()
