"""Anthropic Messages stream → neutral stream events (protocols.md §1.7).

Theory of operation: the neutral vocabulary is Anthropic's, so this reader is mostly a
filter. It keeps exactly one upstream block index "open" (the one whose ``content_block_start``
opened the current neutral block) and drops every delta or stop for any other index: a
server-tool block (``server_tool_use``, ``web_search_tool_result``, …) is never opened, so
all of its events fall away, and a delta for an index that never started cannot reach a
writer (PEER-BUGS 3). ``message_delta`` only remembers the stop reason and the cumulative
usage; ``message_stop`` ends the stream with them.

Invariants:

- Usage is cumulative per field (``anthropic_usage(obj, into=self.usage)``; RELIABILITY.md
  U15): ``message_start`` makes it partial, any ``message_delta`` usage makes it reported.
- A ``tool_use`` block whose ``content_block_start`` already carries a non-empty ``input``
  (some compatible upstreams send the whole call there) and gets no argument fragments is
  given that input as one argument delta, so no call ends up without its arguments.
- Frames without an ``event:`` line are read by their JSON ``type`` (some compatible
  upstreams omit the line); a ``data: [DONE]`` frame is ignored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final, get_args

from trio_gateway._protocol._frames import dumps
from trio_gateway._protocol._sse import SSEEvent
from trio_gateway._protocol._usage import anthropic_usage
from trio_gateway._translate._events import BlockStart, DeltaKind, StopReason
from trio_gateway._translate._read_base import (
    MALFORMED,
    Reader,
    int_field,
    obj_field,
    str_field,
)

__all__ = ["AnthropicReader"]

_DONE: Final = b"[DONE]"
# A stop reason this gateway does not know yet becomes ``end_turn``: the answer did end, and
# writers only understand the known set.
_STOP_REASONS: Final[dict[str, StopReason]] = {reason: reason for reason in get_args(StopReason)}
# Events whose data the reader needs; everything else (ping, message_stop, unknown events)
# is read from its name alone, so a garbage payload there costs nothing.
_DECODED: Final = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "error",
    }
)
# content_block_delta ``delta.type`` → (neutral delta kind, the field holding its text).
_DELTAS: Final[dict[str, tuple[DeltaKind, str]]] = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
    "input_json_delta": ("tool_args", "partial_json"),
}


class AnthropicReader(Reader):
    """Reads an Anthropic Messages SSE stream (protocols.md §1.7)."""

    __slots__ = ("_args_seen", "_index", "_pending_input", "_stop_reason", "_stop_sequence")

    def __init__(self) -> None:
        super().__init__()
        # The upstream index of the open neutral block (meaningful only while one is open).
        self._index: int | None = None
        self._args_seen = False
        self._pending_input: dict[str, object] | None = None
        self._stop_reason: StopReason | None = None
        self._stop_sequence: str | None = None

    def _handle(self, event: SSEEvent) -> None:
        name = event.event
        data = event.data
        if not name:  # no `event:` line (or an empty one): go by the JSON `type`
            if data.strip() == _DONE:
                return
            obj = self._decode(data)
            name = str_field(obj, "type")
            if name is None:
                return
        elif name in _DECODED:
            obj = self._decode(data)
        elif name == "message_stop":
            obj = None
        else:
            return  # ping, and unknown events (protocols.md §1.7: ignore them)
        if obj is MALFORMED:
            if name == "error":
                self._fail_malformed_error(data)
            return
        self._dispatch(name, obj)

    def _end(self) -> None:
        """A stream without ``message_stop`` is broken (PEER-BUGS 8, 10): no clean end."""

    def _dispatch(self, name: str, obj: object) -> None:
        match name:
            case "message_start":
                self._message_start(obj_field(obj, "message"))
            case "content_block_start":
                self._block_start(int_field(obj, "index"), obj_field(obj, "content_block"))
            case "content_block_delta":
                if self._open is not None and int_field(obj, "index") == self._index:
                    self._block_delta(obj_field(obj, "delta"))
            case "content_block_stop":
                if self._open is not None and int_field(obj, "index") == self._index:
                    self._block_stop()
            case "message_delta":
                self._message_delta(obj)
            case "message_stop":
                if self._open is not None:
                    self._block_stop()
                self._finish(self._stop_reason or "end_turn", stop_sequence=self._stop_sequence)
            case "error":
                self._error(obj)
            case _:
                pass

    def _message_start(self, message: dict[str, object] | None) -> None:
        if self.upstream_id is None:
            self.upstream_id = str_field(message, "id")
        usage = obj_field(message, "usage")
        if usage is not None:
            # protocols.md §1.6: the input side, and a placeholder output count.
            anthropic_usage(usage, into=self.usage)
            self._usage_reported(final=False)
        self._start(
            model=str_field(message, "model"),
            usage=None if usage is None else replace(self.usage),
        )

    def _block_start(self, index: int | None, block: dict[str, object] | None) -> None:
        first: tuple[DeltaKind, str | None] | None = None
        pending: dict[str, object] | None = None
        match str_field(block, "type"):
            case "text":
                start = BlockStart("text")
                first = ("text", str_field(block, "text"))
            case "thinking":
                start = BlockStart("thinking", signature=str_field(block, "signature") or "")
                first = ("thinking", str_field(block, "thinking"))
            case "redacted_thinking":
                start = BlockStart("redacted_thinking", data=str_field(block, "data") or "")
            case "tool_use":
                tool_id = str_field(block, "id") or ""
                name = str_field(block, "name") or ""
                start = BlockStart("tool_use", tool_id=tool_id, tool_name=name)
                pending = obj_field(block, "input") or None
            case _:
                # Server-tool and unknown blocks are skipped whole: if the upstream reuses
                # the open block's index for one, the open block is over.
                if self._open is not None and index == self._index:
                    self._close_block()
                return
        self._open_block(start)
        self._index = index
        self._args_seen = False
        self._pending_input = pending
        if first is not None:
            self._delta(first[0], first[1] or "")

    def _block_delta(self, delta: dict[str, object] | None) -> None:
        kind = str_field(delta, "type")
        known = _DELTAS.get(kind or "")
        if known is None:
            return  # citations_delta and unknown deltas
        text = str_field(delta, known[1]) or ""
        if known[0] == "tool_args" and text:
            self._args_seen = True
        self._delta(known[0], text)

    def _block_stop(self) -> None:
        if self._pending_input is not None and not self._args_seen:
            self._delta("tool_args", dumps(self._pending_input))
        self._pending_input = None
        self._close_block()

    def _message_delta(self, obj: object) -> None:
        delta = obj_field(obj, "delta")
        reason = str_field(delta, "stop_reason")
        if reason is not None:
            self._stop_reason = _STOP_REASONS.get(reason, "end_turn")
        sequence = str_field(delta, "stop_sequence")
        if sequence is not None:
            self._stop_sequence = sequence
        usage = obj_field(obj, "usage")
        if usage is not None:
            # Cumulative: present fields override, never summed (protocols.md §1.6).
            anthropic_usage(usage, into=self.usage)
            self._usage_reported(final=True)

    def _error(self, obj: object) -> None:
        error = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(error, str):
            self._fail(None, error)
            return
        self._fail(str_field(error, "type"), str_field(error, "message") or "")
