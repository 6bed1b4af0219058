"""The stream checkers: native mock streams pass, hand-broken ones fail, garbage never crashes.

The broken streams start from a native mock stream and change one thing each, so every case
shows that one invariant is checked (the unchanged stream passes: see the first tests).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.translate.test_write import Frame, checker, judge
from trio_gateway._mock._render import Frame as MockFrame
from trio_gateway._mock._render import build_answer
from trio_gateway._mock._render_anthropic import anthropic_frames
from trio_gateway._mock._render_chat import chat_frames
from trio_gateway._mock._render_responses import responses_frames
from trio_gateway._mock._scenario import parse_scenario
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._translate._check import ChatStreamCheck, StreamCheck
from trio_gateway._translate._events import TranslationError

SCENARIOS: Final = ("text", "tools", "thinking", "thinking+tools", "incomplete")

Frames = list[Frame]
Mutation = Callable[[Frames], Frames]


def native(protocol: Protocol, spec: str, *, include_usage: bool = True) -> Frames:
    """The mock upstream's native stream for ``spec``, decoded."""
    body: dict[str, object] = {"model": "m", "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    answer = build_answer(parse_scenario(spec), dialect=protocol, number=7, body=body, headers=[])
    render: Callable[..., list[MockFrame]] = {
        "anthropic": anthropic_frames,
        "openai-chat": chat_frames,
        "openai-responses": responses_frames,
    }[protocol]
    frames: Frames = []
    for frame in render(answer):
        value: object = frame.data if frame.data == "[DONE]" else json.loads(frame.data)
        assert isinstance(value, (dict, str))
        frames.append((frame.event, value))
    return frames


@pytest.mark.parametrize("spec", SCENARIOS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_native_streams_pass(protocol: Protocol, spec: str) -> None:
    assert judge(protocol, native(protocol, spec), include_usage=True)


@pytest.mark.parametrize(
    "spec", ["error_event", "error_event:after=1", "cumulative", "usage_in_delta"]
)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_native_variants_pass(protocol: Protocol, spec: str) -> None:
    assert judge(protocol, native(protocol, spec))


def test_native_chat_without_usage_and_with_usage_on_the_finish_chunk_pass() -> None:
    assert judge(
        "openai-chat", native("openai-chat", "text", include_usage=False), include_usage=False
    )
    assert judge("openai-chat", native("openai-chat", "usage_with_choices"), include_usage=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cut_stream_has_not_ended(protocol: Protocol) -> None:
    assert not judge(protocol, native(protocol, "text")[:-1])


# --- mutation helpers --------------------------------------------------------------------


def data(frames: Frames, i: int) -> dict[str, object]:
    value = frames[i][1]
    assert isinstance(value, dict)
    return value


def find(frames: Frames, kind: str, nth: int = 0) -> int:
    """The position of the ``nth`` frame whose ``type`` is ``kind``."""
    hits = [i for i, (_, d) in enumerate(frames) if isinstance(d, dict) and d.get("type") == kind]
    return hits[nth]


def renumber(frames: Frames) -> Frames:
    """Responses: sequence numbers dense again after a reordering."""
    for number, (_, value) in enumerate(frames):
        if isinstance(value, dict):
            value["sequence_number"] = number
    return frames


def setting(i: int, path: tuple[str | int, ...], value: object) -> Mutation:
    """Set ``frames[i].data[path]`` to ``value`` (None deletes it)."""

    def mutate(frames: Frames) -> Frames:
        target: object = data(frames, i)
        for key in path[:-1]:
            target = target[key]  # type: ignore[index]
        assert isinstance(target, (dict, list))
        if value is None and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = value  # type: ignore[index]
        return frames

    return mutate


def moving(i: int, to: int) -> Mutation:
    def mutate(frames: Frames) -> Frames:
        frames.insert(to, frames.pop(i))
        return frames

    return mutate


def dropping(i: int) -> Mutation:
    def mutate(frames: Frames) -> Frames:
        del frames[i]
        return frames

    return mutate


def inserting(i: int, frame: Frame) -> Mutation:
    def mutate(frames: Frames) -> Frames:
        frames.insert(i, frame)
        return frames

    return mutate


def copying(i: int, to: int) -> Mutation:
    def mutate(frames: Frames) -> Frames:
        frames.insert(to, copy.deepcopy(frames[i]))
        return frames

    return mutate


def then(*mutations: Mutation) -> Mutation:
    def mutate(frames: Frames) -> Frames:
        for mutation in mutations:
            frames = mutation(frames)
        return frames

    return mutate


def observe_all(check: StreamCheck, frames: Frames) -> None:
    for name, value in frames:
        check.observe(name, value)


def run_broken(protocol: Protocol, spec: str, mutation: Mutation, match: str) -> None:
    frames = mutation(copy.deepcopy(native(protocol, spec)))
    check = checker(protocol, include_usage=True)
    with pytest.raises(TranslationError, match=match):
        observe_all(check, frames)


# --- Anthropic: "tools" is message_start, text block 0 (ping at 2), tool block 1, end -----

ANTHROPIC_BROKEN: Final[list[tuple[str, Mutation, str]]] = [
    ("no message_start", dropping(0), "before message_start"),
    ("two message_start", copying(0, 1), "second message_start"),
    ("index gap", then(*(setting(i, ("index",), 2) for i in range(7, 14))), "expected 1"),
    ("delta before its start", moving(3, 1), "not open"),
    ("stop of another block", setting(6, ("index",), 1), "not open"),
    ("delta type mismatch", setting(3, ("delta", "type"), "thinking_delta"), "inside a text"),
    ("signature in a tool block", setting(9, ("delta", "type"), "signature_delta"), "inside a"),
    ("empty text block", then(dropping(5), dropping(4), dropping(3)), "empty text block"),
    ("no usage on message_start", setting(0, ("message", "usage"), None), "usage"),
    ("no usage on message_delta", setting(14, ("usage",), None), "output_tokens"),
    ("two message_stop", copying(15, 16), "after the end"),
    ("ping after message_stop", inserting(16, ("ping", {"type": "ping"})), "after the end"),
    (
        "name differs from type",
        lambda f: [*f[:1], ("message_delta", data(f, 1)), *f[2:]],
        "differs",
    ),
    ("no event name", lambda f: [(None, data(f, 0)), *f[1:]], "differs"),
    ("blocks overlap", moving(6, 8), "while a block is open"),
    ("message_delta inside a block", dropping(13), "while a block is open"),
    ("message_stop without message_delta", dropping(14), "before message_delta"),
    ("a [DONE] line", inserting(16, (None, "[DONE]")), "non-object"),
    ("untyped event", setting(2, ("type",), None), "without a string 'type'"),
]


@pytest.mark.parametrize(
    ("mutation", "match"),
    [(m, x) for _, m, x in ANTHROPIC_BROKEN],
    ids=[name for name, _, _ in ANTHROPIC_BROKEN],
)
def test_broken_anthropic_streams_fail(mutation: Mutation, match: str) -> None:
    run_broken("anthropic", "tools", mutation, match)


# --- Chat: "tools" is role, 3 contents, tool start (4), 4 argument deltas, finish, usage, [DONE]

CHAT_BROKEN: Final[list[tuple[str, Mutation, str]]] = [
    ("an event line", lambda f: [("chunk", f[0][1]), *f[1:]], "event: line"),
    ("role twice", setting(1, ("choices", 0, "delta", "role"), "assistant"), "role"),
    (
        "tool id repeated",
        setting(5, ("choices", 0, "delta", "tool_calls", 0, "id"), "c"),
        "repeats",
    ),
    (
        "tool type repeated",
        setting(6, ("choices", 0, "delta", "tool_calls", 0, "type"), "function"),
        "repeats",
    ),
    (
        "tool name repeated",
        setting(5, ("choices", 0, "delta", "tool_calls", 0, "function", "name"), "get_weather"),
        "repeats",
    ),
    (
        "tool start without id",
        setting(4, ("choices", 0, "delta", "tool_calls", 0, "id"), None),
        "starts without",
    ),
    (
        "tool index gap",
        then(
            *(setting(i, ("choices", 0, "delta", "tool_calls", 0, "index"), 1) for i in range(4, 9))
        ),
        "expected at most 0",
    ),
    ("object missing", setting(2, ("object",), None), "chunk object"),
    ("id changes", setting(2, ("id",), "chatcmpl-other"), "differs"),
    ("usage chunk not last", moving(10, 9), "after the usage chunk"),
    ("chunk after [DONE]", copying(1, 12), "after the end"),
    ("[DONE] before finish_reason", dropping(9), r"\[DONE\] before"),
    ("two finish_reasons", copying(9, 10), "second finish_reason"),
    ("content after finish", copying(1, 10), "after its finish_reason"),
    ("not an object", inserting(1, (None, "{}")), "non-object"),
]


@pytest.mark.parametrize(
    ("mutation", "match"),
    [(m, x) for _, m, x in CHAT_BROKEN],
    ids=[name for name, _, _ in CHAT_BROKEN],
)
def test_broken_chat_streams_fail(mutation: Mutation, match: str) -> None:
    run_broken("openai-chat", "tools", mutation, match)


def test_chat_usage_chunk_only_when_asked() -> None:
    check = ChatStreamCheck(include_usage=False)
    frames = native("openai-chat", "text")
    with pytest.raises(TranslationError, match="did not ask"):
        observe_all(check, frames)


# --- Responses: "thinking+tools" is created, in_progress, reasoning, message, call, completed


def responses_base() -> Frames:
    return native("openai-responses", "thinking+tools")


_R: Final = responses_base()
_TEXT_DELTA: Final = find(_R, "response.output_text.delta")
_MESSAGE_DONE: Final = find(_R, "response.output_item.done", 1)
_CALL_ADDED: Final = find(_R, "response.output_item.added", 2)
_CALL_DELTA: Final = find(_R, "response.function_call_arguments.delta")
_CALL_DONE: Final = find(_R, "response.output_item.done", 2)
_COMPLETED: Final = find(_R, "response.completed")
_PART_ADDED: Final = find(_R, "response.content_part.added")

RESPONSES_BROKEN: Final[list[tuple[str, Mutation, str]]] = [
    ("created not first", then(moving(1, 0), renumber), "before response.created"),
    ("two created", then(copying(0, 1), renumber), "second response.created"),
    ("sequence gap", dropping(_TEXT_DELTA), "expected"),
    ("sequence from 1", lambda f: renumber([(None, {}), *f])[1:], "expected 0"),
    ("response id changes", setting(1, ("response", "id"), "resp_other"), "another response id"),
    (
        "output_index gap",
        then(*(setting(i, ("output_index",), 3) for i in range(_CALL_ADDED, _CALL_DONE + 1))),
        "output_index 3",
    ),
    ("delta for a done item", then(moving(_TEXT_DELTA, _MESSAGE_DONE), renumber), "not open"),
    ("delta for an unknown item", setting(_TEXT_DELTA, ("output_index",), 9), "not open"),
    ("item_id differs", setting(_TEXT_DELTA, ("item_id",), "msg_other"), "item_id"),
    (
        "arguments on a message",
        then(
            copying(_CALL_DELTA, _TEXT_DELTA + 1),
            setting(_TEXT_DELTA + 1, ("output_index",), 1),
            setting(_TEXT_DELTA + 1, ("item_id",), "msg_mock00000007"),
            renumber,
        ),
        "for a message item",
    ),
    (
        "text delta on a function call",
        then(
            setting(_TEXT_DELTA, ("output_index",), 2),
            setting(_TEXT_DELTA, ("item_id",), "fc_mock00000007"),
            moving(_TEXT_DELTA, _CALL_ADDED),
            renumber,
        ),
        "for a function_call",
    ),
    ("two terminal events", copying(_COMPLETED, _COMPLETED + 1), "after the end"),
    (
        "error then completed",
        then(inserting(_COMPLETED, ("error", {"type": "error"})), renumber),
        "after error",
    ),
    (
        "done with other arguments",
        setting(_CALL_DONE, ("item", "arguments"), "{}"),
        "other arguments",
    ),
    ("done with another name", setting(_CALL_DONE, ("item", "name"), "other"), "another name"),
    (
        "arguments.done differs",
        setting(_CALL_DONE - 1, ("arguments",), "{}"),
        "differ from the deltas",
    ),
    ("completed with an open item", then(dropping(_CALL_DONE), renumber), "still open"),
    (
        "output does not list the items",
        setting(_COMPLETED, ("response", "output"), []),
        "does not list",
    ),
    ("status differs", setting(_COMPLETED, ("response", "status"), "incomplete"), "status"),
    (
        "name differs from type",
        lambda f: [("response.in_progress", data(f, 0)), *f[1:]],
        "differs",
    ),
    ("content_index gap", setting(_PART_ADDED, ("content_index",), 1), "content_index 1"),
    ("call without call_id", setting(_CALL_ADDED, ("item", "call_id"), None), "without call_id"),
    ("item id repeated", setting(_CALL_ADDED, ("item", "id"), "msg_mock00000007"), "repeated id"),
]


@pytest.mark.parametrize(
    ("mutation", "match"),
    [(m, x) for _, m, x in RESPONSES_BROKEN],
    ids=[name for name, _, _ in RESPONSES_BROKEN],
)
def test_broken_responses_streams_fail(mutation: Mutation, match: str) -> None:
    run_broken("openai-responses", "thinking+tools", mutation, match)


def test_responses_incomplete_needs_a_reason() -> None:
    frames = copy.deepcopy(native("openai-responses", "incomplete"))
    data(frames, -1)["response"]["incomplete_details"] = None  # type: ignore[index]
    check = checker("openai-responses")
    with pytest.raises(TranslationError, match="incomplete_details"):
        observe_all(check, frames)


# --- garbage ---------------------------------------------------------------------------

_KEYS: Final = st.sampled_from(
    ["type", "index", "delta", "content_block", "message", "usage", "choices", "tool_calls",
     "function", "id", "name", "object", "sequence_number", "response", "output_index",
     "item", "item_id", "content_index", "summary_index", "output", "status", "arguments",
     "role", "finish_reason", "error", "text", "input_tokens", "output_tokens", "call_id"]
)  # fmt: skip
_NAMES: Final = st.sampled_from(
    ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
     "message_delta", "message_stop", "text", "text_delta", "tool_use", "function",
     "chat.completion.chunk", "response.created", "response.output_item.added",
     "response.output_item.done", "response.output_text.delta", "response.completed",
     "function_call", "message", "assistant", "[DONE]", "error", "x"]
)  # fmt: skip
_SCALARS: Final = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), _NAMES)
_JSON: Final = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)
_EVENTS: Final = st.lists(
    st.tuples(st.one_of(st.none(), _NAMES), _JSON),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(protocol=st.sampled_from(PROTOCOLS), events=_EVENTS)
def test_checkers_raise_only_translation_errors_on_garbage(
    protocol: Protocol, events: list[tuple[object, object]]
) -> None:
    check = checker(protocol)
    try:
        for name, value in events:
            check.observe(name, value)  # type: ignore[arg-type]
    except TranslationError:
        pass


@functools.cache
def _native_cached(protocol: Protocol, spec: str) -> Frames:
    return native(protocol, spec)


@settings(max_examples=200, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    spec=st.sampled_from(SCENARIOS),
    choices=st.data(),
)
def test_checkers_raise_only_translation_errors_on_corrupted_native_streams(
    protocol: Protocol, spec: str, choices: st.DataObject
) -> None:
    """One to three random edits (a value replaced anywhere, a frame dropped or doubled) of a
    native stream, so that the checkers' deep states see garbage too."""
    frames = copy.deepcopy(_native_cached(protocol, spec))
    for _ in range(choices.draw(st.integers(1, 3))):
        i = choices.draw(st.integers(0, len(frames) - 1))
        match choices.draw(st.sampled_from(["edit", "drop", "double"])):
            case "drop":
                del frames[i]
            case "double":
                frames.insert(i, copy.deepcopy(frames[i]))
            case _:
                frames[i] = (frames[i][0], _edited(frames[i][1], choices))
        if not frames:
            return
    check = checker(protocol)
    try:
        observe_all(check, frames)
    except TranslationError:
        pass


def _edited(value: object, choices: st.DataObject) -> dict[str, object] | str:
    """``value`` with one node, reached by a random walk, replaced by random JSON."""
    root: list[object] = [value]
    parent: dict[str, object] | list[object] = root
    key: str | int = 0
    node = value
    while choices.draw(st.booleans()):
        if isinstance(node, dict) and node:
            parent, key = node, choices.draw(st.sampled_from(sorted(node)))
        elif isinstance(node, list) and node:
            parent, key = node, choices.draw(st.integers(0, len(node) - 1))
        else:
            break
        node = parent[key]  # type: ignore[index]
    parent[key] = choices.draw(_JSON)  # type: ignore[index]
    edited = root[0]
    return edited if isinstance(edited, (dict, str)) else "garbage"
