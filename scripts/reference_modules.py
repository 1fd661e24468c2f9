"""The reference modules, as the lecture (gpt.py) and nanoGPT (model.py) write them, with
their globals made arguments. One copy for every script that runs them: the fixtures
(make_fixtures.py, checkpoint_reference.py), the lecture GPT's training reference
(lecture_gpt_reference.py) and the PyTorch side of the benchmarks (bench_torch.py).
Importing this file pins nothing: the fixture scripts import fixture_common.py first,
which sets the kernel pins before torch loads; bench_torch.py runs libtorch's native
kernels.

scripts/random_cases.py keeps copies of its own on purpose: it is written from
docs/parity-cases.md alone, as an independent check.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Head(nn.Module):
    """one head of self-attention (Karpathy, "Let's build GPT", gpt.py)"""

    def __init__(self, n_embd, head_size, block_size, dropout=0.0):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)  # (B,T,hs)
        q = self.query(x)  # (B,T,hs)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B,T,T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        wei = self.dropout(wei)
        v = self.value(x)  # (B,T,hs)
        out = wei @ v  # (B,T,hs)
        return out


class MultiHeadAttention(nn.Module):
    """multiple heads of self-attention in parallel (the lecture's gpt.py)"""

    def __init__(self, n_embd, num_heads, head_size, block_size, dropout=0.0):
        super().__init__()
        self.heads = nn.ModuleList(
            [Head(n_embd, head_size, block_size, dropout) for _ in range(num_heads)]
        )
        self.proj = nn.Linear(head_size * num_heads, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        out = self.dropout(self.proj(out))
        return out


class CausalSelfAttention(nn.Module):
    """nanoGPT model.py's CausalSelfAttention, flash path (no mask buffer).

    Beyond nanoGPT, the options of current models' attention (docs/parity-cases.md,
    `causal_self_attention`), all off by default, which leaves nanoGPT's forward as it is:
    `sliding_window` (Mistral's name: window (W - 1, 0)), `softcap` (Gemma 2), `sinks`
    (gpt-oss's learned per-head logits, a parameter named `sinks`), `alibi` (BLOOM's
    slopes, or `alibi_slopes` given to forward) and packed documents (`document_ids` given
    to forward). With any of them, the attention is `attention_with_options` with
    is_causal=True."""

    def __init__(self, n_embd, n_head, block_size, bias=True, dropout=0.0,
                 sliding_window=None, softcap=None, sinks=False, alibi=False):
        super().__init__()
        assert n_embd % n_head == 0
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)  # unused on the flash path, as in nanoGPT
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head = n_head
        self.n_embd = n_embd
        self.dropout = dropout
        self.block_size = block_size
        self.sliding_window = sliding_window
        self.softcap = softcap
        self.alibi = alibi
        # gpt-oss allocates its sinks empty and draws them in _init_weights; zeros here,
        # so construction draws nothing beyond the Linears.
        self.sinks = nn.Parameter(torch.zeros(n_head)) if sinks else None

    def forward(self, x, document_ids=None, alibi_slopes=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        dropout_p = self.dropout if self.training else 0
        options = (self.sliding_window, self.softcap, self.sinks, document_ids)
        if all(o is None for o in options) and not self.alibi:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None, dropout_p=dropout_p, is_causal=True,
            )
        else:
            assert alibi_slopes is None or self.alibi
            if self.alibi and alibi_slopes is None:
                alibi_slopes = bloom_alibi_slopes(self.n_head)
            window = None if self.sliding_window is None else (self.sliding_window - 1, 0)
            y = attention_with_options(
                q, k, v, dropout_p=dropout_p, is_causal=True, window=window,
                softcap=self.softcap, sinks=self.sinks, alibi_slopes=alibi_slopes,
                doc_q=document_ids, doc_k=document_ids,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs
        y = self.resid_dropout(self.c_proj(y))
        return y


# --------------------------------------------------------------------------------------
# The attention options of current models (docs/parity-cases.md, `sdpa`), written from
# the implementations that define them. PyTorch's SDPA has none of them as arguments.
# --------------------------------------------------------------------------------------


def bloom_alibi_slopes(num_heads):
    """BLOOM's slopes, read from transformers' own `build_alibi_tensor` (modeling_bloom.py):
    its tensor holds slope_h * j for key position j, so position 1 gives the slopes."""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    alibi = build_alibi_tensor(torch.ones(1, 2), num_heads, torch.float32)  # (H, 1, 2)
    return alibi[:, 0, 1]


def window_keep(L, S, left, right):
    """flash-attention's window_size (flash_attn_func docstring): query i attends to keys
    [i + S - L - left, i + S - L + right] inclusive; -1 = unbounded."""
    i = torch.arange(L)[:, None] + S - L
    j = torch.arange(S)[None, :]
    keep = torch.ones(L, S, dtype=torch.bool)
    if left >= 0:
        keep &= j >= i - left
    if right >= 0:
        keep &= j <= i + right
    return keep


def cu_seqlens_to_ids(cu):
    """flash-attention's varlen layout [0, end_0, end_1, ..] as one document id per position."""
    lengths = (cu[1:] - cu[:-1]).tolist()
    return torch.cat([torch.full((n,), d, dtype=torch.int64) for d, n in enumerate(lengths)]
                     + [torch.zeros(0, dtype=torch.int64)])


def document_keep(doc_q, doc_k, N, H, L, S):
    """FlexAttention's document masking, its `mask_mod` run eagerly by `create_mask`: a
    query sees only the keys of its own document. Ids are (L,)/(S,) or (N, L)/(N, S)."""
    from torch.nn.attention.flex_attention import create_mask

    per_row = doc_q.dim() == 2
    dq = doc_q if per_row else doc_q[None]
    dk = doc_k if per_row else doc_k[None]

    def document_mask(b, h, q_idx, kv_idx):
        return dq[b if per_row else 0, q_idx] == dk[b if per_row else 0, kv_idx]

    return create_mask(document_mask, N if per_row else 1, 1, L, S, device="cpu")  # (N|1, 1, L, S)


def contiguous_runs(ids):
    """{id: (start, length)} of 1-D document ids, each document one contiguous run, as
    flash-attention's varlen layout has them (cu_seqlens cannot say anything else)."""
    runs = {}
    for d in ids.unique().tolist():
        at = (ids == d).nonzero().flatten().tolist()
        assert at == list(range(at[0], at[0] + len(at))), f"document {d} is not contiguous"
        runs[d] = (at[0], len(at))
    return runs


def varlen_keep(doc_q, doc_k, L, S, causal=False, window=None):
    """flash-attention's `flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, ..,
    causal, window_size)`, as its docstring defines the mask, written out one document at
    a time: document d holds queries cu_seqlens_q[d]..cu_seqlens_q[d + 1] (seqlen_q of
    them) and keys cu_seqlens_k[d]..cu_seqlens_k[d + 1] (seqlen_k); query i and key j,
    counted within the document, take part when
      causal:                j <= i + seqlen_k - seqlen_q
                             ("the causal mask is aligned to the bottom right corner")
      window_size (l, r):    i + seqlen_k - seqlen_q - l <= j <= i + seqlen_k - seqlen_q + r
                             (-1: unbounded on that side)
    and never across documents. Documents come as ids (L,)/(S,), or (N, L)/(N, S) one layout
    per batch row, each document contiguous on each side. Returns bool (L, S) or (N, L, S).
    """
    per_row = doc_q.dim() == 2
    rows_q, rows_k = (doc_q, doc_k) if per_row else (doc_q[None], doc_k[None])
    keep = torch.zeros(rows_q.shape[0], L, S, dtype=torch.bool)
    for b in range(rows_q.shape[0]):
        runs_q, runs_k = contiguous_runs(rows_q[b]), contiguous_runs(rows_k[b])
        for d in runs_q.keys() & runs_k.keys():
            (q0, seqlen_q), (k0, seqlen_k) = runs_q[d], runs_k[d]
            for i in range(seqlen_q):
                diagonal = i + seqlen_k - seqlen_q  # the key the query sits at
                for j in range(seqlen_k):
                    ok = True
                    if causal:
                        ok = ok and j <= diagonal
                    if window is not None and window[0] >= 0:
                        ok = ok and j >= diagonal - window[0]
                    if window is not None and window[1] >= 0:
                        ok = ok and j <= diagonal + window[1]
                    keep[b, q0 + i, k0 + j] = ok
    return keep if per_row else keep[0]


def attention_with_options(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                           scale=None, enable_gqa=False, window=None, softcap=None, sinks=None,
                           alibi_slopes=None, doc_q=None, doc_k=None):
    """Attention with the options, in the order transformers' eager code applies them:
    `q @ k^T * scale`; Gemma 2's soft-capping (modeling_gemma2.py: / cap, tanh, * cap);
    ALiBi's bias -slope_h * (i - j) (BLOOM's slopes; query positions bottom-right); the
    mask (bool: True takes part; float: added); causal (top-left, as SDPA's is_causal) and
    window masks, or with documents flash-attention's varlen ones (`varlen_keep`: causal
    and window within each document, aligned at its end); softmax, with gpt-oss's sink column (modeling_gpt_oss.py:
    cat, minus the row max, softmax, drop the column) or SDPA's `_safe_softmax` (a row with
    no key gives 0); dropout; `@ v`.

    Without soft-capping and sinks the options are one mask (a bias, with -inf where a key
    is masked out, when ALiBi or a float mask takes part), handed to PyTorch's own SDPA as
    the equivalent of flash-attention's and FlexAttention's kernels. Otherwise the eager
    code runs, its softmax in the input dtype (transformers upcasts to float32, which
    would throw away float64's precision)."""
    L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    bias = attn_mask if attn_mask is not None and attn_mask.dtype != torch.bool else None
    if alibi_slopes is not None:
        i = torch.arange(L, dtype=torch.float64)[:, None] + S - L
        j = torch.arange(S, dtype=torch.float64)[None, :]
        alibi = (-alibi_slopes.double()[:, None, None] * (i - j)).to(query.dtype)  # (H, L, S)
        bias = alibi if bias is None else bias + alibi
    keep = torch.ones(L, S, dtype=torch.bool)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        keep = keep & attn_mask
    if is_causal and doc_q is None:
        keep = keep & torch.ones(L, S, dtype=torch.bool).tril()
    if window is not None and doc_q is None:
        keep = keep & window_keep(L, S, *window)
    if doc_q is not None:
        N = doc_q.shape[0] if doc_q.dim() == 2 else 1
        docs = varlen_keep(doc_q, doc_k, L, S, is_causal, window)  # (L, S) or (N, L, S)
        # FlexAttention's document mask_mod is the same documents.
        flex = document_keep(doc_q, doc_k, N, 1, L, S)  # (N|1, 1, L, S)
        assert torch.equal(varlen_keep(doc_q, doc_k, L, S).reshape(flex.shape), flex)
        if doc_q.shape == doc_k.shape and torch.equal(doc_q, doc_k):
            # Shared ids: square documents, where FlexAttention's reading (top-left causal
            # mask, window over global positions) is the same as flash-attention's.
            flex = flex & torch.ones(L, S, dtype=torch.bool).tril() if is_causal else flex
            flex = flex & window_keep(L, S, *window) if window is not None else flex
            assert torch.equal(docs.reshape(flex.shape), flex)
        # (L, S) for 1-D ids; (N, 1, .., L, S) lined up with the scores' first dim.
        rank = max(query.dim(), key.dim(), value.dim())
        docs = docs if doc_q.dim() == 1 else docs.reshape(N, *[1] * (rank - 3), L, S)
        keep = keep & docs
    if softcap is None and sinks is None:
        mask = keep if bias is None else torch.where(keep, bias, float("-inf"))
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                              dropout_p=dropout_p, scale=scale,
                                              enable_gqa=enable_gqa)

    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], -3)
    if enable_gqa and value.shape[-3] != query.shape[-3]:
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], -3)
    scaling = E ** -0.5 if scale is None else scale
    w = torch.matmul(query, key.transpose(-2, -1)) * scaling
    if softcap is not None:
        w = w / softcap
        w = torch.tanh(w)
        w = w * softcap
    if bias is not None:
        w = w + bias
    w = w.masked_fill(~keep, float("-inf"))
    if sinks is not None:
        sink = sinks.reshape(-1, 1, 1).expand(*w.shape[:-1], 1)
        combined = torch.cat([w, sink], dim=-1)
        combined = combined - combined.max(dim=-1, keepdim=True).values
        probs = F.softmax(combined, dim=-1, dtype=combined.dtype)
        w = probs[..., :-1]
    else:
        w = torch.ops.aten._safe_softmax(w, -1)
    if dropout_p > 0:
        w = F.dropout(w, p=dropout_p, training=True)
    return torch.matmul(w, value)
