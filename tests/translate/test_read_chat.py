"""The Chat Completions stream reader: the mock's native streams and the quirks of
protocols.md §2.4 / §5.6 (reasoning fields, parallel and interleaved tool calls, usage
placement, missing ``[DONE]``)."""

from __future__ import annotations

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
from trio_gateway._mock._render import TOOL_ARGUMENTS, TOOL_NAME
from trio_gateway._protocol._usage import Usage
from trio_gateway._translate._events import (
    BlockStart,
    BlockStop,
    Delta,
    Failure,
    Finish,
    NeutralEvent,
    Start,
)
from trio_gateway._translate._read import ChatReader

_DONE: Final = b"data: [DONE]\n\n"
_USAGE: Final = {
    "prompt_tokens": 30,
    "completion_tokens": 9,
    "total_tokens": 39,
    "prompt_tokens_details": {"cached_tokens": 20},
    "completion_tokens_details": {"reasoning_tokens": 4},
}
_LEDGER: Final = Usage(input_tokens=10, output_tokens=9, cache_read_tokens=20, reasoning_tokens=4)


def _chunk(
    delta: dict[str, object] | None = None,
    *,
    finish: str | None = None,
    usage: object = None,
    index: int = 0,
) -> bytes:
    obj: dict[str, object] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": []
        if delta is None
        else [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return sse(obj)


def _call(
    index: int, *, args: str = "", call_id: str | None = None, name: str | None = None
) -> dict[str, object]:
    call: dict[str, object] = {"index": index, "function": {"arguments": args}}
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    if name is not None:
        call["function"] = {"name": name, "arguments": args}
    return call


def _tools(*calls: dict[str, object]) -> bytes:
    return _chunk({"tool_calls": list(calls)})


def _run(*frames: bytes, reader: ChatReader | None = None) -> list[NeutralEvent]:
    events = read(reader or ChatReader(), events_of(frames))
    check_neutral_stream(events, complete=False)
    return events


# --- the mock's native streams -----------------------------------------------------------------


def test_mock_text_stream() -> None:
    answer = mock_answer("openai-chat", "text")
    reader = ChatReader()
    events = read(reader, decode(mock_stream("openai-chat", "text")))
    check_neutral_stream(events)
    usage = ledger_usage(answer, "openai-chat")
    assert usage == Usage(25, 8, 100, 0, 0, 0)
    assert events == [
        Start(upstream_id="chatcmpl-mock00000001", model=MODEL),
        BlockStart("text"),
        *(Delta("text", piece) for piece in answer.text),
        BlockStop(),
        Finish("end_turn", usage=usage, usage_reported=True),
    ]
    assert (reader.usage, reader.usage_source) == (usage, "reported")


def test_mock_thinking_and_tools_stream() -> None:
    # The mock streams reasoning as `delta.reasoning_content` (DeepSeek / vLLM style): it
    # must become a thinking block, closed before the text block opens (PEER-BUGS 1).
    answer = mock_answer("openai-chat", "thinking+tools")
    events = read("openai-chat", decode(mock_stream("openai-chat", "thinking+tools"), sizes=[4]))
    check_neutral_stream(events)
    assert (
        texts(events, "thinking") == answer.full_thinking == "Let me think about this step by step."
    )
    assert shape(events) == [
        "Start",
        "<thinking>",
        "thinking",
        "</>",
        "<text>",
        "text",
        "</>",
        "<tool_use>",
        "tool_args",
        "</>",
        "Finish",
    ]
    assert BlockStart("tool_use", tool_id="call_mock00000001", tool_name=TOOL_NAME) in events
    assert texts(events, "text") == answer.full_text
    assert texts(events, "tool_args") == TOOL_ARGUMENTS
    usage = ledger_usage(answer, "openai-chat")
    assert usage.reasoning_tokens == 12
    assert events[-1] == Finish("tool_use", usage=usage)


@pytest.mark.parametrize(
    ("spec", "stop"),
    [("incomplete", "max_tokens"), ("usage_with_choices", "end_turn"), ("crlf", "end_turn")],
)
def test_mock_variants(spec: str, stop: str) -> None:
    answer = mock_answer("openai-chat", spec)
    events = read("openai-chat", decode(mock_stream("openai-chat", spec), sizes=[9]))
    check_neutral_stream(events)
    assert texts(events, "text") == answer.full_text
    assert events[-1] == Finish(stop, usage=ledger_usage(answer, "openai-chat"))  # type: ignore[arg-type]


def test_mock_stream_without_usage_is_unreported() -> None:
    reader = ChatReader()
    events = read(reader, decode(mock_stream("openai-chat", "text", include_usage=False)))
    assert events[-1] == Finish("end_turn", usage=Usage(), usage_reported=False)
    assert reader.usage_source == "none"


def test_mock_no_terminator_ends_cleanly_after_the_finish_reason() -> None:
    reader = ChatReader()
    events = read(reader, decode(mock_stream("openai-chat", "no_terminator")))
    check_neutral_stream(events)
    assert events[-1] == Finish("end_turn", usage=Usage(25, 8, 100), usage_reported=True)


def test_mock_error_event() -> None:
    events = read("openai-chat", decode(mock_stream("openai-chat", "error_event")))
    check_neutral_stream(events)
    assert shape(events) == ["Start", "<text>", "text", "Failure"]
    assert events[-1] == Failure("server_error", "Overloaded", 502)


def test_mock_malformed_chunk_is_counted_and_skipped() -> None:
    answer = mock_answer("openai-chat", "malformed:at=1")
    reader = ChatReader()
    events = read(reader, decode(mock_stream("openai-chat", "malformed:at=1")))
    check_neutral_stream(events)
    assert reader.malformed_events == 1
    assert texts(events, "text") == "".join(answer.text[1:])


# --- hand-written quirks -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_reasoning_then_content_are_two_blocks(key: str) -> None:
    events = _run(
        _chunk({"role": "assistant", "content": ""}),
        _chunk({key: "Thinking"}),
        _chunk({key: " hard", "content": None}),
        _chunk({"content": "Answer"}),
        _chunk({}, finish="stop"),
        _chunk(None, usage=_USAGE),
        _DONE,
    )
    assert events == [
        Start("chatcmpl-1", "gpt-x"),
        BlockStart("thinking"),
        Delta("thinking", "Thinking"),
        Delta("thinking", " hard"),
        BlockStop(),
        BlockStart("text"),
        Delta("text", "Answer"),
        BlockStop(),
        Finish("end_turn", usage=_LEDGER),
    ]


def test_reasoning_content_wins_over_a_duplicate_reasoning_field() -> None:
    events = _run(_chunk({"reasoning_content": "a", "reasoning": "a"}), _DONE)
    assert texts(events, "thinking") == "a"


def test_reasoning_and_content_in_one_delta() -> None:
    events = _run(_chunk({"reasoning_content": "r", "content": "c"}), _DONE)
    assert shape(events) == [
        "Start",
        "<thinking>",
        "thinking",
        "</>",
        "<text>",
        "text",
        "</>",
        "Finish",
    ]


def test_parallel_tool_calls() -> None:
    events = _run(
        _tools(_call(0, call_id="call_a", name="f")),
        _tools(_call(0, args='{"x":')),
        _tools(_call(0, args="1}")),
        _tools(_call(1, call_id="call_b", name="g", args='{"y":2}')),
        _chunk({}, finish="tool_calls"),
        _DONE,
    )
    assert events[1:] == [
        BlockStart("tool_use", tool_id="call_a", tool_name="f"),
        Delta("tool_args", '{"x":'),
        Delta("tool_args", "1}"),
        BlockStop(),
        BlockStart("tool_use", tool_id="call_b", tool_name="g"),
        Delta("tool_args", '{"y":2}'),
        BlockStop(),
        Finish("tool_use", usage=Usage(), usage_reported=False),
    ]


def test_several_tool_calls_in_one_delta_are_handled_in_order() -> None:
    events = _run(
        _tools(
            _call(0, call_id="a", name="f", args="{}"),
            _call(1, call_id="b", name="g", args="{"),
            _call(1, args="}"),
        ),
        _chunk({}, finish="tool_calls"),
        _DONE,
    )
    assert events[1:-1] == [
        BlockStart("tool_use", tool_id="a", tool_name="f"),
        Delta("tool_args", "{}"),
        BlockStop(),
        BlockStart("tool_use", tool_id="b", tool_name="g"),
        Delta("tool_args", "{"),
        Delta("tool_args", "}"),
        BlockStop(),
    ]


def test_interleaved_tool_calls_fail() -> None:
    reader = ChatReader()
    events = _run(
        _tools(_call(0, call_id="a", name="f", args='{"x"')),
        _tools(_call(1, call_id="b", name="g", args="{}")),
        _tools(_call(0, args=":1}")),
        _chunk({}, finish="tool_calls"),
        _DONE,
        reader=reader,
    )
    assert shape(events) == [
        "Start",
        "<tool_use>",
        "tool_args",
        "</>",
        "<tool_use>",
        "tool_args",
        "Failure",
    ]
    failure = events[-1]
    assert isinstance(failure, Failure)
    assert failure.status == 502
    assert failure.error_type is None
    assert failure.message.startswith("upstream interleaved tool calls")
    assert reader.done


def test_an_empty_fragment_for_a_closed_call_is_harmless() -> None:
    events = _run(
        _tools(_call(0, call_id="a", name="f", args="{}")),
        _chunk({"content": "then text"}),
        _tools(_call(0, args="")),
        _chunk({}, finish="stop"),
        _DONE,
    )
    assert shape(events) == [
        "Start",
        "<tool_use>",
        "tool_args",
        "</>",
        "<text>",
        "text",
        "</>",
        "Finish",
    ]


def test_tool_calls_without_ids_or_indices() -> None:
    events = _run(
        _tools({"function": {"name": "f", "arguments": '{"a":'}}),
        _tools({"function": {"arguments": "1}"}}),
        _tools({"id": "x", "function": {"name": "g", "arguments": "{}"}}),
        _tools(_call(5, name="h")),
        _chunk({}, finish="function_call"),
        _DONE,
    )
    assert [e for e in events if isinstance(e, BlockStart)] == [
        BlockStart("tool_use", tool_id="call_0", tool_name="f"),
        BlockStart("tool_use", tool_id="x", tool_name="g"),
        BlockStart("tool_use", tool_id="call_2", tool_name="h"),
    ]
    assert texts(events, "tool_args") == '{"a":1}{}'
    assert events[-1] == Finish("tool_use", usage=Usage(), usage_reported=False)


def test_legacy_function_call() -> None:
    events = _run(
        _chunk({"function_call": {"name": "f", "arguments": ""}}),
        _chunk({"function_call": {"arguments": '{"q":1}'}}),
        _chunk({}, finish="function_call"),
        _DONE,
    )
    assert events[1:-1] == [
        BlockStart("tool_use", tool_id="call_0", tool_name="f"),
        Delta("tool_args", '{"q":1}'),
        BlockStop(),
    ]


def test_missing_done_after_finish_reason_is_a_clean_end() -> None:
    reader = ChatReader()
    events = events_of(
        [_chunk({"content": "Hi"}), _chunk({}, finish="length"), _chunk(None, usage=_USAGE)]
    )
    out: list[NeutralEvent] = []
    for event in events:
        out += reader.feed(event)
    assert not reader.done
    assert out == [
        Start("chatcmpl-1", "gpt-x"),
        BlockStart("text"),
        Delta("text", "Hi"),
        BlockStop(),
    ]
    assert reader.end_of_stream() == [Finish("max_tokens", usage=_LEDGER)]
    assert reader.done


def test_missing_finish_reason_and_done_is_no_clean_end() -> None:
    reader = ChatReader()
    events = _run(_chunk({"content": "Hi"}), _chunk(None, usage=_USAGE), reader=reader)
    assert shape(events) == ["Start", "<text>", "text"]
    assert not reader.done
    assert reader.usage_source == "reported"


def test_done_before_any_finish_reason_is_end_turn() -> None:
    events = _run(_chunk({"content": "Hi"}), _DONE)
    assert events[-2:] == [BlockStop(), Finish("end_turn", usage=Usage(), usage_reported=False)]


def test_done_alone_starts_and_finishes() -> None:
    events = _run(_DONE)
    assert events == [Start(), Finish("end_turn", usage=Usage(), usage_reported=False)]


def test_usage_riding_on_a_choices_chunk() -> None:
    events = _run(
        _chunk({"content": "Hi"}),
        _chunk({}, finish="stop", usage=_USAGE),
        _DONE,
    )
    assert events[-1] == Finish("end_turn", usage=_LEDGER, usage_reported=True)


def test_null_usage_on_every_chunk_is_ignored() -> None:
    reader = ChatReader()
    _run(_chunk({"content": "Hi"}), sse({"choices": [], "usage": None}), reader=reader)
    assert reader.usage_source == "none"


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ],
)
def test_finish_reasons(finish: str, stop: str) -> None:
    events = _run(_chunk({"content": "x"}, finish=finish), _DONE)
    assert events[-1] == Finish(stop, usage=Usage(), usage_reported=False)  # type: ignore[arg-type]


def test_refusal_is_text_and_makes_the_stop_a_refusal() -> None:
    events = _run(
        _chunk({"role": "assistant", "content": "", "refusal": None}),
        _chunk({"refusal": "I can't"}),
        _chunk({"refusal": " help."}),
        _chunk({}, finish="stop"),
        _DONE,
    )
    assert events[1:] == [
        BlockStart("text"),
        Delta("refusal", "I can't"),
        Delta("refusal", " help."),
        BlockStop(),
        Finish("refusal", usage=Usage(), usage_reported=False),
    ]


def test_error_chunk_fails_with_a_mapped_status() -> None:
    reader = ChatReader()
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    events = _run(
        _chunk({"content": "Hi"}),
        sse({"error": error}),
        _chunk(None, usage=_USAGE),
        _DONE,
        reader=reader,
    )
    assert events[-1] == Failure("requests", "Rate limit reached", 429)
    assert (reader.usage, reader.usage_source) == (_LEDGER, "reported")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        ({"code": "invalid_prompt", "message": "no"}, Failure("invalid_prompt", "no", 400)),
        ("boom", Failure(None, "boom", 502)),
        (["odd"], Failure(None, "", 502)),
        ({"message": 5}, Failure(None, "", 502)),
    ],
)
def test_error_chunk_shapes(error: object, failure: Failure) -> None:
    assert _run(sse({"error": error})) == [failure]


def test_falsy_error_is_not_an_error() -> None:
    events = _run(
        sse({"error": None, "id": "c", "choices": [{"index": 0, "delta": {"content": "ok"}}]}),
        _DONE,
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "Finish"]


def test_only_choice_zero_counts() -> None:
    events = _run(
        sse(
            {
                "id": "c",
                "choices": [
                    {"index": 1, "delta": {"content": "other"}},
                    {"index": 0, "delta": {"content": "mine"}},
                ],
            }
        ),
        _chunk({"content": "also other"}, index=2),
        sse({"choices": [{"delta": {"content": " and no index"}}]}),
        _DONE,
    )
    assert texts(events, "text") == "mine and no index"


def test_filter_chunks_with_empty_ids_do_not_name_the_stream() -> None:
    reader = ChatReader()
    events = _run(
        sse({"id": "", "object": "", "model": "", "choices": [], "prompt_filter_results": []}),
        _chunk({"content": "x"}),
        _DONE,
        reader=reader,
    )
    assert events[0] == Start()
    assert reader.upstream_id == "chatcmpl-1"


def test_garbage_is_counted_or_ignored() -> None:
    reader = ChatReader()
    events = _run(
        sse("{not json"),
        sse("[1, 2]"),
        sse('"string"'),
        sse({"choices": "nope"}),
        sse({"choices": [{"index": 0, "delta": "nope", "finish_reason": 7}]}),
        sse({"choices": [{"index": 0, "delta": {"content": 5, "tool_calls": "x", "refusal": []}}]}),
        sse({"choices": [{"index": 0, "delta": {"tool_calls": [1, None]}}]}),
        sse({"usage": "lots"}),
        sse({"type": "ping"}, event="ping"),
        _DONE,
        reader=reader,
    )
    assert events == [Start(), Finish("end_turn", usage=Usage(), usage_reported=False)]
    assert reader.malformed_events == 1
    assert reader.usage_source == "none"


def test_nothing_after_done() -> None:
    reader = ChatReader()
    _run(_chunk({"content": "x"}), _DONE, reader=reader)
    assert reader.feed(events_of([_chunk({"content": "more"})])[0]) == []
    assert reader.feed(events_of([_DONE])[0]) == []
