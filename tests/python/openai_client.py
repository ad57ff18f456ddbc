"""The official `openai` Python client against `prism serve` (stories260K): completions and chat,
streaming and not, compared with the transformers goldens. Usage: openai_client.py BASE_URL GOLDEN_JSON."""

import json
import sys

import openai

base_url, golden_path = sys.argv[1], sys.argv[2]
case = json.load(open(golden_path))["cases"][0]
prompt, n, golden = case["prompt"], len(case["greedy_new_ids"]), case["greedy_text"]
client = openai.OpenAI(base_url=base_url + "/v1", api_key="test-key")

models = [m.id for m in client.models.list()]
assert models == ["stories260K"], models

c = client.completions.create(model="stories260K", prompt=prompt, max_tokens=n, temperature=0)
assert c.choices[0].text == golden, c
assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == n, c

chunks = list(
    client.completions.create(
        model="stories260K", prompt=prompt, max_tokens=n, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
)
text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
assert text == golden, text
assert chunks[-1].usage.completion_tokens == n, chunks[-1]

messages = [{"role": "user", "content": prompt}]
r = client.chat.completions.create(
    model="stories260K", messages=messages, max_completion_tokens=n, temperature=0, logprobs=True, top_logprobs=2
)
assert r.choices[0].message.content == golden, r
assert r.choices[0].message.role == "assistant"
assert len(r.choices[0].logprobs.content) == n

stream = client.chat.completions.create(
    model="stories260K", messages=messages, max_tokens=n, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
parts, finish, usage = [], None, None
for ch in stream:
    if ch.usage:
        usage = ch.usage
    for choice in ch.choices:
        parts.append(choice.delta.content or "")
        finish = choice.finish_reason or finish
assert "".join(parts) == golden, parts
assert finish == "length" and usage.total_tokens == usage.prompt_tokens + n, (finish, usage)

try:
    client.completions.create(model="no-such-model", prompt="a", max_tokens=2)
    raise AssertionError("unknown model must fail")
except openai.NotFoundError as e:
    assert e.status_code == 404

try:
    client.completions.create(model="stories260K", prompt=prompt, max_tokens=100000)
    raise AssertionError("context overflow must fail")
except openai.BadRequestError as e:
    assert e.status_code == 400

print("openai client: completions and chat, streaming and not: OK")
