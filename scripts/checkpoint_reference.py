#!/usr/bin/env python3
"""Checkpoints from real PyTorch modules, for the crate's checkpoint reading and layouts.

Two uses:

    python scripts/checkpoint_reference.py roundtrip --attn target/debug/attn \
        --save-layouts target/debug/examples/save_layouts

builds every attention layout from PyTorch modules, saves each as PyTorch users do
(torch.save state_dicts as .pt/.pth/.bin, nanoGPT's ckpt.pt dict from a torch.compile'd
model, safetensors), converts each with `attn convert` to every layout, loads the result
with `load_state_dict(strict=True)` into that layout's PyTorch module, checks that it
computes what the original computes (torch.testing.assert_close), then converts it back
and checks the original tensors come back bit for bit. `make test` runs it.

    write(out)   (called by scripts/make_fixtures.py)

writes tests/fixtures/checkpoints/: one small checkpoint per layout and file format, and
`reference.safetensors` with an input and each module's output, for the Rust tests.

The layouts (docs in src/checkpoint/layout.rs):
  lecture    the lecture's MultiHeadAttention of Heads (reference_modules.py's)
  nanogpt    nanoGPT's CausalSelfAttention (flash, no buffer; and the manual path, with
             the `bias` mask buffer)
  torch-mha  torch.nn.MultiheadAttention
  hf-gpt2    GPT-2's attention as Hugging Face writes it: Conv1D weights stored [in, out]
  hf-bert    BERT's attention as Hugging Face writes it: self.{query,key,value} and
             output.dense (output.LayerNorm passes through)
All are run causally with the same heads, so every conversion must preserve the output.
"""

import argparse
import math
import subprocess
import tempfile
from pathlib import Path

# First: it sets the kernel pins before torch is loaded (see its docstring).
import fixture_common as fc  # noqa: I001

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from reference_modules import CausalSelfAttention, MultiHeadAttention  # noqa: E402

C, NH, BS, B, T = 8, 2, 6, 2, 5
ROOT_FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "checkpoints"


def causal_attention(q, k, v, nh):
    """(B, T, D) projections -> (B, T, D), causal, scaled by head_size ** -0.5."""
    b, t, d = q.shape
    q, k, v = (z.view(b, t, nh, d // nh).transpose(1, 2) for z in (q, k, v))
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(-1)
    return (att @ v).transpose(1, 2).reshape(b, t, d)


class NanoGptManual(CausalSelfAttention):
    """nanoGPT's CausalSelfAttention without flash: the `bias` mask buffer is registered."""

    def __init__(self, n_embd, n_head, block_size, bias=True):
        super().__init__(n_embd, n_head, block_size, bias=bias)
        self.register_buffer(
            "bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)
        )


class Conv1D(nn.Module):
    """Hugging Face's Conv1D (pytorch_utils.py): a linear layer with the weight [in, out]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class Gpt2Attention(nn.Module):
    """GPT-2's attention in Hugging Face's layout; `old` adds the buffers that checkpoints
    written by older transformers versions carry (`bias` bool tril, `masked_bias`)."""

    def __init__(self, n_embd, n_head, n_positions, old=False):
        super().__init__()
        self.n_head, self.n_embd = n_head, n_embd
        self.c_attn = Conv1D(3 * n_embd, n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)
        if old:
            tril = torch.tril(torch.ones((n_positions, n_positions), dtype=torch.bool))
            self.register_buffer("bias", tril.view(1, 1, n_positions, n_positions))
            self.register_buffer("masked_bias", torch.tensor(-1e4))

    def forward(self, x):
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        return self.c_proj(causal_attention(q, k, v, self.n_head))


class BertSelfAttention(nn.Module):
    def __init__(self, hidden, n_head):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)


class BertSelfOutput(nn.Module):
    def __init__(self, hidden, layer_norm=True):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        if layer_norm:  # not part of the attention layout: off when loading a converted one
            self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)


class BertAttention(nn.Module):
    """BERT's attention in Hugging Face's layout (`self`, `output`); run causally here, and
    without the residual LayerNorm, so that it computes what the other layouts compute."""

    def __init__(self, hidden, n_head, layer_norm=True):
        super().__init__()
        self.self = BertSelfAttention(hidden, n_head)
        self.output = BertSelfOutput(hidden, layer_norm)

    def forward(self, x):
        s = self.self
        y = causal_attention(s.query(x), s.key(x), s.value(x), s.n_head)
        return self.output.dense(y)


class Mha(nn.Module):
    """nn.MultiheadAttention as self-attention with a causal mask (True = masked out)."""

    def __init__(self, embed_dim, num_heads, bias=True, add_bias_kv=False):
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True,
                                         add_bias_kv=add_bias_kv)

    def forward(self, x):
        t = x.size(1)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]

    def state_dict(self, *a, **k):  # the MHA's own keys, as a user would save it
        return self.mha.state_dict(*a, **k)

    def load_state_dict(self, sd, strict=True):
        return self.mha.load_state_dict(sd, strict=strict)


def build(layout, bias=True, mask_buffer=False, extra=False, layer_norm=True):
    """A fresh module of `layout`; its parameters all drawn (biases too, so conversions
    carry real values)."""
    if layout == "lecture":
        m = MultiHeadAttention(C, NH, C // NH, BS)
    elif layout == "nanogpt":
        m = (NanoGptManual if mask_buffer else CausalSelfAttention)(C, NH, BS, bias=bias)
    elif layout == "torch-mha":
        m = Mha(C, NH, bias=bias, add_bias_kv=extra)
    elif layout == "hf-gpt2":
        m = Gpt2Attention(C, NH, BS, old=mask_buffer)
    elif layout == "hf-bert":
        m = BertAttention(C, NH, layer_norm)
    else:
        raise ValueError(layout)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "LayerNorm" not in name:
                p.uniform_(-0.5, 0.5)
    return m.eval()


def wrapper_state(layout, m, prefix):
    """The module's state_dict under `prefix`, beside keys of other layers that must pass
    through unchanged."""
    sd = {f"{prefix}{k}": v for k, v in m.state_dict().items()}
    sd[f"{prefix.rsplit('attn.', 1)[0]}ln_1.weight"] = torch.linspace(0.5, 1.5, C)
    return sd


def forward(layout, m, x):
    with torch.no_grad():
        return m(x)


def save(path, sd, fmt):
    if fmt == "safetensors":
        fc.write_file(path, sd, {"format": "pt"})
    else:
        torch.save(sd, path)


def load_converted(path):
    data = Path(path).read_bytes()
    tensors, _ = fc.deserialize(data)
    return tensors


# --------------------------------------------------------------------------------------
# Round trips through `attn convert`
# --------------------------------------------------------------------------------------

SOURCES = [
    # (name, layout, build kwargs, file format, prefix)
    ("lecture", "lecture", {}, "pt", "blocks.0.sa."),
    ("nanogpt", "nanogpt", {}, "ckpt", "transformer.h.1.attn."),
    ("nanogpt-nobias", "nanogpt", {"bias": False}, "pt", "transformer.h.0.attn."),
    ("nanogpt-manual", "nanogpt", {"mask_buffer": True}, "safetensors", "transformer.h.0.attn."),
    ("torch-mha", "torch-mha", {}, "pth", ""),
    ("torch-mha-nobias", "torch-mha", {"bias": False}, "pth", "layers.2.self_attn."),
    ("hf-gpt2", "hf-gpt2", {"mask_buffer": True}, "bin", "h.0.attn."),
    ("hf-bert", "hf-bert", {}, "safetensors", "encoder.layer.0.attention."),
]
LAYOUTS = ["lecture", "nanogpt", "torch-mha", "hf-gpt2", "hf-bert"]


def attn(binary, *args, expect_ok=True):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if expect_ok and r.returncode != 0:
        raise AssertionError(f"attn {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r


def target_module(layout, keys, prefix):
    """The target layout's module, configured as the converted keys say (bias or not)."""
    has = lambda k: f"{prefix}{k}" in keys  # noqa: E731
    if layout == "nanogpt":
        return build("nanogpt", bias=has("c_attn.bias"), mask_buffer=has("bias"))
    if layout == "torch-mha":
        return build("torch-mha", bias=has("in_proj_bias"))
    if layout == "hf-gpt2":
        return build("hf-gpt2", mask_buffer=has("bias"))
    if layout == "hf-bert":
        return build("hf-bert", layer_norm=has("output.LayerNorm.weight"))
    return build(layout)


def strip(sd, prefix, layer_norm):
    """The keys under `prefix`, relative to it, without the pass-through marker (ln_1) and,
    unless the target is BERT's, without BERT's output.LayerNorm (which passes through)."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and "ln_1" not in k
            and (layer_norm or "LayerNorm" not in k)}


def roundtrip(binary):
    torch.manual_seed(0)
    x = torch.randn(B, T, C)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, layout, kwargs, fmt, prefix in SOURCES:
            src = build(layout, **kwargs)
            want = forward(layout, src, x)
            sd = wrapper_state(layout, src, prefix)
            if fmt == "ckpt":
                # nanoGPT's train.py: checkpoint = {'model': raw_model.state_dict(), ...},
                # here from a torch.compile'd model, whose keys start with _orig_mod.
                holder = nn.Module()
                for k, v in sd.items():
                    holder.register_buffer(k.replace(".", "__"), v)
                compiled = torch.compile(holder)
                model_sd = {k.replace("__", "."): v for k, v in compiled.state_dict().items()}
                assert all(k.startswith("_orig_mod.") for k in model_sd), list(model_sd)[:3]
                opt = torch.optim.AdamW([nn.Parameter(torch.ones(3))], lr=1e-3)
                opt.zero_grad()
                opt.param_groups[0]["params"][0].grad = torch.ones(3)
                opt.step()
                payload = {"model": model_sd, "optimizer": opt.state_dict(),
                           "model_args": {"n_layer": 2, "n_head": NH, "n_embd": C,
                                          "block_size": BS, "bias": True, "vocab_size": 65},
                           "iter_num": 1, "best_val_loss": torch.tensor(1.5),
                           "config": {"out_dir": "out", "compile": True, "lr": 6e-4}}
                path = tmp / f"{name}.pt"
                torch.save(payload, path)
            else:
                path = tmp / f"{name}.{fmt}"
                save(path, sd, fmt)
            for to in LAYOUTS:
                out = tmp / f"{name}-to-{to}.safetensors"
                args = ["convert", "--from", layout, "--to", to, "--prefix", prefix,
                        str(path), str(out)]
                if to == "lecture":
                    args[1:1] = ["--heads", str(NH), "--block-size", str(BS)]
                qkv_bias = any(k.startswith(prefix) and k.endswith(b) for k in sd for b in
                               ("c_attn.bias", "in_proj_bias", "query.bias"))
                if to == "lecture" and qkv_bias:
                    # The lecture's heads have no bias: refused, not silently dropped.
                    r = attn(binary, *args, expect_ok=False)
                    assert r.returncode == 2 and "nonzero bias" in r.stderr, r.stderr
                    assert not out.exists()
                    continue
                attn(binary, *args)
                conv = load_converted(out)
                # keys outside the block pass through unchanged
                for k, v in sd.items():
                    if not k.startswith(prefix) or "LayerNorm" in k:
                        assert torch.equal(conv[k], v), (name, to, k)
                dst = target_module(to, conv, prefix)
                dst.load_state_dict(strip(conv, prefix, to == "hf-bert"), strict=True)
                got = forward(to, dst, x)
                torch.testing.assert_close(got, want, msg=lambda m: f"{name} -> {to}: {m}")
                # and back: the original tensors, bit for bit
                back = tmp / f"{name}-to-{to}-back.safetensors"
                back_args = ["convert", "--from", to, "--to", layout, "--prefix", prefix,
                             str(out), str(back)]
                if layout == "lecture":
                    back_args[1:1] = ["--heads", str(NH), "--block-size", str(BS)]
                if not kwargs.get("bias", True):
                    back_args[1:1] = ["--bias", "no"]
                if kwargs.get("mask_buffer") and to != layout:
                    back_args[1:1] = ["--mask-buffer", "true", "--block-size", str(BS)]
                attn(binary, *back_args)
                again = load_converted(back)
                assert set(again) == set(sd), (name, to, sorted(set(again) ^ set(sd)))
                for k, v in sd.items():
                    assert again[k].dtype == v.dtype and torch.equal(again[k], v), (name, to, k)
                checked += 1
        # What cannot be converted losslessly is refused, with a reason.
        refused = [
            ("torch-mha", {"extra": True}, "hf-bert", "add_bias_kv"),
            ("hf-bert", {}, "lecture", "nonzero bias"),
            ("nanogpt", {}, "torch-mha", None),  # fine: control
        ]
        for layout, kwargs, to, reason in refused:
            m = build(layout, **kwargs)
            path = tmp / f"refuse-{layout}.pt"
            torch.save(m.state_dict(), path)
            out = tmp / f"refuse-{layout}-{to}.safetensors"
            args = ["convert", "--from", layout, "--to", to, "--heads", str(NH),
                    "--block-size", str(BS), str(path), str(out)]
            r = attn(binary, *args, expect_ok=reason is None)
            if reason is not None:
                assert r.returncode == 2 and reason in r.stderr and not out.exists(), r.stderr
                assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    print(f"checkpoints: {checked} conversions loaded by PyTorch (strict) with the same "
          f"outputs, and converted back bit for bit; lossy ones refused")


def file_formats(binary):
    """torch.save's forms beside the layouts: every pickle protocol, views (offsets,
    strides, transposes), storages shared by several tensors, 0-d and empty tensors and
    every dtype safetensors holds. A conversion from a layout to itself only changes the
    file format, so the safetensors `attn convert` writes must hold exactly these values."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=g)
    sd = {
        "view.offset": base[1:4, 2:7],
        "view.transposed": base.t(),
        "view.strided": base[::2, ::3],
        "shared.a": base,
        "shared.b": base,
        "scalar": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
        "bool": torch.tensor([True, False, True]),
    }
    for dtype in (torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
                  torch.int16, torch.int32):
        sd[f"dtype.{str(dtype).split('.')[1]}"] = (base * 10).to(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        for proto in (2, 3, 4, 5):
            src = Path(tmp) / f"p{proto}.pt"
            torch.save(sd, src, pickle_protocol=proto)
            out = Path(tmp) / f"p{proto}.safetensors"
            attn(binary, "convert", "--from", "nanogpt", "--to", "nanogpt", str(src), str(out))
            got = load_converted(out)
            assert set(got) == set(sd), sorted(set(got) ^ set(sd))
            for k, v in sd.items():
                assert got[k].dtype == v.dtype and got[k].shape == v.shape, (proto, k)
                assert torch.equal(got[k], v), (proto, k)
    print(f"checkpoints: torch.save with pickle protocols 2-5, views, shared storages and "
          f"{len({v.dtype for v in sd.values()})} dtypes read back exactly")


def hugging_face(binary):
    """Checkpoints of real Hugging Face models (transformers' GPT2Model and BertModel, as
    `from_pretrained` checkpoints hold them: every layer under `h.{i}.attn.` /
    `encoder.layer.{i}.attention.`, beside embeddings, MLPs and LayerNorms), converted by
    `attn convert` for every layer at once: each layer's attention, run by nanoGPT's module
    or nn.MultiheadAttention from the converted file, computes what transformers' own
    attention module computes, and converting back gives the checkpoint's bits."""
    import logging

    import transformers
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(1)
    x = torch.randn(B, T, C)
    causal = torch.full((T, T), float("-inf")).triu(1)[None, None]  # additive, (1, 1, T, T)
    gpt2 = GPT2Model(GPT2Config(n_embd=C, n_head=NH, n_layer=2, n_positions=BS, vocab_size=11,
                                bos_token_id=0, eos_token_id=0)).eval()
    bert = BertModel(BertConfig(hidden_size=C, num_attention_heads=NH, num_hidden_layers=2,
                                intermediate_size=2 * C, vocab_size=11,
                                max_position_embeddings=BS)).eval()
    for model in (gpt2, bert):
        with torch.no_grad():  # biases start at zero in both; make every value count
            for name, p in model.named_parameters():
                if "attn" in name or "attention" in name:
                    p.uniform_(-0.5, 0.5)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [
            ("gpt2", gpt2, "hf-gpt2", "nanogpt", "pytorch_model.bin", "h.{}.attn."),
            ("bert", bert, "hf-bert", "torch-mha", "model.safetensors",
             "encoder.layer.{}.attention."),
        ]
        for name, model, layout, to, fname, prefix in runs:
            sd = {k: v.contiguous() for k, v in model.state_dict().items()}
            src = tmp / f"{name}-{fname}"
            save(src, sd, "safetensors" if fname.endswith("safetensors") else "bin")
            out = tmp / f"{name}-{to}.safetensors"
            attn(binary, "convert", "--from", layout, "--to", to, str(src), str(out))
            conv = load_converted(out)
            for i in range(2):
                p = prefix.format(i)
                dst = target_module(to, conv, p)
                dst.load_state_dict(strip(conv, p, False), strict=True)
                with torch.no_grad():
                    if name == "gpt2":
                        want = model.h[i].attn(x, attention_mask=causal)[0]
                        got = dst(x)
                    else:
                        # BERT is bidirectional; its attention block ends with
                        # LayerNorm(dense(context) + input), whose weights pass through.
                        want = model.encoder.layer[i].attention(x)[0]
                        y = dst.mha(x, x, x, need_weights=False)[0]
                        ln = f"{p}output.LayerNorm."
                        got = F.layer_norm(y + x, (C,), conv[ln + "weight"], conv[ln + "bias"],
                                           eps=model.config.layer_norm_eps)
                torch.testing.assert_close(got, want, msg=lambda m: f"{name} layer {i}: {m}")
                checked += 1
            back = tmp / f"{name}-back.safetensors"
            attn(binary, "convert", "--from", to, "--to", layout, str(out), str(back))
            again = load_converted(back)
            assert set(again) == set(sd), sorted(set(again) ^ set(sd))
            for k, v in sd.items():
                assert again[k].dtype == v.dtype and torch.equal(again[k], v), (name, k)
    print(f"checkpoints: {checked} layers of transformers' GPT2Model and BertModel, converted, "
          f"compute what transformers computes, and convert back bit for bit "
          f"(transformers {transformers.__version__})")


def saved(example):
    """Modules the crate loaded from the committed checkpoints and saved in every layout
    (examples/save_layouts.rs) load into PyTorch strictly and give the reference outputs."""
    d = ROOT_FIXTURES
    ref, _ = fc.deserialize((d / "reference.safetensors").read_bytes())
    loaded = 0
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([example, tmp], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        refused = r.stdout.strip().splitlines()
        # The lecture's heads have no bias: nanoGPT's and the MHA's biases are refused.
        assert len(refused) == 2 and all("lecture" in line and "nonzero bias" in line
                                          for line in refused), refused
        for f in sorted(Path(tmp).glob("*-as-*.safetensors")):
            source, layout = f.name[: -len(".safetensors")].split("-as-")
            sd = load_converted(f)
            dst = target_module(layout, sd, "")
            dst.load_state_dict(sd, strict=True)
            torch.testing.assert_close(forward(layout, dst, ref["x"]), ref[f"{source}.output"],
                                       msg=lambda m: f"{f.name}: {m}")
            loaded += 1
    assert loaded == 13, loaded
    print(f"checkpoints: {loaded} modules saved by the crate in every layout load into PyTorch "
          f"(strict) and give PyTorch's outputs")


# --------------------------------------------------------------------------------------
# Fixtures for the Rust tests
# --------------------------------------------------------------------------------------

def write(out):
    """tests/fixtures/checkpoints/: one checkpoint per layout and file format (torch.save
    writes the same bytes for the same tensors), and the outputs they must reproduce."""
    d = out / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*"):
        old.unlink()
    g = torch.Generator().manual_seed(2024)
    torch.manual_seed(2024)
    x = torch.randn(B, T, C, generator=g)
    ref = {"x": x}
    files = {
        "lecture.pt": ("lecture", {}, ""),
        "nanogpt_ckpt.pt": ("nanogpt", {}, "transformer.h.1.attn."),
        "torch_mha.pth": ("torch-mha", {}, ""),
        "hf_gpt2.bin": ("hf-gpt2", {"mask_buffer": True}, "h.0.attn."),
        "hf_bert.safetensors": ("hf-bert", {}, "encoder.layer.0.attention."),
    }
    for fname, (layout, kwargs, prefix) in files.items():
        m = build(layout, **kwargs)
        ref[f"{fname}.output"] = forward(layout, m, x)
        if fname == "nanogpt_ckpt.pt":
            sd = {f"_orig_mod.{k}": v for k, v in wrapper_state(layout, m, prefix).items()}
            torch.save({"model": sd, "iter_num": 7, "best_val_loss": torch.tensor(2.5),
                        "model_args": {"n_head": NH, "n_embd": C, "block_size": BS}},
                       d / fname)
        elif prefix:
            save(d / fname, wrapper_state(layout, m, prefix), fname.rsplit(".", 1)[1])
        else:
            save(d / fname, m.state_dict(), fname.rsplit(".", 1)[1])
    meta = {"torch_version": fc.TORCH_VERSION, "config": fc.dumps(
        {"n_embd": C, "n_head": NH, "block_size": BS}),
        "description": "x and each checkpoint's module output (eval, causal)"}
    fc.write_file(d / "reference.safetensors", ref, meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("roundtrip")
    r.add_argument("--attn", required=True, help="the attn binary")
    r.add_argument("--save-layouts", required=True, help="examples/save_layouts's binary")
    w = sub.add_parser("write")
    w.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    fc.pin_torch()
    if args.cmd == "roundtrip":
        roundtrip(args.attn)
        file_formats(args.attn)
        hugging_face(args.attn)
        saved(args.save_layouts)
    else:
        write(args.out)


if __name__ == "__main__":
    main()
