"""How many prefill tokens a request asks for, read from its JSON body before it is routed.

- SGLang native /generate with `input_ids`: their number (a batch: the sum over its prompts).
- /generate with `text`, /v1/completions `prompt`, /v1/chat/completions `messages`: no
  tokenizer at the router, so characters / chars_per_token (default 4, about right for English
  with Llama/Qwen BPE tokenizers; the estimate errs both ways on code and other languages).
  A prompt given as token ids (/v1/completions accepts lists of ints) is counted exactly.
- Anything else counts 1 token (it still needs a replica with some room).
The replay client always sends input_ids, so measured cluster runs route on exact counts.
"""

from __future__ import annotations

import math
from typing import Any


def _text_tokens(text: str, chars_per_token: float) -> int:
    return math.ceil(len(text) / chars_per_token)


def _prompt_tokens(prompt: Any, chars_per_token: float) -> int:
    if isinstance(prompt, str):
        return _text_tokens(prompt, chars_per_token)
    if isinstance(prompt, list):
        if not prompt:
            return 0
        if all(isinstance(x, int) for x in prompt):
            return len(prompt)
        return sum(_prompt_tokens(p, chars_per_token) for p in prompt)
    return 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def request_prefill_tokens(body: Any, chars_per_token: float = 4.0) -> int:
    """The request's prompt size in tokens (exact for token ids, estimated for text); >= 1."""
    n = 0
    if isinstance(body, dict):
        if body.get("input_ids") is not None:
            n = _prompt_tokens(body["input_ids"], chars_per_token)
        elif body.get("text") is not None:
            n = _prompt_tokens(body["text"], chars_per_token)
        elif body.get("prompt") is not None:
            n = _prompt_tokens(body["prompt"], chars_per_token)
        elif isinstance(body.get("messages"), list):
            chars = sum(
                len(_content_text(m.get("content")))
                for m in body["messages"]
                if isinstance(m, dict)
            )
            n = math.ceil(chars / chars_per_token)
    return max(1, n)
