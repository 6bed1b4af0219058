"""OpenAI Responses stream → neutral stream events (protocols.md §3.6, §5.5).

Theory of operation: a Responses stream announces output items (``output_item.added``),
streams their parts, and closes them (``output_item.done``). Items map onto neutral blocks:

- a ``function_call`` item is a ``tool_use`` block, opened when the item is added;
- a ``reasoning`` item is a ``thinking`` block, opened when the item is added; its summary
  parts (and raw ``reasoning_text``) are its deltas, separated by a blank line, and on
  ``output_item.done`` its id and ``encrypted_content`` become the block's signature
  (``pack_openai_reasoning``, protocols.md §5.7);
- a ``message`` item is a ``text`` block, opened lazily on its first non-empty text or
  refusal delta, so no empty text block is ever made (protocols.md §1.3);
- other items (built-in tool calls) are ignored.

Events are matched to the open block by ``item_id`` (else ``output_index``); events for any
other item are dropped, so a delta can never land in another item's block (PEER-BUGS 3).
Text for a message item that was never announced still opens a block (lenient upstreams
skip ``output_item.added``), but never for an item that is done or of another type.

Invariants:

- Usage comes only from the terminal events' ``response.usage``, and is final there; a
  ``response.failed`` after an ``error`` event still updates it (the reader is already done).
- The stop reason of ``response.completed`` is ``tool_use`` if any function call was seen,
  else ``refusal`` if a refusal was, else ``end_turn`` (protocols.md §5.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal

from trio_gateway._protocol._sse import SSEEvent
from trio_gateway._protocol._usage import openai_responses_usage
from trio_gateway._translate._events import BlockStart, StopReason
from trio_gateway._translate._read_base import (
    MALFORMED,
    Reader,
    failure_status,
    int_field,
    obj_field,
    str_field,
)
from trio_gateway._translate._signature import pack_openai_reasoning

__all__ = ["ResponsesReader"]

_DONE: Final = b"[DONE]"
# Events whose data the reader needs; all others (response.in_progress, response.queued,
# content_part.*, output_text.done, annotations, built-in tool events, unknown events) are
# dropped by name without decoding.
_DECODED: Final = frozenset(
    {
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    }
)
_TERMINAL: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})
_PART_SEPARATOR: Final = "\n\n"
"""Between reasoning summary parts, as the non-streaming mapping joins them (§5.2)."""

ItemKey = str | int
"""An item's ``id`` or its ``output_index`` (the types keep the two apart)."""
ThinkingPart = tuple[Literal["summary", "text"], int | None]


def _keys(item_id: str | None, output_index: int | None) -> Iterator[ItemKey]:
    if item_id is not None:
        yield item_id
    if output_index is not None:
        yield output_index


class ResponsesReader(Reader):
    """Reads an OpenAI Responses SSE stream (protocols.md §3.6)."""

    __slots__ = (
        "_args_seen",
        "_done_items",
        "_item_types",
        "_open_id",
        "_open_index",
        "_refusal",
        "_thinking_part",
        "_thinking_seen",
        "_tool_count",
        "_tool_seen",
    )

    def __init__(self) -> None:
        super().__init__()
        # The item in the open block, by id and/or output index.
        self._open_id: str | None = None
        self._open_index: int | None = None
        self._item_types: dict[ItemKey, str] = {}
        self._done_items: set[ItemKey] = set()
        self._args_seen = False
        self._thinking_part: ThinkingPart | None = None
        self._thinking_seen = False
        self._tool_seen = False
        self._tool_count = 0
        self._refusal = False

    def _handle(self, event: SSEEvent) -> None:
        name = event.event
        data = event.data
        if len(data) < 16 and data.strip() == _DONE:
            return  # some gateways append it after the terminal event (protocols.md §3.6)
        if not name:  # the SDK dispatches on `data.type`, so unnamed frames count
            obj = self._decode(data)
            name = str_field(obj, "type")
            if name is None:
                return
        elif name in _DECODED:
            obj = self._decode(data)
        else:
            return
        if obj is MALFORMED:
            if name == "error":
                self._fail_malformed_error(data)
            return
        self._dispatch(name, obj)

    def _end(self) -> None:
        """A stream without a terminal event is broken (PEER-BUGS 10): no clean end."""

    def _dispatch(self, name: str, obj: object) -> None:
        match name:
            case "response.created":
                response = obj_field(obj, "response")
                if self.upstream_id is None:
                    self.upstream_id = str_field(response, "id")
                self._start(model=str_field(response, "model"))
            case "response.output_item.added":
                self._item_added(obj_field(obj, "item"), int_field(obj, "output_index"))
            case "response.output_item.done":
                self._item_done(obj_field(obj, "item"), int_field(obj, "output_index"))
            case "response.output_text.delta":
                self._text(obj, refusal=False)
            case "response.refusal.delta":
                self._text(obj, refusal=True)
            case "response.function_call_arguments.delta":
                if self._open == "tool_use" and self._matches(obj):
                    self._arguments(str_field(obj, "delta"))
            case "response.function_call_arguments.done":
                if self._open == "tool_use" and self._matches(obj) and not self._args_seen:
                    # Some upstreams send the arguments only here (protocols.md §5.5).
                    self._arguments(str_field(obj, "arguments"))
            case "response.reasoning_summary_text.delta":
                self._thinking(obj, ("summary", int_field(obj, "summary_index")))
            case "response.reasoning_text.delta":
                self._thinking(obj, ("text", int_field(obj, "content_index")))
            case "error":
                self._error(obj)
            case _ if name in _TERMINAL:
                self._terminal(name, obj_field(obj, "response"))
            case _:
                pass

    # -- items ----------------------------------------------------------------------------

    def _matches(self, obj: object) -> bool:
        """Whether an event belongs to the open block's item."""
        item_id = str_field(obj, "item_id")
        if item_id is not None and self._open_id is not None:
            return item_id == self._open_id
        index = int_field(obj, "output_index")
        if index is not None and self._open_index is not None:
            return index == self._open_index
        return True  # nothing in the event names another item

    def _open_item(self, start: BlockStart, item_id: str | None, index: int | None) -> None:
        self._open_block(start)
        self._open_id = item_id
        self._open_index = index

    def _item_added(self, item: dict[str, object] | None, index: int | None) -> None:
        item_id = str_field(item, "id")
        kind = str_field(item, "type") or ""
        for key in _keys(item_id, index):
            self._item_types[key] = kind
        match kind:
            case "function_call":
                self._tool_seen = True
                call_id = str_field(item, "call_id") or item_id or f"call_{self._tool_count}"
                self._tool_count += 1
                name = str_field(item, "name") or ""
                self._open_item(
                    BlockStart("tool_use", tool_id=call_id, tool_name=name), item_id, index
                )
                self._args_seen = False
            case "reasoning":
                self._open_item(BlockStart("thinking"), item_id, index)
                self._thinking_part = None
                self._thinking_seen = False
            case _:
                pass  # message: wait for its first text; built-in tools: ignored

    def _item_done(self, item: dict[str, object] | None, index: int | None) -> None:
        item_id = str_field(item, "id")
        self._done_items.update(_keys(item_id, index))
        if self._open is None or not self._matches({"item_id": item_id, "output_index": index}):
            return
        match self._open:
            case "thinking":
                if not self._thinking_seen:
                    self._delta("thinking", _summary_text(item))
                encrypted = str_field(item, "encrypted_content")
                token = pack_openai_reasoning(item_id or self._open_id or "", encrypted)
                self._delta("signature", token)
            case "tool_use":
                if not self._args_seen:
                    self._arguments(str_field(item, "arguments"))
            case _:
                pass
        self._close_block()

    # -- deltas ---------------------------------------------------------------------------

    def _text(self, obj: object, *, refusal: bool) -> None:
        text = str_field(obj, "delta")
        if not text:
            return
        if refusal:
            self._refusal = True
        if self._open != "text" or not self._matches(obj):
            item_id = str_field(obj, "item_id")
            index = int_field(obj, "output_index")
            if not self._may_open_text(item_id, index):
                return
            self._open_item(BlockStart("text"), item_id, index)
        self._delta("refusal" if refusal else "text", text)

    def _may_open_text(self, item_id: str | None, index: int | None) -> bool:
        """Whether text for this item may open a text block: not for a finished item or an
        item of another type (unannounced items are taken to be messages)."""
        for key in _keys(item_id, index):
            if key in self._done_items or self._item_types.get(key, "message") != "message":
                return False
        return True

    def _arguments(self, text: str | None) -> None:
        if text:
            self._args_seen = True
            self._delta("tool_args", text)

    def _thinking(self, obj: object, part: ThinkingPart) -> None:
        text = str_field(obj, "delta")
        if not text or self._open != "thinking" or not self._matches(obj):
            return
        if self._thinking_seen and part != self._thinking_part:
            self._delta("thinking", _PART_SEPARATOR)
        self._thinking_part = part
        self._thinking_seen = True
        self._delta("thinking", text)

    # -- the end --------------------------------------------------------------------------

    def _terminal(self, name: str, response: dict[str, object] | None) -> None:
        usage = obj_field(response, "usage")
        if usage is not None:
            # protocols.md §5.4: final in all three terminal events (RELIABILITY.md U17).
            self.usage = openai_responses_usage(usage)
            self._usage_reported(final=True)
        match name:
            case "response.completed":
                self._finish(self._completed_stop())
            case "response.incomplete":
                reason = str_field(obj_field(response, "incomplete_details"), "reason")
                self._finish("refusal" if reason == "content_filter" else "max_tokens")
            case _:
                error = obj_field(response, "error")
                code = str_field(error, "code")
                error_type = str_field(error, "type")
                message = str_field(error, "message") or "upstream response failed"
                self._fail(code or error_type, message, status=failure_status(code, error_type))

    def _completed_stop(self) -> StopReason:
        if self._tool_seen:
            return "tool_use"
        return "refusal" if self._refusal else "end_turn"

    def _error(self, obj: object) -> None:
        """The ``error`` event, nested (what the API sends) or flat (the documented
        ``ResponseErrorEvent``; its own ``type`` is the event's, so only ``code`` counts)."""
        nested = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(nested, str):
            self._fail(None, nested)
            return
        if isinstance(nested, dict):
            error_type = str_field(nested, "type")
            code = str_field(nested, "code")
            message = str_field(nested, "message")
        else:
            error_type = None
            code = str_field(obj, "code")
            message = str_field(obj, "message")
        self._fail(error_type or code, message or "", status=failure_status(error_type, code))


def _summary_text(item: dict[str, object] | None) -> str:
    """The summary texts of a finished reasoning item, for upstreams that stream none."""
    summary = item.get("summary") if item is not None else None
    if not isinstance(summary, list):
        return ""
    texts = (str_field(part, "text") for part in summary)
    return _PART_SEPARATOR.join(text for text in texts if text)
