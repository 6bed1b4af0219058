"""Properties of request translation.

1. Round trip: a random conversation restricted to what all three protocols can express,
   rendered to protocol A, read back, rendered to protocol B and read back, means the same:
   system text, turn roles, texts, tool calls (ids, names, parsed arguments), tool results
   and parameters.
2. Junk: whatever a field of a valid body is replaced with, parsing and rendering raise
   nothing but ``InvalidRequest``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Final, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gateway._errors import InvalidRequest
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway._translate._request import parse_conversation, render_request
from trio_gateway._translate._request_model import (
    Conversation,
    Part,
    Setting,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolResult,
    Turn,
)
from trio_gateway._translate._signature import pack_anthropic_thinking, pack_openai_reasoning

_T = TypeVar("_T")

# --- 1. Round trip ----------------------------------------------------------------------------

MODES: Final[tuple[ToolChoiceMode, ...]] = ("auto", "any", "none", "tool")
texts = st.text(min_size=1, max_size=12).filter(str.strip)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
arguments = st.dictionaries(names, scalars | st.lists(scalars, max_size=3), max_size=3)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    tool_names = draw(st.lists(names, min_size=0, max_size=3, unique=True))
    tools = tuple(
        Tool(
            name=name,
            description=draw(st.none() | texts),
            schema={"type": "object", "properties": {"x": {"type": "string"}}},
            strict=draw(st.none() | st.booleans()),
        )
        for name in tool_names
    )
    turns: list[Turn] = []
    pending: list[str] = []
    serial = 0
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        results: list[Part] = [ToolResult(call_id, (Text(draw(texts)),)) for call_id in pending]
        user_texts: list[Part] = [Text(t) for t in draw(st.lists(texts, max_size=2))]
        if not results and not user_texts:
            user_texts = [Text(draw(texts))]
        turns.append(Turn("user", (*results, *user_texts)))
        pending = []
        assistant: list[Part] = [Text(t) for t in draw(st.lists(texts, max_size=2))]
        if tool_names:
            for _ in range(draw(st.integers(min_value=0, max_value=2))):
                serial += 1
                call_id = f"{draw(st.from_regex(r'[a-zA-Z0-9_-]{1,6}', fullmatch=True))}-{serial}"
                args = json.dumps(draw(arguments))
                assistant.append(ToolCall(call_id, draw(st.sampled_from(tool_names)), args))
                pending.append(call_id)
        if not assistant:
            assistant = [Text(draw(texts))]
        turns.append(Turn("assistant", tuple(assistant)))
    closing: bool = draw(st.booleans())
    if pending or closing:
        results = [ToolResult(call_id, (Text(draw(texts)),)) for call_id in pending]
        turns.append(Turn("user", (*results, Text(draw(texts)))))
    choice = None
    with_choice: bool = draw(st.booleans())
    if tools and with_choice:
        mode = draw(st.sampled_from(MODES))
        name = draw(st.sampled_from(tool_names)) if mode == "tool" else None
        choice = ToolChoice(mode, name)
    temperature = draw(st.none() | unit)
    return Conversation(
        client=draw(st.sampled_from(PROTOCOLS)),
        system=tuple(draw(st.lists(texts, max_size=2))),
        turns=tuple(turns),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=draw(st.none() | st.booleans()) if tools else None,
        max_tokens=draw(st.integers(min_value=1, max_value=100_000)),
        temperature=None if temperature is None else Setting(temperature, "temperature"),
        top_p=draw(st.none() | unit),
    )


def meaning(conversation: Conversation) -> dict[str, object]:
    """What must survive translation, normalised where protocols differ only in form."""
    turns: list[tuple[str, str, list[object], list[object]]] = []
    for turn in conversation.turns:
        text = "".join(p.text for p in turn.parts if isinstance(p, Text))
        calls: list[object] = [
            (p.id, p.name, json.loads(p.arguments)) for p in turn.parts if isinstance(p, ToolCall)
        ]
        results: list[object] = [
            (p.call_id, "".join(t.text for t in p.parts if isinstance(t, Text)), p.is_error)
            for p in turn.parts
            if isinstance(p, ToolResult)
        ]
        if turns and turns[-1][0] == turn.role:
            _, previous, previous_calls, previous_results = turns.pop()
            text, calls, results = (
                previous + text,
                previous_calls + calls,
                previous_results + results,
            )
        turns.append((turn.role, text, calls, results))
    choice = conversation.tool_choice or (ToolChoice("auto") if conversation.tools else None)
    parallel = (
        conversation.parallel_tool_calls is False and choice is not None and choice.mode != "none"
    )
    return {
        "system": "\n\n".join(conversation.system),
        "turns": turns,
        "tools": [
            (t.name, t.description, dict(t.schema), t.strict is True) for t in conversation.tools
        ],
        "tool_choice": choice,
        "serial_only": parallel,
        "max_tokens": conversation.max_tokens,
        "temperature": None if conversation.temperature is None else conversation.temperature.value,
        "top_p": conversation.top_p,
    }


def through(conversation: Conversation, protocol: Protocol) -> Conversation:
    return parse_conversation(protocol, render_request(protocol, conversation, model="m"))


@settings(max_examples=200, deadline=None)
@given(conversations(), st.sampled_from(PROTOCOLS), st.sampled_from(PROTOCOLS))
def test_round_trip_preserves_meaning(
    conversation: Conversation, first: Protocol, second: Protocol
) -> None:
    once = through(conversation, first)
    assert meaning(once) == meaning(conversation)
    assert meaning(through(once, second)) == meaning(conversation)


# --- 2. Junk ------------------------------------------------------------------------------------

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(
        [
            "text",
            "image",
            "tool_use",
            "tool_result",
            "thinking",
            "function",
            "message",
            "function_call",
            "function_call_output",
            "reasoning",
            "json_schema",
            "json_object",
            "user",
            "assistant",
            "system",
            "tool",
            "base64",
            "url",
            "data:image/png;base64,AA",
            "https://x/y",
            "{}",
            "[]",
            "enabled",
            "adaptive",
            "auto",
            "required",
            "none",
            "any",
            pack_anthropic_thinking("thinking", "s"),
            pack_openai_reasoning("rs", None),
        ]
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "role",
                    "content",
                    "text",
                    "id",
                    "name",
                    "input",
                    "source",
                    "arguments",
                    "output",
                    "call_id",
                    "tool_use_id",
                    "image_url",
                    "url",
                    "file",
                    "file_data",
                    "schema",
                    "json_schema",
                    "format",
                    "effort",
                    "summary",
                    "encrypted_content",
                    "function",
                    "parameters",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)

VALID: Final[dict[Protocol, dict[str, object]]] = {
    "anthropic": {
        "model": "m",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 50},
        "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {}}},
        "metadata": {"user_id": "u"},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image", "source": {"type": "url", "url": "https://x"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}],
            },
        ],
    },
    "openai-chat": {
        "model": "m",
        "max_completion_tokens": 100,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
        "reasoning_effort": "low",
        "stop": ["x"],
        "messages": [
            {"role": "system", "content": "S"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": "https://x"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
    },
    "openai-responses": {
        "model": "m",
        "instructions": "S",
        "max_output_tokens": 100,
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
        "tool_choice": {"type": "function", "name": "f"},
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_file", "file_data": "data:application/pdf;base64,AA"},
                ],
            },
            {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "e"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_text", "text": "r"}],
            },
        ],
    },
}


@st.composite
def mutated(draw: st.DrawFn, body: dict[str, object]) -> dict[str, object]:
    """``body`` with one randomly chosen nested value (or a new key) replaced by junk."""
    copy: object = json.loads(json.dumps(body))
    assert isinstance(copy, dict)
    root: dict[str, object] = copy
    node: object = root
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if isinstance(node, dict) and node:
            child = node[draw(st.sampled_from(sorted(node)))]
        elif isinstance(node, list) and node:
            child = node[draw(st.integers(min_value=0, max_value=len(node) - 1))]
        else:
            break
        if not isinstance(child, dict | list) or not child:
            break
        node = child
    value = draw(junk)
    if isinstance(node, dict):
        key = draw(
            st.sampled_from(sorted(node)) | st.sampled_from(["type", "content", "role", "x"])
        )
        if key == "model" and node is root:
            key = "messages"  # the gateway validated `model` before translation
        node[key] = value
    elif isinstance(node, list):
        node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = value
    return root


def attempt(action: Callable[[], _T]) -> _T | InvalidRequest:
    """The action's result, or the ``InvalidRequest`` it raised (anything else escapes)."""
    try:
        return action()
    except InvalidRequest as error:
        return error


def names_its_field(error: InvalidRequest) -> bool:
    return error.param is not None and f"`{error.param}`" in error.message


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(PROTOCOLS))
def test_junk_never_raises_anything_but_invalid_request(
    data: st.DataObject, client: Protocol
) -> None:
    body = data.draw(mutated(VALID[client]))
    conversation = attempt(partial(parse_conversation, client, body))
    if isinstance(conversation, InvalidRequest):
        assert names_its_field(conversation)
        return
    for upstream in PROTOCOLS:
        rendered = attempt(partial(render_request, upstream, conversation, model="m"))
        if isinstance(rendered, InvalidRequest):
            assert names_its_field(rendered)
        else:
            json.dumps(rendered, allow_nan=False)


def test_valid_bodies_parse_and_render() -> None:
    """The junk test's starting points are themselves valid everywhere they can be."""
    for client, body in VALID.items():
        conversation = parse_conversation(client, body)
        for upstream in PROTOCOLS:
            if client == "openai-chat" and upstream == "openai-responses":
                continue  # `stop` has no Responses equivalent
            assert render_request(upstream, conversation, model="m")["stream"] is True
