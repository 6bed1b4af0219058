"""The pass-through stream tap, with event sequences from protocols.md §1.7, §2.4 and §3.6."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Mapping
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._sse import SSEDecoder, SSEEvent
from trio_gateway._protocol._tap import InBandError, StreamTap, usage_from_body
from trio_gateway._protocol._usage import Usage, UsageSource


def frame(data: str | bytes, *, event: str | None = None) -> tuple[SSEEvent, bytes]:
    """An SSE block and its decoded event, built by hand (single-line data)."""
    payload = data.encode() if isinstance(data, str) else data
    raw = b""
    if event is not None:
        raw += b"event: " + event.encode() + b"\n"
    raw += b"data: " + payload + b"\n\n"
    return SSEEvent(event=event, data=payload, id=None, start=0, end=len(raw)), raw


def named(event: str, obj: object) -> tuple[SSEEvent, bytes]:
    return frame(json.dumps(obj), event=event)


def unnamed(obj: object) -> tuple[SSEEvent, bytes]:
    return frame(json.dumps(obj))


def feed(tap: StreamTap, item: tuple[SSEEvent, bytes]) -> bytes | None:
    return tap.inspect(*item)


def source(tap: StreamTap) -> UsageSource:
    """Read through a call, so mypy does not narrow the property across ``inspect`` calls."""
    return tap.usage_source


def is_finished(tap: StreamTap) -> bool:
    return tap.finished


def assert_identity(tap: StreamTap, item: tuple[SSEEvent, bytes]) -> None:
    assert feed(tap, item) is item[1]


# -- anthropic (protocols.md §1.7) -----------------------------------------------------------

MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 472,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 2,
        },
    },
}
TEXT_START = {
    "type": "content_block_start",
    "index": 0,
    "content_block": {"type": "text", "text": ""},
}
TEXT_DELTA = {
    "type": "content_block_delta",
    "index": 0,
    "delta": {"type": "text_delta", "text": "Okay, let's check"},
}
BLOCK_STOP = {"type": "content_block_stop", "index": 0}
PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}


def message_delta(usage: Mapping[str, object]) -> dict[str, object]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": usage,
    }


def anthropic_stream() -> list[tuple[SSEEvent, bytes]]:
    return [
        named("message_start", MESSAGE_START),
        named("content_block_start", TEXT_START),
        frame('{"type": "ping"}', event="ping"),
        named("content_block_delta", TEXT_DELTA),
        named("content_block_stop", BLOCK_STOP),
        named("message_delta", message_delta({"output_tokens": 89})),
        named("message_stop", MESSAGE_STOP),
    ]


def test_anthropic_stream_passes_through_and_accounts() -> None:
    tap = StreamTap("anthropic")
    assert source(tap) == "none"
    stream = anthropic_stream()
    assert_identity(tap, stream[0])
    assert source(tap) == "partial"
    assert tap.response_id == "msg_014p7gG3wDgGV9EUtLvnow3U"
    assert tap.usage == Usage(input_tokens=472, output_tokens=2)
    for item in stream[1:5]:
        assert_identity(tap, item)
    assert source(tap) == "partial"
    assert_identity(tap, stream[5])
    assert source(tap) == "reported"
    assert not is_finished(tap)
    assert_identity(tap, stream[6])
    assert is_finished(tap)
    assert tap.usage == Usage(input_tokens=472, output_tokens=89)
    assert tap.error is None
    assert tap.malformed_events == 0
    assert tap.events == 7


def test_anthropic_cumulative_deltas_bill_the_last() -> None:
    """RELIABILITY.md U15: 10, 25, 40 → 40."""
    tap = StreamTap("anthropic")
    feed(tap, named("message_start", MESSAGE_START))
    for output in (10, 25, 40):
        feed(tap, named("message_delta", message_delta({"output_tokens": output})))
    assert tap.usage.output_tokens == 40
    assert tap.usage.input_tokens == 472


def test_anthropic_input_and_cache_on_message_delta_only() -> None:
    """PEER-BUGS 29: a compatible upstream zeroes message_start and reports on the delta."""
    start = json.loads(json.dumps(MESSAGE_START))
    start["message"]["usage"] = {"input_tokens": 0, "output_tokens": 0}
    tap = StreamTap("anthropic")
    feed(tap, named("message_start", start))
    usage = {
        "input_tokens": 12,
        "cache_read_input_tokens": 3000,
        "cache_creation_input_tokens": 500,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 7,
    }
    feed(tap, named("message_delta", message_delta(usage)))
    assert tap.usage == Usage(
        input_tokens=12, output_tokens=7, cache_read_tokens=3000, cache_write_1h_tokens=500
    )


def test_anthropic_missing_event_line_is_added() -> None:
    """DESIGN.md §4: the Anthropic SDK ignores unnamed frames, so the gateway names them."""
    tap = StreamTap("anthropic")
    data = b'{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3}}}'
    event, raw = frame(data)
    assert feed(tap, (event, raw)) == b"event: message_start\ndata: " + data + b"\n\n"
    assert tap.response_id == "msg_1"
    assert tap.usage.input_tokens == 3
    assert source(tap) == "partial"

    event, raw = frame(b'{"type":"content_block_delta","index":0}')
    assert feed(tap, (event, raw)) == b"event: content_block_delta\n" + raw
    event, raw = frame(b'{"type":"message_delta","usage":{"output_tokens":5}}')
    assert feed(tap, (event, raw)) == b"event: message_delta\n" + raw
    assert source(tap) == "reported"
    event, raw = frame(b'{"type":"message_stop"}')
    assert feed(tap, (event, raw)) == b"event: message_stop\n" + raw
    assert is_finished(tap)


def test_anthropic_missing_event_line_keeps_other_lines() -> None:
    raw = b': upstream comment\r\nid: 7\r\ndata: {"type":"ping"}\r\n\r\n'
    event = SSEEvent(event=None, data=b'{"type":"ping"}', id="7", start=0, end=len(raw))
    assert StreamTap("anthropic").inspect(event, raw) == b"event: ping\n" + raw


def test_anthropic_unnamed_frame_without_usable_type_is_untouched() -> None:
    tap = StreamTap("anthropic")
    for obj in ({"no": "type"}, {"type": 3}, {"type": ""}, {"type": "x\ny"}, [1]):
        assert_identity(tap, unnamed(obj))
    assert tap.malformed_events == 0


def test_anthropic_done_is_dropped() -> None:
    tap = StreamTap("anthropic")
    assert feed(tap, frame("[DONE]")) is None
    assert not is_finished(tap)
    assert tap.malformed_events == 0


def test_anthropic_in_band_error() -> None:
    tap = StreamTap("anthropic")
    feed(tap, named("message_start", MESSAGE_START))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert_identity(tap, named("error", error))
    assert tap.error == InBandError("overloaded_error", "Overloaded")
    assert not is_finished(tap)
    assert source(tap) == "partial"


def test_anthropic_unnamed_error_is_named_and_seen() -> None:
    tap = StreamTap("anthropic")
    event, raw = unnamed({"type": "error", "error": {"type": "api_error", "message": "boom"}})
    assert feed(tap, (event, raw)) == b"event: error\n" + raw
    assert tap.error == InBandError("api_error", "boom")


def test_anthropic_error_with_a_string_error() -> None:
    tap = StreamTap("anthropic")
    feed(tap, named("error", {"type": "error", "error": "Overloaded"}))
    assert tap.error == InBandError(None, "Overloaded")


def test_anthropic_malformed_error_event_is_still_an_error() -> None:
    tap = StreamTap("anthropic")
    assert_identity(tap, frame("upstream exploded", event="error"))
    assert tap.error == InBandError(None, "upstream exploded")
    assert tap.malformed_events == 1


def test_anthropic_malformed_frames_are_counted_and_forwarded() -> None:
    tap = StreamTap("anthropic")
    assert_identity(tap, frame('{"type":"message_delta","usage":{', event="message_delta"))
    assert_identity(tap, frame("{not json"))
    assert_identity(tap, frame(b'{"type":"message_start","x":"\xff"}', event="message_start"))
    assert tap.malformed_events == 3
    assert source(tap) == "none"


def test_anthropic_content_events_are_not_decoded() -> None:
    tap = StreamTap("anthropic")
    for name in ("content_block_start", "content_block_delta", "ping", "brand_new_event"):
        assert_identity(tap, frame('{"usage": broken', event=name))
    assert tap.malformed_events == 0
    assert source(tap) == "none"


@pytest.mark.parametrize("protocol", ["anthropic", "openai-chat", "openai-responses"])
def test_empty_data_is_forwarded_and_counted(protocol: Protocol) -> None:
    tap = StreamTap(protocol)
    raw = b": keepalive\ndata:\n\n"
    assert tap.inspect(SSEEvent(None, b"", None, 0, len(raw)), raw) is raw
    assert tap.events == 1
    assert tap.malformed_events == 0


def test_anthropic_empty_event_line_is_accounted_not_rewritten() -> None:
    tap = StreamTap("anthropic")
    assert_identity(tap, frame('{"type":"message_delta","usage":{"output_tokens":4}}', event=""))
    assert tap.usage.output_tokens == 4


# -- openai-chat (protocols.md §2.4) ---------------------------------------------------------

CHUNK = {
    "id": "chatcmpl-ABfw8A",
    "object": "chat.completion.chunk",
    "created": 1727346176,
    "model": "gpt-4o-2024-08-06",
    "system_fingerprint": "fp_7568d46099",
}
CHAT_USAGE = {
    "prompt_tokens": 76,
    "completion_tokens": 24,
    "total_tokens": 100,
    "prompt_tokens_details": {"cached_tokens": 64},
    "completion_tokens_details": {"reasoning_tokens": 8},
}


def chunk(**fields: object) -> tuple[SSEEvent, bytes]:
    return unnamed({**CHUNK, **fields})


def choice(delta: dict[str, object], finish_reason: str | None = None) -> list[object]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]


def chat_stream(*, usage_on_last_choice: bool = False) -> list[tuple[SSEEvent, bytes]]:
    stream = [
        chunk(choices=choice({"role": "assistant", "content": "", "refusal": None})),
        chunk(choices=choice({"content": "Hel"})),
        chunk(choices=choice({"content": "lo"})),
    ]
    if usage_on_last_choice:
        stream.append(chunk(choices=choice({}, "stop"), usage=CHAT_USAGE))
    else:
        stream.append(chunk(choices=choice({}, "stop")))
        stream.append(chunk(choices=[], usage=CHAT_USAGE))
    stream.append(frame("[DONE]"))
    return stream


CHAT_EXPECTED = Usage(input_tokens=12, output_tokens=24, cache_read_tokens=64, reasoning_tokens=8)


def test_chat_stream_with_usage_requested_is_untouched() -> None:
    tap = StreamTap("openai-chat")
    stream = chat_stream()
    for item in stream[:4]:
        assert_identity(tap, item)
    assert source(tap) == "none"
    assert_identity(tap, stream[4])
    assert source(tap) == "reported"
    assert tap.usage == CHAT_EXPECTED
    assert not is_finished(tap)
    assert_identity(tap, stream[5])
    assert is_finished(tap)
    assert tap.events == 6
    assert tap.response_id is None


def test_chat_forced_usage_chunk_is_dropped() -> None:
    """protocols.md §2.4, RELIABILITY.md B2: the caller did not ask, so it never sees it."""
    tap = StreamTap("openai-chat", strip_usage_chunk=True)
    stream = chat_stream()
    for item in stream[:4]:
        assert_identity(tap, item)
    assert feed(tap, stream[4]) is None
    assert tap.usage == CHAT_EXPECTED
    assert source(tap) == "reported"
    assert_identity(tap, stream[5])
    assert is_finished(tap)


def test_chat_forced_usage_chunk_without_choices_key_is_dropped() -> None:
    tap = StreamTap("openai-chat", strip_usage_chunk=True)
    assert feed(tap, unnamed({"id": "c", "usage": CHAT_USAGE})) is None
    assert tap.usage == CHAT_EXPECTED


def test_chat_usage_riding_on_a_choice_is_accounted() -> None:
    """PEER-BUGS 28: usage on a chunk that still has choices is final usage."""
    tap = StreamTap("openai-chat")
    for item in chat_stream(usage_on_last_choice=True):
        assert_identity(tap, item)
    assert tap.usage == CHAT_EXPECTED
    assert source(tap) == "reported"
    assert is_finished(tap)


def test_chat_forced_usage_is_cut_out_of_a_chunk_with_choices() -> None:
    tap = StreamTap("openai-chat", strip_usage_chunk=True)
    event, raw = frame(
        '{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
        '"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2},'
        '"note":"\u00e9"}'
    )
    assert tap.inspect(event, raw) == (
        b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
        b'"finish_reason":"stop"}],"note":"\xc3\xa9"}\n\n'
    )
    assert tap.usage == Usage(input_tokens=5, output_tokens=2)


def test_chat_null_usage_is_left_alone() -> None:
    tap = StreamTap("openai-chat", strip_usage_chunk=True)
    assert_identity(tap, chunk(choices=choice({"content": "x"}), usage=None))
    assert_identity(tap, chunk(choices=[], usage=None))
    assert source(tap) == "none"


def test_chat_zero_usage_is_reported() -> None:
    """RELIABILITY.md U16: explicit zeros are a report, not a missing usage."""
    tap = StreamTap("openai-chat")
    feed(tap, chunk(choices=[], usage={"prompt_tokens": 0, "completion_tokens": 0}))
    assert tap.usage == Usage()
    assert source(tap) == "reported"


def test_chat_in_band_error() -> None:
    tap = StreamTap("openai-chat")
    feed(tap, chat_stream()[0])
    error = {"message": "The server had an error", "type": "server_error", "code": None}
    assert_identity(tap, unnamed({"error": error}))
    assert tap.error == InBandError("server_error", "The server had an error")
    assert not is_finished(tap)


def test_chat_error_string_and_falsy_errors() -> None:
    tap = StreamTap("openai-chat")
    assert_identity(tap, unnamed({"error": None}))
    assert_identity(tap, unnamed({"error": {}}))
    assert tap.error is None
    assert_identity(tap, unnamed({"error": "rate limited"}))
    assert tap.error == InBandError(None, "rate limited")


def test_chat_malformed_usage_chunk_is_forwarded_even_when_stripping() -> None:
    tap = StreamTap("openai-chat", strip_usage_chunk=True)
    assert_identity(tap, frame('{"choices":[],"usage":{"prompt_tokens":'))
    assert_identity(tap, frame('{"error": nope'))
    assert tap.malformed_events == 2
    assert source(tap) == "none"


def test_chat_ordinary_chunks_are_not_decoded() -> None:
    tap = StreamTap("openai-chat")
    assert_identity(tap, frame('{"choices": [ this is not json'))
    # Some upstreams send `"usage":null` on every chunk: no decode for those either.
    assert_identity(tap, frame('{"usage":null,"choices": [ not json'))
    assert_identity(tap, frame('{"usage": null, "choices": [ not json'))
    assert tap.malformed_events == 0


# -- openai-responses (protocols.md §3.6) ----------------------------------------------------

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1751642570,
    "status": "in_progress",
    "model": "gpt-4o",
    "output": [],
    "usage": None,
    "error": None,
    "incomplete_details": None,
}
RESPONSES_USAGE = {
    "input_tokens": 5,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 1,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 6,
}
MESSAGE_ITEM = {
    "id": "msg_1",
    "type": "message",
    "status": "in_progress",
    "role": "assistant",
    "content": [],
}


def responses_event(
    kind: str, seq: int, *, event: bool = True, **fields: object
) -> tuple[SSEEvent, bytes]:
    obj = {"type": kind, "sequence_number": seq, **fields}
    return named(kind, obj) if event else unnamed(obj)


def terminal(
    kind: str, seq: int, *, event: bool = True, **response: object
) -> tuple[SSEEvent, bytes]:
    return responses_event(kind, seq, event=event, response={**RESPONSE, **response})


def responses_stream() -> list[tuple[SSEEvent, bytes]]:
    return [
        responses_event("response.created", 0, response=RESPONSE),
        responses_event("response.in_progress", 1, response=RESPONSE),
        responses_event("response.output_item.added", 2, output_index=0, item=MESSAGE_ITEM),
        responses_event(
            "response.output_text.delta",
            3,
            item_id="msg_1",
            output_index=0,
            content_index=0,
            delta="Hi",
            logprobs=[],
        ),
        responses_event("response.output_item.done", 4, output_index=0, item=MESSAGE_ITEM),
    ]


def test_responses_stream_completed() -> None:
    tap = StreamTap("openai-responses")
    for item in responses_stream():
        assert_identity(tap, item)
    assert tap.response_id == "resp_1"
    assert source(tap) == "none"
    assert not is_finished(tap)
    assert_identity(
        tap, terminal("response.completed", 5, status="completed", usage=RESPONSES_USAGE)
    )
    assert is_finished(tap)
    assert source(tap) == "reported"
    assert tap.usage == Usage(input_tokens=5, output_tokens=1)
    assert tap.error is None
    assert tap.events == 6


def test_responses_usage_in_incomplete() -> None:
    """RELIABILITY.md U17."""
    tap = StreamTap("openai-responses")
    usage = {**RESPONSES_USAGE, "input_tokens": 900, "output_tokens": 4096}
    feed(tap, terminal("response.incomplete", 9, status="incomplete", usage=usage))
    assert is_finished(tap)
    assert tap.error is None
    assert source(tap) == "reported"
    assert tap.usage == Usage(input_tokens=900, output_tokens=4096)


def test_responses_usage_and_error_in_failed() -> None:
    """RELIABILITY.md U17; protocols.md §3.6: response.error = {code, message}."""
    tap = StreamTap("openai-responses")
    error = {"code": "server_error", "message": "The model failed."}
    feed(tap, terminal("response.failed", 3, status="failed", usage=RESPONSES_USAGE, error=error))
    assert is_finished(tap)
    assert source(tap) == "reported"
    assert tap.usage.input_tokens == 5
    assert tap.error == InBandError("server_error", "The model failed.")


def test_responses_failed_without_error_object_is_still_an_error() -> None:
    tap = StreamTap("openai-responses")
    feed(tap, terminal("response.failed", 3, status="failed"))
    assert is_finished(tap)
    assert tap.error is not None
    assert source(tap) == "none"


def test_responses_nested_error_then_failed_keeps_the_first() -> None:
    tap = StreamTap("openai-responses")
    nested = {
        "type": "too_many_requests",
        "code": "too_many_requests",
        "message": "Slow down",
        "param": None,
    }
    assert_identity(tap, responses_event("error", 2, error=nested))
    assert tap.error == InBandError("too_many_requests", "Slow down")
    assert not is_finished(tap)
    feed(tap, terminal("response.failed", 3, error={"code": "other", "message": "x"}))
    assert tap.error == InBandError("too_many_requests", "Slow down")
    assert is_finished(tap)


def test_responses_flat_error() -> None:
    tap = StreamTap("openai-responses")
    feed(tap, responses_event("error", 2, code="rate_limit_exceeded", message="Slow", param=None))
    assert tap.error == InBandError("rate_limit_exceeded", "Slow")


def test_responses_unnamed_frames_dispatch_on_type() -> None:
    tap = StreamTap("openai-responses")
    assert_identity(tap, terminal("response.created", 0, event=False))
    assert tap.response_id == "resp_1"
    assert_identity(tap, responses_event("response.output_text.delta", 1, event=False, delta="x"))
    assert_identity(
        tap,
        terminal("response.completed", 2, event=False, status="completed", usage=RESPONSES_USAGE),
    )
    assert is_finished(tap)
    assert source(tap) == "reported"
    assert tap.malformed_events == 0


def test_responses_malformed_terminal_still_finishes() -> None:
    tap = StreamTap("openai-responses")
    assert_identity(
        tap, frame('{"type":"response.completed","response":{', event="response.completed")
    )
    assert is_finished(tap)
    assert tap.malformed_events == 1
    assert source(tap) == "none"


def test_responses_other_events_are_not_decoded() -> None:
    tap = StreamTap("openai-responses")
    assert_identity(tap, frame('{"broken', event="response.output_text.delta"))
    assert_identity(tap, frame("[DONE]"))
    assert tap.malformed_events == 0
    assert not is_finished(tap)


# -- large events (issue 6: a 64 MiB event is held once) ------------------------------------


class UnreadData(SSEEvent):
    """An event whose ``data`` must not be read: the tap forwards it on its name alone."""

    __slots__ = ()

    def __init__(self, event: str, *, end: int) -> None:
        for name, value in (("event", event), ("id", None), ("start", 0), ("end", end)):
            object.__setattr__(self, name, value)

    @property
    def data(self) -> bytes:
        raise AssertionError(f"the data of a {self.event} event was read")


@pytest.mark.parametrize(
    ("protocol", "name"),
    [
        ("anthropic", "content_block_start"),
        ("anthropic", "content_block_delta"),
        ("anthropic", "content_block_stop"),
        ("anthropic", "ping"),
        ("anthropic", "message_stop"),
        ("anthropic", "some_future_event"),
        ("openai-responses", "response.output_text.delta"),
        ("openai-responses", "response.function_call_arguments.delta"),
        ("openai-responses", "response.output_item.done"),
    ],
)
def test_events_without_usage_or_errors_are_forwarded_unread(protocol: Protocol, name: str) -> None:
    # Their data may be a 64 MiB delta: reading it would join a second copy.
    raw = b"event: " + name.encode() + b"\ndata: {}\n\n"
    tap = StreamTap(protocol)
    assert tap.inspect(UnreadData(name, end=len(raw)), raw) is raw
    assert tap.events == 1


def big_delta(size: int, *, named: bool = True) -> bytes:
    text = b"lorem ipsum " * (size // 12)
    head = b"event: content_block_delta\n" if named else b""
    delta = b'{"type":"text_delta","text":"' + text + b'"}'
    return head + b'data: {"type":"content_block_delta","index":0,"delta":' + delta + b"}\n\n"


CLOSING: Final = b"".join(
    named(name, obj)[1]
    for name, obj in [
        ("content_block_stop", BLOCK_STOP),
        ("message_delta", message_delta({"output_tokens": 9})),
        ("message_stop", MESSAGE_STOP),
    ]
)


def test_a_large_unnamed_frame_among_others_is_named() -> None:
    # forward lends the large frame as a view; the rewrite still gets every byte of it.
    big = big_delta(3 << 20, named=False)
    raw, events = SSEDecoder().feed(big + CLOSING)
    tap = StreamTap("anthropic")
    assert tap.forward(raw, events) == b"event: content_block_delta\n" + big + CLOSING
    assert is_finished(tap)
    assert tap.usage.output_tokens == 9


def test_a_large_event_goes_through_decoder_and_tap_held_once() -> None:
    # 16 MiB in 64 KiB reads, its end in the same read as the closing events: the decoder
    # holds it once (no bytearray-to-bytes copy), parses it without copying its data, and
    # the tap forwards it without slicing it out of that read. One copy more would be 2x.
    event = big_delta(16 << 20)
    stream = event + CLOSING
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    assert len(chunks[-1]) > len(CLOSING)
    decoder = SSEDecoder()
    tap = StreamTap("anthropic")
    forwarded = 0
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for chunk in chunks:
            raw, events = decoder.feed(chunk)
            out = tap.forward(raw, events)
            assert out is raw
            forwarded += len(out)
            del raw, events, out
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert forwarded == len(stream)
    assert is_finished(tap)
    assert tap.usage.output_tokens == 9
    assert peak < 1.25 * len(event)


# -- non-streamed bodies ---------------------------------------------------------------------


def test_usage_from_body() -> None:
    anthropic = {"id": "msg_1", "usage": {"input_tokens": 3, "output_tokens": 9}}
    assert usage_from_body("anthropic", json.dumps(anthropic).encode()) == (
        Usage(input_tokens=3, output_tokens=9),
        "reported",
    )
    chat = {"id": "c", "choices": [], "usage": CHAT_USAGE}
    assert usage_from_body("openai-chat", json.dumps(chat).encode()) == (CHAT_EXPECTED, "reported")
    responses = {**RESPONSE, "usage": RESPONSES_USAGE}
    assert usage_from_body("openai-responses", json.dumps(responses).encode()) == (
        Usage(input_tokens=5, output_tokens=1),
        "reported",
    )


def test_usage_from_body_without_usage() -> None:
    for protocol in ("anthropic", "openai-chat", "openai-responses"):
        for body in (b"", b"{", b"[]", b'{"usage": null}', b'{"error": {"message": "x"}}'):
            assert usage_from_body(protocol, body) == (Usage(), "none")


# -- properties ------------------------------------------------------------------------------

_COUNTS = st.integers(min_value=0, max_value=10**7)
_TEXT = st.text(max_size=20)


def _non_negative(usage: Usage) -> bool:
    return (
        min(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_5m_tokens,
            usage.cache_write_1h_tokens,
            usage.reasoning_tokens,
        )
        >= 0
    )


def _maybe_unnamed(kind: str, obj: Mapping[str, object], has_event: bool) -> tuple[SSEEvent, bytes]:
    return named(kind, obj) if has_event else unnamed(obj)


@st.composite
def anthropic_frames(draw: st.DrawFn) -> tuple[list[tuple[SSEEvent, bytes]], int]:
    start_output = draw(_COUNTS)
    start = json.loads(json.dumps(MESSAGE_START))
    start["message"]["usage"]["output_tokens"] = start_output
    frames = [_maybe_unnamed("message_start", start, draw(st.booleans()))]
    last_output = start_output
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        has_event = draw(st.booleans())
        match draw(st.sampled_from(["text", "ping", "delta", "done", "error"])):
            case "text":
                delta = {**TEXT_DELTA, "delta": {"type": "text_delta", "text": draw(_TEXT)}}
                frames.append(_maybe_unnamed("content_block_delta", delta, has_event))
            case "ping":
                frames.append(_maybe_unnamed("ping", PING, has_event))
            case "delta":
                last_output = draw(_COUNTS)
                usage = {"output_tokens": last_output, "input_tokens": draw(_COUNTS)}
                frames.append(_maybe_unnamed("message_delta", message_delta(usage), has_event))
            case "done":
                frames.append(frame("[DONE]"))
            case _:
                error = {"type": "error", "error": {"type": "api_error", "message": draw(_TEXT)}}
                frames.append(_maybe_unnamed("error", error, has_event))
    frames.append(_maybe_unnamed("message_stop", MESSAGE_STOP, draw(st.booleans())))
    return frames, last_output


@given(anthropic_frames())
def test_anthropic_random_streams_bill_the_last_cumulative_output(
    case: tuple[list[tuple[SSEEvent, bytes]], int],
) -> None:
    frames, last_output = case
    tap = StreamTap("anthropic")
    for event, raw in frames:
        out = tap.inspect(event, raw)
        if event.data == b"[DONE]":
            assert out is None
        elif event.event is None:
            assert out is not None
            assert out.startswith(b"event: ")
            assert out.endswith(raw)
        else:
            assert out is raw
        assert _non_negative(tap.usage)
    assert tap.usage.output_tokens == last_output
    assert is_finished(tap)
    assert tap.malformed_events == 0


@st.composite
def chat_frames(draw: st.DrawFn) -> list[tuple[SSEEvent, bytes]]:
    frames = []
    for _ in range(draw(st.integers(min_value=0, max_value=10))):
        usage = draw(
            st.one_of(
                st.just(None),
                st.fixed_dictionaries(
                    {
                        "prompt_tokens": _COUNTS,
                        "completion_tokens": _COUNTS,
                        "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": _COUNTS}),
                    }
                ),
            )
        )
        choices = draw(st.sampled_from([[], choice({"content": "x"})]))
        if draw(st.booleans()):
            frames.append(chunk(choices=choices, usage=usage))
        else:
            frames.append(chunk(choices=choices))
    frames.append(frame("[DONE]"))
    return frames


@given(chat_frames(), st.booleans())
def test_chat_random_streams_never_leak_stripped_usage(
    frames: list[tuple[SSEEvent, bytes]], strip: bool
) -> None:
    tap = StreamTap("openai-chat", strip_usage_chunk=strip)
    for event, raw in frames:
        out = tap.inspect(event, raw)
        assert _non_negative(tap.usage)
        if out is None:
            continue
        if strip and out != b"data: [DONE]\n\n":
            sent = json.loads(out.removeprefix(b"data: "))
            assert not isinstance(sent.get("usage"), dict)
    assert is_finished(tap)
    assert tap.malformed_events == 0


@st.composite
def responses_frames(draw: st.DrawFn) -> list[tuple[SSEEvent, bytes]]:
    frames = [terminal("response.created", 0, event=draw(st.booleans()))]
    for seq in range(1, draw(st.integers(min_value=1, max_value=8))):
        kind = draw(
            st.sampled_from(
                [
                    "response.output_text.delta",
                    "error",
                    "response.completed",
                    "response.incomplete",
                    "response.failed",
                ]
            )
        )
        usage = draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "input_tokens": _COUNTS,
                        "output_tokens": _COUNTS,
                        "input_tokens_details": st.fixed_dictionaries({"cached_tokens": _COUNTS}),
                    }
                ),
            )
        )
        if kind.startswith("response.") and kind != "response.output_text.delta":
            frames.append(terminal(kind, seq, event=draw(st.booleans()), usage=usage))
        else:
            frames.append(responses_event(kind, seq, event=draw(st.booleans()), delta="x"))
    return frames


@given(responses_frames())
def test_responses_random_streams_never_raise(frames: list[tuple[SSEEvent, bytes]]) -> None:
    tap = StreamTap("openai-responses")
    for event, raw in frames:
        assert tap.inspect(event, raw) is raw
        assert _non_negative(tap.usage)
    assert tap.response_id == "resp_1"
    assert tap.events == len(frames)


@given(st.sampled_from(["anthropic", "openai-chat", "openai-responses"]), st.binary(max_size=64))
def test_garbage_data_never_raises(protocol: Protocol, data: bytes) -> None:
    tap = StreamTap(protocol, strip_usage_chunk=True)
    for name in (None, "message_start", "message_delta", "error", "response.completed"):
        event = SSEEvent(event=name, data=data, id=None, start=0, end=0)
        tap.inspect(event, b"data: x\n\n")
        assert _non_negative(tap.usage)
