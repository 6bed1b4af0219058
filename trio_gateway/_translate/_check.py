"""Runtime checkers of the client-visible stream invariants, one per protocol.

Theory of operation: a checker watches the events of ONE stream, in order, as a client SDK
would receive them (``observe(event_name, data)``, where ``data`` is the decoded JSON object
or the literal string ``"[DONE]"``), and raises :class:`TranslationError` at the first event
that breaks an invariant a real client depends on (protocols.md §1.7, §2.4, §3.6 and the
checklist in §6, items 1-7 and 10). The writers run their own checker on every object they
emit; tests run one on any stream, native or translated, so the checkers know nothing about
the writers.

The checks are cheap: dictionary look-ups and counters, never a JSON parse. They judge the
ordering and the envelope (ids, indices, sequence numbers, terminal events), not the text.

Invariants:

- A checker never raises anything but :class:`TranslationError`, whatever it is fed (a
  missing field, a wrong type, a non-object payload): it is safe on upstream garbage.
- Once a checker has raised, the stream is broken; its later verdicts are unspecified.
- :attr:`StreamCheck.ended` turns True at the event that ends the stream (Anthropic
  ``message_stop`` or ``error``, Chat ``[DONE]`` or an error object, Responses terminal
  event); anything observed after it is a violation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NoReturn

from trio_gateway._translate._events import TranslationError

__all__ = [
    "AnthropicStreamCheck",
    "ChatStreamCheck",
    "ResponsesStreamCheck",
    "StreamCheck",
]

Data = dict[str, object] | str

# protocols.md §1.7: which delta types each Anthropic block accepts (PEER-BUGS 2). Block
# types not listed (new server-tool blocks) accept any delta: clients ignore what they do
# not know.
_ANTHROPIC_DELTAS: Final[Mapping[str, frozenset[str]]] = {
    "text": frozenset({"text_delta", "citations_delta"}),
    "thinking": frozenset({"thinking_delta", "signature_delta"}),
    "redacted_thinking": frozenset(),
    "tool_use": frozenset({"input_json_delta"}),
    "server_tool_use": frozenset({"input_json_delta"}),
    "mcp_tool_use": frozenset({"input_json_delta"}),
}

# protocols.md §3.6: the terminal events and the status their response must carry.
_RESPONSES_TERMINAL: Final[Mapping[str, str]] = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}
# Item-scoped Responses events, by prefix: the item type they may refer to.
_RESPONSES_FAMILIES: Final[tuple[tuple[str, str], ...]] = (
    ("response.output_text.", "message"),
    ("response.content_part.", "message"),
    ("response.refusal.", "message"),
    ("response.function_call_arguments.", "function_call"),
    ("response.reasoning_summary_part.", "reasoning"),
    ("response.reasoning_summary_text.", "reasoning"),
    ("response.reasoning_text.", "reasoning"),
)


def _fail(message: str) -> NoReturn:
    raise TranslationError(message)


def _int(obj: Mapping[str, object], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _dict(obj: Mapping[str, object], key: str) -> dict[str, object] | None:
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def _typed(event: str | None, data: Data, *, named: bool) -> tuple[dict[str, object], str]:
    """The JSON object and its ``type``, checking ``event == data.type`` when ``named``."""
    if not isinstance(data, dict):
        _fail(f"a non-object payload ({str(data)[:40]!r})")
    kind = _str(data, "type")
    if kind is None:
        _fail("an event without a string 'type'")
    if named and event != kind:
        _fail(f"event name {event!r} differs from data.type {kind!r}")
    return data, kind


class StreamCheck:
    """What the three checkers share: the end-of-stream flag."""

    __slots__ = ("_ended",)

    def __init__(self) -> None:
        self._ended = False

    @property
    def ended(self) -> bool:
        """Whether the event that ends the stream has been observed."""
        return self._ended

    def observe(self, event: str | None, data: Data) -> None:
        """Judge the next event of the stream.

        Args:
            event: the SSE ``event:`` name, or None when the event had none.
            data: the event's JSON object, or the literal string ``"[DONE]"``.

        Raises:
            TranslationError: the event breaks an invariant of the protocol.
        """
        raise NotImplementedError

    def _not_ended(self) -> None:
        if self._ended:
            _fail("an event after the end of the stream")


class AnthropicStreamCheck(StreamCheck):
    """Anthropic Messages streams (protocols.md §1.7 "what the SDK requires", §6 1, 5, 10).

    Checks: every event is named and ``event == data.type``; ``message_start`` first and
    once, with ``usage``; blocks one at a time, indices dense from 0 in start order; a delta
    only for the open block and of a type its block accepts; no empty text block (judged at
    its stop); ``message_delta`` with ``usage.output_tokens``; one ``message_stop``, after a
    ``message_delta`` and with no block open. ``ping`` may come at any time and ``error``
    ends the stream at any point.
    """

    __slots__ = ("_blocks", "_open", "_open_type", "_started", "_stopped", "_text_seen")

    def __init__(self) -> None:
        super().__init__()
        self._started = False
        self._stopped = False  # a message_delta (with the stop reason) was seen
        self._blocks = 0
        self._open: int | None = None
        self._open_type = ""
        self._text_seen = False

    def observe(self, event: str | None, data: Data) -> None:
        data, kind = _typed(event, data, named=True)
        self._not_ended()
        if kind == "ping":
            return
        if kind == "error":
            self._ended = True
            return
        if not self._started and kind != "message_start":
            _fail(f"{kind} before message_start")
        match kind:
            case "message_start":
                self._message_start(data)
            case "content_block_start":
                self._block_start(data)
            case "content_block_delta":
                self._block_delta(data)
            case "content_block_stop":
                self._block_stop(data)
            case "message_delta":
                self._message_delta(data)
            case "message_stop":
                if self._open is not None or not self._stopped:
                    _fail("message_stop with a block open or before message_delta")
                self._ended = True
            case _:
                pass  # protocols.md §1.7: clients ignore event types they do not know

    def _message_start(self, data: dict[str, object]) -> None:
        if self._started:
            _fail("a second message_start")
        self._started = True
        message = _dict(data, "message")
        usage = None if message is None else _dict(message, "usage")
        if usage is None or _int(usage, "input_tokens") is None:
            _fail("message_start without message.usage.input_tokens")
        if _int(usage, "output_tokens") is None:
            _fail("message_start without message.usage.output_tokens")

    def _block_start(self, data: dict[str, object]) -> None:
        if self._open is not None:
            _fail("content_block_start while a block is open")
        if _int(data, "index") != self._blocks:
            _fail(f"content_block_start index {data.get('index')!r}, expected {self._blocks}")
        block = _dict(data, "content_block")
        block_type = None if block is None else _str(block, "type")
        if block is None or block_type is None:
            _fail("content_block_start without a typed content_block")
        self._open, self._open_type = self._blocks, block_type
        self._text_seen = bool(_str(block, "text"))

    def _block_delta(self, data: dict[str, object]) -> None:
        if self._open is None or _int(data, "index") != self._open:
            _fail(f"content_block_delta for block {data.get('index')!r}, which is not open")
        delta = _dict(data, "delta")
        delta_type = None if delta is None else _str(delta, "type")
        if delta is None or delta_type is None:
            _fail("content_block_delta without a typed delta")
        allowed = _ANTHROPIC_DELTAS.get(self._open_type)
        if allowed is not None and delta_type not in allowed:
            _fail(f"{delta_type} inside a {self._open_type} block")
        if delta_type == "text_delta":
            text = _str(delta, "text")
            if text is None:
                _fail("text_delta without text")
            self._text_seen = self._text_seen or bool(text)

    def _block_stop(self, data: dict[str, object]) -> None:
        if self._open is None or _int(data, "index") != self._open:
            _fail(f"content_block_stop for block {data.get('index')!r}, which is not open")
        if self._open_type == "text" and not self._text_seen:
            _fail("an empty text block (protocols.md §1.3)")
        self._open = None
        self._blocks += 1

    def _message_delta(self, data: dict[str, object]) -> None:
        if self._open is not None:
            _fail("message_delta while a block is open")
        usage = _dict(data, "usage")
        if usage is None or _int(usage, "output_tokens") is None:
            _fail("message_delta without usage.output_tokens")
        if _dict(data, "delta") is None:
            _fail("message_delta without delta")
        self._stopped = True


class ChatStreamCheck(StreamCheck):
    """OpenAI Chat Completions streams (protocols.md §2.4, §6 items 2, 6).

    Checks: no ``event:`` names; every chunk has one ``id``, ``object:
    "chat.completion.chunk"``, ``created``, ``model`` and a ``choices`` list; ``role`` at
    most once per choice; per choice, tool-call indices dense from 0, each index's first
    delta carries ``id``, ``type: "function"`` and ``function.name`` and later deltas none of
    them; one ``finish_reason`` per choice and no content after it; a usage chunk only when
    asked (``include_usage``; None accepts either) and nothing but ``[DONE]`` after it;
    ``[DONE]`` only after a ``finish_reason``; nothing after ``[DONE]`` or an error object.

    Args:
        include_usage: whether the client asked for ``stream_options.include_usage``;
            None when unknown (a usage chunk is then allowed but not required).
    """

    __slots__ = ("_finished", "_id", "_include_usage", "_roles", "_tools", "_usage_seen")

    def __init__(self, *, include_usage: bool | None = None) -> None:
        super().__init__()
        self._include_usage = include_usage
        self._id: str | None = None
        self._roles: set[int] = set()
        self._tools: dict[int, int] = {}
        self._finished: set[int] = set()
        self._usage_seen = False

    def observe(self, event: str | None, data: Data) -> None:
        if event is not None:
            _fail(f"an event: line ({event!r}) in a Chat stream")
        self._not_ended()
        if data == "[DONE]":
            if not self._finished:
                _fail("[DONE] before any finish_reason")
            self._ended = True
            return
        if not isinstance(data, dict):
            _fail(f"a non-object chunk ({str(data)[:40]!r})")
        if data.get("error"):
            self._ended = True  # protocols.md §2.6: the SDK raises APIError on it
            return
        if self._usage_seen:
            _fail("a chunk after the usage chunk")
        self._envelope(data)
        choices = data.get("choices")
        if not isinstance(choices, list):
            _fail("a chunk without a choices list")
        for choice in choices:
            self._choice(choice)
        usage = data.get("usage")
        if usage is not None:
            if self._include_usage is False:
                _fail("a usage chunk the client did not ask for")
            if not isinstance(usage, dict):
                _fail("usage is not an object")
            self._usage_seen = True

    def _envelope(self, data: dict[str, object]) -> None:
        if data.get("object") != "chat.completion.chunk":
            _fail(f"chunk object {data.get('object')!r}")
        chunk_id = _str(data, "id")
        if chunk_id is None or (self._id is not None and chunk_id != self._id):
            _fail(f"chunk id {data.get('id')!r} differs from {self._id!r}")
        self._id = chunk_id
        if _int(data, "created") is None or _str(data, "model") is None:
            _fail("a chunk without created or model")

    def _choice(self, choice: object) -> None:
        if not isinstance(choice, dict):
            _fail("a choice that is not an object")
        index = _int(choice, "index")
        delta = _dict(choice, "delta")
        if index is None or delta is None:
            _fail("a choice without index or delta")
        if index in self._finished and any(v is not None for v in delta.values()):
            _fail(f"a delta for choice {index} after its finish_reason")
        if delta.get("role") is not None:
            if index in self._roles or delta["role"] != "assistant":
                _fail(f"role {delta['role']!r} repeated or wrong in choice {index}")
            self._roles.add(index)
        calls = delta.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                _fail("tool_calls is not a list")
            for call in calls:
                self._tool_call(index, call)
        if choice.get("finish_reason") is not None:
            if index in self._finished:
                _fail(f"a second finish_reason for choice {index}")
            self._finished.add(index)

    def _tool_call(self, choice: int, call: object) -> None:
        if not isinstance(call, dict) or (index := _int(call, "index")) is None:
            _fail("a tool call without an index")
        known = self._tools.get(choice, 0)
        function = _dict(call, "function") or {}
        if index == known:
            if (
                not _str(call, "id")
                or call.get("type") != "function"
                or _str(function, "name") is None
            ):
                _fail(f"tool call {index} starts without id, type 'function' and name")
            self._tools[choice] = known + 1
        elif index < known:
            if any(v is not None for v in (call.get("id"), call.get("type"), function.get("name"))):
                _fail(f"tool call {index} repeats its id, type or name")
        else:
            _fail(f"tool call index {index}, expected at most {known}")


@dataclass(slots=True)
class _Item:
    """One Responses output item as announced by ``output_item.added``."""

    id: str
    type: str
    name: object = None
    call_id: object = None
    done: bool = False
    parts: int = 0
    open_parts: set[int] = field(default_factory=set)
    summaries: int = 0
    open_summaries: set[int] = field(default_factory=set)
    arguments: list[str] = field(default_factory=list)
    final_arguments: str | None = None


class ResponsesStreamCheck(StreamCheck):
    """OpenAI Responses streams (protocols.md §3.6, §6 item 7).

    Checks: every event is named and ``event == data.type``; ``sequence_number`` dense from
    0; ``response.created`` first and once; one response id on every ``response`` object;
    ``output_index`` dense in ``output_item.added`` order, item ids unique; item-scoped
    events only for an added, not yet done item of the right type, with its ``item_id``;
    content parts and summary parts dense and open; function call items with ``call_id``,
    ``name`` and ``arguments`` that match their deltas; ``error`` followed only by
    ``response.failed``; exactly one terminal event, with the matching ``status`` and, for
    completed / incomplete, every item done and listed in ``output``; nothing after it.
    """

    __slots__ = ("_after_error", "_id", "_items", "_seq")

    def __init__(self) -> None:
        super().__init__()
        self._seq = 0
        self._id: str | None = None
        self._items: list[_Item] = []
        self._after_error = False

    def observe(self, event: str | None, data: Data) -> None:
        data, kind = _typed(event, data, named=True)
        self._not_ended()
        if _int(data, "sequence_number") != self._seq:
            _fail(f"{kind} sequence_number {data.get('sequence_number')!r}, expected {self._seq}")
        self._seq += 1
        self._response_id(kind, data)
        if self._after_error and kind != "response.failed":
            _fail(f"{kind} after error (only response.failed may follow)")
        match kind:
            case "response.created" | "response.in_progress" | "response.queued":
                pass
            case "error":
                self._after_error = True
            case "response.completed" | "response.incomplete" | "response.failed":
                self._terminal(kind, data)
            case "response.output_item.added":
                self._item_added(data)
            case "response.output_item.done":
                self._item_done(data)
            case _ if "output_index" in data:
                self._item_event(kind, data)
            case _:
                pass  # protocols.md §3.6: unknown event types are ignored

    def _response_id(self, kind: str, data: dict[str, object]) -> None:
        response = data.get("response")
        if self._id is None:
            if kind != "response.created" or not isinstance(response, dict):
                _fail(f"{kind} before response.created")
            if (response_id := _str(response, "id")) is None:
                _fail("response.created without a response id")
            self._id = response_id
            return
        if kind == "response.created":
            _fail("a second response.created")
        if response is not None and (
            not isinstance(response, dict) or _str(response, "id") != self._id
        ):
            _fail(f"{kind} carries another response id than {self._id!r}")

    def _terminal(self, kind: str, data: dict[str, object]) -> None:
        response = _dict(data, "response") or {}
        if response.get("status") != _RESPONSES_TERMINAL[kind]:
            _fail(f"{kind} with status {response.get('status')!r}")
        self._ended = True
        if kind == "response.failed":
            return
        if any(not item.done for item in self._items):
            _fail(f"{kind} with an output item still open")
        output = response.get("output")
        if not isinstance(output, list) or [
            item.get("id") if isinstance(item, dict) else None for item in output
        ] != [item.id for item in self._items]:
            _fail(f"{kind} output does not list the streamed items in order")
        details = _dict(response, "incomplete_details") or {}
        if kind == "response.incomplete" and _str(details, "reason") is None:
            _fail("response.incomplete without incomplete_details.reason")

    def _item_added(self, data: dict[str, object]) -> None:
        if _int(data, "output_index") != len(self._items):
            _fail(f"output_item.added output_index {data.get('output_index')!r}")
        item = _dict(data, "item") or {}
        item_id, item_type = _str(item, "id"), _str(item, "type")
        if not item_id or item_type is None or any(i.id == item_id for i in self._items):
            _fail(f"output_item.added with a missing, untyped or repeated id {item_id!r}")
        entry = _Item(item_id, item_type, name=item.get("name"), call_id=item.get("call_id"))
        if item_type == "function_call" and not (
            _str(item, "call_id")
            and _str(item, "name") is not None
            and _str(item, "arguments") is not None
        ):
            _fail("a function_call item without call_id, name or arguments")
        self._items.append(entry)

    def _open_item(self, kind: str, data: dict[str, object]) -> _Item:
        index = _int(data, "output_index")
        if index is None or not 0 <= index < len(self._items) or self._items[index].done:
            _fail(f"{kind} for output_index {data.get('output_index')!r}, which is not open")
        item = self._items[index]
        if "item_id" in data and data["item_id"] != item.id:
            _fail(f"{kind} item_id {data['item_id']!r} is not item {item.id!r}")
        return item

    def _item_done(self, data: dict[str, object]) -> None:
        item = self._open_item("output_item.done", data)
        done = _dict(data, "item") or {}
        if done.get("id") != item.id or done.get("type") != item.type:
            _fail(f"output_item.done changes the id or type of item {item.id!r}")
        if item.open_parts or item.open_summaries:
            _fail(f"output_item.done with a part of item {item.id!r} still open")
        if item.type == "function_call":
            arguments = _str(done, "arguments")
            expected = item.final_arguments
            if expected is None and item.arguments:
                expected = "".join(item.arguments)
            if arguments is None or (expected is not None and arguments != expected):
                _fail(f"function_call {item.id!r} done with other arguments than streamed")
            if done.get("name") != item.name or done.get("call_id") != item.call_id:
                _fail(f"function_call {item.id!r} done with another name or call_id")
        item.done = True

    def _item_event(self, kind: str, data: dict[str, object]) -> None:
        item = self._open_item(kind, data)
        for prefix, item_type in _RESPONSES_FAMILIES:
            if kind.startswith(prefix) and item.type != item_type:
                _fail(f"{kind} for a {item.type} item")
        match kind:
            case "response.content_part.added":
                item.parts = _added(kind, data, "content_index", item.parts, item.open_parts)
            case "response.content_part.done":
                item.open_parts.discard(_part(kind, data, "content_index", item.open_parts))
            case "response.reasoning_summary_part.added":
                count = item.summaries
                item.summaries = _added(kind, data, "summary_index", count, item.open_summaries)
            case "response.reasoning_summary_part.done":
                item.open_summaries.discard(_part(kind, data, "summary_index", item.open_summaries))
            case "response.function_call_arguments.delta":
                delta = _str(data, "delta")
                if delta is None or item.final_arguments is not None:
                    _fail(f"{kind} without a string delta, or after .done")
                item.arguments.append(delta)
            case "response.function_call_arguments.done":
                arguments = _str(data, "arguments")
                if arguments is None or (item.arguments and arguments != "".join(item.arguments)):
                    _fail(f"{kind} arguments differ from the deltas")
                item.final_arguments = arguments
            case _ if kind.startswith(("response.output_text.", "response.refusal.")):
                _part(kind, data, "content_index", item.open_parts)
            case _ if kind.startswith("response.reasoning_summary_text."):
                _part(kind, data, "summary_index", item.open_summaries)
            case _:
                pass


def _added(kind: str, data: dict[str, object], key: str, count: int, open_: set[int]) -> int:
    """Check a dense part index on ``*.added``; return the new part count."""
    if _int(data, key) != count:
        _fail(f"{kind} {key} {data.get(key)!r}, expected {count}")
    open_.add(count)
    return count + 1


def _part(kind: str, data: dict[str, object], key: str, open_: set[int]) -> int:
    """Check that an event refers to an open part; return its index."""
    index = _int(data, key)
    if index is None or index not in open_:
        _fail(f"{kind} for {key} {data.get(key)!r}, which is not open")
    return index
