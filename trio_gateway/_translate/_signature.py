"""Opaque tokens that carry reasoning across protocols, statelessly (protocols.md §5.7).

Theory of operation: a client replays, on its next turn, exactly what it was given. So the
gateway can carry the other protocol's reasoning state inside the one field the client
protocol treats as opaque:

- OpenAI reasoning → Anthropic client: the Anthropic thinking block's ``signature`` holds
  the Responses reasoning item's ``id`` and ``encrypted_content``
  (:func:`pack_openai_reasoning`); on the next request that thinking block becomes the
  original ``reasoning`` input item again (:func:`unpack_openai_reasoning`).
- Anthropic thinking → Responses client: the reasoning item's ``encrypted_content`` holds the
  Anthropic ``signature`` (or the ``redacted_thinking`` data) (:func:`pack_anthropic_thinking`);
  on the next request the reasoning item becomes the original thinking block again.

Every token starts with a versioned prefix, so tokens the gateway did not make (a real
Anthropic signature, a real OpenAI ``encrypted_content``) are recognised as foreign and never
misread. The tokens are not secret and not signed: they only ever go back to the upstream that
made their content, which verifies its own signatures.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final, Literal

__all__ = [
    "pack_anthropic_thinking",
    "pack_openai_reasoning",
    "unpack_anthropic_thinking",
    "unpack_openai_reasoning",
]

_OPENAI_PREFIX: Final = "tgw1.oai."
_ANTHROPIC_PREFIX: Final = "tgw1.ant."

ThinkingKind = Literal["thinking", "redacted_thinking"]


def _pack(prefix: str, payload: dict[str, object]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return prefix + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unpack(prefix: str, token: object) -> dict[str, object] | None:
    if not isinstance(token, str) or not token.startswith(prefix):
        return None
    encoded = token[len(prefix) :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def pack_openai_reasoning(item_id: str, encrypted_content: str | None) -> str:
    """The Anthropic ``signature`` for a Responses reasoning item."""
    return _pack(_OPENAI_PREFIX, {"id": item_id, "enc": encrypted_content})


def unpack_openai_reasoning(signature: object) -> tuple[str, str | None] | None:
    """``(item id, encrypted_content)`` from a signature made by
    :func:`pack_openai_reasoning`, or ``None`` for any other value."""
    payload = _unpack(_OPENAI_PREFIX, signature)
    if payload is None:
        return None
    item_id, enc = payload.get("id"), payload.get("enc")
    if not isinstance(item_id, str) or not (enc is None or isinstance(enc, str)):
        return None
    return item_id, enc


def pack_anthropic_thinking(kind: ThinkingKind, value: str) -> str:
    """The Responses ``encrypted_content`` for an Anthropic thinking block: ``value`` is the
    block's ``signature`` (``thinking``) or its ``data`` (``redacted_thinking``)."""
    return _pack(_ANTHROPIC_PREFIX, {"kind": kind, "value": value})


def unpack_anthropic_thinking(encrypted_content: object) -> tuple[ThinkingKind, str] | None:
    """``(kind, signature or data)`` from a value made by :func:`pack_anthropic_thinking`,
    or ``None`` for any other value."""
    payload = _unpack(_ANTHROPIC_PREFIX, encrypted_content)
    if payload is None:
        return None
    kind, value = payload.get("kind"), payload.get("value")
    if kind not in ("thinking", "redacted_thinking") or not isinstance(value, str):
        return None
    return ("thinking" if kind == "thinking" else "redacted_thinking"), value
