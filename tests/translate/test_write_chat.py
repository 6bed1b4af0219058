"""The OpenAI Chat Completions writer: exact chunks, usage, finish reasons, errors, the body."""

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

ROLE: Final[dict[str, object]] = {"role": "assistant", "content": "", "refusal": None}


def chunk(
    delta: dict[str, object] | None,
    *,
    finish_reason: str | None = None,
    usage: object = None,
    include_usage: bool = True,
) -> Frame:
    choices: list[object] = []
    if delta is not None:
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    data: dict[str, object] = {
        "id": "chatcmpl-0123abcd",
        "object": "chat.completion.chunk",
        "created": 1_760_000_000,
        "model": "client-model",
        "choices": choices,
    }
    if include_usage:
        data["usage"] = usage
    return (None, data)


def usage_body(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> object:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_text_stream() -> None:
    _, raw = write("openai-chat", TEXT)
    assert parse(raw) == [
        chunk(ROLE),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, finish_reason="stop"),
        chunk(None, usage=usage_body(10, 2)),
        (None, "[DONE]"),
    ]
    assert raw.startswith(b'data: {"id":"chatcmpl-0123abcd","object":"chat.completion.chunk",')
    assert raw.endswith(b"}\n\ndata: [DONE]\n\n")
    assert b"event:" not in raw


def test_tool_stream() -> None:
    _, raw = write("openai-chat", TOOL)
    call = {
        "index": 0,
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert parse(raw) == [
        chunk(ROLE),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, finish_reason="tool_calls"),
        chunk(None, usage=usage_body(20, 9)),
        (None, "[DONE]"),
    ]


def test_thinking_text_and_tool_stream() -> None:
    _, raw = write("openai-chat", MIXED)
    call = {
        "index": 0,
        "id": "call:7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    # Thinking is dropped, and so are the empty text block and the empty argument fragment.
    assert parse(raw) == [
        chunk(ROLE),
        chunk({"content": "Checking."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}),
        chunk({}, finish_reason="tool_calls"),
        chunk(None, usage=usage_body(133, 50, cached=100, reasoning=12)),
        (None, "[DONE]"),
    ]


def test_tool_indices_count_tool_blocks_and_ids_fall_back() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("text"),
        Delta("text", "a"),
        BlockStop(),
        BlockStart("tool_use", tool_id="", tool_name="f"),
        Delta("tool_args", "{}"),
        BlockStop(),
        BlockStart("thinking"),
        Delta("thinking", "x"),
        BlockStop(),
        BlockStart("tool_use", tool_id="call_b", tool_name="g"),
        BlockStop(),
        Finish("tool_use"),
    ]
    writer, raw = write("openai-chat", events, include_usage=False)
    deltas = [data["choices"][0]["delta"] for _, data in parse(raw)[:-2]]  # type: ignore[index]
    first = {"index": 0, "id": "call_0123abcd_0", "type": "function"}
    second = {"index": 1, "id": "call_b", "type": "function"}
    assert deltas == [
        ROLE,
        {"content": "a"},
        {"tool_calls": [first | {"function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
        {"tool_calls": [second | {"function": {"name": "g", "arguments": ""}}]},
    ]
    message = writer.final_body()["choices"][0]["message"]  # type: ignore[index]
    assert message["tool_calls"] == [
        {"id": "call_0123abcd_0", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]


def test_refusal_deltas() -> None:
    events: list[NeutralEvent] = [
        Start(),
        BlockStart("text"),
        Delta("refusal", "I can't"),
        Delta("refusal", " help."),
        BlockStop(),
        Finish("refusal"),
    ]
    writer, raw = write("openai-chat", events, include_usage=False)
    assert parse(raw) == [
        chunk(ROLE, include_usage=False),
        chunk({"refusal": "I can't"}, include_usage=False),
        chunk({"refusal": " help."}, include_usage=False),
        chunk({}, finish_reason="content_filter", include_usage=False),
        (None, "[DONE]"),
    ]
    message = writer.final_body()["choices"][0]["message"]  # type: ignore[index]
    assert message == {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help.",
        "annotations": [],
        "tool_calls": None,
    }


def test_without_include_usage_there_is_no_usage_at_all() -> None:
    _, raw = write("openai-chat", TEXT, include_usage=False)
    assert parse(raw) == [
        chunk(ROLE, include_usage=False),
        chunk({"content": "Hel"}, include_usage=False),
        chunk({"content": "lo"}, include_usage=False),
        chunk({}, finish_reason="stop", include_usage=False),
        (None, "[DONE]"),
    ]
    assert b"usage" not in raw
    assert judge("openai-chat", parse(raw), include_usage=False)


def test_usage_mapping_with_cache_tiers_and_reasoning() -> None:
    # protocols.md §5.4: prompt = uncached 3 + cache read 100 + writes 20 + 10 = 133.
    writer, raw = write("openai-chat", [Start(), Finish("end_turn", usage=MIXED_USAGE)])
    expected = usage_body(133, 50, cached=100, reasoning=12)
    assert parse(raw)[-2] == chunk(None, usage=expected)
    assert writer.final_body()["usage"] == expected


FINISH_REASONS: Final[list[tuple[StopReason, str]]] = [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("pause_turn", "stop"),
    ("model_context_window_exceeded", "length"),
]


@pytest.mark.parametrize(("stop_reason", "finish_reason"), FINISH_REASONS)
def test_finish_reasons(stop_reason: StopReason, finish_reason: str) -> None:
    writer, raw = write("openai-chat", [*TEXT[:-1], Finish(stop_reason, usage=Usage())])
    assert parse(raw)[-3] == chunk({}, finish_reason=finish_reason)
    assert writer.final_body()["choices"][0]["finish_reason"] == finish_reason  # type: ignore[index]


def test_error_after_partial_output() -> None:
    writer, raw = write("openai-chat", PARTIAL)
    error = {"message": "Overloaded", "type": "server_error", "param": None, "code": None}
    assert parse(raw) == [chunk(ROLE), chunk({"content": "Hi"}), (None, {"error": error})]
    assert b"[DONE]" not in raw
    assert writer.ended


def test_error_before_anything() -> None:
    writer, _ = write("openai-chat", [])
    raw = writer.fail(UpstreamTimeout("No data from the upstream", phase="data_interval"))
    assert raw == (
        b'data: {"error":{"message":"No data from the upstream","type":"timeout",'
        b'"param":null,"code":"upstream_timeout"}}\n\n'
    )


def test_final_body() -> None:
    writer, raw = write("openai-chat", MIXED, stream=False)
    assert raw == b""
    assert writer.final_body() == {
        "id": "chatcmpl-0123abcd",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": "client-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "refusal": None,
                    "annotations": [],
                    "tool_calls": [
                        {
                            "id": "call:7",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": usage_body(133, 50, cached=100, reasoning=12),
    }


@pytest.mark.parametrize(
    ("events", "content"),
    [
        ([Start(), Finish("end_turn")], ""),
        (TOOL, None),
        (TEXT, "Hello"),
    ],
)
def test_final_body_content(events: list[NeutralEvent], content: str | None) -> None:
    writer, _ = write("openai-chat", events, stream=False, include_usage=False)
    body = writer.final_body()
    assert body["choices"][0]["message"]["content"] == content  # type: ignore[index]
    assert isinstance(body["usage"], dict)  # a non-streaming body always has usage
