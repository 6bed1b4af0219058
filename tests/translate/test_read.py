"""The reader factory, the shared reader rules, and the helpers the other reader tests use.

``check_neutral_stream`` is the well-formedness grammar of ``_translate/_events.py``; the
reader tests run every output through it, and the tests at the bottom prove it rejects each
kind of malformed stream (so passing it means something).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import pytest

from trio_gateway._mock._render import Answer, Dialect, Frame, build_answer, encode_frames
from trio_gateway._mock._render_anthropic import anthropic_frames
from trio_gateway._mock._render_chat import chat_frames
from trio_gateway._mock._render_responses import responses_frames
from trio_gateway._mock._scenario import parse_scenario
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._sse import SSEDecoder, SSEEvent
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._events import (
    BlockKind,
    BlockStart,
    BlockStop,
    Delta,
    DeltaKind,
    Failure,
    Finish,
    NeutralEvent,
    Start,
)
from trio_gateway._translate._read import (
    AnthropicReader,
    ChatReader,
    Reader,
    ResponsesReader,
    failure_status,
    make_reader,
)

DELTA_BLOCK: Final[Mapping[DeltaKind, BlockKind]] = {
    "text": "text",
    "refusal": "text",
    "thinking": "thinking",
    "signature": "thinking",
    "tool_args": "tool_use",
}
MODEL: Final = "mock-model"

# --- helpers shared by the reader tests ------------------------------------------------------


def check_neutral_stream(events: Sequence[NeutralEvent], *, complete: bool = True) -> None:
    """Assert ``events`` is a well-formed neutral stream (``_events`` module docs):
    ``Start (BlockStart Delta* BlockStop)* (Finish | Failure)``, where a ``Failure`` may
    also come first or inside an open block, deltas match their block's kind, and (reader
    policy) no delta is empty.

    Args:
        events: the stream, or (``complete=False``) a prefix of one.
        complete: also require the terminal event at the end.

    Raises:
        AssertionError: naming the first offending event.
    """
    started = ended = False
    open_kind: BlockKind | None = None
    for i, event in enumerate(events):
        assert not ended, f"event {i} {event!r} follows the terminal event"
        match event:
            case Start():
                assert not started, f"event {i}: a second Start"
                started = True
            case BlockStart(kind=kind):
                assert started, f"event {i}: BlockStart before Start"
                assert open_kind is None, f"event {i}: BlockStart inside an open {open_kind}"
                if kind != "tool_use":
                    assert event.tool_id == event.tool_name == "", f"event {i}: tool fields"
                if kind != "redacted_thinking":
                    assert event.data == "", f"event {i}: data on a {kind} block"
                if kind != "thinking":
                    assert event.signature == "", f"event {i}: signature on a {kind} block"
                open_kind = kind
            case Delta(kind=kind, text=text):
                assert open_kind is not None, f"event {i}: Delta outside a block"
                assert DELTA_BLOCK[kind] == open_kind, f"event {i}: {kind} in a {open_kind}"
                assert text, f"event {i}: an empty delta"
            case BlockStop():
                assert open_kind is not None, f"event {i}: BlockStop without a block"
                open_kind = None
            case Finish():
                assert started, f"event {i}: Finish before Start"
                assert open_kind is None, f"event {i}: Finish inside an open {open_kind}"
                ended = True
            case Failure():
                ended = True
    if complete:
        assert ended, "the stream has no terminal event"


def decode(data: bytes, *, sizes: Iterable[int] = ()) -> list[SSEEvent]:
    """Decode ``data`` through :class:`SSEDecoder`, cut into chunks of ``sizes`` (cycled;
    the whole body at once when empty)."""
    decoder = SSEDecoder()
    steps = list(sizes) or [len(data) or 1]
    events: list[SSEEvent] = []
    pos = 0
    step = 0
    while pos < len(data):
        size = max(1, steps[step % len(steps)])
        events += decoder.feed(data[pos : pos + size])[1]
        pos += size
        step += 1
    decoder.close()
    return events


def read(reader: Reader | Protocol, events: Iterable[SSEEvent]) -> list[NeutralEvent]:
    """Feed every event, then end the stream; check that ``feed`` says nothing once done."""
    if isinstance(reader, str):
        reader = make_reader(reader)
    out: list[NeutralEvent] = []
    for event in events:
        was_done = reader.done
        produced = reader.feed(event)
        if was_done:
            assert produced == []
        out += produced
    if not reader.done:
        out += reader.end_of_stream()
    return out


def sse(obj: object, *, event: str | None = None) -> bytes:
    """One SSE frame of JSON ``obj`` (a ``str`` is sent verbatim)."""
    data = obj if isinstance(obj, str) else json.dumps(obj)
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {data}\n\n".encode()


def events_of(frames: Iterable[bytes]) -> list[SSEEvent]:
    return decode(b"".join(frames))


_FRAMES: Final = {
    "anthropic": anthropic_frames,
    "openai-chat": chat_frames,
    "openai-responses": responses_frames,
}


def mock_answer(
    dialect: Dialect,
    spec: str,
    *,
    include_usage: bool = True,
    extra: Mapping[str, object] | None = None,
) -> Answer:
    """The mock upstream's answer to a streamed request for scenario ``spec``; ``extra``
    adds request body fields (e.g. Responses ``include``)."""
    body: dict[str, object] = {"model": MODEL, "stream": True, **(extra or {})}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return build_answer(parse_scenario(spec), dialect=dialect, number=1, body=body, headers=[])


def mock_stream(
    dialect: Dialect,
    spec: str,
    *,
    include_usage: bool = True,
    extra: Mapping[str, object] | None = None,
) -> bytes:
    """The mock upstream's native stream body for scenario ``spec``."""
    answer = mock_answer(dialect, spec, include_usage=include_usage, extra=extra)
    plan = answer.plan
    frames: list[Frame] = _FRAMES[dialect](answer)
    encoded = encode_frames(frames, crlf=plan.has("crlf"), malformed_at=plan.malformed_at)
    return b"".join(encoded)


def ledger_usage(answer: Answer, dialect: Dialect, *, output: int | None = None) -> Usage:
    """The mock's usage in ledger semantics: OpenAI reports no cache-write tiers, and the
    mock's Anthropic usage has no thinking-token split."""
    usage = answer.usage
    anthropic = dialect == "anthropic"
    return Usage(
        input_tokens=usage.uncached,
        output_tokens=usage.output if output is None else output,
        cache_read_tokens=usage.cache_read,
        cache_write_5m_tokens=usage.cache_write_5m if anthropic else 0,
        cache_write_1h_tokens=usage.cache_write_1h if anthropic else 0,
        reasoning_tokens=0 if anthropic else usage.reasoning,
    )


def texts(events: Iterable[NeutralEvent], kind: DeltaKind) -> str:
    """All delta text of one kind, concatenated."""
    return "".join(e.text for e in events if isinstance(e, Delta) and e.kind == kind)


def shape(events: Iterable[NeutralEvent]) -> list[str]:
    """A compact picture of a stream: deltas of a block collapsed to their kinds."""
    out: list[str] = []
    for event in events:
        match event:
            case BlockStart(kind=kind):
                out.append(f"<{kind}>")
            case Delta(kind=kind):
                if out[-1] != kind:
                    out.append(kind)
            case BlockStop():
                out.append("</>")
            case _:
                out.append(type(event).__name__)
    return out


# --- the factory and the shared rules ------------------------------------------------------


def test_make_reader_picks_the_protocol() -> None:
    assert type(make_reader("anthropic")) is AnthropicReader
    assert type(make_reader("openai-chat")) is ChatReader
    assert type(make_reader("openai-responses")) is ResponsesReader
    assert make_reader("anthropic") is not make_reader("anthropic")


@pytest.mark.parametrize(
    ("names", "status"),
    [
        (("rate_limit_error",), 429),
        (("requests", "rate_limit_exceeded"), 429),
        (("too_many_requests",), 429),
        (("overloaded_error",), 529),
        (("invalid_request_error",), 400),
        (("invalid_prompt",), 400),
        (("timeout_error",), 504),
        (("authentication_error",), 502),
        (("permission_error",), 502),
        (("api_error",), 502),
        (("server_error",), 502),
        ((None,), 502),
        ((), 502),
        (("RATE_LIMIT_EXCEEDED",), 429),
        ((None, "overloaded"), 529),
    ],
)
def test_failure_status(names: tuple[str | None, ...], status: int) -> None:
    assert failure_status(*names) == status


@pytest.mark.parametrize("protocol", ["anthropic", "openai-chat", "openai-responses"])
def test_a_fresh_reader_has_seen_nothing(protocol: Protocol) -> None:
    reader = make_reader(protocol)
    assert (reader.usage, reader.usage_source, reader.done) == (Usage(), "none", False)
    assert (reader.malformed_events, reader.upstream_id) == (0, None)


@pytest.mark.parametrize("protocol", ["anthropic", "openai-chat", "openai-responses"])
def test_an_empty_body_is_no_clean_end(protocol: Protocol) -> None:
    reader = make_reader(protocol)
    assert reader.end_of_stream() == []
    assert not reader.done


@pytest.mark.parametrize(
    ("dialect", "spec"),
    [
        ("anthropic", "text"),
        ("openai-chat", "text"),
        ("openai-responses", "text"),
        ("anthropic", "thinking+tools"),
        ("openai-chat", "tools"),
        ("openai-responses", "thinking+tools"),
    ],
)
def test_mock_streams_read_the_same_at_every_chunking(dialect: Dialect, spec: str) -> None:
    body = mock_stream(dialect, spec)
    whole = read(dialect, decode(body))
    check_neutral_stream(whole)
    for sizes in ([1], [2, 3], [7], [64]):
        assert read(dialect, decode(body, sizes=sizes)) == whole


# --- the checker rejects what it should ------------------------------------------------------

_S: Final = Start()
_T: Final = BlockStart("text")
_STOP: Final = BlockStop()
_END: Final = Finish("end_turn")


@pytest.mark.parametrize(
    "events",
    [
        [],
        [_S],
        [_S, _T, Delta("text", "x"), _STOP],
        [_T, Delta("text", "x"), _STOP, _END],
        [_S, _S, _END],
        [_S, _T, _T, _STOP, _END],
        [_S, _T, Delta("thinking", "x"), _STOP, _END],
        [_S, BlockStart("tool_use"), Delta("text", "x"), _STOP, _END],
        [_S, BlockStart("thinking"), Delta("tool_args", "x"), _STOP, _END],
        [_S, BlockStart("redacted_thinking"), Delta("thinking", "x"), _STOP, _END],
        [_S, Delta("text", "x"), _END],
        [_S, _STOP, _END],
        [_S, _T, _END],
        [_S, _T, Delta("text", ""), _STOP, _END],
        [_S, _END, _END],
        [_S, Failure(None, "x"), _END],
        [Failure(None, "x"), _S],
        [_END],
        [_S, BlockStart("text", tool_id="x"), _STOP, _END],
        [_S, BlockStart("thinking", data="x"), _STOP, _END],
        [_S, BlockStart("tool_use", signature="x"), _STOP, _END],
    ],
)
def test_checker_rejects(events: list[NeutralEvent]) -> None:
    with pytest.raises(AssertionError):
        check_neutral_stream(events)


@pytest.mark.parametrize(
    "events",
    [
        [_S, _END],
        [Failure(None, "x")],
        [_S, Failure(None, "x")],
        [_S, _T, Delta("text", "x"), Failure(None, "x")],
        [_S, _T, _STOP, _END],
        [
            _S,
            BlockStart("thinking", signature="s"),
            Delta("thinking", "a"),
            Delta("signature", "s"),
            _STOP,
            BlockStart("redacted_thinking", data="d"),
            _STOP,
            _T,
            Delta("text", "b"),
            Delta("refusal", "c"),
            _STOP,
            BlockStart("tool_use", tool_id="i", tool_name="n"),
            Delta("tool_args", "{}"),
            _STOP,
            Finish("tool_use"),
        ],
    ],
)
def test_checker_accepts(events: list[NeutralEvent]) -> None:
    check_neutral_stream(events)


def test_checker_accepts_an_unfinished_prefix_only_when_asked() -> None:
    check_neutral_stream([_S, _T], complete=False)
    with pytest.raises(AssertionError):
        check_neutral_stream([_S, _T])
