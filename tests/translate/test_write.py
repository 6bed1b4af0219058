"""The writers' shared behaviour: the factory, ids, the neutral grammar, ending a stream.

Also the helpers the other ``test_write_*`` modules import: :func:`write` runs a writer over
neutral events, :func:`parse` reads its bytes back with the gateway's own SSE decoder, and
:func:`judge` runs the protocol's checker over the parsed frames.
"""

from __future__ import annotations

import json
from typing import Final

import pytest

from trio_gateway._errors import UpstreamStatusError, UpstreamTimeout
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._protocol._sse import SSEDecoder
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._check import (
    AnthropicStreamCheck,
    ChatStreamCheck,
    ResponsesStreamCheck,
    StreamCheck,
)
from trio_gateway._translate._events import (
    BlockStart,
    BlockStop,
    Delta,
    Failure,
    Finish,
    NeutralEvent,
    Start,
    TranslationError,
)
from trio_gateway._translate._write import Writer, make_writer
from trio_gateway._translate._write_base import id_token, sanitize_tool_id, tool_input

REQUEST_ID: Final = "req_0123abcd"
MODEL: Final = "client-model"
CREATED: Final = 1_760_000_000

Frame = tuple[str | None, dict[str, object] | str]

TEXT: Final[list[NeutralEvent]] = [
    Start(upstream_id="up_1", model="upstream-model"),
    BlockStart("text"),
    Delta("text", "Hel"),
    Delta("text", "lo"),
    BlockStop(),
    Finish("end_turn", usage=Usage(input_tokens=10, output_tokens=2)),
]
"""A plain text answer."""

TOOL: Final[list[NeutralEvent]] = [
    Start(),
    BlockStart("tool_use", tool_id="toolu_01", tool_name="get_weather"),
    Delta("tool_args", '{"city":'),
    Delta("tool_args", '"Paris"}'),
    BlockStop(),
    Finish("tool_use", usage=Usage(input_tokens=20, output_tokens=9)),
]
"""A bare tool call."""

MIXED_USAGE: Final = Usage(
    input_tokens=3,
    output_tokens=50,
    cache_read_tokens=100,
    cache_write_5m_tokens=20,
    cache_write_1h_tokens=10,
    reasoning_tokens=12,
)

MIXED: Final[list[NeutralEvent]] = [
    Start(usage=Usage(input_tokens=3, output_tokens=1, cache_read_tokens=100)),
    BlockStart("thinking"),
    Delta("thinking", "Let me"),
    Delta("thinking", " think."),
    Delta("signature", "sig"),
    BlockStop(),
    BlockStart("text"),
    Delta("text", "Checking."),
    BlockStop(),
    BlockStart("text"),  # stays empty: no client sees it
    BlockStop(),
    BlockStart("tool_use", tool_id="call:7", tool_name="get_weather"),
    Delta("tool_args", ""),
    Delta("tool_args", '{"city":"Paris"}'),
    BlockStop(),
    Finish("tool_use", usage=MIXED_USAGE),
]
"""Thinking, text, an empty text block and a tool call, with cache tiers and reasoning."""

PARTIAL: Final[list[NeutralEvent]] = [
    Start(),
    BlockStart("text"),
    Delta("text", "Hi"),
    Failure("overloaded_error", "Overloaded", status=529),
]
"""An upstream error after some output, inside the open text block."""


def write(
    protocol: Protocol,
    events: list[NeutralEvent],
    *,
    include_usage: bool = True,
    stream: bool = True,
) -> tuple[Writer, bytes]:
    """Feed ``events`` to a fresh writer; return it and everything it wrote."""
    writer = make_writer(
        protocol,
        request_id=REQUEST_ID,
        model=MODEL,
        created=CREATED,
        include_usage=include_usage,
        stream=stream,
    )
    return writer, b"".join(writer.feed(event) for event in events)


def parse(raw: bytes) -> list[Frame]:
    """The frames in ``raw``, decoded as a client would: ``(event name, JSON or "[DONE]")``."""
    decoder = SSEDecoder()
    wire, events = decoder.feed(raw)
    assert wire == raw
    assert decoder.close() == b""
    frames: list[Frame] = []
    for event in events:
        text = event.data.decode("utf-8")
        if text == "[DONE]":
            frames.append((event.event, text))
            continue
        value: object = json.loads(text)
        assert isinstance(value, dict)
        frames.append((event.event, value))
    return frames


def checker(protocol: Protocol, *, include_usage: bool | None = None) -> StreamCheck:
    """A fresh checker for ``protocol``."""
    match protocol:
        case "anthropic":
            return AnthropicStreamCheck()
        case "openai-chat":
            return ChatStreamCheck(include_usage=include_usage)
        case "openai-responses":
            return ResponsesStreamCheck()


def judge(protocol: Protocol, frames: list[Frame], *, include_usage: bool | None = None) -> bool:
    """Run the protocol's checker over ``frames``; return whether the stream ended."""
    check = checker(protocol, include_usage=include_usage)
    for name, data in frames:
        check.observe(name, data)
    return check.ended


def dicts(frames: list[Frame]) -> list[dict[str, object]]:
    """The JSON objects of ``frames`` (``[DONE]`` left out)."""
    return [data for _, data in frames if isinstance(data, dict)]


def dig(value: object, *path: str | int) -> object:
    """``value[path[0]][path[1]]…``, or None where the path does not exist."""
    for key in path:
        if isinstance(key, str) and isinstance(value, dict):
            value = value.get(key)
        elif isinstance(key, int) and isinstance(value, list) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def streamed_text(protocol: Protocol, frames: list[Frame]) -> str:
    """The answer text a client reassembles from ``frames`` (Anthropic: refusals included)."""
    pieces: list[object] = []
    for data in dicts(frames):
        match protocol:
            case "anthropic":
                if dig(data, "delta", "type") == "text_delta":
                    pieces.append(dig(data, "delta", "text"))
            case "openai-chat":
                pieces.append(dig(data, "choices", 0, "delta", "content"))
            case "openai-responses":
                if data["type"] == "response.output_text.delta":
                    pieces.append(data["delta"])
    return "".join(piece for piece in pieces if isinstance(piece, str))


# --- the factory and ids ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_id", "token"),
    [
        ("req_0123abcd", "0123abcd"),
        ("0123abcd", "0123abcd"),
        ("req_ab-c.d\n", "abcd"),
        ("req_", "0"),
        ("", "0"),
    ],
)
def test_id_token(request_id: str, token: str) -> None:
    assert id_token(request_id) == token


@pytest.mark.parametrize(
    ("protocol", "expected_id"),
    [
        ("anthropic", "msg_0123abcd"),
        ("openai-chat", "chatcmpl-0123abcd"),
        ("openai-responses", "resp_0123abcd"),
    ],
)
def test_final_body_id_and_model_are_the_clients(protocol: Protocol, expected_id: str) -> None:
    writer, _ = write(protocol, TEXT)
    body = writer.final_body()
    assert body["id"] == expected_id
    assert body["model"] == MODEL  # not Start.model: clients see their own model name


def test_ids_are_stable_for_a_request_id() -> None:
    for protocol in PROTOCOLS:
        assert write(protocol, MIXED)[1] == write(protocol, MIXED)[1]


@pytest.mark.parametrize(
    ("tool_id", "expected"),
    [("toolu_01A-b", "toolu_01A-b"), ("call:7.x", "call_7_x"), ("", "fallback")],
)
def test_sanitize_tool_id(tool_id: str, expected: str) -> None:
    assert sanitize_tool_id(tool_id, "fallback") == expected


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"city":"Paris"}', {"city": "Paris"}),
        ("", {}),
        ("  ", {}),
        ('{"city":', {"_raw": '{"city":'}),
        ("[1,2]", {"_raw": "[1,2]"}),
        ("[" * 100_000, {"_raw": "[" * 100_000}),
    ],
)
def test_tool_input(arguments: str, expected: dict[str, object]) -> None:
    assert tool_input(arguments) == expected


# --- the neutral grammar ----------------------------------------------------------------


BROKEN_NEUTRAL: Final[list[tuple[str, list[NeutralEvent]]]] = [
    ("block before Start", [BlockStart("text")]),
    ("Finish before Start", [Finish("end_turn")]),
    ("delta before Start", [Delta("text", "x")]),
    ("second Start", [Start(), Start()]),
    ("delta outside a block", [Start(), Delta("text", "x")]),
    ("stop outside a block", [Start(), BlockStop()]),
    ("nested block", [Start(), BlockStart("text"), BlockStart("text")]),
    ("thinking delta in text", [Start(), BlockStart("text"), Delta("thinking", "x")]),
    ("args in thinking", [Start(), BlockStart("thinking"), Delta("tool_args", "{}")]),
    ("delta in redacted", [Start(), BlockStart("redacted_thinking"), Delta("thinking", "x")]),
    ("after Finish", [Start(), Finish("end_turn"), Start()]),
    ("after Failure", [Start(), Failure(None, "boom"), BlockStart("text")]),
    ("Finish after Finish", [Start(), Finish("end_turn"), Finish("end_turn")]),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "events", [e for _, e in BROKEN_NEUTRAL], ids=[n for n, _ in BROKEN_NEUTRAL]
)
def test_a_broken_neutral_stream_raises_and_fail_still_ends_it(
    protocol: Protocol, events: list[NeutralEvent]
) -> None:
    writer = make_writer(protocol, request_id=REQUEST_ID, model=MODEL, created=CREATED)
    raw = b"".join(writer.feed(event) for event in events[:-1])
    with pytest.raises(TranslationError, match="neutral"):
        writer.feed(events[-1])
    raw += writer.fail(UpstreamStatusError("broken", status=502))
    # Whatever was written, plus the error frames (if it had not ended), is a whole stream.
    assert judge(protocol, parse(raw))
    assert writer.ended


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_finish_inside_an_open_block_closes_it(protocol: Protocol) -> None:
    _, closed = write(protocol, [*TEXT[:4], Finish("end_turn")])
    _, explicit = write(protocol, [*TEXT[:5], Finish("end_turn")])
    assert closed == explicit


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failure_renders_like_fail(protocol: Protocol) -> None:
    writer, raw = write(protocol, PARTIAL)
    twin, head = write(protocol, PARTIAL[:-1])
    assert raw == head + twin.fail(UpstreamStatusError("Overloaded", status=529))
    assert writer.ended
    assert twin.ended


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fail_after_the_end_writes_nothing(protocol: Protocol) -> None:
    writer, raw = write(protocol, TEXT)
    assert writer.ended
    assert writer.fail(UpstreamTimeout("late", phase="data_interval")) == b""
    failed, _ = write(protocol, PARTIAL)
    assert failed.fail(UpstreamTimeout("late", phase="data_interval")) == b""
    assert judge(protocol, parse(raw))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ended_turns_true_at_the_terminal_event(protocol: Protocol) -> None:
    writer = make_writer(protocol, request_id=REQUEST_ID, model=MODEL, created=CREATED)
    for event in TEXT[:-1]:
        writer.feed(event)
        assert not writer.ended
    writer.feed(TEXT[-1])
    assert writer.ended


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_final_body_needs_a_finish(protocol: Protocol) -> None:
    writer, _ = write(protocol, PARTIAL, stream=False)
    with pytest.raises(TranslationError, match="before a Finish"):
        writer.final_body()
    unfinished, _ = write(protocol, TEXT[:-1], stream=False)
    with pytest.raises(TranslationError, match="before a Finish"):
        unfinished.final_body()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_non_streaming_writer_renders_nothing(protocol: Protocol) -> None:
    writer = make_writer(
        protocol, request_id=REQUEST_ID, model=MODEL, created=CREATED, stream=False
    )
    assert [writer.feed(event) for event in MIXED] == [b""] * len(MIXED)
    assert writer.ended
    streamed, _ = write(protocol, MIXED)
    assert writer.final_body() == streamed.final_body()
    failing = make_writer(
        protocol, request_id=REQUEST_ID, model=MODEL, created=CREATED, stream=False
    )
    assert [failing.feed(event) for event in PARTIAL] == [b""] * len(PARTIAL)
    assert failing.ended


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_frames_are_compact_lf_only_and_end_with_a_blank_line(protocol: Protocol) -> None:
    _, raw = write(protocol, [*MIXED[:-1], Finish("end_turn")])
    assert b"\r" not in raw
    assert raw.endswith(b"\n\n")
    for frame in raw.split(b"\n\n")[:-1]:
        lines = frame.split(b"\n")
        assert lines[-1].startswith(b"data: ")
        assert b": " not in lines[-1][len(b"data: ") :]  # compact JSON, no spaces after ':'
        named = protocol != "openai-chat"
        assert len(lines) == (2 if named else 1)
        if named:
            assert lines[0].startswith(b"event: ")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_line_separators_in_text_stay_inside_the_json(protocol: Protocol) -> None:
    text = "a\u2028b\u0085c\r\nd\u2029"
    events: list[NeutralEvent] = [Start(), BlockStart("text"), Delta("text", text), BlockStop()]
    _, raw = write(protocol, [*events, Finish("end_turn")])
    for separator in ("\u2028", "\u2029", "\u0085", "\r"):
        assert separator.encode() not in raw
    frames = parse(raw)
    assert judge(protocol, frames)
    assert streamed_text(protocol, frames) == text
