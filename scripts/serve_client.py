"""Drives a running `attn serve` with the official `openai` client, as real clients do,
and checks every answer against `attn generate --json` for the same model, prompt and
parameters: chat and completion, streamed and not, `seed`, `stop`, `max_tokens`, the
usage counts, and errors raised as the client's exception classes.

    python scripts/serve_client.py --base-url http://127.0.0.1:8080/v1 --attn target/debug/attn

tests/serve.rs runs it against a server it starts (SmolLM2-135M-Instruct, the default
model of both commands). Prints "all checks passed" and exits 0, or fails on the first
difference.
"""

import argparse
import json
import subprocess
import sys

import openai


def generate(attn, prompt, *flags):
    """`attn generate --json` with the server's defaults (one thread)."""
    out = subprocess.run([attn, "generate", "--json", "--threads", "1", *flags, prompt],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def expected(attn, reference, max_tokens):
    """The server's text, finish_reason and completion_tokens for `reference`: the
    end-of-sequence token is counted but not shown."""
    ids, text = reference["ids"], reference["text"]
    if len(ids) < max_tokens:
        # Ended at EOS: its token's text (a special token) ends `text`.
        tokens = json.loads(subprocess.run([attn, "tokenize", "--json", text], check=True,
                                           capture_output=True, text=True).stdout)["tokens"]
        assert text.endswith(tokens[-1]), (text, tokens[-1])
        return text[: len(text) - len(tokens[-1])], "stop", len(ids)
    return text, "length", len(ids)


def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")
    print(f"ok  {what}")


def chat(client, model, attn):
    question = "What is the capital of France?"
    ref = generate(attn, question, "--chat", "--max-new-tokens", "32")
    text, finish, n = expected(attn, ref, 32)
    messages = [{"role": "user", "content": question}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=32)
    check("chat: text", r.choices[0].message.content, text)
    check("chat: finish_reason", r.choices[0].finish_reason, finish)
    check("chat: usage", (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens),
          (len(ref["prompt_ids"]), n, len(ref["prompt_ids"]) + n))
    check("chat: object", r.object, "chat.completion")
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=32,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check("chat stream: text", content, text)
    check("chat stream: role", chunks[0].choices[0].delta.role, "assistant")
    check("chat stream: finish_reason",
          [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
          [finish])
    check("chat stream: usage", (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens),
          (len(ref["prompt_ids"]), n))


def completion(client, model, attn):
    prompt = "The capital of France is"
    ref = generate(attn, prompt, "--max-new-tokens", "12")
    text, finish, n = expected(attn, ref, 12)
    r = client.completions.create(model=model, prompt=prompt, max_tokens=12)
    check("completion: text", r.choices[0].text, text)
    check("completion: finish_reason", r.choices[0].finish_reason, finish)
    check("completion: usage", (r.usage.prompt_tokens, r.usage.completion_tokens),
          (len(ref["prompt_ids"]), n))
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model=model, prompt=prompt, max_tokens=12,
                                                 stream=True))
    check("completion stream: text", streamed, text)
    return prompt, text


def stop(client, model, prompt, text):
    """A stop string from the middle of the greedy text: the answer ends before it."""
    words = text.split(" ")
    assert len(words) > 3, text
    stop_at = " " + words[3]
    want = text[: text.index(stop_at)]
    r = client.completions.create(model=model, prompt=prompt, max_tokens=12, stop=[stop_at])
    check("stop: text", r.choices[0].text, want)
    check("stop: finish_reason", r.choices[0].finish_reason, "stop")
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model=model, prompt=prompt, max_tokens=12,
                                                 stop=stop_at, stream=True))
    check("stop stream: text", streamed, want)


def seeded(client, model, attn):
    prompt = "Once upon a time"
    ref = generate(attn, prompt, "--max-new-tokens", "10", "--temperature", "0.8",
                   "--top-p", "0.9", "--top-k", "20", "--seed", "7")
    text, _, n = expected(attn, ref, 10)
    r = client.completions.create(model=model, prompt=prompt, max_tokens=10, temperature=0.8,
                                  top_p=0.9, seed=7, extra_body={"top_k": 20})
    check("seed: text", r.choices[0].text, text)
    check("seed: completion_tokens", r.usage.completion_tokens, n)


def errors(client, model):
    try:
        client.completions.create(model="no-such-model", prompt="a", max_tokens=1)
        sys.exit("an unknown model was served")
    except openai.NotFoundError as e:
        check("unknown model: code", e.code, "model_not_found")
    try:
        client.completions.create(model=model, prompt="a", max_tokens=1, n=2)
        sys.exit("n=2 was served")
    except openai.BadRequestError as e:
        check("n=2: param", e.param, "n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--attn", required=True, help="the attn binary")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=120)
    models = client.models.list().data
    check("models: count", len(models), 1)
    model = models[0].id
    chat(client, model, args.attn)
    prompt, text = completion(client, model, args.attn)
    stop(client, model, prompt, text)
    seeded(client, model, args.attn)
    errors(client, model)
    print("all checks passed")


if __name__ == "__main__":
    main()
