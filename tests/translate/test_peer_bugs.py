"""PEER-BUGS rows 1–10 (translation and Claude Code compatibility), one test each.

Each test states the failure another gateway shipped and drives the same situation through the
:class:`Translator` exactly as the relay does (upstream bytes in odd chunks, client frames
out), judging the output with the client protocol's checker. Rows 4 and 9 are about requests
and failover, so they are proven on the whole gateway in ``tests/test_relay_translated.py``
and ``tests/e2e/test_sdk_translation.py``; their tests here point there and check the piece
the translator owns.
"""

from __future__ import annotations

import json
from typing import Final

from tests.support import sse_events
from trio_gateway._errors import UpstreamProtocolError
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._sse import SSEDecoder
from trio_gateway._translate._check import (
    AnthropicStreamCheck,
    ChatStreamCheck,
    ResponsesStreamCheck,
    StreamCheck,
)
from trio_gateway._translate._stream import Translator

Frames = list[tuple[str | None, object]]
CHUNK: Final = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def frame(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"{head}data: {data}\n\n".encode()


def chat(delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return frame({**CHUNK, "choices": [choice]})


CHAT_USAGE: Final = frame(
    {
        **CHUNK,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
)


def translate(
    upstream: Protocol, client: Protocol, raw: bytes, *, eof: bool = True
) -> tuple[Translator, bytes]:
    translator = Translator(
        upstream,
        client,
        request_id="req_peer",
        model="m",
        created=1,
        include_usage=True,
        stream=True,
        secrets=(),
    )
    decoder = SSEDecoder()
    out = b""
    for i in range(0, len(raw), 5):
        chunk, events = decoder.feed(raw[i : i + 5])
        out += translator.forward(chunk, events)
    if eof:
        out += translator.end_of_stream()
    return translator, out


def frames(raw: bytes) -> Frames:
    return [(n, d if d == "[DONE]" else json.loads(d)) for n, d in sse_events(raw)]


def judged(client: Protocol, out: bytes) -> Frames:
    checker: StreamCheck = {
        "anthropic": AnthropicStreamCheck,
        "openai-chat": ChatStreamCheck,
        "openai-responses": ResponsesStreamCheck,
    }[client]()
    parsed = frames(out)
    for name, data in parsed:
        assert isinstance(data, dict | str)
        checker.observe(name, data)
    return parsed


def names(parsed: Frames) -> list[str | None]:
    return [name for name, _ in parsed]


def block_types(parsed: Frames) -> list[str]:
    out = []
    for name, data in parsed:
        if name == "content_block_start" and isinstance(data, dict):
            out.append(data["content_block"]["type"])
    return out


def test_row_1_reasoning_content_is_one_message_with_a_thinking_block_before_the_text() -> None:
    # litellm#32357: duplicate message_start; thinking and text deltas in one text block.
    raw = (
        chat({"role": "assistant", "content": ""})
        + chat({"reasoning_content": "Let me "})
        + chat({"reasoning_content": "think."})
        + chat({"content": "Hello"})
        + chat({}, "stop")
        + CHAT_USAGE
        + frame("[DONE]")
    )
    _, out = translate("openai-chat", "anthropic", raw)
    parsed = judged("anthropic", out)
    assert names(parsed).count("message_start") == 1
    assert block_types(parsed) == ["thinking", "text"]
    deltas = [d["delta"] for n, d in parsed if n == "content_block_delta" and isinstance(d, dict)]
    assert [(d["type"], d.get("thinking") or d.get("text")) for d in deltas] == [
        ("thinking_delta", "Let me "),
        ("thinking_delta", "think."),
        ("text_delta", "Hello"),
    ]


def test_row_2_every_delta_matches_its_block_type() -> None:
    # litellm#33224: thinking_delta sent into a text block. Text, then reasoning, then text
    # again: each switch opens a new block of the right type.
    raw = (
        chat({"role": "assistant", "content": "A"})
        + chat({"reasoning_content": "hmm"})
        + chat({"content": "B"})
        + chat({}, "stop")
        + CHAT_USAGE
        + frame("[DONE]")
    )
    _, out = translate("openai-chat", "anthropic", raw)
    parsed = judged("anthropic", out)
    assert block_types(parsed) == ["text", "thinking", "text"]
    open_types: dict[int, str] = {}
    for name, data in parsed:
        assert isinstance(data, dict)
        if name == "content_block_start":
            open_types[data["index"]] = data["content_block"]["type"]
        if name == "content_block_delta":
            kind = data["delta"]["type"].removesuffix("_delta")
            assert open_types[data["index"]] == {"text": "text", "thinking": "thinking"}[kind]


def test_row_3_tool_call_deltas_split_anywhere_stay_inside_their_block() -> None:
    # litellm#13373: "Content block not found" — a delta for an index without a start.
    call = {"index": 0, "id": "call_1", "type": "function"}
    raw = (
        chat({"role": "assistant", "content": None})
        + chat({"tool_calls": [{**call, "function": {"name": "get_weather", "arguments": ""}}]})
        + chat({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})
        + chat({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]})
        + chat({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                "function": {"name": "get_time", "arguments": "{}"}}]})
        + chat({}, "tool_calls")
        + CHAT_USAGE
        + frame("[DONE]")
    )  # fmt: skip
    _, out = translate("openai-chat", "anthropic", raw)
    parsed = judged("anthropic", out)  # the checker refuses any delta outside a started block
    assert block_types(parsed) == ["tool_use", "tool_use"]
    arguments: dict[int, str] = {}
    for name, data in parsed:
        if name == "content_block_delta" and isinstance(data, dict):
            arguments[data["index"]] = (
                arguments.get(data["index"], "") + (data["delta"]["partial_json"])
            )
    assert {i: json.loads(text) for i, text in arguments.items()} == {
        0: {"city": "Paris"},
        1: {},
    }
    delta = next(d for n, d in parsed if n == "message_delta")
    assert isinstance(delta, dict)
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_row_4_the_translated_stream_is_one_the_client_accepts_without_fallback() -> None:
    # bifrost#5128: a non-compliant stream makes Claude Code retry non-streaming (two upstream
    # requests). One upstream request per SDK call is asserted end to end in
    # tests/e2e/test_sdk_translation.py; here: the stream passes the client's own checker.
    raw = (
        chat({"role": "assistant", "content": "Hi"})
        + chat({}, "stop")
        + CHAT_USAGE
        + frame("[DONE]")
    )
    translator, out = translate("openai-chat", "anthropic", raw)
    assert judged("anthropic", out)[-1][0] == "message_stop"
    assert translator.finished
    assert translator.error is None


def test_row_5_new_responses_event_types_never_break_the_envelope() -> None:
    # CLIProxyAPI#4415: message_stop without a valid message_start for new event shapes.
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    raw = (
        frame({"type": "response.brand_new", "sequence_number": 0}, "response.brand_new")
        + frame({"type": "response.created", "response": response}, "response.created")
        + frame({"type": "response.output_item.added", "output_index": 0,
                 "item": {"id": "ws_1", "type": "web_search_call", "status": "in_progress"}},
                "response.output_item.added")
        + frame({"type": "response.web_search_call.searching", "item_id": "ws_1"},
                "response.web_search_call.searching")
        + frame({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1,
                 "content_index": 0, "delta": "Found it."}, "response.output_text.delta")
        + frame({"type": "response.completed",
                 "response": {**response, "status": "completed",
                              "usage": {"input_tokens": 3, "output_tokens": 2}}},
                "response.completed")
    )  # fmt: skip
    _, out = translate("openai-responses", "anthropic", raw)
    parsed = judged("anthropic", out)
    assert names(parsed)[0] == "message_start"
    assert names(parsed).count("message_stop") == 1
    assert block_types(parsed) == ["text"]


def test_row_6_translated_envelope_has_every_native_usage_field() -> None:
    # litellm#24176: message_start.usage zeroed and missing the cache_creation breakdown.
    # (Field-by-field comparison with native streams: test_translated_golden.py.)
    raw = chat({"role": "assistant", "content": "x"}) + chat({}, "stop") + CHAT_USAGE
    _, out = translate("openai-chat", "anthropic", raw + frame("[DONE]"))
    parsed = judged("anthropic", out)
    start = parsed[0][1]
    assert isinstance(start, dict)
    assert set(start["message"]["usage"]) == {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "cache_creation",
        "output_tokens",
        "service_tier",
    }
    assert set(start["message"]["usage"]["cache_creation"]) == {
        "ephemeral_5m_input_tokens",
        "ephemeral_1h_input_tokens",
    }


def test_row_7_stop_reason_and_usage_sit_side_by_side_in_message_delta() -> None:
    # anthropics/claude-code#16785: stop_reason tool_use ignored → tools never run.
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    raw = (
        chat({"role": "assistant", "tool_calls": [{**call}]})
        + chat({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})
        + chat({}, "tool_calls")
        + CHAT_USAGE
        + frame("[DONE]")
    )
    _, out = translate("openai-chat", "anthropic", raw)
    parsed = judged("anthropic", out)
    delta = next(d for n, d in parsed if n == "message_delta")
    assert delta == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 5,
        },
    }


def test_row_8_upstream_eof_before_the_terminal_event_is_an_error_frame() -> None:
    # litellm PR#39898: a lone message_start and a clean EOF. The relay asks the translator
    # for its error frame when the upstream ends early; no clean end is ever produced.
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    raw = frame({"type": "response.created", "response": response}, "response.created")
    translator, out = translate("openai-responses", "anthropic", raw)
    assert not translator.finished  # the relay turns this into UpstreamProtocolError
    error = translator.error_frame(
        UpstreamProtocolError("upstream ended the stream before its terminal event"),
        request_id="req_peer",
    )
    parsed = judged("anthropic", out + error)
    assert names(parsed) == ["message_start", "error"]


def test_row_9_keepalive_bytes_are_not_content() -> None:
    # sub2api#991: failover after bytes were written appends a second answer. The relay only
    # fails over while nothing is committed (tests/test_relay_translated.py proves failover
    # across protocols before commit and none after); the translator's part: an upstream
    # ping or comment is never forwarded as content.
    raw = b": keepalive\n\n" + frame({"type": "ping"}, "ping")
    translator, out = translate("anthropic", "openai-chat", raw, eof=False)
    assert out == b""
    assert translator.events == 1  # the ping was read (the comment dispatches nothing)


def test_row_10_a_stream_without_response_completed_is_a_failure_with_observed_usage() -> None:
    # CLIProxyAPI#4760: "stream closed before response.completed" indistinguishable from
    # success. Here the upstream reports an in-band failure with its usage.
    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    failed = {
        **response,
        "status": "failed",
        "error": {"code": "server_error", "message": "boom"},
        "usage": {"input_tokens": 7, "output_tokens": 3},
    }
    raw = (
        frame({"type": "response.created", "response": response}, "response.created")
        + frame({"type": "response.output_text.delta", "item_id": "m", "output_index": 0,
                 "content_index": 0, "delta": "partial"}, "response.output_text.delta")
        + frame({"type": "response.failed", "response": failed}, "response.failed")
    )  # fmt: skip
    translator, out = translate("openai-responses", "anthropic", raw)
    parsed = judged("anthropic", out)
    assert names(parsed)[-1] == "error"
    assert "message_stop" not in names(parsed)
    assert translator.error is not None
    assert (translator.usage.input_tokens, translator.usage.output_tokens) == (7, 3)
    assert translator.usage_source == "reported"
