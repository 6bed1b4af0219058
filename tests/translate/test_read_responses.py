"""The Responses stream reader: the mock's native streams and the quirks of protocols.md
§3.6 / §5.5 (lazy text blocks, ``.done``-only arguments, summary parts, ``error`` followed
by ``response.failed``, events for other items)."""

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
from trio_gateway._mock._render import TOOL_ARGUMENTS, TOOL_NAME
from trio_gateway._mock._render_responses import responses_body
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
from trio_gateway._translate._read import ResponsesReader
from trio_gateway._translate._signature import pack_openai_reasoning, unpack_openai_reasoning

_USAGE: Final = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 30},
    "output_tokens": 12,
    "output_tokens_details": {"reasoning_tokens": 5},
}
_LEDGER: Final = Usage(input_tokens=20, output_tokens=12, cache_read_tokens=30, reasoning_tokens=5)


def _ev(kind: str, **fields: object) -> bytes:
    return sse({"type": kind, **fields}, event=kind)


_CREATED: Final = _ev(
    "response.created", response={"id": "resp_1", "model": "gpt-x", "status": "in_progress"}
)


def _added(index: int, item: Mapping[str, object]) -> bytes:
    return _ev("response.output_item.added", output_index=index, item=item)


def _done(index: int, item: Mapping[str, object]) -> bytes:
    return _ev("response.output_item.done", output_index=index, item=item)


def _text(
    item_id: str, index: int, delta: str, *, kind: str = "response.output_text.delta"
) -> bytes:
    return _ev(kind, item_id=item_id, output_index=index, content_index=0, delta=delta)


def _args(item_id: str, index: int, delta: str) -> bytes:
    return _ev(
        "response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=delta
    )


def _summary(item_id: str, index: int, part: int, delta: str) -> bytes:
    return _ev(
        "response.reasoning_summary_text.delta",
        item_id=item_id,
        output_index=index,
        summary_index=part,
        delta=delta,
    )


def _completed(
    usage: object = _USAGE, *, kind: str = "response.completed", **extra: object
) -> bytes:
    return _ev(
        kind, response={"id": "resp_1", "status": kind.split(".")[1], "usage": usage, **extra}
    )


_MESSAGE: Final[Mapping[str, object]] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [],
}
_CALL: Final[Mapping[str, object]] = {
    "id": "fc_1",
    "type": "function_call",
    "call_id": "call_1",
    "name": "f",
    "arguments": "",
}
_REASONING: Final[Mapping[str, object]] = {"id": "rs_1", "type": "reasoning", "summary": []}


def _run(*frames: bytes, reader: ResponsesReader | None = None) -> list[NeutralEvent]:
    events = read(reader or ResponsesReader(), events_of(frames))
    check_neutral_stream(events, complete=False)
    return events


# --- the mock's native streams -----------------------------------------------------------------


def test_mock_text_stream() -> None:
    answer = mock_answer("openai-responses", "text")
    reader = ResponsesReader()
    events = read(reader, decode(mock_stream("openai-responses", "text")))
    check_neutral_stream(events)
    usage = ledger_usage(answer, "openai-responses")
    assert usage == Usage(25, 8, 100, 0, 0, 0)
    assert events == [
        Start(upstream_id="resp_mock00000001", model=MODEL),
        BlockStart("text"),
        *(Delta("text", piece) for piece in answer.text),
        BlockStop(),
        Finish("end_turn", usage=usage, usage_reported=True),
    ]
    assert (reader.usage_source, reader.upstream_id) == ("reported", "resp_mock00000001")


def test_mock_thinking_and_tools_stream() -> None:
    answer = mock_answer("openai-responses", "thinking+tools")
    body = mock_stream("openai-responses", "thinking+tools")
    events = read("openai-responses", decode(body, sizes=[11]))
    check_neutral_stream(events)
    assert shape(events) == [
        "Start",
        "<thinking>", "thinking", "signature", "</>",
        "<text>", "text", "</>",
        "<tool_use>", "tool_args", "</>",
        "Finish",
    ]  # fmt: skip
    assert texts(events, "thinking") == answer.full_thinking
    signature = texts(events, "signature")
    assert signature == pack_openai_reasoning("rs_mock00000001", None)
    assert unpack_openai_reasoning(signature) == ("rs_mock00000001", None)
    assert texts(events, "text") == answer.full_text
    assert BlockStart("tool_use", tool_id="call_mock00000001", tool_name=TOOL_NAME) in events
    assert texts(events, "tool_args") == TOOL_ARGUMENTS
    usage = ledger_usage(answer, "openai-responses")
    assert usage.reasoning_tokens == 12
    assert events[-1] == Finish("tool_use", usage=usage)


def test_mock_encrypted_reasoning_travels_in_the_signature() -> None:
    include = {"include": ["reasoning.encrypted_content"]}
    answer = mock_answer("openai-responses", "thinking", extra=include)
    reasoning = responses_body(answer)["output"]
    assert isinstance(reasoning, list)
    encrypted = reasoning[0]["encrypted_content"]
    assert isinstance(encrypted, str)
    assert encrypted
    body = mock_stream("openai-responses", "thinking", extra=include)
    events = read("openai-responses", decode(body))
    check_neutral_stream(events)
    signature = texts(events, "signature")
    assert unpack_openai_reasoning(signature) == ("rs_mock00000001", encrypted)


@pytest.mark.parametrize(("spec", "stop"), [("incomplete", "max_tokens"), ("crlf", "end_turn")])
def test_mock_variants(spec: str, stop: str) -> None:
    answer = mock_answer("openai-responses", spec)
    events = read("openai-responses", decode(mock_stream("openai-responses", spec), sizes=[6]))
    check_neutral_stream(events)
    assert texts(events, "text") == answer.full_text
    assert events[-1] == Finish(stop, usage=ledger_usage(answer, "openai-responses"))  # type: ignore[arg-type]


def test_mock_error_event_then_failed() -> None:
    reader = ResponsesReader()
    events = read(reader, decode(mock_stream("openai-responses", "error_event:after=5")))
    check_neutral_stream(events)
    assert shape(events) == ["Start", "<text>", "text", "Failure"]
    assert events[-1] == Failure("server_error", "Overloaded", 502)


def test_mock_no_terminator_is_no_clean_end() -> None:
    reader = ResponsesReader()
    events = read(reader, decode(mock_stream("openai-responses", "no_terminator")))
    assert shape(events) == ["Start", "<text>", "text", "</>"]
    assert (reader.done, reader.usage_source) == (False, "none")


def test_mock_malformed_delta_is_counted_and_skipped() -> None:
    answer = mock_answer("openai-responses", "malformed:at=4")
    reader = ResponsesReader()
    events = read(reader, decode(mock_stream("openai-responses", "malformed:at=4")))
    check_neutral_stream(events)
    assert reader.malformed_events == 1
    assert texts(events, "text") == "".join(answer.text[1:])


# --- hand-written quirks -----------------------------------------------------------------------


def test_message_text_block_opens_lazily_and_never_empty() -> None:
    events = _run(
        _CREATED,
        _ev("response.in_progress", response={"id": "resp_1"}),
        _added(0, _MESSAGE),
        _ev(
            "response.content_part.added",
            item_id="msg_1",
            output_index=0,
            part={"type": "output_text"},
        ),
        _text("msg_1", 0, ""),
        _ev("response.output_text.done", item_id="msg_1", output_index=0, text=""),
        _done(0, {**_MESSAGE, "status": "completed"}),
        _completed(),
    )
    assert events == [Start("resp_1", "gpt-x"), Finish("end_turn", usage=_LEDGER)]


def test_arguments_only_in_done() -> None:
    events = _run(
        _CREATED,
        _added(0, _CALL),
        _ev(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=0,
            arguments='{"a":1}',
        ),
        _done(0, {**_CALL, "arguments": '{"a":1}'}),
        _completed(),
    )
    assert events[1:] == [
        BlockStart("tool_use", tool_id="call_1", tool_name="f"),
        Delta("tool_args", '{"a":1}'),
        BlockStop(),
        Finish("tool_use", usage=_LEDGER),
    ]


def test_arguments_only_in_item_done() -> None:
    events = _run(_CREATED, _added(0, _CALL), _done(0, {**_CALL, "arguments": "{}"}), _completed())
    assert texts(events, "tool_args") == "{}"


def test_done_arguments_never_repeat_streamed_ones() -> None:
    events = _run(
        _CREATED,
        _added(0, _CALL),
        _args("fc_1", 0, '{"a":'),
        _args("fc_1", 0, "1}"),
        _ev(
            "response.function_call_arguments.done",
            item_id="fc_1",
            output_index=0,
            arguments='{"a":1}',
        ),
        _done(0, {**_CALL, "arguments": '{"a":1}'}),
        _completed(),
    )
    assert texts(events, "tool_args") == '{"a":1}'


def test_multiple_summary_parts_are_separated() -> None:
    events = _run(
        _CREATED,
        _added(0, _REASONING),
        _summary("rs_1", 0, 0, "First"),
        _summary("rs_1", 0, 0, " part."),
        _summary("rs_1", 0, 1, "Second part."),
        _summary("rs_1", 0, 2, ""),
        _summary("rs_1", 0, 3, "Third."),
        _done(0, {**_REASONING, "encrypted_content": "gAAAA"}),
        _completed(),
    )
    assert events[1:] == [
        BlockStart("thinking"),
        Delta("thinking", "First"),
        Delta("thinking", " part."),
        Delta("thinking", "\n\n"),
        Delta("thinking", "Second part."),
        Delta("thinking", "\n\n"),
        Delta("thinking", "Third."),
        Delta("signature", pack_openai_reasoning("rs_1", "gAAAA")),
        BlockStop(),
        Finish("end_turn", usage=_LEDGER),
    ]


def test_raw_reasoning_text_is_thinking_too() -> None:
    events = _run(
        _CREATED,
        _added(0, _REASONING),
        _ev(
            "response.reasoning_text.delta",
            item_id="rs_1",
            output_index=0,
            content_index=0,
            delta="raw",
        ),
        _ev(
            "response.reasoning_text.delta",
            item_id="rs_1",
            output_index=0,
            content_index=0,
            delta=" chain",
        ),
        _done(0, _REASONING),
        _completed(),
    )
    assert texts(events, "thinking") == "raw chain"


def test_summary_only_in_item_done() -> None:
    summary = [{"type": "summary_text", "text": "A."}, {"type": "summary_text", "text": "B."}]
    events = _run(
        _CREATED, _added(0, _REASONING), _done(0, {**_REASONING, "summary": summary}), _completed()
    )
    assert events[1:4] == [
        BlockStart("thinking"),
        Delta("thinking", "A.\n\nB."),
        Delta("signature", pack_openai_reasoning("rs_1", None)),
    ]


def test_error_then_failed_updates_usage_only() -> None:
    reader = ResponsesReader()
    nested = {
        "type": "too_many_requests",
        "code": "too_many_requests",
        "message": "Slow down",
        "param": None,
    }
    failed_error = {"code": "rate_limit_exceeded", "message": "other text"}
    events = _run(
        _CREATED,
        _added(0, _MESSAGE),
        _text("msg_1", 0, "Hi"),
        _ev("error", error=nested),
        _completed(kind="response.failed", error=failed_error),
        reader=reader,
    )
    assert events[1:] == [
        BlockStart("text"),
        Delta("text", "Hi"),
        Failure("too_many_requests", "Slow down", 429),
    ]
    assert (reader.usage, reader.usage_source) == (_LEDGER, "reported")


def test_flat_error_event() -> None:
    events = _run(_CREATED, _ev("error", code="invalid_prompt", message="Bad prompt", param=None))
    assert events[-1] == Failure("invalid_prompt", "Bad prompt", 400)


@pytest.mark.parametrize(
    ("frame", "failure"),
    [
        (_ev("error", error="just text"), Failure(None, "just text", 502)),
        (_ev("error"), Failure(None, "", 502)),
        (sse("{oops", event="error"), Failure(None, "{oops", 502)),
    ],
)
def test_odd_error_events(frame: bytes, failure: Failure) -> None:
    assert _run(frame) == [failure]


def test_response_failed_alone() -> None:
    reader = ResponsesReader()
    failed = _completed(
        None, kind="response.failed", error={"code": "server_error", "message": "Boom"}
    )
    events = _run(_CREATED, failed, reader=reader)
    assert events == [Start("resp_1", "gpt-x"), Failure("server_error", "Boom", 502)]
    assert reader.usage_source == "none"
    events = _run(_completed(None, kind="response.failed"))
    assert events == [Failure(None, "upstream response failed", 502)]


@pytest.mark.parametrize(
    ("details", "stop"),
    [
        ({"reason": "max_output_tokens"}, "max_tokens"),
        ({"reason": "content_filter"}, "refusal"),
        (None, "max_tokens"),
    ],
)
def test_incomplete(details: object, stop: str) -> None:
    events = _run(_CREATED, _completed(kind="response.incomplete", incomplete_details=details))
    assert events[-1] == Finish(stop, usage=_LEDGER)  # type: ignore[arg-type]


def test_refusal_makes_the_stop_a_refusal() -> None:
    events = _run(
        _CREATED,
        _added(0, _MESSAGE),
        _text("msg_1", 0, "I can't", kind="response.refusal.delta"),
        _done(0, _MESSAGE),
        _completed(),
    )
    assert events[1:] == [
        BlockStart("text"),
        Delta("refusal", "I can't"),
        BlockStop(),
        Finish("refusal", usage=_LEDGER),
    ]


def test_events_for_other_items_are_ignored() -> None:
    events = _run(
        _CREATED,
        _added(0, _CALL),
        _args("fc_other", 0, "wrong item"),
        _args("fc_1", 0, "{}"),
        _summary("fc_1", 0, 0, "thinking in a tool block"),
        _text("fc_1", 0, "text for a function call item"),
        _done(0, _CALL),
        _args("fc_1", 0, "after done"),
        _text("msg_late", 1, "late text"),
        _text("fc_1", 0, "text for a done item"),
        _completed(),
    )
    assert events[1:] == [
        BlockStart("tool_use", tool_id="call_1", tool_name="f"),
        Delta("tool_args", "{}"),
        BlockStop(),
        BlockStart("text"),
        Delta("text", "late text"),
        BlockStop(),
        Finish("tool_use", usage=_LEDGER),
    ]


def test_text_without_an_announced_item_and_output_index_matching() -> None:
    events = _run(
        _CREATED,
        _ev("response.output_text.delta", output_index=0, delta="a"),
        _ev("response.output_text.delta", output_index=0, delta="b"),
        _ev("response.output_text.delta", delta="c"),
        _ev("response.output_item.done", output_index=0, item={"type": "message"}),
        _completed(),
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "Finish"]
    assert texts(events, "text") == "abc"


def test_a_new_item_closes_the_open_block() -> None:
    events = _run(
        _CREATED,
        _added(0, _REASONING),
        _summary("rs_1", 0, 0, "hm"),
        _added(1, _MESSAGE),
        _text("msg_1", 1, "Hi"),
        _added(2, _CALL),
        _args("fc_1", 2, "{}"),
        _done(0, _REASONING),
        _completed(),
    )
    # The reasoning item was cut off by the next item, so it never got its signature.
    assert shape(events) == [
        "Start", "<thinking>", "thinking", "</>", "<text>", "text", "</>",
        "<tool_use>", "tool_args", "</>", "Finish",
    ]  # fmt: skip
    assert texts(events, "signature") == ""


def test_call_ids_fall_back_to_item_ids_then_generated_ones() -> None:
    events = _run(
        _added(0, {"id": "fc_9", "type": "function_call", "name": "f"}),
        _added(1, {"type": "function_call"}),
        _completed(),
    )
    assert [e for e in events if isinstance(e, BlockStart)] == [
        BlockStart("tool_use", tool_id="fc_9", tool_name="f"),
        BlockStart("tool_use", tool_id="call_1", tool_name=""),
    ]
    assert events[0] == Start()


def test_unknown_events_items_and_garbage_are_ignored() -> None:
    reader = ResponsesReader()
    events = _run(
        _CREATED,
        _ev("response.queued", response={}),
        _ev("response.web_search_call.searching", item_id="ws_1", output_index=0),
        _added(0, {"id": "ws_1", "type": "web_search_call"}),
        _text("ws_1", 0, "not a message"),
        _done(0, {"id": "ws_1", "type": "web_search_call"}),
        _ev("response.brand_new_event", delta="x"),
        sse({"no": "type"}),
        sse("{broken"),
        sse("[DONE]"),
        sse("also broken", event="response.output_text.delta"),
        sse("still broken", event="response.in_progress"),
        _ev("response.output_item.added", item="not an object"),
        _completed(),
        reader=reader,
    )
    assert events == [Start("resp_1", "gpt-x"), Finish("end_turn", usage=_LEDGER)]
    assert reader.malformed_events == 2


def test_unnamed_frames_are_read_by_type() -> None:
    events = _run(
        sse({"type": "response.created", "response": {"id": "r", "model": "m"}}),
        sse(
            {
                "type": "response.output_text.delta",
                "item_id": "msg_1",
                "output_index": 0,
                "delta": "x",
            }
        ),
        sse({"type": "response.completed", "response": {"usage": _USAGE}}),
    )
    assert shape(events) == ["Start", "<text>", "text", "</>", "Finish"]


def test_nothing_after_done() -> None:
    reader = ResponsesReader()
    _run(_CREATED, _completed(), reader=reader)
    assert reader.feed(events_of([_text("msg_1", 0, "more")])[0]) == []
    assert reader.feed(events_of([_completed()])[0]) == []
    assert reader.end_of_stream() == []
