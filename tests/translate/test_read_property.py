"""Property: whatever an upstream sends, a reader never raises and its output is a
well-formed neutral stream.

Each protocol has a small grammar of events, valid and slightly invalid: wrong or missing
indices and item ids, unknown block/item/event types, garbage field types, malformed JSON,
stray ``[DONE]``, events after the terminal one. Streams drawn from it are encoded as SSE,
cut into random chunks and decoded by :class:`SSEDecoder`, as the relay does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple
from typing import Final

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.translate.test_read import check_neutral_stream, decode, read
from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._events import Failure, Finish
from trio_gateway._translate._read import make_reader

Frame = tuple[str | None, str]
"""An SSE ``event:`` name (or none) and the ``data:`` text."""

_SETTINGS: Final = settings(max_examples=200, deadline=None)

_TEXT: Final = st.text(max_size=6)
_COUNT: Final = st.one_of(st.integers(min_value=-2, max_value=10**6), st.just("9"), st.none())
_INDEX: Final = st.one_of(st.integers(min_value=0, max_value=3), st.none(), st.just("0"))
_JUNK: Final = st.sampled_from(["{oops", "", "[DONE]", "null", "[1, 2]", '"text"', "7", "{}"])


def _maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(strategy, st.none(), st.integers(), _TEXT)


def _obj(
    required: dict[str, st.SearchStrategy[object]], **optional: st.SearchStrategy[object]
) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def _named(draw: st.DrawFn, obj: st.SearchStrategy[dict[str, object]]) -> Frame:
    """A JSON event, usually named after its ``type``, sometimes unnamed or misnamed."""
    value = draw(obj)
    kind = value.get("type")
    name = draw(
        st.sampled_from([kind if isinstance(kind, str) else None, None, "ping", "message", "error"])
    )
    return name, json.dumps(value)


_JUNK_FRAME: Final = st.tuples(
    st.sampled_from([None, "error", "message_start", "response.completed"]), _JUNK
)

# --- Anthropic -------------------------------------------------------------------------------

_A_USAGE = _maybe(
    _obj(
        {},
        input_tokens=_COUNT,
        output_tokens=_COUNT,
        cache_read_input_tokens=_COUNT,
        cache_creation_input_tokens=_COUNT,
        cache_creation=_obj({}, ephemeral_1h_input_tokens=_COUNT, ephemeral_5m_input_tokens=_COUNT),
    )
)
_A_BLOCK = _maybe(
    _obj(
        {
            "type": st.sampled_from(
                [
                    "text",
                    "thinking",
                    "redacted_thinking",
                    "tool_use",
                    "server_tool_use",
                    "web_search_tool_result",
                    "mystery",
                ]
            )
        },
        text=_maybe(_TEXT),
        thinking=_maybe(_TEXT),
        signature=_maybe(_TEXT),
        data=_maybe(_TEXT),
        id=_maybe(_TEXT),
        name=_maybe(_TEXT),
        input=_maybe(_obj({}, city=_TEXT)),
    )
)
_A_DELTA = _maybe(
    _obj(
        {
            "type": st.sampled_from(
                [
                    "text_delta",
                    "thinking_delta",
                    "signature_delta",
                    "input_json_delta",
                    "citations_delta",
                    "mystery",
                ]
            )
        },
        text=_maybe(_TEXT),
        thinking=_maybe(_TEXT),
        signature=_maybe(_TEXT),
        partial_json=_maybe(_TEXT),
    )
)
_A_STOP = _maybe(
    st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "new"])
)
_ANTHROPIC_EVENT = st.one_of(
    _obj(
        {
            "type": st.just("message_start"),
            "message": _maybe(_obj({}, id=_maybe(_TEXT), model=_maybe(_TEXT), usage=_A_USAGE)),
        }
    ),
    _obj({"type": st.just("content_block_start")}, index=_INDEX, content_block=_A_BLOCK),
    _obj({"type": st.just("content_block_delta")}, index=_INDEX, delta=_A_DELTA),
    _obj({"type": st.just("content_block_stop")}, index=_INDEX),
    _obj(
        {"type": st.just("message_delta")},
        delta=_maybe(_obj({}, stop_reason=_A_STOP, stop_sequence=_maybe(_TEXT))),
        usage=_A_USAGE,
    ),
    _obj({"type": st.just("message_stop")}),
    _obj(
        {"type": st.just("error")},
        error=_maybe(_obj({}, type=_maybe(_TEXT), message=_maybe(_TEXT))),
    ),
    _obj({"type": st.sampled_from(["ping", "brand_new"])}),
)

# --- Chat ------------------------------------------------------------------------------------

_C_CALL = _maybe(
    _obj(
        {},
        index=_INDEX,
        id=_maybe(st.sampled_from(["call_a", "call_b", ""])),
        function=_maybe(_obj({}, name=_maybe(_TEXT), arguments=_maybe(_TEXT))),
    )
)
_C_DELTA = _maybe(
    _obj(
        {},
        role=st.just("assistant"),
        content=_maybe(_TEXT),
        refusal=_maybe(_TEXT),
        reasoning_content=_maybe(_TEXT),
        reasoning=_maybe(_TEXT),
        tool_calls=_maybe(st.lists(_C_CALL, max_size=3)),
        function_call=_maybe(_obj({}, name=_maybe(_TEXT), arguments=_maybe(_TEXT))),
    )
)
_C_FINISH = _maybe(
    st.sampled_from(["stop", "length", "tool_calls", "content_filter", "function_call", "odd"])
)
_C_CHOICE = _obj({}, index=_INDEX, delta=_C_DELTA, finish_reason=_C_FINISH)
_C_USAGE = _maybe(
    _obj(
        {},
        prompt_tokens=_COUNT,
        completion_tokens=_COUNT,
        prompt_tokens_details=_maybe(_obj({}, cached_tokens=_COUNT)),
    )
)
_CHAT_EVENT = st.one_of(
    _obj(
        {},
        id=_maybe(_TEXT),
        model=_maybe(_TEXT),
        choices=_maybe(st.lists(_C_CHOICE, max_size=2)),
        usage=_C_USAGE,
    ),
    _obj(
        {"error": _maybe(_obj({}, type=_maybe(_TEXT), code=_maybe(_TEXT), message=_maybe(_TEXT)))}
    ),
)


@st.composite
def _chat_frame(draw: st.DrawFn) -> Frame:
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return None, "[DONE]"
    return None, json.dumps(draw(_CHAT_EVENT))


# --- Responses -------------------------------------------------------------------------------

_ITEM_ID = _maybe(st.sampled_from(["a", "b", "c"]))
_R_ITEM = _maybe(
    _obj(
        {},
        id=_ITEM_ID,
        type=_maybe(st.sampled_from(["message", "function_call", "reasoning", "web_search_call"])),
        call_id=_maybe(_TEXT),
        name=_maybe(_TEXT),
        arguments=_maybe(_TEXT),
        encrypted_content=_maybe(_TEXT),
        summary=_maybe(st.lists(_maybe(_obj({}, text=_maybe(_TEXT))), max_size=2)),
    )
)
_R_RESPONSE = _maybe(
    _obj(
        {},
        id=_maybe(_TEXT),
        model=_maybe(_TEXT),
        usage=_maybe(_obj({}, input_tokens=_COUNT, output_tokens=_COUNT)),
        error=_maybe(_obj({}, code=_maybe(_TEXT), message=_maybe(_TEXT))),
        incomplete_details=_maybe(
            _obj({}, reason=_maybe(st.sampled_from(["max_output_tokens", "content_filter"])))
        ),
    )
)
_R_PART_EVENTS = st.sampled_from(
    [
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.output_text.done",
        "response.content_part.added",
    ]
)
_RESPONSES_EVENT = st.one_of(
    _obj(
        {
            "type": st.sampled_from(
                [
                    "response.created",
                    "response.in_progress",
                    "response.completed",
                    "response.incomplete",
                    "response.failed",
                ]
            )
        },
        response=_R_RESPONSE,
    ),
    _obj(
        {"type": st.sampled_from(["response.output_item.added", "response.output_item.done"])},
        output_index=_INDEX,
        item=_R_ITEM,
    ),
    _obj(
        {"type": _R_PART_EVENTS},
        item_id=_ITEM_ID,
        output_index=_INDEX,
        summary_index=_INDEX,
        content_index=_INDEX,
        delta=_maybe(_TEXT),
        arguments=_maybe(_TEXT),
    ),
    _obj(
        {"type": st.just("error")},
        code=_maybe(_TEXT),
        message=_maybe(_TEXT),
        error=_maybe(_obj({}, type=_maybe(_TEXT), code=_maybe(_TEXT), message=_maybe(_TEXT))),
    ),
    _obj({"type": st.just("response.brand_new")}),
)

_NOISE: Final[dict[Protocol, st.SearchStrategy[Frame]]] = {
    "anthropic": st.one_of(_named(_ANTHROPIC_EVENT), _JUNK_FRAME),
    "openai-chat": st.one_of(_chat_frame(), _JUNK_FRAME),
    "openai-responses": st.one_of(_named(_RESPONSES_EVENT), _JUNK_FRAME),
}
"""Single events from each protocol's grammar: valid, slightly invalid, or junk."""

# --- whole streams: a valid skeleton, then a few mutations -----------------------------------
#
# Streams of independent random events almost never open a block, so the skeletons below are
# valid streams (blocks with matching deltas, a terminal event) that a few mutations then
# damage: an event dropped, repeated, swapped with its neighbour, or a noise event inserted.


def _frame(obj: dict[str, object], *, named: bool = True) -> Frame:
    kind = obj.get("type")
    return (kind if named and isinstance(kind, str) else None), json.dumps(obj)


@st.composite
def _mutated(draw: st.DrawFn, frames: list[Frame], noise: st.SearchStrategy[Frame]) -> list[Frame]:
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(frames)))
        match draw(st.sampled_from(["drop", "repeat", "swap", "insert", "insert"])):
            case "drop" if at < len(frames):
                del frames[at]
            case "repeat" if at < len(frames):
                frames.insert(at, frames[at])
            case "swap" if at + 1 < len(frames):
                frames[at], frames[at + 1] = frames[at + 1], frames[at]
            case _:
                frames.insert(at, draw(noise))
    return frames


_A_DELTA_FIELDS: Final = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
    "input_json_delta": "partial_json",
    "citations_delta": "citation",
}
_A_BLOCK_DELTAS: Final = {
    "text": "text_delta",
    "thinking": "thinking_delta",
    "tool_use": "input_json_delta",
    "server_tool_use": "input_json_delta",
}


@st.composite
def _anthropic_stream(draw: st.DrawFn) -> list[Frame]:
    named = draw(st.booleans()) or draw(st.booleans())
    usage = {"input_tokens": draw(_COUNT), "output_tokens": 1}
    start = {"id": "msg_1", "model": "claude", "usage": usage}
    frames = [_frame({"type": "message_start", "message": start}, named=named)]
    for index in range(draw(st.integers(min_value=0, max_value=4))):
        kind = draw(
            st.sampled_from(
                ["text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "mystery"]
            )
        )
        block = {"type": kind, "text": draw(_TEXT), "id": "t", "name": "f", "input": {}}
        frames.append(
            _frame(
                {"type": "content_block_start", "index": index, "content_block": block}, named=named
            )
        )
        usual = _A_BLOCK_DELTAS.get(kind, "text_delta")
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            delta_type = draw(
                st.sampled_from(
                    [usual, usual, usual, "signature_delta", "citations_delta", "text_delta"]
                )
            )
            delta = {"type": delta_type, _A_DELTA_FIELDS[delta_type]: draw(_TEXT)}
            frames.append(
                _frame({"type": "content_block_delta", "index": index, "delta": delta}, named=named)
            )
        frames.append(_frame({"type": "content_block_stop", "index": index}, named=named))
    stop: dict[str, object] = {"stop_reason": draw(_A_STOP), "stop_sequence": None}
    frames.append(
        _frame(
            {"type": "message_delta", "delta": stop, "usage": {"output_tokens": draw(_COUNT)}},
            named=named,
        )
    )
    frames.append(_frame({"type": "message_stop"}, named=named))
    return draw(_mutated(frames, _NOISE["anthropic"]))


@st.composite
def _chat_stream(draw: st.DrawFn) -> list[Frame]:
    def chunk(delta: dict[str, object] | None, **extra: object) -> Frame:
        choices = [] if delta is None else [{"index": 0, "delta": delta, **extra}]
        return None, json.dumps({"id": "c", "model": "m", "choices": choices})

    frames = [chunk({"role": "assistant", "content": ""})]
    tools = 0
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        kind = draw(
            st.sampled_from(
                ["reasoning_content", "reasoning", "content", "refusal", "tool", "old_tool"]
            )
        )
        pieces = draw(st.lists(_TEXT, min_size=1, max_size=3))
        if kind in ("tool", "old_tool"):
            index = (
                tools
                if kind == "tool"
                else draw(st.integers(min_value=0, max_value=max(tools - 1, 0)))
            )
            tools += kind == "tool"
            first = {
                "index": index,
                "id": f"call_{index}",
                "function": {"name": "f", "arguments": pieces[0]},
            }
            frames.append(chunk({"tool_calls": [first]}))
            frames += (
                chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]})
                for p in pieces[1:]
            )
        else:
            frames += (chunk({kind: piece}) for piece in pieces)
    frames.append(chunk({}, finish_reason=draw(_C_FINISH)))
    usage = {"prompt_tokens": draw(_COUNT), "completion_tokens": draw(_COUNT)}
    frames.append((None, json.dumps({"id": "c", "choices": [], "usage": usage})))
    frames.append((None, "[DONE]"))
    return draw(_mutated(frames, _NOISE["openai-chat"]))


_R_PARTS: Final = {
    "message": ("response.output_text.delta", "response.refusal.delta"),
    "function_call": (
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ),
    "reasoning": ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"),
    "web_search_call": ("response.web_search_call.searching", "response.output_text.delta"),
}


@st.composite
def _responses_stream(draw: st.DrawFn) -> list[Frame]:
    named = draw(st.booleans()) or draw(st.booleans())
    frames = [
        _frame({"type": "response.created", "response": {"id": "r", "model": "m"}}, named=named)
    ]
    for index in range(draw(st.integers(min_value=0, max_value=4))):
        kind = draw(st.sampled_from(list(_R_PARTS)))
        item = {"id": f"i{index}", "type": kind, "call_id": f"call_{index}", "name": "f"}
        frames.append(
            _frame(
                {"type": "response.output_item.added", "output_index": index, "item": item},
                named=named,
            )
        )
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            part = {
                "type": draw(st.sampled_from(_R_PARTS[kind])),
                "item_id": item["id"],
                "output_index": index,
                "summary_index": draw(st.integers(min_value=0, max_value=2)),
                "delta": draw(_TEXT),
                "arguments": draw(_TEXT),
            }
            frames.append(_frame(part, named=named))
        done = {**item, "arguments": draw(_TEXT), "encrypted_content": draw(_maybe(_TEXT))}
        frames.append(
            _frame(
                {"type": "response.output_item.done", "output_index": index, "item": done},
                named=named,
            )
        )
    terminal = draw(
        st.sampled_from(
            ["response.completed", "response.completed", "response.incomplete", "response.failed"]
        )
    )
    response = {"usage": {"input_tokens": draw(_COUNT), "output_tokens": draw(_COUNT)}}
    frames.append(_frame({"type": terminal, "response": response}, named=named))
    return draw(_mutated(frames, _NOISE["openai-responses"]))


_STREAMS: Final[dict[Protocol, st.SearchStrategy[list[Frame]]]] = {
    "anthropic": st.one_of(_anthropic_stream(), st.lists(_NOISE["anthropic"], max_size=20)),
    "openai-chat": st.one_of(_chat_stream(), st.lists(_NOISE["openai-chat"], max_size=20)),
    "openai-responses": st.one_of(
        _responses_stream(), st.lists(_NOISE["openai-responses"], max_size=20)
    ),
}


def _encode(frames: Sequence[Frame]) -> bytes:
    out = bytearray()
    for name, data in frames:
        if name is not None:
            out += f"event: {name}\n".encode()
        out += f"data: {data}\n\n".encode()
    return bytes(out)


def _check(protocol: Protocol, frames: Sequence[Frame], sizes: Sequence[int]) -> None:
    body = _encode(frames)
    reader = make_reader(protocol)
    out = read(reader, decode(body, sizes=sizes))
    check_neutral_stream(out, complete=reader.done)
    assert reader.done == (bool(out) and isinstance(out[-1], Finish | Failure))
    assert all(count >= 0 for count in astuple(reader.usage))
    if out and isinstance(out[-1], Finish) and out[-1].usage_reported:
        assert reader.usage_source == "reported"
    # The chunking never changes what is read.
    assert read(protocol, decode(body)) == out


_SIZES: Final = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8)


@_SETTINGS
@given(_STREAMS["anthropic"], _SIZES)
def test_anthropic_reader_output_is_always_well_formed(
    frames: list[Frame], sizes: list[int]
) -> None:
    _check("anthropic", frames, sizes)


@_SETTINGS
@given(_STREAMS["openai-chat"], _SIZES)
def test_chat_reader_output_is_always_well_formed(frames: list[Frame], sizes: list[int]) -> None:
    _check("openai-chat", frames, sizes)


@_SETTINGS
@given(_STREAMS["openai-responses"], _SIZES)
def test_responses_reader_output_is_always_well_formed(
    frames: list[Frame], sizes: list[int]
) -> None:
    _check("openai-responses", frames, sizes)
