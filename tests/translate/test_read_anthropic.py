"""The Anthropic stream reader: the mock's native streams and every quirk of protocols.md §1.7."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import pytest

from tests.translate.test_read import (
    MODEL,
    check_neutral_stream,
    decode,
    events_of,
    ledger_usage,
    mock_answer,
    mock_stream,
    read,
    shape,
    sse,
    texts,
)
from trio_gateway._mock._render import SIGNATURE, TOOL_ARGUMENTS, TOOL_NAME
from trio_gateway._protocol._usage import Usage, UsageSource
from trio_gateway._translate._events import (
    BlockStart,
    BlockStop,
    Delta,
    Failure,
    Finish,
    NeutralEvent,
    Start,
)
from trio_gateway._translate._read import AnthropicReader

_WORDS: Final = "Hello from the mock upstream. Streaming works"
_START_USAGE: Final = {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}


def _ev(obj: Mapping[str, object]) -> bytes:
    """A named Anthropic frame, the name taken from the JSON ``type`` as the API does."""
    return sse(obj, event=str(obj["type"]))


def _message_start(usage: object = _START_USAGE) -> bytes:
    message: dict[str, object] = {"id": "msg_1", "type": "message", "model": "claude-x"}
    if usage is not None:
        message["usage"] = usage
    return _ev({"type": "message_start", "message": message})


def _block_start(index: int, block: Mapping[str, object]) -> bytes:
    return _ev({"type": "content_block_start", "index": index, "content_block": block})


def _delta(index: int, delta: Mapping[str, object]) -> bytes:
    return _ev({"type": "content_block_delta", "index": index, "delta": delta})


def _text(index: int, text: str) -> bytes:
    return _delta(index, {"type": "text_delta", "text": text})


def _block_stop(index: int) -> bytes:
    return _ev({"type": "content_block_stop", "index": index})


def _message_delta(stop_reason: str | None = "end_turn", usage: object = None) -> bytes:
    obj: dict[str, object] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
    }
    if usage is not None:
        obj["usage"] = usage
    return _ev(obj)


_MESSAGE_STOP: Final = _ev({"type": "message_stop"})


def _run(*frames: bytes, reader: AnthropicReader | None = None) -> list[NeutralEvent]:
    events = read(reader or AnthropicReader(), events_of(frames))
    check_neutral_stream(events, complete=False)
    return events


# --- the mock's native streams -----------------------------------------------------------------


def test_mock_text_stream() -> None:
    answer = mock_answer("anthropic", "text")
    reader = AnthropicReader()
    events = read(reader, decode(mock_stream("anthropic", "text")))
    check_neutral_stream(events)
    start_usage = ledger_usage(answer, "anthropic", output=1)
    final_usage = ledger_usage(answer, "anthropic")
    assert final_usage == Usage(25, 8, 100, 20, 10, 0)
    assert events == [
        Start(upstream_id="msg_mock00000001", model=MODEL, usage=start_usage),
        BlockStart("text"),
        *(Delta("text", piece) for piece in answer.text),
        BlockStop(),
        Finish("end_turn", usage=final_usage, usage_reported=True),
    ]
    assert answer.full_text.startswith(_WORDS)
    assert (reader.usage, reader.usage_source, reader.upstream_id) == (
        final_usage,
        "reported",
        "msg_mock00000001",
    )


def test_mock_thinking_and_tools_stream() -> None:
    answer = mock_answer("anthropic", "thinking+tools")
    events = read("anthropic", decode(mock_stream("anthropic", "thinking+tools"), sizes=[5]))
    check_neutral_stream(events)
    assert shape(events) == [
        "Start",
        "<thinking>", "thinking", "signature", "</>",
        "<text>", "text", "</>",
        "<tool_use>", "tool_args", "</>",
        "Finish",
    ]  # fmt: skip
    assert texts(events, "thinking") == "Let me think about this step by step."
    assert texts(events, "signature") == SIGNATURE
    assert texts(events, "text") == answer.full_text
    assert texts(events, "tool_args") == TOOL_ARGUMENTS
    assert BlockStart("tool_use", tool_id="toolu_mock00000001", tool_name=TOOL_NAME) in events
    # The first input_json_delta is "" (as the API sends it): no empty Delta for it.
    assert sum(isinstance(e, Delta) and e.kind == "tool_args" for e in events) == 4
    assert events[-1] == Finish("tool_use", usage=ledger_usage(answer, "anthropic"))


@pytest.mark.parametrize(
    ("spec", "stop", "output"),
    [
        ("incomplete", "max_tokens", 8),
        ("cumulative", "end_turn", 40),
        ("usage_in_delta", "end_turn", 8),
        ("crlf", "end_turn", 8),
        ("no_event_lines", "end_turn", 8),
        ("done", "end_turn", 8),
    ],
)
def test_mock_variants(spec: str, stop: str, output: int) -> None:
    answer = mock_answer("anthropic", spec)
    reader = AnthropicReader()
    events = read(reader, decode(mock_stream("anthropic", spec), sizes=[3]))
    check_neutral_stream(events)
    assert texts(events, "text") == answer.full_text
    assert events[-1] == Finish(stop, usage=ledger_usage(answer, "anthropic", output=output))  # type: ignore[arg-type]
    assert reader.malformed_events == 0


def test_mock_usage_in_delta_starts_with_zero_input() -> None:
    events = read("anthropic", decode(mock_stream("anthropic", "usage_in_delta")))
    assert events[0] == Start("msg_mock00000001", MODEL, Usage(output_tokens=1))


def test_mock_zero_usage_is_still_reported() -> None:
    events = read("anthropic", decode(mock_stream("anthropic", "zero_usage")))
    assert events[-1] == Finish("end_turn", usage=Usage(), usage_reported=True)


def test_mock_error_event() -> None:
    reader = AnthropicReader()
    events = read(reader, decode(mock_stream("anthropic", "error_event")))
    check_neutral_stream(events)
    assert shape(events) == ["Start", "<text>", "Failure"]
    assert events[-1] == Failure("overloaded_error", "Overloaded", 529)
    assert reader.usage_source == "partial"
    assert reader.usage == Usage(25, 1, 100, 20, 10, 0)


def test_mock_no_terminator_is_no_clean_end() -> None:
    reader = AnthropicReader()
    events = read(reader, decode(mock_stream("anthropic", "no_terminator")))
    assert shape(events) == ["Start", "<text>", "text", "</>"]
    assert not reader.done
    assert reader.usage_source == "reported"


def test_mock_malformed_frame_is_counted_and_skipped() -> None:
    answer = mock_answer("anthropic", "malformed:at=3")
    reader = AnthropicReader()
    events = read(reader, decode(mock_stream("anthropic", "malformed:at=3")))
    check_neutral_stream(events)
    assert reader.malformed_events == 1
    assert texts(events, "text") == "".join(answer.text[1:])  # event 3 is the first delta


# --- hand-written quirks -----------------------------------------------------------------------


def test_server_tool_blocks_are_skipped_whole() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"}),
        _delta(0, {"type": "input_json_delta", "partial_json": '{"query":"x"}'}),
        _block_stop(0),
        _block_start(1, {"type": "web_search_tool_result", "content": []}),
        _block_stop(1),
        _block_start(2, {"type": "text", "text": ""}),
        _text(2, "Found it."),
        _delta(2, {"type": "citations_delta", "citation": {"type": "char_location"}}),
        _block_stop(2),
        _message_delta("end_turn", {"output_tokens": 9}),
        _MESSAGE_STOP,
    )
    assert events[1:] == [
        BlockStart("text"),
        Delta("text", "Found it."),
        BlockStop(),
        Finish("end_turn", usage=Usage(10, 9, 5), usage_reported=True),
    ]


def test_deltas_and_stops_for_other_indices_are_dropped() -> None:
    events = _run(
        _message_start(),
        _text(0, "before any block"),
        _block_start(0, {"type": "text", "text": ""}),
        _text(1, "wrong index"),
        _text(0, "right"),
        _block_stop(3),
        _ev({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "no index"}}),
        _block_stop(0),
        _text(0, "after the stop"),
        _MESSAGE_STOP,
    )
    assert events[1:] == [
        BlockStart("text"),
        Delta("text", "right"),
        BlockStop(),
        Finish("end_turn", usage=Usage(10, 1, 5), usage_reported=False),
    ]


def test_delta_of_the_wrong_kind_never_enters_a_block() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "thinking", "thinking": ""}),
        _text(0, "text in a thinking block"),
        _delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
        _delta(0, {"type": "input_json_delta", "partial_json": "{}"}),
        _delta(0, {"type": "brand_new_delta", "text": "?"}),
        _delta(0, {"type": "signature_delta", "signature": "sig"}),
        _block_stop(0),
        _MESSAGE_STOP,
    )
    assert events[1:-1] == [
        BlockStart("thinking"),
        Delta("thinking", "hmm"),
        Delta("signature", "sig"),
        BlockStop(),
    ]


def test_block_start_fields() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "thinking", "thinking": "pre", "signature": "S0"}),
        _block_stop(0),
        _block_start(1, {"type": "redacted_thinking", "data": "opaque"}),
        _delta(1, {"type": "thinking_delta", "thinking": "not allowed"}),
        _block_stop(1),
        _block_start(2, {"type": "text", "text": "Prefilled"}),
        _block_stop(2),
        _block_start(3, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        _delta(3, {"type": "input_json_delta", "partial_json": ""}),
        _delta(3, {"type": "input_json_delta", "partial_json": '{"a":1}'}),
        _block_stop(3),
        _message_delta("tool_use"),
        _MESSAGE_STOP,
    )
    assert events[1:] == [
        BlockStart("thinking", signature="S0"),
        Delta("thinking", "pre"),
        BlockStop(),
        BlockStart("redacted_thinking", data="opaque"),
        BlockStop(),
        BlockStart("text"),
        Delta("text", "Prefilled"),
        BlockStop(),
        BlockStart("tool_use", tool_id="toolu_1", tool_name="f"),
        Delta("tool_args", '{"a":1}'),
        BlockStop(),
        Finish("tool_use", usage=Usage(10, 1, 5), usage_reported=False),
    ]


def test_tool_input_sent_whole_at_start_becomes_the_arguments() -> None:
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {"city": "Paris"}}
    events = _run(_message_start(), _block_start(0, block), _block_stop(0), _MESSAGE_STOP)
    assert events[2] == Delta("tool_args", '{"city":"Paris"}')
    # ... but never on top of streamed arguments.
    events = _run(
        _message_start(),
        _block_start(0, block),
        _delta(0, {"type": "input_json_delta", "partial_json": '{"city":"Rome"}'}),
        _MESSAGE_STOP,
    )
    assert texts(events, "tool_args") == '{"city":"Rome"}'


def test_message_stop_closes_an_open_block() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "text", "text": ""}),
        _text(0, "cut"),
        _MESSAGE_STOP,
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "Finish"]


def test_a_new_block_closes_the_open_one() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "text", "text": ""}),
        _text(0, "a"),
        _block_start(1, {"type": "text", "text": ""}),
        _text(1, "b"),
        _text(0, "stale"),
        _block_stop(1),
        _MESSAGE_STOP,
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "<text>", "text", "</>", "Finish"]
    assert texts(events, "text") == "ab"


def test_an_unknown_block_reusing_the_open_index_closes_it() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "text", "text": ""}),
        _text(0, "a"),
        _block_start(0, {"type": "mystery"}),
        _text(0, "b"),
        _MESSAGE_STOP,
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "Finish"]


def test_content_before_message_start_starts_lazily() -> None:
    events = _run(
        _block_start(0, {"type": "text", "text": ""}),
        _text(0, "hi"),
        _block_stop(0),
        _message_start(),
        _MESSAGE_STOP,
    )
    assert events[0] == Start()
    assert [type(e) for e in events].count(Start) == 1
    # The late message_start still counts its usage and id.
    assert events[-1] == Finish("end_turn", usage=Usage(10, 1, 5), usage_reported=False)


def test_message_stop_alone_is_a_started_finish() -> None:
    reader = AnthropicReader()
    events = _run(_MESSAGE_STOP, reader=reader)
    assert events == [Start(), Finish("end_turn", usage=Usage(), usage_reported=False)]
    assert reader.usage_source == "none"


def test_usage_is_cumulative_per_field() -> None:
    reader = AnthropicReader()
    events = _run(
        _message_start({"input_tokens": 10, "cache_creation_input_tokens": 7, "output_tokens": 1}),
        _message_delta(None, {"output_tokens": 5}),
        _message_delta("max_tokens", {"output_tokens": 12, "input_tokens": 11}),
        _MESSAGE_STOP,
        reader=reader,
    )
    assert events == [
        Start("msg_1", "claude-x", Usage(10, 1, 0, 7, 0, 0)),
        Finish("max_tokens", usage=Usage(11, 12, 0, 7, 0, 0), usage_reported=True),
    ]


def test_usage_source_moves_from_none_to_partial_to_reported() -> None:
    reader = AnthropicReader()
    sources: list[UsageSource] = [reader.usage_source]
    for frame in (
        _message_start(None),
        _message_start(),
        _message_delta(None, {"output_tokens": 3}),
    ):
        reader.feed(events_of([frame])[0])
        sources.append(reader.usage_source)
    assert sources == ["none", "none", "partial", "reported"]
    assert reader.usage == Usage(10, 3, 5)


def test_stop_sequence_and_unknown_stop_reasons() -> None:
    events = _run(
        _message_start(),
        _ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                "usage": {"output_tokens": 2},
            }
        ),
        _MESSAGE_STOP,
    )
    assert events[-1] == Finish("stop_sequence", "END", Usage(10, 2, 5), True)
    events = _run(_message_start(), _message_delta("brand_new_reason"), _MESSAGE_STOP)
    assert events[-1] == Finish("end_turn", usage=Usage(10, 1, 5), usage_reported=False)


def test_error_event_fails_inside_a_block() -> None:
    events = _run(
        _message_start(),
        _block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
        _delta(0, {"type": "input_json_delta", "partial_json": '{"a"'}),
        _ev({"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}),
        _block_stop(0),
        _MESSAGE_STOP,
    )
    assert events[1:] == [
        BlockStart("tool_use", tool_id="t", tool_name="f"),
        Delta("tool_args", '{"a"'),
        Failure("rate_limit_error", "Slow down", 429),
    ]


def test_error_as_the_first_event() -> None:
    events = _run(_ev({"type": "error", "error": "plain string"}))
    assert events == [Failure(None, "plain string", 502)]


def test_malformed_error_event_still_fails() -> None:
    reader = AnthropicReader()
    events = _run(_message_start(), sse('{"type":"error", oops', event="error"), reader=reader)
    assert events[-1] == Failure(None, '{"type":"error", oops', 502)
    assert reader.malformed_events == 1


def test_usage_after_the_end_is_still_accounted() -> None:
    reader = AnthropicReader()
    events = _run(
        _message_start(),
        _ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        _message_delta("end_turn", {"output_tokens": 30}),
        _MESSAGE_STOP,
        reader=reader,
    )
    assert events[-1] == Failure("overloaded_error", "Overloaded", 529)
    assert (reader.usage, reader.usage_source) == (Usage(10, 30, 5), "reported")


def test_pings_unknown_events_and_garbage_are_ignored() -> None:
    reader = AnthropicReader()
    events = _run(
        _message_start(),
        sse({"type": "ping"}, event="ping"),
        sse("not json at all", event="ping"),
        sse({"type": "brand_new_event"}, event="brand_new_event"),
        sse("[]", event="content_block_start"),
        sse('"text"', event="content_block_delta"),
        sse("{}", event="message_delta"),
        sse({"no_type": True}),
        sse("[DONE]"),
        sse("garbage", event="content_block_stop"),
        _MESSAGE_STOP,
        reader=reader,
    )
    assert shape(events) == ["Start", "Finish"]
    assert reader.malformed_events == 1


def test_unnamed_frames_are_read_by_type() -> None:
    reader = AnthropicReader()
    events = _run(
        sse({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}}),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "x"},
            }
        ),
        sse("{bad json"),
        sse({"type": "message_stop"}),
        reader=reader,
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "Finish"]
    assert (reader.upstream_id, reader.malformed_events) == ("m", 1)


def test_malformed_message_start_is_ignored_and_start_comes_lazily() -> None:
    reader = AnthropicReader()
    events = _run(sse("{", event="message_start"), _MESSAGE_STOP, reader=reader)
    assert events == [Start(), Finish("end_turn", usage=Usage(), usage_reported=False)]
    assert (reader.malformed_events, reader.upstream_id) == (1, None)


def test_nothing_after_done() -> None:
    reader = AnthropicReader()
    _run(_message_start(), _MESSAGE_STOP, reader=reader)
    assert reader.done
    for frame in (_block_start(0, {"type": "text", "text": "x"}), _MESSAGE_STOP, _message_start()):
        assert reader.feed(events_of([frame])[0]) == []
