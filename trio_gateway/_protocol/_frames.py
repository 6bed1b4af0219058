"""Compact JSON and JSON SSE frames, as every synthesised stream writes them.

protocols.md §4.6: one ``data:`` line of compact JSON per event, an ``event:`` line when the
protocol names its events, LF only, a blank line after every frame; never a BOM, ``id:`` or
``retry:``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

__all__ = ["dumps", "encode", "json_event"]

# A few characters json.dumps(ensure_ascii=False) leaves raw that ``str.splitlines()``-based
# SSE parsers treat as line breaks (RELIABILITY.md finding 8). Escaping them keeps the JSON
# identical after parsing.
_LINE_BREAK_ESCAPES: Final[Mapping[int, str]] = {
    0x85: "\\u0085",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def dumps(obj: object) -> str:
    """Compact, single-line JSON (JSON escaping keeps CR and LF out; see above for the rest)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_LINE_BREAK_ESCAPES)


def encode(text: str) -> bytes:
    """UTF-8 of ``text``. Only a lone surrogate cannot be encoded; ``json.dumps`` leaves it
    inside a string literal, where ``backslashreplace`` writes the equivalent JSON escape."""
    return text.encode("utf-8", "backslashreplace")


def json_event(event: str | None, data: object) -> bytes:
    """One SSE frame: ``event: <event>`` (when not None), ``data: <compact JSON>``, blank line."""
    head = f"event: {event}\n" if event is not None else ""
    return encode(f"{head}data: {dumps(data)}\n\n")
