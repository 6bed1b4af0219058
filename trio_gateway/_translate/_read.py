"""Upstream stream readers: each protocol's SSE events → neutral stream events.

Theory of operation: the relay feeds every upstream SSE event of a translated stream to the
reader for the upstream's protocol (:func:`make_reader`), and hands the neutral events it
returns to the writer for the client's protocol. Readers are where upstream quirks are
normalised, so writers can rely on the neutral stream being well-formed (``_events``). The
shared rules live in :class:`Reader` (``_read_base``); each protocol has its own module:
``_read_anthropic`` (protocols.md §1.7), ``_read_chat`` (§2.4, §5.6), ``_read_responses``
(§3.6, §5.5).

Invariants: see ``_read_base``. This module is sans-IO.
"""

from __future__ import annotations

from typing import assert_never

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._read_anthropic import AnthropicReader
from trio_gateway._translate._read_base import Reader, failure_status
from trio_gateway._translate._read_chat import ChatReader
from trio_gateway._translate._read_responses import ResponsesReader

__all__ = [
    "AnthropicReader",
    "ChatReader",
    "Reader",
    "ResponsesReader",
    "failure_status",
    "make_reader",
]


def make_reader(upstream: Protocol) -> Reader:
    """A fresh reader for one upstream stream.

    Args:
        upstream: the protocol the upstream speaks.

    Returns:
        A reader for exactly one stream: feed it every event, then call
        :meth:`Reader.end_of_stream` once if the body ends before it is :attr:`Reader.done`.
    """
    match upstream:
        case "anthropic":
            return AnthropicReader()
        case "openai-chat":
            return ChatReader()
        case "openai-responses":
            return ResponsesReader()
        case _:
            assert_never(upstream)
