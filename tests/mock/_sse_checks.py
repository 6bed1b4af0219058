"""Stream checkers shared by the mock's tests.

They parse SSE as the WHATWG rules do (for the subset the mock emits) and assert the
per-protocol invariants of protocols.md §1.7, §2.4 and §3.6. Each returns a
:class:`Reassembled` answer so tests can compare content and usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = [
    "Reassembled",
    "SseEvent",
    "check_anthropic",
    "check_chat",
    "check_responses",
    "dig",
    "parse_sse",
]


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One parsed SSE event: its ``event:`` name (or ``None``) and its data."""

    event: str | None
    data: str

    def json(self) -> dict[str, object]:
        """The data as a JSON object (fails the test if it is anything else)."""
        value = json.loads(self.data)
        assert isinstance(value, dict)
        return value


@dataclass(slots=True)
class Reassembled:
    """What a client reconstructs from a stream."""

    text: str = ""
    thinking: str = ""
    tool_arguments: str = ""
    stop: str | None = None
    usage: dict[str, object] = field(default_factory=dict)


def parse_sse(raw: bytes) -> list[SseEvent]:
    """Split a stream into events; accepts LF, CRLF and CR line endings."""
    text = raw.decode().replace("\r\n", "\n").replace("\r", "\n")
    events: list[SseEvent] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        events.append(SseEvent(name, "\n".join(data)))
    return events


def dig(value: object, *path: str | int) -> object:
    """Walk into parsed JSON, asserting the type of each step."""
    for key in path:
        if isinstance(key, int):
            assert isinstance(value, list), value
            value = value[key]
        else:
            assert isinstance(value, dict), value
            value = value[key]
    return value


def _dict(value: object) -> dict[str, object]:
    assert isinstance(value, dict), value
    return value


def _list(value: object) -> list[object]:
    assert isinstance(value, list), value
    return value


def check_anthropic(events: list[SseEvent]) -> Reassembled:
    """Assert the Anthropic stream rules and reassemble the message."""
    out = Reassembled()
    payloads = [event.json() for event in events]
    for event, payload in zip(events, payloads, strict=True):
        assert event.event == payload["type"]
    assert payloads[0]["type"] == "message_start"
    assert payloads[-1]["type"] == "message_stop"
    out.usage = dict(_dict(_dict(payloads[0]["message"])["usage"]))
    open_index: int | None = None
    next_index = 0
    for payload in payloads[1:-1]:
        kind = payload["type"]
        if kind == "content_block_start":
            assert open_index is None
            assert payload["index"] == next_index
            open_index = next_index
        elif kind == "content_block_delta":
            assert payload["index"] == open_index
            delta = _dict(payload["delta"])
            out.text += str(delta.get("text", ""))
            out.thinking += str(delta.get("thinking", ""))
            out.tool_arguments += str(delta.get("partial_json", ""))
        elif kind == "content_block_stop":
            assert payload["index"] == open_index
            open_index, next_index = None, next_index + 1
        elif kind == "message_delta":
            assert open_index is None
            out.stop = str(_dict(payload["delta"])["stop_reason"])
            out.usage.update(_dict(payload["usage"]))
        else:
            assert kind == "ping", kind
    return out


def check_chat(events: list[SseEvent], *, include_usage: bool) -> Reassembled:
    """Assert the Chat Completions stream rules and reassemble the message."""
    out = Reassembled()
    assert all(event.event is None for event in events)
    assert events[-1].data == "[DONE]"
    chunks = [event.json() for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    if include_usage:
        assert chunks[-1]["choices"] == []
        out.usage = _dict(chunks.pop()["usage"])
    assert all("usage" not in chunk or chunk["usage"] is None for chunk in chunks)
    roles = 0
    tool_ids = 0
    for chunk in chunks:
        (choice,) = _list(chunk["choices"])
        delta = _dict(_dict(choice)["delta"])
        roles += "role" in delta
        out.text += str(delta.get("content") or "")
        for call in _list(delta.get("tool_calls", [])):
            tool_ids += "id" in _dict(call)
            out.tool_arguments += str(_dict(_dict(call)["function"]).get("arguments", ""))
        if _dict(choice)["finish_reason"] is not None:
            out.stop = str(_dict(choice)["finish_reason"])
    assert roles == 1
    assert tool_ids <= 1
    return out


_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def check_responses(events: list[SseEvent]) -> Reassembled:
    """Assert the Responses stream rules and reassemble the response."""
    out = Reassembled()
    payloads = [event.json() for event in events]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    for event, payload in zip(events, payloads, strict=True):
        assert event.event == payload["type"]
    assert payloads[0]["type"] == "response.created"
    lifecycle = [p for p in payloads if "response" in p]
    assert len({_dict(p["response"])["id"] for p in lifecycle}) == 1
    terminals = [p for p in payloads if p["type"] in _TERMINAL]
    assert len(terminals) == 1
    assert terminals[0] is payloads[-1]
    added = [p["output_index"] for p in payloads if p["type"] == "response.output_item.added"]
    assert added == list(range(len(added)))
    for payload in payloads:
        kind = str(payload["type"])
        if kind == "response.output_text.delta":
            out.text += str(payload["delta"])
        elif kind == "response.reasoning_summary_text.delta":
            out.thinking += str(payload["delta"])
        elif kind == "response.function_call_arguments.delta":
            out.tool_arguments += str(payload["delta"])
    final = _dict(terminals[0]["response"])
    out.stop = str(final["status"])
    out.usage = {} if final["usage"] is None else _dict(final["usage"])
    return out
