"""Anthropic Messages bodies and SSE streams for the mock (protocols.md §1.5-1.8).

Stream invariants (what the official SDK's accumulator requires, §1.7):
    * the first event is ``message_start`` with ``usage`` (input side, ``output_tokens`` 1);
    * blocks are emitted one at a time, indices dense from 0 in start order;
    * one ``ping`` follows the first ``content_block_start``, as the real API sends it;
    * every ``message_delta`` carries ``usage.output_tokens``, cumulative;
    * ``message_stop`` is the last event (``[DONE]`` after it only for ``done``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from trio_gateway._mock._render import (
    SIGNATURE,
    TOOL_ARGUMENTS,
    TOOL_NAME,
    Answer,
    Frame,
    Usage,
    dumps,
)

__all__ = ["anthropic_body", "anthropic_frames"]

_STOP_REASONS: Final = {"end": "end_turn", "tool": "tool_use", "length": "max_tokens"}
_CUMULATIVE_STEPS: Final = (10, 25)

Event = dict[str, object]


def _usage(usage: Usage, *, output: int) -> dict[str, object]:
    return {
        "input_tokens": usage.uncached,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_5m,
            "ephemeral_1h_input_tokens": usage.cache_write_1h,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }


def _message(answer: Answer, *, content: list[object], stop: bool) -> dict[str, object]:
    return {
        "id": answer.ident("msg_"),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": _STOP_REASONS[answer.stop] if stop else None,
        "stop_sequence": None,
    }


def anthropic_body(answer: Answer) -> dict[str, object]:
    """The non-streaming ``Message`` object (protocols.md §1.5)."""
    content: list[object] = []
    if answer.thinking:
        thinking = answer.full_thinking
        content.append({"type": "thinking", "thinking": thinking, "signature": SIGNATURE})
    if answer.has_text_part:
        content.append({"type": "text", "text": answer.full_text})
    if answer.tool_args:
        content.append(
            {
                "type": "tool_use",
                "id": answer.ident("toolu_"),
                "name": TOOL_NAME,
                "input": {"city": "Paris"},
            }
        )
    message = _message(answer, content=content, stop=True)
    message["usage"] = _usage(answer.usage, output=answer.usage.output)
    return message


def anthropic_frames(answer: Answer) -> list[Frame]:
    """The SSE events of a streamed answer, faults of the plan applied.

    Args:
        answer: the answer; its plan's ``no_event_lines``, ``done``, ``cumulative``,
            ``usage_in_delta``, ``no_terminator`` and ``error_event`` are honoured here.

    Returns:
        One frame per event.
    """
    plan = answer.plan
    events = [_message_start(answer), *_blocks(answer), *_message_deltas(answer)]
    events.append({"type": "message_stop"})
    if plan.has("no_terminator"):
        events.pop()
    if plan.error_after is not None:
        overloaded = {"type": "overloaded_error", "message": "Overloaded"}
        events = [*events[: plan.error_after], {"type": "error", "error": overloaded}]
    named = not plan.has("no_event_lines")
    frames = [Frame(str(event["type"]) if named else None, dumps(event)) for event in events]
    if plan.has("done") and not plan.has("no_terminator") and plan.error_after is None:
        frames.append(Frame(None, "[DONE]"))
    return frames


def _message_start(answer: Answer) -> Event:
    message = _message(answer, content=[], stop=False)
    usage = answer.usage
    if answer.plan.has("usage_in_delta"):
        usage = Usage(0, 0, 0, 0, usage.output, usage.reasoning)
    message["usage"] = _usage(usage, output=min(1, answer.usage.output))
    return {"type": "message_start", "message": message}


def _blocks(answer: Answer) -> list[Event]:
    events: list[Event] = []
    index = 0
    if answer.thinking:
        deltas: list[dict[str, object]] = [
            {"type": "thinking_delta", "thinking": piece} for piece in answer.thinking
        ]
        deltas.append({"type": "signature_delta", "signature": SIGNATURE})
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events += _block(index, start, deltas)
        index += 1
    if answer.has_text_part:
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.text]
        events += _block(index, {"type": "text", "text": ""}, deltas)
        index += 1
    if answer.tool_args:
        tool: dict[str, object] = {"type": "tool_use", "id": answer.ident("toolu_")}
        tool |= {"name": TOOL_NAME, "input": {}}
        fragments = ("", *answer.tool_args)
        assert "".join(fragments) == TOOL_ARGUMENTS
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in fragments]
        events += _block(index, tool, deltas)
    events.insert(1, {"type": "ping"})
    return events


def _block(
    index: int, start: Mapping[str, object], deltas: Sequence[Mapping[str, object]]
) -> list[Event]:
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def _message_deltas(answer: Answer) -> list[Event]:
    usage = answer.usage
    final: dict[str, object] = {"output_tokens": usage.output}
    if answer.plan.has("usage_in_delta"):
        final = _usage(usage, output=usage.output)
        del final["service_tier"]
    steps: list[dict[str, object]] = []
    if answer.plan.has("cumulative"):
        steps = [{"output_tokens": n} for n in _CUMULATIVE_STEPS]
    delta = {"stop_reason": _STOP_REASONS[answer.stop], "stop_sequence": None}
    return [{"type": "message_delta", "delta": delta, "usage": u} for u in [*steps, final]]
