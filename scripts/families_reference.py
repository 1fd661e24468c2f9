#!/usr/bin/env python3
"""Fixtures for the decoder families the one config-driven decoder (src/models/llama)
runs besides Llama (and Gemma 3 270M's GGUF, scripts/gemma_reference.py): a tiny random
model per family, built offline by
transformers from a config, saved as a Hugging Face folder and as a GGUF, with
transformers' logits and greedy tokens on each.

    python scripts/families_reference.py [--out tests/fixtures/families]

For each family (mistral, qwen2, qwen3, gemma2, gemma3, phi3), into --out/<family>/:

- config.json, model.safetensors (qwen3: two shards and model.safetensors.index.json),
  tokenizer.json, tokenizer_config.json (the chat template in it; qwen2's in
  chat_template.jinja instead): the folder transformers' `from_pretrained` loads.
- model.gguf (not mistral: llama.cpp writes Mistral as `llama`, tested already):
  float32 tensors under llama.cpp's names (gguf-py's tensor-name map), the metadata
  keys transformers' GGUF loader maps for the architecture, a byte-level BPE
  tokenizer (`tokenizer.ggml.model = gpt2`) with the same vocabulary and merges.
- reference.safetensors: the prompt's ids and logits from transformers loading the
  folder ("folder_logits") and the GGUF ("gguf_logits"), float32, eager attention.
- reference.json: the prompt, its ids, 32 greedy tokens per format (argmax of a full
  forward each step, no EOS stop) and the chat template rendered on one message.

Every weight, biases and norm weights included, is drawn from N(0, 0.3) with seed 0
(transformers' own init leaves biases at 0 and norms at 1, which would test nothing);
the Gemmas' embeddings from N(0, 0.03) (see `randomize`).
The tokenizer is a byte-level BPE trained by `tokenizers` on a fixed text.
Deterministic: regenerated files are equal byte for byte (`make check-families-fixtures`).
"""
import fixture_common as fc  # noqa: F401  (first: the kernel pins)

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

PROMPT = "The quick brown fox jumps over the lazy dog"
MAX_NEW = 32
SEED = 0
STD = 0.3
VOCAB = 300
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A decoder reads its config and computes the same logits as transformers.",
    "Hello world! Numbers 0123456789, punctuation; and spaces   too.",
    "Qwen, Gemma, Phi and Mistral are decoder families of 2024 and 2025.",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Shared sizes: small, with grouped-query attention (4 query heads over 2).
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              tie_word_embeddings=False)


def configs():
    from transformers import (Gemma2Config, Gemma3TextConfig, MistralConfig, Phi3Config,
                              Qwen2Config, Qwen3Config)
    return {
        # The window (8) is shorter than prompt + generation: sliding attention exercised.
        "mistral": MistralConfig(**COMMON, sliding_window=8,
                                 rope_parameters={"rope_type": "default",
                                                  "rope_theta": 10000.0}),
        # q/k/v biases; tied head.
        "qwen2": Qwen2Config(**{**COMMON, "tie_word_embeddings": True},
                             rope_parameters={"rope_type": "default",
                                              "rope_theta": 1000000.0}),
        # q/k RMSNorm per head; head_dim 128, transformers' Qwen3Config default (its GGUF
        # loader does not map qwen3.attention.key_length), not hidden / heads.
        "qwen3": Qwen3Config(**{**COMMON, "hidden_size": 16, "num_hidden_layers": 2,
                                "num_attention_heads": 2, "num_key_value_heads": 1,
                                "tie_word_embeddings": True}, head_dim=128,
                             rope_parameters={"rope_type": "default",
                                              "rope_theta": 1000000.0}),
        # Soft-capping (Gemma2Config's 50 and 30: its GGUF loader maps neither), sliding
        # and full layers alternating with a window of 8, four norms, GeGLU, tied head.
        "gemma2": Gemma2Config(**{**COMMON, "tie_word_embeddings": True}, head_dim=16,
                               sliding_window=8, query_pre_attn_scalar=16,
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                               hidden_activation="gelu_pytorch_tanh"),
        # Gemma 3's switches from a folder (the 270M GGUF is tests/gemma3.rs's): q/k
        # norms, a sliding (base 1e4) and a full (base 1e6) layer type with a window of 8;
        # the GGUF, as transformers' loader reads it, has Gemma3TextConfig's pattern (five
        # sliding layers, then a full one) and query_pre_attn_scalar 256.
        "gemma3": Gemma3TextConfig(**{**COMMON, "tie_word_embeddings": True}, head_dim=16,
                                   sliding_window=8, query_pre_attn_scalar=16,
                                   layer_types=["sliding_attention", "full_attention",
                                                "sliding_attention"]),
        # Fused qkv_proj and gate_up_proj; a window over every layer in the folder
        # (transformers' GGUF loader does not map one for phi3).
        "phi3": Phi3Config(**COMMON, sliding_window=8,
                           rope_parameters={"rope_type": "default",
                                            "rope_theta": 10000.0}),
    }


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def save_tokenizer(tok, out, family):
    from transformers import PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    jinja = out / "chat_template.jinja"
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    # One family keeps the template in chat_template.jinja (transformers 5's default),
    # the others in tokenizer_config.json (older checkpoints'), so both are read.
    if family == "qwen2":
        config.pop("chat_template", None)
        jinja.write_text(CHAT_TEMPLATE)
    else:
        config["chat_template"] = CHAT_TEMPLATE
        if jinja.exists():
            jinja.unlink()
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def randomize(model):
    gen = torch.Generator().manual_seed(SEED)
    # Gemma scales its (tied) embedding by sqrt(E): drawn at STD it swamps the layers and
    # every greedy token is the same one, so its embedding is drawn ten times smaller.
    gemma = model.config.model_type in ("gemma2", "gemma3_text")
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            std = STD / 10 if gemma and "embed_tokens" in name else STD
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def save_folder(model, out, family):
    model.config.to_json_file(out / "config.json")
    state = {k: v for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    if family != "qwen3":
        fc.write_file(out / "model.safetensors", state, {"format": "pt"})
        return
    # Two shards and their index, as save_pretrained writes a larger model.
    names = sorted(state)
    half = len(names) // 2
    index = {"metadata": {"total_size": sum(t.numel() * 4 for t in state.values())},
             "weight_map": {}}
    for i, part in enumerate([names[:half], names[half:]]):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        fc.write_file(out / shard, {k: state[k] for k in part}, {"format": "pt"})
        index["weight_map"].update({k: shard for k in part})
    (out / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_gguf(model, tok, path, family):
    """The GGUF llama.cpp's converter would write for this folder, float32."""
    import gguf
    c = model.config
    arch = {"qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3,
            "gemma2": gguf.MODEL_ARCH.GEMMA2, "gemma3": gguf.MODEL_ARCH.GEMMA3,
            "phi3": gguf.MODEL_ARCH.PHI3}[family]
    w = gguf.GGUFWriter(str(path), family)
    w.add_name(f"tiny-{family}")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w.add_rope_dimension_count(head_dim)
    if family == "gemma3":
        w.add_rope_freq_base(c.rope_parameters["full_attention"]["rope_theta"])
    elif family != "gemma2":
        w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    if family in ("qwen3", "gemma2", "gemma3"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if family in ("gemma2", "gemma3"):
        w.add_sliding_window(c.sliding_window)
    if family == "gemma2":
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    merges = json.loads(tok.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(c.bos_token_id)
    w.add_pad_token_id(c.pad_token_id)
    w.add_eos_token_id(c.eos_token_id)
    names = gguf.get_tensor_name_map(arch, c.num_hidden_layers)
    for name, t in model.state_dict().items():
        if c.tie_word_embeddings and name == "lm_head.weight":
            continue
        base, suffix = name.rsplit(".", 1)
        gname = names.get_name(base)
        assert gname is not None, name
        data = t.detach().numpy().astype(np.float32)
        if family in ("gemma2", "gemma3") and name.endswith("norm.weight"):
            data = data + 1  # llama.cpp stores Gemma's norms as 1 + weight
        w.add_tensor(f"{gname}.{suffix}", data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@torch.no_grad()
def greedy(model, ids):
    """MAX_NEW tokens, each the argmax of a full forward over everything so far."""
    seq = ids.clone()
    for _ in range(MAX_NEW):
        nxt = model(seq).logits[0, -1].argmax()
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    return seq[0, ids.shape[1]:].tolist()


def family(name, config, tok, out):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    randomize(model)
    save_folder(model, out, name)
    save_tokenizer(tok, out, name)
    folder = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([hf_tok(PROMPT)["input_ids"]])
    chat = hf_tok.apply_chat_template([{"role": "user", "content": "Hi there"}],
                                      tokenize=False, add_generation_prompt=True)
    with torch.no_grad():
        tensors = {"input_ids": ids, "folder_logits": folder(ids).logits.contiguous()}
    record = {"family": name, "prompt": PROMPT, "prompt_ids": ids[0].tolist(),
              "max_new_tokens": MAX_NEW, "folder_greedy": greedy(folder, ids),
              "chat": chat}
    if name != "mistral":
        write_gguf(model, tok, out / "model.gguf", name)
        g = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf",
                                                 attn_implementation="eager").eval()
        g = g.float()
        with torch.no_grad():
            tensors["gguf_logits"] = g(ids).logits.contiguous()
        record["gguf_greedy"] = greedy(g, ids)
    fc.write_file(out / "reference.safetensors", tensors, {"script": "families_reference.py"})
    (out / "reference.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    sizes = sum(f.stat().st_size for f in out.iterdir())
    print(f"{name}: {sizes // 1024} KiB, greedy {record['folder_greedy']}",
          file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/families"))
    args = parser.parse_args()
    fc.check_torch("families_reference.py")
    fc.pin_torch()
    tok = build_tokenizer()
    for name, config in configs().items():
        family(name, config, tok, args.out / name)


if __name__ == "__main__":
    main()
