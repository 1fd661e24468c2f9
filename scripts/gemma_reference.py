#!/usr/bin/env python3
"""Fixtures for Gemma 3 270M (src/models/llama with gemma3's switches), from transformers
loading the Q4_K_M GGUF that scripts/setup.sh assembles into the setup's environment.

    python scripts/gemma_reference.py [--out tests/fixtures/gemma3] [--model FILE.gguf]

transformers 5 loads the file dequantised to float32 (`AutoModelForCausalLM` ->
`Gemma3ForCausalLM`, `AutoTokenizer` -> `GemmaTokenizer` built from the GGUF's
vocabulary). Writes, into --out:

- gemma3.json: the token ids (and decodings) of a dozen strings; the prompt whose logits
  are kept; greedy generations of MAX_NEW tokens on four raw prompts, two of them longer
  than the 512-token sliding window together with their generation (one crossing it while
  decoding, one already in the prompt), so that the sliding layers are checked against
  transformers' computation, and on whole-word ids (see WHOLE_WORDS); one seeded sampled
  generation (torch.manual_seed(SEED)).
- gemma3_logits.safetensors: the logits of that prompt, every 64th vocabulary entry at
  each position ("strided") and every 4th of the last position ("last").

Deterministic: no randomness but the sampled generation's seed.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
SEED = 1234
MAX_NEW = 32

TOKENIZE = [
    "Hello world",
    "  leading spaces and   runs of   spaces  ",
    "\t\ttabs\nand\r\nnewlines\n\n\n",
    "Numbers: 3.14159, 1,000,000 and 2025-11-30; 12345678901234",
    "naïve café, Straße, Ångström, e\u0301 combining, \u00a0nbsp",
    "東京は日本の首都です。北京，서울",
    "emoji 🤖🔥👩‍👩‍👧 and ✨",
    "def f(x):\n    return x**2  # square\n",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos><pad> literal specials",
    "",
    "https://example.com/path?q=1&r=2 <html><body>x</body></html>",
]

# A passage long enough that prompt + generation passes the 512-token sliding window.
PARAGRAPH = (
    "The history of the river town begins with a ferry, a mill and a handful of farms. "
    "Over two centuries the ferry became a bridge, the mill a factory, and the farms "
    "gave way to streets of brick houses whose residents worked the looms by day and "
    "argued about politics in the taverns by night. "
)


def long_prompt(tok, at_least):
    """The start of a numbered chronicle, word by word until it has at least `at_least`
    tokens."""
    words = " ".join(f"Chapter {i}. {PARAGRAPH}" for i in range(1, 40)).split(" ")
    text = ""
    for word in words:
        text = f"{text} {word}" if text else word
        if len(tok(text)["input_ids"]) >= at_least:
            return text
    raise AssertionError("the chronicle is too short")


# Gemma 3's own tokenizer is a SentencePiece BPE, whose pieces' scores are negated merge
# ranks. transformers' GGUF converter for gemma3 reads them as Unigram log-probabilities
# and so splits words into fragments ("The capital" -> "The", "▁c", "ap", "it", "al"), on
# which the model repeats itself; the crate reproduces that tokenizer, as it should. One
# more greedy case starts from the ids of whole-word pieces, BOS first, as Gemma's own
# tokenizer gives them, so that the decoder is also checked on text it continues
# sensibly.
WHOLE_WORDS = ["<bos>", "The", "▁capital", "▁of", "▁France", "▁is"]


def model_file(arg):
    if arg:
        return Path(arg)
    path = Path(sys.prefix) / "share/tch-attention" / MODEL_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run scripts/setup.sh")
    return path


def generate(model, ids, **kwargs):
    prompt = torch.tensor([ids])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                         max_new_tokens=MAX_NEW, **kwargs)
    return out[0, len(ids):].tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    p.add_argument("--out", default=str(root / "tests/fixtures/gemma3"))
    p.add_argument("--model", help="the GGUF (default: the setup environment's)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    path = model_file(a.model)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32).eval()
    assert type(model).__name__ == "Gemma3ForCausalLM", type(model)
    fixture = {"file": MODEL_FILE, "max_new_tokens": MAX_NEW,
               "eos_token_id": model.generation_config.eos_token_id,
               "sliding_window": model.config.sliding_window,
               "layer_types": model.config.layer_types}
    fixture["tokenize"] = []
    for s in TOKENIZE:
        ids = tok(s)["input_ids"]
        fixture["tokenize"].append({"text": s, "ids": ids, "decoded": tok.decode(ids)})
    prompt = tok("The capital of France is")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0]
    fixture["logits_prompt"] = prompt
    save_file({"strided": logits[:, ::64].contiguous(), "last": logits[-1, ::4].contiguous()},
              str(out / "gemma3_logits.safetensors"))
    prompts = ["The capital of France is", "def fibonacci(n):",
               long_prompt(tok, 496), long_prompt(tok, 560)]
    greedy = []
    for text in prompts:
        ids = tok(text)["input_ids"]
        g = {"prompt": text, "prompt_ids": ids, "ids": generate(model, ids, do_sample=False)}
        g["text"] = tok.decode(g["ids"])
        greedy.append(g)
    ids = tok.convert_tokens_to_ids(WHOLE_WORDS)
    g = {"pieces": WHOLE_WORDS, "prompt_ids": ids, "ids": generate(model, ids, do_sample=False)}
    g["text"] = tok.decode(g["ids"])
    greedy.append(g)
    fixture["greedy"] = greedy
    sampled = {"prompt": "Once upon a time", "seed": SEED, "temperature": 0.7,
               "top_k": 50, "top_p": 0.9}
    ids = tok(sampled["prompt"])["input_ids"]
    torch.manual_seed(SEED)
    new = generate(model, ids, do_sample=True, temperature=sampled["temperature"],
                   top_k=sampled["top_k"], top_p=sampled["top_p"])
    fixture["sampled"] = dict(sampled, prompt_ids=ids, ids=new, text=tok.decode(new))
    (out / "gemma3.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    print(f"gemma_reference: wrote {out} in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
