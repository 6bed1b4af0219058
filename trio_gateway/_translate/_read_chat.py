"""OpenAI Chat Completions stream → neutral stream events (protocols.md §2.4, §5.6).

Theory of operation: a Chat stream is data-only chunks whose ``choices[0].delta`` carries
pieces of several things at once: reasoning (non-standard ``reasoning_content`` /
``reasoning``, from DeepSeek, OpenRouter, vLLM), ``content``, ``refusal`` and
``tool_calls``. The reader turns each kind into its own neutral block, opened when its first
piece arrives and closed when a piece of another kind (or another tool call) arrives, so a
thinking block is always closed before the text block opens (PEER-BUGS 1). The
``finish_reason`` chunk closes the open block and fixes the stop reason; the usage (the
gateway always asks for ``stream_options.include_usage``) comes after it, and ``[DONE]``
ends the stream.

Invariants:

- Only choice 0 is read (the gateway never asks for ``n`` > 1).
- A ``usage`` object on any chunk, also one that still has choices (PEER-BUGS 28), replaces
  the running usage and makes it reported.
- A tool call index, once its block is closed, never opens again: a later argument fragment
  for it means the upstream interleaved calls, which cannot be serialised after the fact, so
  the stream fails (502) rather than deliver a call with half its arguments.
- ``end_of_stream`` after a ``finish_reason`` is a clean end even without ``[DONE]``.
"""

from __future__ import annotations

from typing import Final, Literal

from trio_gateway._protocol._sse import SSEEvent
from trio_gateway._protocol._usage import openai_chat_usage
from trio_gateway._translate._events import BlockStart, StopReason
from trio_gateway._translate._read_base import (
    Reader,
    failure_status,
    int_field,
    obj_field,
    str_field,
)

__all__ = ["ChatReader"]

_DONE: Final = b"[DONE]"
_FINISH_REASONS: Final[dict[str, StopReason]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""protocols.md §5.3; any other ``finish_reason`` is ``end_turn``."""
_REASONING_KEYS: Final = ("reasoning_content", "reasoning")
_LEGACY_CALL: Final = "function_call"
"""The tool key of a legacy ``delta.function_call`` (one call per answer, no index)."""
_INTERLEAVED_STATUS: Final = 502

ToolKey = int | str
"""A tool call's ``index``; a string key for calls that came without one."""


def _first_choice(choices: object) -> dict[str, object] | None:
    """Choice 0 of a chunk (a choice without ``index`` counts as 0)."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and int_field(choice, "index") in (0, None):
            return choice
    return None


class ChatReader(Reader):
    """Reads an OpenAI Chat Completions SSE stream (protocols.md §2.4)."""

    __slots__ = ("_finish_reason", "_refusal", "_tool_count", "_tool_key", "_tools_seen")

    def __init__(self) -> None:
        super().__init__()
        self._finish_reason: StopReason | None = None
        self._refusal = False
        self._tool_key: ToolKey | None = None  # the call in the open tool_use block
        self._tools_seen: set[ToolKey] = set()
        self._tool_count = 0

    def _handle(self, event: SSEEvent) -> None:
        data = event.data
        if len(data) < 16 and data.strip() == _DONE:
            self._finish(self._stop())
            return
        chunk = self._decode(data)
        if not isinstance(chunk, dict):
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            # PEER-BUGS 28: usage may ride on a chunk that still has choices.
            self.usage = openai_chat_usage(usage)
            self._usage_reported(final=True)
        error = chunk.get("error")
        if error:
            # protocols.md §2.6: any chunk with a truthy `error` is the stream failing.
            self._error(error)
            return
        if self.upstream_id is None:
            self.upstream_id = str_field(chunk, "id") or None
        self._start(model=str_field(chunk, "model") or None)
        choice = _first_choice(chunk.get("choices"))
        if choice is None:
            return
        delta = obj_field(choice, "delta")
        if delta is not None:
            self._read_delta(delta)
        reason = str_field(choice, "finish_reason")
        if reason:
            self._close_block()
            self._finish_reason = _FINISH_REASONS.get(reason, "end_turn")

    def _end(self) -> None:
        # protocols.md §5.6: EOF after a finish_reason is a clean end; before it, broken.
        if self._finish_reason is not None:
            self._finish(self._stop())

    def _stop(self) -> StopReason:
        if self._refusal:
            return "refusal"
        return self._finish_reason or "end_turn"

    def _read_delta(self, delta: dict[str, object]) -> None:
        for key in _REASONING_KEYS:
            reasoning = str_field(delta, key)
            if reasoning:
                self._thinking(reasoning)
                break
        content = str_field(delta, "content")
        if content:
            self._text(content, kind="text")
        refusal = str_field(delta, "refusal")
        if refusal:
            self._refusal = True
            self._text(refusal, kind="refusal")
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    self._tool_call(call)
        legacy = obj_field(delta, "function_call")
        if legacy is not None:
            name = str_field(legacy, "name")
            self._tool(_LEGACY_CALL, None, name, str_field(legacy, "arguments") or "")

    def _thinking(self, text: str) -> None:
        """Reasoning: into the open thinking block, or a new one (PEER-BUGS 1)."""
        if self._open != "thinking":
            self._open_block(BlockStart("thinking"))
        self._delta("thinking", text)

    def _text(self, text: str, *, kind: Literal["text", "refusal"]) -> None:
        """Content or refusal text: into the open text block, or a new one."""
        if self._open != "text":
            self._open_block(BlockStart("text"))
        self._delta(kind, text)

    def _tool_call(self, call: dict[str, object]) -> None:
        call_id = str_field(call, "id") or None
        function = obj_field(call, "function")
        name = str_field(function, "name")
        arguments = str_field(function, "arguments") or ""
        index = int_field(call, "index")
        key: ToolKey
        if index is not None:
            key = index
        elif call_id is not None:
            key = f"id:{call_id}"  # no index: the id names the call
        elif self._open == "tool_use" and self._tool_key is not None:
            key = self._tool_key  # neither: a continuation of the open call
        else:
            key = f"anonymous:{self._tool_count}"
        self._tool(key, call_id, name, arguments)

    def _tool(self, key: ToolKey, call_id: str | None, name: str | None, arguments: str) -> None:
        if self._open == "tool_use" and key == self._tool_key:
            self._delta("tool_args", arguments)
            return
        if key in self._tools_seen:
            if arguments:
                self._fail(
                    None,
                    f"upstream interleaved tool calls: arguments for tool call {key!r} "
                    "arrived after its block was closed",
                    status=_INTERLEAVED_STATUS,
                )
            return
        self._tools_seen.add(key)
        self._tool_key = key
        tool_id = call_id or f"call_{self._tool_count}"
        self._tool_count += 1
        self._open_block(BlockStart("tool_use", tool_id=tool_id, tool_name=name or ""))
        self._delta("tool_args", arguments)

    def _error(self, error: object) -> None:
        if isinstance(error, dict):
            error_type = str_field(error, "type")
            code = str_field(error, "code")
            message = str_field(error, "message") or ""
            self._fail(error_type or code, message, status=failure_status(error_type, code))
        elif isinstance(error, str):
            self._fail(None, error)
        else:
            self._fail(None, "")
