#!/usr/bin/env python3
"""Random parity cases in the `tch-attention-case/1` format.

Written by an independent tester from docs/parity-cases.md ALONE (without reading
scripts/make_fixtures.py, src/ or tests/), so that `attn verify` can be shown to accept
cases that the project did not write itself.

    python scripts/random_cases.py --out DIR [--count 40] [--seed 0]

writes DIR/<module>_<index>.safetensors for the five modules (head, multi_head,
causal_self_attention, multihead_attention, sdpa) in turn, each with a random but valid
configuration, a distinct seed, random parameters and inputs, and what PyTorch computed.
The output is a function of --seed and --count only. The sdpa cases also draw batch
dimensions that broadcast, empty batches, and the options of the page (window, softcap,
sinks, alibi with or without slopes, document ids or cu_seqlens, documents of unequal
query and key lengths with is_causal and window per document), computed as the page
words them.
"""
import argparse
import math
import json
import os
import random
import struct
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

MODULES = ["head", "multi_head", "causal_self_attention", "multihead_attention", "sdpa"]
ST_DTYPE = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16",
            torch.bfloat16: "BF16", torch.bool: "BOOL", torch.int64: "I64"}


# ---------------------------------------------------------------- safetensors writer
def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        flat = torch.empty(t.numel(), dtype=t.dtype).copy_(t.reshape(-1))  # stride 1
        data = flat.view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---------------------------------------------------------------- reference modules
class Head(nn.Module):
    """The lecture's Head, exactly in the doc's order."""

    def __init__(self, n_embd, head_size, block_size, dropout=0.0):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        T = x.shape[1]
        k = self.key(x)
        q = self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        wei = self.dropout(wei)
        v = self.value(x)
        return wei @ v


class MultiHead(nn.Module):
    """The lecture's MultiHeadAttention."""

    def __init__(self, n_embd, num_heads, head_size, block_size, dropout=0.0):
        super().__init__()
        self.heads = nn.ModuleList(
            [Head(n_embd, head_size, block_size, dropout) for _ in range(num_heads)])
        self.proj = nn.Linear(num_heads * head_size, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.proj(torch.cat([h(x) for h in self.heads], dim=-1)))


class CausalSelfAttention(nn.Module):
    """nanoGPT's CausalSelfAttention, flash variant (no mask buffer)."""

    def __init__(self, n_embd, n_head, block_size, bias=True, dropout=0.0):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.n_embd, self.p = n_head, n_embd, dropout

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=self.p if self.training else 0.0,
            is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class SDPA(nn.Module):
    """sdpa with the options of docs/parity-cases.md, written from that page."""

    def __init__(self, window=None, softcap=None, alibi=False, **fwd):
        super().__init__()
        self.fwd, self.window, self.softcap, self.alibi = fwd, window, softcap, alibi

    def forward(self, query, key, value, attn_mask=None, sinks=None, alibi_slopes=None,
                document_ids=None, cu_seqlens_q=None, cu_seqlens_k=None):
        docs = document_ids is not None or cu_seqlens_q is not None
        if not (self.window or self.softcap or self.alibi or docs or sinks is not None):
            return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                  **self.fwd)
        L, S = query.shape[-2], key.shape[-2]
        rank = max(query.dim(), key.dim(), value.dim())
        bias = attn_mask if attn_mask is not None and attn_mask.dtype != torch.bool else None
        if self.alibi:
            slopes = alibi_slopes if alibi_slopes is not None else docs_slopes(query.shape[-3])
            qpos = torch.arange(L, dtype=torch.float64)[:, None] + (S - L)
            kpos = torch.arange(S, dtype=torch.float64)[None, :]
            ab = (-slopes.double().view(-1, 1, 1) * (qpos - kpos)).to(query.dtype)
            bias = ab if bias is None else bias + ab
        keep = torch.ones(L, S, dtype=torch.bool)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            keep = keep & attn_mask
        # off: the key's position relative to where the query sits, j - (i + S - L);
        # with cu_seqlens, within the document (docs: "i + Lk - Lq", query i and key j
        # counted within it); shared document_ids keep global positions (L = S).
        off = torch.arange(S)[None, :] - (torch.arange(L)[:, None] + (S - L))
        if docs:
            if document_ids is not None:
                idq = idk = document_ids
            else:
                idq = torch.searchsorted(cu_seqlens_q[1:], torch.arange(L), right=True)
                idk = torch.searchsorted(cu_seqlens_k[1:], torch.arange(S), right=True)
                i_in = torch.arange(L) - cu_seqlens_q[idq]
                j_in = torch.arange(S) - cu_seqlens_k[idk]
                lq = (cu_seqlens_q[1:] - cu_seqlens_q[:-1])[idq]
                lk = (cu_seqlens_k[1:] - cu_seqlens_k[:-1])[idq]  # the query's document
                off = j_in[None, :] - (i_in + lk - lq)[:, None]
            same = idq[..., :, None] == idk[..., None, :]
            if same.dim() == 3:  # per-row ids (N, L, S) go with the scores' first dim
                same = same.reshape(same.shape[0], *[1] * (rank - 3), L, S)
            keep = keep & same
        if self.fwd.get("is_causal"):
            keep = keep & (off <= 0 if docs else torch.ones(L, S, dtype=torch.bool).tril())
        if self.window:
            left, right = self.window
            if left >= 0:
                keep = keep & (off >= -left)
            if right >= 0:
                keep = keep & (off <= right)
        p = self.fwd.get("dropout_p", 0.0)
        if self.softcap is None and sinks is None:
            mask = keep if bias is None else bias.masked_fill(~keep, float("-inf"))
            return F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=p, scale=self.fwd.get("scale"),
                enable_gqa=self.fwd.get("enable_gqa", False))
        if self.fwd.get("enable_gqa"):
            key = key.repeat_interleave(query.shape[-3] // key.shape[-3], -3)
            value = value.repeat_interleave(query.shape[-3] // value.shape[-3], -3)
        scale = self.fwd.get("scale") or query.shape[-1] ** -0.5
        sc = query @ key.transpose(-2, -1) * scale
        if self.softcap:
            sc = self.softcap * torch.tanh(sc / self.softcap)
        if bias is not None:
            sc = sc + bias
        sc = sc.masked_fill(~keep, float("-inf"))
        if sinks is not None:
            col = sinks.view(-1, 1, 1).expand(*sc.shape[:-1], 1)
            full = torch.cat([sc, col], -1)
            w = torch.softmax(full - full.amax(-1, keepdim=True), -1)[..., :-1]
        else:
            w = torch.softmax(sc, -1).nan_to_num(0.0)  # a row with no key gives 0
        if p > 0:
            w = F.dropout(w, p, training=True)
        return w @ value


def docs_slopes(h):
    """ALiBi slopes as docs/parity-cases.md words BLOOM's rule, in float32."""
    c = 2 ** int(math.floor(math.log2(h)))
    first = torch.tensor(2.0 ** (-8.0 / c), dtype=torch.float32) ** torch.arange(1, c + 1)
    rest = min(c, h - c)
    extra = (torch.tensor(2.0 ** (-4.0 / c), dtype=torch.float32) ** torch.arange(1, 2 * rest, 2)
             if rest else torch.zeros(0))
    return torch.cat([first, extra])


# ---------------------------------------------------------------- random helpers
def pick_dtype(r, allow_half):
    if allow_half and r.random() < 0.2:
        return r.choice([torch.bfloat16, torch.float16])
    return r.choice([torch.float64, torch.float64, torch.float32])


def pick_dropout(r):
    return r.choice([0.0, 0.0, 0.1, 0.25, 0.5])


def randn(g, shape, dtype):
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def maybe(r, d, key, value, default):
    """Put key in d, but leave it out now and then when it equals PyTorch's default."""
    if value != default or r.random() < 0.6:
        d[key] = value


# ---------------------------------------------------------------- case builders
# Each returns (module, config, forward, inputs{name: tensor}, dtype, description).
def build_head(r, g):
    n_embd, head_size = r.randint(1, 24), r.randint(1, 12)
    block_size = r.randint(1, 8)
    T, B = r.randint(1, block_size), r.randint(1, 3)
    dropout = pick_dropout(r)
    cfg = {"n_embd": n_embd, "head_size": head_size, "block_size": block_size}
    maybe(r, cfg, "dropout", dropout, 0.0)
    dtype = pick_dtype(r, True)
    m = Head(n_embd, head_size, block_size, dropout)
    return m, cfg, dtype, {"x": (B, T, n_embd)}


def build_multi_head(r, g):
    n_embd, num_heads, head_size = r.randint(1, 24), r.randint(1, 4), r.randint(1, 8)
    block_size = r.randint(1, 8)
    T, B = r.randint(1, block_size), r.randint(1, 3)
    dropout = pick_dropout(r)
    cfg = {"n_embd": n_embd, "num_heads": num_heads, "head_size": head_size,
           "block_size": block_size}
    maybe(r, cfg, "dropout", dropout, 0.0)
    dtype = pick_dtype(r, True)
    m = MultiHead(n_embd, num_heads, head_size, block_size, dropout)
    return m, cfg, dtype, {"x": (B, T, n_embd)}


def build_csa(r, g):
    n_head = r.randint(1, 4)
    n_embd = n_head * r.randint(1, 6)
    block_size = r.randint(1, 8)
    T, B = r.randint(1, block_size), r.randint(1, 3)
    bias, dropout = r.random() < 0.6, pick_dropout(r)
    cfg = {"n_embd": n_embd, "n_head": n_head, "block_size": block_size}
    maybe(r, cfg, "bias", bias, True)
    maybe(r, cfg, "dropout", dropout, 0.0)
    dtype = pick_dtype(r, True)
    m = CausalSelfAttention(n_embd, n_head, block_size, bias, dropout)
    return m, cfg, dtype, {"x": (B, T, n_embd)}


def build_mha(r, g):
    num_heads = r.randint(1, 4)
    E = num_heads * r.randint(1, 6)
    bias, add_bias_kv, add_zero_attn = r.random() < 0.7, r.random() < 0.3, r.random() < 0.3
    kdim = r.choice([None, None, r.randint(1, 24)])
    vdim = r.choice([None, None, kdim, r.randint(1, 24)])
    batch_first, dropout = r.random() < 0.5, pick_dropout(r)
    cfg = {"embed_dim": E, "num_heads": num_heads}
    maybe(r, cfg, "dropout", dropout, 0.0)
    maybe(r, cfg, "bias", bias, True)
    maybe(r, cfg, "add_bias_kv", add_bias_kv, False)
    maybe(r, cfg, "add_zero_attn", add_zero_attn, False)
    maybe(r, cfg, "kdim", kdim, None)
    maybe(r, cfg, "vdim", vdim, None)
    maybe(r, cfg, "batch_first", batch_first, False)
    dtype = pick_dtype(r, False)
    m = nn.MultiheadAttention(E, num_heads, dropout=dropout, bias=bias,
                              add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn,
                              kdim=kdim, vdim=vdim, batch_first=batch_first)
    L, S, B = r.randint(1, 7), r.randint(1, 7), r.randint(1, 3)
    unbatched = r.random() < 0.2
    kd, vd = kdim or E, vdim or E

    def shp(n, d):
        return (n, d) if unbatched else ((B, n, d) if batch_first else (n, B, d))

    shapes = {"query": shp(L, E), "key": shp(S, kd), "value": shp(S, vd)}
    fwd = {}
    maybe(r, fwd, "need_weights", r.random() < 0.6, True)
    maybe(r, fwd, "average_attn_weights", r.random() < 0.6, True)
    is_causal = r.random() < 0.15
    masks = {}
    # Masks never cover key 0, so no row is ever fully masked (no NaN semantics needed).
    if r.random() < 0.4:
        kshape = (S,) if unbatched else (B, S)
        if r.random() < 0.5:
            kpm = torch.rand(kshape, generator=g) < 0.4
            kpm[..., 0] = False
        else:
            kpm = randn(g, kshape, dtype)
            kpm[torch.rand(kshape, generator=g) < 0.2] = float("-inf")
            kpm[..., 0] = 0.5
        masks["key_padding_mask"] = kpm
    if is_causal or r.random() < 0.4:
        ashape = (L, S) if r.random() < 0.5 else ((num_heads,) if unbatched
                                                     else (B * num_heads,)) + (L, S)
        as_bool = r.random() < 0.5
        if is_causal:  # the hint says attn_mask is the causal mask
            am = torch.ones(L, S, dtype=torch.bool).triu(1).expand(ashape).clone()
        else:
            am = torch.rand(ashape, generator=g) < 0.4
        am[..., 0] = False
        if not as_bool:
            am = torch.zeros(ashape, dtype=dtype).masked_fill(am, float("-inf")) + (
                0 if is_causal else 0.5 * randn(g, ashape, dtype))
        masks["attn_mask"] = am
    if is_causal:
        fwd["is_causal"] = True
    return m, cfg, dtype, shapes, fwd, masks


def build_sdpa(r, g):
    four_d = r.random() < 0.6
    B, L, S = r.randint(1, 3), r.randint(1, 7), r.randint(1, 7)
    E, Ev = r.randint(1, 16), r.choice([None, r.randint(1, 16)])
    Ev = Ev or E
    gqa = four_d and r.random() < 0.3
    Hk = r.randint(1, 3) if four_d else None
    Hq = Hk * r.randint(2, 3) if gqa else Hk
    lead_q = (B, Hq) if four_d else (B,)
    lead_k = (B, Hk) if four_d else (B,)
    lead_v = lead_k
    if r.random() < 0.25:  # batch dimensions that broadcast (docs: "broadcast together")
        lead_q = (1,) + lead_q[1:] if B > 1 and r.random() < 0.5 else lead_q
        lead_v = (1,) + lead_k[1:] if r.random() < 0.5 else lead_k
        if r.random() < 0.3:
            lead_q, lead_k, lead_v = (2,) + lead_q, (1,) + lead_k, (1,) + lead_v
    if r.random() < 0.05:
        lead_q, lead_k, lead_v = (0,) + lead_q[1:], (0,) + lead_k[1:], (0,) + lead_v[1:]
    dtype = pick_dtype(r, True)
    shapes = {"query": lead_q + (L, E), "key": lead_k + (S, E), "value": lead_v + (S, Ev)}
    full = tuple(max(a, b, c) if 0 not in (a, b, c) else 0
                 for a, b, c in zip(lead_q, lead_k, lead_v)) + (L, S)
    fwd, masks = {}, {}
    is_causal = r.random() < 0.2
    if is_causal:
        fwd["is_causal"] = True
    elif r.random() < 0.6:
        nd = r.randint(2, len(full))  # SDPA wants a mask of at least 2 dims
        mshape = [d if r.random() < 0.6 else 1 for d in full[-nd:]]
        mshape[-1] = S
        mshape = tuple(mshape)
        if r.random() < 0.5:  # bool keep-mask: true takes part; key 0 always takes part
            am = torch.rand(mshape, generator=g) < 0.7
            am[..., 0] = True
        else:
            am = randn(g, mshape, dtype)
            am[torch.rand(mshape, generator=g) < 0.2] = float("-inf")
            am[..., 0] = -0.25
        masks["attn_mask"] = am
    dropout_p = pick_dropout(r)
    maybe(r, fwd, "dropout_p", dropout_p, 0.0)
    scale = r.choice([None, None, round(r.uniform(0.1, 2.0), 4)])
    maybe(r, fwd, "scale", scale, None)
    maybe(r, fwd, "enable_gqa", gqa, False)
    kw = {"dropout_p": dropout_p, "is_causal": is_causal, "scale": scale, "enable_gqa": gqa}
    kw.update(pick_options(r, g, fwd, masks, full, dtype))
    return SDPA(**kw), {}, dtype, shapes, fwd, masks


def pick_options(r, g, fwd, masks, full, dtype):
    """The options of docs/parity-cases.md, each now and then."""
    L, S, opts = full[-2], full[-1], {}
    heads = full[-3] if len(full) >= 3 else None
    if r.random() < 0.25:
        opts["window"] = fwd["window"] = [r.randint(-1, 3), r.randint(-1, 3)]
    if r.random() < 0.2:
        opts["softcap"] = fwd["softcap"] = round(r.uniform(0.5, 5.0), 3)
    if heads and r.random() < 0.2:
        masks["sinks"] = randn(g, (heads,), dtype)
    if heads and r.random() < 0.2:
        opts["alibi"] = fwd["alibi"] = True
        if r.random() < 0.5:
            masks["alibi_slopes"] = torch.rand(heads, generator=g, dtype=torch.float64).to(dtype)
    if L == S and r.random() < 0.2:
        cuts = sorted(r.sample(range(1, L), min(L - 1, r.randint(0, 2)))) if L > 1 else []
        if r.random() < 0.5:
            ids = torch.zeros(L, dtype=torch.int64)
            for c in cuts:
                ids[c:] += 1
            masks["document_ids"] = ids
        else:
            cu = torch.tensor([0] + cuts + [L], dtype=torch.int64)
            masks["cu_seqlens_q"], masks["cu_seqlens_k"] = cu, cu.clone()
    elif r.random() < 0.2:  # documents of unequal query and key lengths, empty ones too
        n = r.randint(1, 3)
        for name, total in (("cu_seqlens_q", L), ("cu_seqlens_k", S)):
            cuts = sorted(r.randint(0, total) for _ in range(n - 1))
            masks[name] = torch.tensor([0] + cuts + [total], dtype=torch.int64)
    return opts


# ---------------------------------------------------------------- one case
def make_case(module, index, r, case_seed, out_dir):
    g = torch.Generator().manual_seed(case_seed + 1)
    torch.manual_seed(case_seed + 2)  # parameter init of the constructors
    if module == "multihead_attention":
        m, cfg, dtype, shapes, fwd, masks = build_mha(r, g)
    elif module == "sdpa":
        m, cfg, dtype, shapes, fwd, masks = build_sdpa(r, g)
    else:
        m, cfg, dtype, shapes = {"head": build_head, "multi_head": build_multi_head,
                                 "causal_self_attention": build_csa}[module](r, g)
        fwd, masks = {}, {}
    train = module != "sdpa" and r.random() < 0.5
    if module != "sdpa":
        maybe(r, fwd, "train", train, False)
    m = m.to(torch.float64)
    with torch.no_grad():  # make every parameter random (MHA zero-initialises biases)
        for name, p in m.named_parameters():
            if p.dim() < 2 or "bias" in name:
                p.copy_(0.3 * randn(g, p.shape, torch.float64))
    m = m.to(dtype)
    m.train(train)
    inputs = {n: randn(g, s, dtype) for n, s in shapes.items()}
    if "sinks" in masks:  # a floating input of its own, with a gradient (docs)
        inputs["sinks"] = masks.pop("sinks")
    with_grad = r.random() < 0.5
    params = dict(m.named_parameters())
    for t in list(inputs.values()) + list(params.values()):
        t.requires_grad_(with_grad)
    call = dict(inputs, **masks)
    if module == "multihead_attention":
        call.update({k: fwd[k] for k in ("need_weights", "average_attn_weights", "is_causal")
                     if k in fwd})
    torch.manual_seed(case_seed)
    result = m(**call)
    out, weights = result if isinstance(result, tuple) else (result, None)
    tensors = {f"param.{k}": v for k, v in m.state_dict().items()}
    tensors.update({f"input.{k}": v for k, v in call.items() if torch.is_tensor(v)})
    tensors["expected.output"] = out
    if weights is not None:
        tensors["expected.attn_weights"] = weights
    if with_grad:
        grad_out = randn(g, out.shape, dtype)
        (out * grad_out).sum().backward()
        tensors["input.grad_output"] = grad_out
        for k, v in list(inputs.items()):
            tensors[f"expected.grad.input.{k}"] = v.grad
        for k, v in params.items():
            assert v.grad is not None, (module, k)
            tensors[f"expected.grad.param.{k}"] = v.grad
    meta = {"format": "tch-attention-case/1", "module": module,
            "config": json.dumps(cfg), "forward": json.dumps(fwd), "seed": str(case_seed),
            "torch_version": torch.__version__,
            "description": f"random_cases.py case {index} ({str(dtype)[6:]})"}
    write_safetensors(os.path.join(out_dir, f"{module}_{index}.safetensors"), tensors, meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.backends.mha.set_fastpath_enabled(False)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seeds, master = set(), random.Random(a.seed)
    for i in range(a.count):
        s = master.randrange(1, 2 ** 31)
        while s in seeds:
            s = master.randrange(1, 2 ** 31)
        seeds.add(s)
        module = MODULES[i % len(MODULES)]
        make_case(module, i, random.Random(f"{a.seed}:{i}:{s}"), s, a.out)
    print(f"wrote {a.count} cases to {a.out}")


if __name__ == "__main__":
    main()
