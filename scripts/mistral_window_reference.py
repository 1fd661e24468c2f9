#!/usr/bin/env python3
"""transformers' MistralForCausalLM with a sliding window: the reference for the Llama
decoder's `sliding_window` (src/models/llama/attention.rs). tests/llama_window.rs runs it
at test time, with libtorch's native kernels, as the crate runs.

    python scripts/mistral_window_reference.py --out DIR

A small random Mistral (the Llama architecture plus `sliding_window`; eager attention,
whose mask is transformers' `sliding_window_overlay`: key j takes part for query i when
`i - W < j <= i`), seed 0, weights drawn with std 0.2 so that attention is far from
uniform. Writes DIR/config.json and DIR/model.safetensors (Hugging Face's layout, the
state_dict keys of LlamaForCausalLM) and DIR/reference.safetensors with `input_ids`
(1, T) and the `logits` (1, T, V) of one forward pass. Checks that the window changes
the logits, so that the reference tests it at all.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import MistralConfig, MistralForCausalLM

SLIDING_WINDOW = 3
T = 10


def config(sliding_window):
    return MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, initializer_range=0.2, sliding_window=sliding_window,
        bos_token_id=1, eos_token_id=2,
    )


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    model = MistralForCausalLM._from_config(config(SLIDING_WINDOW),
                                            attn_implementation="eager").eval()
    ids = torch.randint(0, 64, (1, T), generator=torch.Generator().manual_seed(1))
    windowed = logits(model, ids)

    full = MistralForCausalLM._from_config(config(None), attn_implementation="eager").eval()
    full.load_state_dict(model.state_dict())
    moved = (logits(full, ids) - windowed).abs().max().item()
    assert moved > 1e-2, f"the window changed the logits by only {moved}"

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(args.out / "model.safetensors"))
    (args.out / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    save_file({"input_ids": ids, "logits": windowed.contiguous()},
              str(args.out / "reference.safetensors"),
              metadata={"sliding_window": str(SLIDING_WINDOW)})


if __name__ == "__main__":
    main()
