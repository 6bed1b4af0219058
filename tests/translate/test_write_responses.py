"""The OpenAI Responses writer: exact events, usage, statuses, errors, the body."""

from __future__ import annotations

from typing import Final

import pytest

from tests.translate.test_write import (
    MIXED,
    MIXED_USAGE,
    PARTIAL,
    TEXT,
    TOOL,
    Frame,
    judge,
    parse,
    write,
)
from trio_gateway._errors import UpstreamTimeout
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._events import (
    BlockStart,
    BlockStop,
    Delta,
    Finish,
    NeutralEvent,
    Start,
    StopReason,
)
from trio_gateway._translate._signature import pack_anthropic_thinking, unpack_anthropic_thinking

RESPONSE_ID: Final = "resp_0123abcd"


def event(seq: int, kind: str, **fields: object) -> Frame:
    return (kind, {"type": kind, "sequence_number": seq, **fields})


def response(
    status: str,
    output: list[object],
    usage: object = None,
    incomplete: str | None = None,
) -> dict[str, object]:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": 1_760_000_000,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None if incomplete is None else {"reason": incomplete},
        "instructions": None,
        "max_output_tokens": None,
        "model": "client-model",
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": None,
        "service_tier": None,
        "store": False,
        "temperature": None,
        "text": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": None,
        "usage": usage,
        "user": None,
        "metadata": None,
    }


def usage_body(input_tokens: int, output: int, cached: int = 0, reasoning: int = 0) -> object:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output,
    }


STARTED: Final[list[Frame]] = [
    event(0, "response.created", response=response("in_progress", [])),
    event(1, "response.in_progress", response=response("in_progress", [])),
]


def text_part(text: str) -> dict[str, object]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message(item_id: str, status: str, content: list[object]) -> dict[str, object]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call(item_id: str, call_id: str, status: str, arguments: str) -> dict[str, object]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": "get_weather",
        "arguments": arguments,
    }


def text_events(seq: int, index: int, deltas: list[str]) -> list[Frame]:
    """A whole message item of one output_text part, from sequence number ``seq``."""
    item_id = f"msg_0123abcd_{index}"
    ids = {"item_id": item_id, "output_index": index, "content_index": 0}
    text = "".join(deltas)
    return [
        event(seq, "response.output_item.added", output_index=index,
              item=message(item_id, "in_progress", [])),
        event(seq + 1, "response.content_part.added", **ids, part=text_part("")),
        *(event(seq + 2 + n, "response.output_text.delta", **ids, delta=d, logprobs=[])
          for n, d in enumerate(deltas)),
        event(seq + 2 + len(deltas), "response.output_text.done", **ids, text=text, logprobs=[]),
        event(seq + 3 + len(deltas), "response.content_part.done", **ids, part=text_part(text)),
        event(seq + 4 + len(deltas), "response.output_item.done", output_index=index,
              item=message(item_id, "completed", [text_part(text)])),
    ]  # fmt: skip


def test_text_stream() -> None:
    _, raw = write("openai-responses", TEXT)
    done = message("msg_0123abcd_0", "completed", [text_part("Hello")])
    assert parse(raw) == [
        *STARTED,
        *text_events(2, 0, ["Hel", "lo"]),
        event(9, "response.completed", response=response("completed", [done], usage_body(10, 2))),
    ]
    assert raw.startswith(
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
    )


def test_tool_stream() -> None:
    _, raw = write("openai-responses", TOOL)
    ids = {"item_id": "fc_0123abcd_0", "output_index": 0}
    arguments = '{"city":"Paris"}'
    done = function_call("fc_0123abcd_0", "toolu_01", "completed", arguments)
    assert parse(raw) == [
        *STARTED,
        event(2, "response.output_item.added", output_index=0,
              item=function_call("fc_0123abcd_0", "toolu_01", "in_progress", "")),
        event(3, "response.function_call_arguments.delta", **ids, delta='{"city":'),
        event(4, "response.function_call_arguments.delta", **ids, delta='"Paris"}'),
        event(5, "response.function_call_arguments.done", **ids, name="get_weather",
              arguments=arguments),
        event(6, "response.output_item.done", output_index=0, item=done),
        event(7, "response.completed", response=response("completed", [done], usage_body(20, 9))),
    ]  # fmt: skip


def test_thinking_text_and_tool_stream() -> None:
    _, raw = write("openai-responses", MIXED)
    rs = {"item_id": "rs_0123abcd_0", "output_index": 0, "summary_index": 0}
    fc = {"item_id": "fc_0123abcd_2", "output_index": 2}
    summary = {"type": "summary_text", "text": "Let me think."}
    reasoning = {
        "id": "rs_0123abcd_0",
        "type": "reasoning",
        "summary": [summary],
        "encrypted_content": pack_anthropic_thinking("thinking", "sig"),
    }
    arguments = '{"city":"Paris"}'
    tool = function_call("fc_0123abcd_2", "call:7", "completed", arguments)
    text = message("msg_0123abcd_1", "completed", [text_part("Checking.")])
    final = response("completed", [reasoning, text, tool], usage_body(133, 50, 100, 12))
    assert parse(raw) == [
        *STARTED,
        event(2, "response.output_item.added", output_index=0,
              item={"id": "rs_0123abcd_0", "type": "reasoning", "summary": []}),
        event(3, "response.reasoning_summary_part.added", **rs,
              part={"type": "summary_text", "text": ""}),
        event(4, "response.reasoning_summary_text.delta", **rs, delta="Let me"),
        event(5, "response.reasoning_summary_text.delta", **rs, delta=" think."),
        event(6, "response.reasoning_summary_text.done", **rs, text="Let me think."),
        event(7, "response.reasoning_summary_part.done", **rs, part=summary),
        event(8, "response.output_item.done", output_index=0, item=reasoning),
        *text_events(9, 1, ["Checking."]),
        # The empty text block emitted nothing: the function call is output_index 2.
        event(15, "response.output_item.added", output_index=2,
              item=function_call("fc_0123abcd_2", "call:7", "in_progress", "")),
        event(16, "response.function_call_arguments.delta", **fc, delta=arguments),
        event(17, "response.function_call_arguments.done", **fc, name="get_weather",
              arguments=arguments),
        event(18, "response.output_item.done", output_index=2, item=tool),
        event(19, "response.completed", response=final),
    ]  # fmt: skip
    assert unpack_anthropic_thinking(reasoning["encrypted_content"]) == ("thinking", "sig")


def test_redacted_thinking_and_a_reasoning_item_without_summary() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("redacted_thinking", data="EmwKAhgB"),
        BlockStop(),
        BlockStart("thinking", signature="from-start"),
        Delta("thinking", ""),
        BlockStop(),
        BlockStart("thinking"),
        BlockStop(),
        Finish("end_turn"),
    ]
    writer, raw = write("openai-responses", events)
    redacted = {
        "id": "rs_0123abcd_0",
        "type": "reasoning",
        "summary": [],
        "encrypted_content": pack_anthropic_thinking("redacted_thinking", "EmwKAhgB"),
    }
    signed = {
        "id": "rs_0123abcd_1",
        "type": "reasoning",
        "summary": [],
        "encrypted_content": pack_anthropic_thinking("thinking", "from-start"),
    }
    bare = {"id": "rs_0123abcd_2", "type": "reasoning", "summary": []}
    assert [(name, data["item"]) for name, data in parse(raw)[2:8]] == [  # type: ignore[index]
        ("response.output_item.added", {"id": "rs_0123abcd_0", "type": "reasoning", "summary": []}),
        ("response.output_item.done", redacted),
        ("response.output_item.added", {"id": "rs_0123abcd_1", "type": "reasoning", "summary": []}),
        ("response.output_item.done", signed),
        ("response.output_item.added", bare),
        ("response.output_item.done", bare),
    ]
    assert writer.final_body()["output"] == [redacted, signed, bare]


def test_refusal_then_text_gives_two_parts() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("text"),
        Delta("refusal", "No"),
        Delta("refusal", "."),
        Delta("text", "Sorry"),
        BlockStop(),
        Finish("refusal"),
    ]
    writer, raw = write("openai-responses", events)
    ids = {"item_id": "msg_0123abcd_0", "output_index": 0}
    refusal = {"type": "refusal", "refusal": "No."}
    content = [refusal, text_part("Sorry")]
    assert parse(raw)[3:] == [
        event(3, "response.content_part.added", **ids, content_index=0,
              part={"type": "refusal", "refusal": ""}),
        event(4, "response.refusal.delta", **ids, content_index=0, delta="No"),
        event(5, "response.refusal.delta", **ids, content_index=0, delta="."),
        event(6, "response.refusal.done", **ids, content_index=0, refusal="No."),
        event(7, "response.content_part.done", **ids, content_index=0, part=refusal),
        event(8, "response.content_part.added", **ids, content_index=1, part=text_part("")),
        event(9, "response.output_text.delta", **ids, content_index=1, delta="Sorry",
              logprobs=[]),
        event(10, "response.output_text.done", **ids, content_index=1, text="Sorry",
              logprobs=[]),
        event(11, "response.content_part.done", **ids, content_index=1, part=text_part("Sorry")),
        event(12, "response.output_item.done", output_index=0,
              item=message("msg_0123abcd_0", "completed", content)),
        event(13, "response.incomplete", response=response(
            "incomplete", [message("msg_0123abcd_0", "incomplete", content)],
            usage_body(0, 0), incomplete="content_filter")),
    ]  # fmt: skip
    assert writer.final_body()["status"] == "incomplete"


def test_usage_mapping_with_cache_tiers_and_reasoning() -> None:
    # protocols.md §5.4: input = uncached 3 + cache read 100 + writes 20 + 10 = 133.
    writer, raw = write("openai-responses", [Start(), Finish("end_turn", usage=MIXED_USAGE)])
    expected = usage_body(133, 50, cached=100, reasoning=12)
    assert parse(raw)[-1] == event(
        2, "response.completed", response=response("completed", [], expected)
    )
    assert writer.final_body()["usage"] == expected


STATUSES: Final[list[tuple[StopReason, str, str | None]]] = [
    ("end_turn", "completed", None),
    ("stop_sequence", "completed", None),
    ("tool_use", "completed", None),
    ("pause_turn", "completed", None),
    ("max_tokens", "incomplete", "max_output_tokens"),
    ("model_context_window_exceeded", "incomplete", "max_output_tokens"),
    ("refusal", "incomplete", "content_filter"),
]


@pytest.mark.parametrize(("stop_reason", "status", "reason"), STATUSES)
def test_statuses(stop_reason: StopReason, status: str, reason: str | None) -> None:
    writer, raw = write("openai-responses", [*TEXT[:-1], Finish(stop_reason, usage=Usage())])
    # An incomplete answer was cut inside its last message (as the API marks it).
    item_status = "completed" if reason is None else "incomplete"
    item = message("msg_0123abcd_0", item_status, [text_part("Hello")])
    final = response(status, [item], usage_body(0, 0), incomplete=reason)
    assert parse(raw)[-1] == event(9, f"response.{status}", response=final)
    assert writer.final_body() == final


def test_incomplete_marks_only_a_last_message_item() -> None:
    writer, _ = write("openai-responses", [*TOOL[:-1], Finish("max_tokens")])
    output = writer.final_body()["output"]
    assert isinstance(output, list)
    assert [item["status"] for item in output] == ["completed"]


def test_error_after_partial_output() -> None:
    writer, raw = write("openai-responses", PARTIAL)
    ids = {"item_id": "msg_0123abcd_0", "output_index": 0, "content_index": 0}
    error = {"type": "server_error", "code": "server_error", "message": "Overloaded", "param": None}
    failed = {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": 1_760_000_000,
        "status": "failed",
        "error": {"code": "server_error", "message": "Overloaded"},
        "incomplete_details": None,
        "model": "client-model",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }
    assert parse(raw) == [
        *STARTED,
        event(2, "response.output_item.added", output_index=0,
              item=message("msg_0123abcd_0", "in_progress", [])),
        event(3, "response.content_part.added", **ids, part=text_part("")),
        event(4, "response.output_text.delta", **ids, delta="Hi", logprobs=[]),
        event(5, "error", code="server_error", message="Overloaded", param=None, error=error),
        event(6, "response.failed", response=failed),
    ]  # fmt: skip
    assert writer.ended


def test_error_before_anything_sends_response_created_first() -> None:
    writer, _ = write("openai-responses", [])
    raw = writer.fail(UpstreamTimeout("No data", phase="data_interval"))
    frames = parse(raw)
    error = {"type": "timeout", "code": "upstream_timeout", "message": "No data", "param": None}
    assert frames[:3] == [
        *STARTED,
        event(2, "error", code="upstream_timeout", message="No data", param=None, error=error),
    ]
    assert frames[3][0] == "response.failed"
    assert frames[3][1]["sequence_number"] == 3  # type: ignore[index]
    assert frames[3][1]["response"]["id"] == RESPONSE_ID  # type: ignore[index]
    assert judge("openai-responses", frames)


def test_final_body() -> None:
    writer, raw = write("openai-responses", MIXED, stream=False)
    assert raw == b""
    streamed, raw = write("openai-responses", MIXED)
    completed = parse(raw)[-1][1]
    assert isinstance(completed, dict)
    # The body is the very response object response.completed carries.
    assert writer.final_body() == completed["response"] == streamed.final_body()
    body = writer.final_body()
    assert body["status"] == "completed"
    assert body["usage"] == usage_body(133, 50, 100, 12)
    assert [item["id"] for item in body["output"]] == [  # type: ignore[attr-defined]
        "rs_0123abcd_0",
        "msg_0123abcd_1",
        "fc_0123abcd_2",
    ]
