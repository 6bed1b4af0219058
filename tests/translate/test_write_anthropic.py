"""The Anthropic Messages writer: exact frames, usage, stop reasons, errors, the body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import pytest

from tests.translate.test_write import (
    MIXED,
    MIXED_USAGE,
    PARTIAL,
    REQUEST_ID,
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

ZERO_USAGE: Final[dict[str, object]] = {
    "input_tokens": 0,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 0,
    "service_tier": "standard",
}


def message_start(usage: dict[str, object]) -> Frame:
    message: dict[str, object] = {
        "id": "msg_0123abcd",
        "type": "message",
        "role": "assistant",
        "model": "client-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return ("message_start", {"type": "message_start", "message": message})


def block_start(index: int, block: Mapping[str, object]) -> Frame:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def block_delta(index: int, delta: dict[str, object]) -> Frame:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> Frame:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_end(stop_reason: str, usage: dict[str, object]) -> list[Frame]:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return [
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
        ("message_stop", {"type": "message_stop"}),
    ]


def delta_usage(input_tokens: int, output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def test_text_stream() -> None:
    _, raw = write("anthropic", TEXT)
    assert parse(raw) == [
        message_start(ZERO_USAGE),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Hel"}),
        block_delta(0, {"type": "text_delta", "text": "lo"}),
        block_stop(0),
        *message_end("end_turn", delta_usage(10, 2)),
    ]
    assert raw.startswith(
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_0123abcd",'
    )
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_tool_stream() -> None:
    _, raw = write("anthropic", TOOL)
    tool = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
    assert parse(raw) == [
        message_start(ZERO_USAGE),
        block_start(0, tool),
        block_delta(0, {"type": "input_json_delta", "partial_json": '{"city":'}),
        block_delta(0, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        block_stop(0),
        *message_end("tool_use", delta_usage(20, 9)),
    ]


def test_thinking_text_and_tool_stream() -> None:
    _, raw = write("anthropic", MIXED)
    start_usage = ZERO_USAGE | {"input_tokens": 3, "cache_read_input_tokens": 100}
    tool = {"type": "tool_use", "id": "call_7", "name": "get_weather", "input": {}}
    assert parse(raw) == [
        message_start(start_usage | {"output_tokens": 1}),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "Let me"}),
        block_delta(0, {"type": "thinking_delta", "thinking": " think."}),
        block_delta(0, {"type": "signature_delta", "signature": "sig"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, {"type": "text_delta", "text": "Checking."}),
        block_stop(1),
        # The empty text block emitted nothing, so the tool block is index 2.
        block_start(2, tool),
        block_delta(2, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(2, {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'}),
        block_stop(2),
        *message_end(
            "tool_use",
            {
                "input_tokens": 3,
                "cache_creation_input_tokens": 30,
                "cache_read_input_tokens": 100,
                "output_tokens": 50,
            },
        ),
    ]


def test_signature_goes_out_once_at_the_stop() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("thinking"),
        Delta("signature", "Eq"),
        Delta("thinking", "hmm"),
        Delta("signature", "AB"),
        BlockStop(),
        BlockStart("thinking", signature="from-start"),
        BlockStop(),
        BlockStart("thinking"),
        BlockStop(),
        Finish("end_turn"),
    ]
    _, raw = write("anthropic", events)
    frames = parse(raw)
    assert frames[1:10] == [
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
        block_delta(0, {"type": "signature_delta", "signature": "EqAB"}),
        block_stop(0),
        block_start(1, {"type": "thinking", "thinking": "", "signature": ""}),
        block_delta(1, {"type": "signature_delta", "signature": "from-start"}),
        block_stop(1),
        block_start(2, {"type": "thinking", "thinking": "", "signature": ""}),
        block_stop(2),
    ]


def test_redacted_thinking_and_refusal() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("redacted_thinking", data="EmwKAhgB"),
        BlockStop(),
        BlockStart("text"),
        Delta("text", ""),
        Delta("refusal", "I can't"),
        Delta("text", " help."),
        BlockStop(),
        Finish("refusal", usage=Usage(input_tokens=4, output_tokens=3)),
    ]
    writer, raw = write("anthropic", events)
    assert parse(raw)[1:7] == [
        block_start(0, {"type": "redacted_thinking", "data": "EmwKAhgB"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, {"type": "text_delta", "text": "I can't"}),
        block_delta(1, {"type": "text_delta", "text": " help."}),
        block_stop(1),
    ]
    assert writer.final_body()["content"] == [
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "I can't help."},
    ]


def test_usage_mapping_with_cache_tiers_and_reasoning() -> None:
    events: list[NeutralEvent] = [Start(usage=MIXED_USAGE), Finish("end_turn", usage=MIXED_USAGE)]
    writer, raw = write("anthropic", events)
    full = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 100,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
        "output_tokens": 50,
        "service_tier": "standard",
    }
    frames = parse(raw)
    assert frames[0] == message_start(full)
    assert frames[1:] == message_end(
        "end_turn",
        {
            "input_tokens": 3,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 100,
            "output_tokens": 50,
        },
    )
    assert writer.final_body()["usage"] == full


STOP_REASONS: Final[list[StopReason]] = [
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "refusal",
    "pause_turn",
    "model_context_window_exceeded",
]


@pytest.mark.parametrize("stop_reason", STOP_REASONS)
def test_stop_reasons_pass_through(stop_reason: StopReason) -> None:
    sequence = "STOP" if stop_reason == "stop_sequence" else None
    finish = Finish(stop_reason, stop_sequence=sequence, usage=Usage(output_tokens=1))
    writer, raw = write("anthropic", [*TEXT[:-1], finish])
    message_delta = parse(raw)[-2][1]
    assert isinstance(message_delta, dict)
    assert message_delta["delta"] == {"stop_reason": stop_reason, "stop_sequence": sequence}
    body = writer.final_body()
    assert (body["stop_reason"], body["stop_sequence"]) == (stop_reason, sequence)


def test_error_after_partial_output() -> None:
    writer, raw = write("anthropic", PARTIAL)
    assert parse(raw) == [
        message_start(ZERO_USAGE),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Hi"}),
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Overloaded"},
                "request_id": REQUEST_ID,
            },
        ),
    ]
    assert writer.ended
    assert judge("anthropic", parse(raw))


def test_error_before_anything() -> None:
    writer, _ = write("anthropic", [])
    raw = writer.fail(UpstreamTimeout("No data from the upstream", phase="data_interval"))
    error = {"type": "timeout_error", "message": "No data from the upstream"}
    assert parse(raw) == [("error", {"type": "error", "error": error, "request_id": REQUEST_ID})]
    assert raw == (
        b'event: error\ndata: {"type":"error","error":{"type":"timeout_error",'
        b'"message":"No data from the upstream"},"request_id":"req_0123abcd"}\n\n'
    )


def test_final_body() -> None:
    writer, raw = write("anthropic", MIXED, stream=False)
    assert raw == b""
    assert writer.final_body() == {
        "id": "msg_0123abcd",
        "type": "message",
        "role": "assistant",
        "model": "client-model",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_7", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "cache_creation_input_tokens": 30,
            "cache_read_input_tokens": 100,
            "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 10},
            "output_tokens": 50,
            "service_tier": "standard",
        },
    }


def test_final_body_keeps_unparsable_arguments() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("tool_use", tool_id="", tool_name="f"),
        Delta("tool_args", '{"cut'),
        BlockStop(),
        BlockStart("tool_use", tool_id="", tool_name="g"),
        BlockStop(),
        Finish("tool_use"),
    ]
    writer, raw = write("anthropic", events)
    assert writer.final_body()["content"] == [
        {"type": "tool_use", "id": "toolu_0123abcd_0", "name": "f", "input": {"_raw": '{"cut'}},
        {"type": "tool_use", "id": "toolu_0123abcd_1", "name": "g", "input": {}},
    ]
    assert parse(raw)[1] == block_start(
        0, {"type": "tool_use", "id": "toolu_0123abcd_0", "name": "f", "input": {}}
    )


def test_an_answer_of_empty_text_blocks_has_no_block_at_all() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("text"),
        Delta("text", ""),
        BlockStop(),
        BlockStart("text"),
        BlockStop(),
        Finish("end_turn"),
    ]
    writer, raw = write("anthropic", events)
    assert [name for name, _ in parse(raw)] == ["message_start", "message_delta", "message_stop"]
    assert writer.final_body()["content"] == []
