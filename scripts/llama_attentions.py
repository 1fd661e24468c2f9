"""transformers' attention weights of a Llama folder, the reference of `attn explain`
for decoders (tests/llama_explain.rs runs it at test time).

    llama_attentions.py MODEL_DIR OUT.safetensors ID [ID ...]

Loads MODEL_DIR (config.json + model.safetensors) with the eager attention, runs the
ids as one sequence with `output_attentions=True`, and writes each layer's weights
`(1, H, L, L)` as `layer{i}`.
"""

import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaForCausalLM


def main():
    model_dir, out, *ids = sys.argv[1:]
    model = LlamaForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        res = model(torch.tensor([[int(i) for i in ids]]), output_attentions=True)
    save_file({f"layer{i}": a.contiguous() for i, a in enumerate(res.attentions)}, out)


if __name__ == "__main__":
    main()
