"""A rough input-token estimate for ``POST /v1/messages/count_tokens`` when the model has no
Anthropic upstream to ask (DESIGN §2: answered with ``x-trio-gateway-estimate: true``).

Theory of operation: about four characters of English text or JSON per token, a common rule
of thumb for BPE tokenizers; images and documents count a flat amount (their real cost
depends on pixel size and page count, which the gateway does not decode). The estimate is
meant for context-window bookkeeping in clients such as Claude Code, never for billing:
billing always uses the upstream's reported usage.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["estimate_input_tokens"]

_CHARS_PER_TOKEN: Final = 4
_IMAGE_TOKENS: Final = 1600
_DOCUMENT_TOKENS: Final = 3000
#: Fields counted (everything else, e.g. max_tokens or metadata, is not input text).
_INPUT_FIELDS: Final = ("system", "messages", "tools", "tool_choice")
_MAX_DEPTH: Final = 64


def estimate_input_tokens(body: dict[str, object]) -> int:
    """Estimate the input tokens of an Anthropic Messages request body.

    Args:
        body: the decoded request (``count_tokens`` shape: no ``max_tokens`` needed).

    Returns:
        At least 1.
    """
    chars = 0
    flat = 0
    stack: list[tuple[object, int]] = [(body.get(name), 0) for name in _INPUT_FIELDS]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, dict) and depth < _MAX_DEPTH:
            kind = value.get("type")
            if kind == "image":
                flat += _IMAGE_TOKENS
                continue
            if kind == "document":
                flat += _DOCUMENT_TOKENS
                continue
            for key, item in value.items():
                chars += len(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list) and depth < _MAX_DEPTH:
            stack.extend((item, depth + 1) for item in value)
    return max(1, math.ceil(chars / _CHARS_PER_TOKEN) + flat)
