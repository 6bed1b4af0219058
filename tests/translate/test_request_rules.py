"""Structural rules of the rendered requests: Anthropic alternation and tool_result-first
ordering (protocols.md §1.3), Chat tool message placement (§2.2) and Responses item order
(§3.2)."""

from __future__ import annotations

from typing import Final

import pytest

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import parse_conversation, render_request
from trio_gateway._translate._request_model import (
    Conversation,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    Turn,
)

SCHEMA: Final[dict[str, object]] = {"type": "object", "properties": {}}
CHAT_TOOLS: Final = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]


def call(call_id: str, arguments: str = "{}") -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


def translate(
    client: Protocol, body: dict[str, object], upstream: Protocol, **kwargs: int
) -> dict[str, object]:
    conversation = parse_conversation(client, {"model": "m", **body})
    return render_request(upstream, conversation, model="up", **kwargs)


# --- Anthropic: alternation, tool_result first, text dropping, id sanitising --------------


def test_chat_tool_messages_and_following_user_text_become_one_user_message() -> None:
    body = translate(
        "openai-chat",
        {
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "Calling.", "tool_calls": [call("a"), call("b")]},
                {"role": "tool", "tool_call_id": "a", "content": "A"},
                {"role": "tool", "tool_call_id": "b", "content": "B"},
                {"role": "user", "content": "and now?"},
                {"role": "user", "content": [{"type": "text", "text": "quick"}]},
            ]
        },
        "anthropic",
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                {"type": "tool_use", "id": "b", "name": "f", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "a",
                    "content": [{"type": "text", "text": "A"}],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "b",
                    "content": [{"type": "text", "text": "B"}],
                },
                {"type": "text", "text": "and now?"},
                {"type": "text", "text": "quick"},
            ],
        },
    ]


def test_anthropic_tool_results_move_before_text_and_tool_uses_after_text() -> None:
    body = translate(
        "anthropic",
        {
            "max_tokens": 10,
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                        {"type": "text", "text": "one"},
                        {"type": "tool_use", "id": "b", "name": "f", "input": {}},
                        {"type": "text", "text": "two"},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "first"},
                        {"type": "tool_result", "tool_use_id": "a", "content": "A"},
                        {"type": "text", "text": "second"},
                        {"type": "tool_result", "tool_use_id": "b", "content": "B"},
                    ],
                },
            ],
        },
        "anthropic",
    )
    messages = body["messages"]
    assert isinstance(messages, list)
    assert [block["type"] for block in messages[0]["content"]] == [
        "text",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert [block.get("text", block.get("tool_use_id")) for block in messages[1]["content"]] == [
        "a",
        "b",
        "first",
        "second",
    ]


def test_empty_text_is_dropped_and_the_neighbours_merge() -> None:
    body = translate(
        "openai-chat",
        {
            "messages": [
                {"role": "system", "content": "  "},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": " \n"},
                {"role": "user", "content": [{"type": "text", "text": ""}]},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "", "tool_calls": [call("c")]},
                {"role": "tool", "tool_call_id": "c", "content": "  "},
            ]
        },
        "anthropic",
    )
    assert "system" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c"}]},
    ]


def test_tool_ids_are_sanitised_the_same_way_on_both_sides() -> None:
    body = translate(
        "openai-responses",
        {
            "input": [
                {"type": "function_call", "call_id": "fc:1.2/x", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "fc:1.2/x", "output": "ok"},
            ]
        },
        "anthropic",
    )
    assert body["messages"] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "fc_1_2_x", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "fc_1_2_x",
                    "content": [{"type": "text", "text": "ok"}],
                }
            ],
        },
    ]


def test_arguments_keep_their_values_exactly() -> None:
    arguments = '{"n": 12345678901234567890, "x": 0.1, "s": "é\\u2028", "a": [null, true]}'
    body = translate(
        "openai-chat",
        {"messages": [{"role": "assistant", "tool_calls": [call("c", arguments)]}]},
        "anthropic",
    )
    assert body["messages"] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "c",
                    "name": "f",
                    "input": {
                        "n": 12345678901234567890,
                        "x": 0.1,
                        "s": "é\u2028",
                        "a": [None, True],
                    },
                }
            ],
        }
    ]


# --- Chat: tool message placement ------------------------------------------------------------


def test_chat_tool_messages_come_before_the_rest_of_the_user_turn() -> None:
    body = translate(
        "anthropic",
        {
            "max_tokens": 10,
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": 1}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "also this"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [
                                {"type": "text", "text": "chart:"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x/c.png"},
                                },
                                {"type": "text", "text": "done"},
                            ],
                        },
                    ],
                },
            ],
        },
        "openai-chat",
    )
    assert body["messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"q":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t", "content": "chart:\n\ndone"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x/c.png"}},
                {"type": "text", "text": "also this"},
            ],
        },
    ]


def test_chat_drops_thinking_and_joins_assistant_text() -> None:
    body = translate(
        "anthropic",
        {
            "max_tokens": 10,
            "messages": [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "EmwK"},
                        {"type": "text", "text": "Hello, "},
                        {"type": "text", "text": "world."},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "x", "signature": "s"}],
                },
            ],
        },
        "openai-chat",
    )
    assert body["messages"] == [{"role": "assistant", "content": "Hello, world."}]


# --- Responses: item order -------------------------------------------------------------------


def test_responses_function_calls_follow_their_message_and_outputs_precede_user_text() -> None:
    body = translate(
        "openai-chat",
        {
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": "Two calls.",
                    "tool_calls": [call("a"), call("b")],
                },
                {"role": "tool", "tool_call_id": "a", "content": "A"},
                {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "B"}]},
                {"role": "user", "content": "next"},
            ]
        },
        "openai-responses",
    )
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Two calls.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "A"},
        {"type": "function_call_output", "call_id": "b", "output": "B"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "next"}]},
    ]


def test_responses_tool_result_with_image_is_a_part_list() -> None:
    body = translate(
        "anthropic",
        {
            "max_tokens": 10,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "is_error": True,
                            "content": [
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x/e.png"},
                                },
                                {"type": "text", "text": "crashed"},
                            ],
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "u",
                            "is_error": True,
                            "content": [
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x/f.png"},
                                }
                            ],
                        },
                    ],
                }
            ],
        },
        "openai-responses",
    )
    assert body["input"] == [
        {
            "type": "function_call_output",
            "call_id": "t",
            "output": [
                {"type": "input_image", "image_url": "https://x/e.png", "detail": "auto"},
                {"type": "input_text", "text": "Error: crashed"},
            ],
        },
        {
            "type": "function_call_output",
            "call_id": "u",
            "output": [
                {"type": "input_text", "text": "Error:"},
                {"type": "input_image", "image_url": "https://x/f.png", "detail": "auto"},
            ],
        },
    ]


@pytest.mark.parametrize("upstream", ["anthropic", "openai-chat", "openai-responses"])
def test_neutral_conversation_renders_without_a_client_body(upstream: Protocol) -> None:
    """The model is usable directly (the gateway builds it only by parsing, tests need not)."""
    conversation = Conversation(
        client="openai-chat",
        system=("S",),
        turns=(
            Turn("user", (Text("q"),)),
            Turn("assistant", (ToolCall("c1", "f", '{"a":1}'),)),
        ),
        tools=(Tool("f", None, SCHEMA, None),),
        tool_choice=ToolChoice("tool", "f"),
        max_tokens=50,
    )
    body = render_request(upstream, conversation, model="m")
    expected_choice: dict[Protocol, object] = {
        "anthropic": {"type": "tool", "name": "f"},
        "openai-chat": {"type": "function", "function": {"name": "f"}},
        "openai-responses": {"type": "function", "name": "f"},
    }
    assert body["tool_choice"] == expected_choice[upstream]
    assert body["stream"] is True
