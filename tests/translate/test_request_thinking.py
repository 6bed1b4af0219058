"""The stateless thinking ↔ reasoning round trip (protocols.md §5.7) and when thinking may be
sent to Anthropic at all (§1.3, §5.1 rule 7)."""

from __future__ import annotations

from typing import Final

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import parse_conversation, render_request
from trio_gateway._translate._request_model import (
    Thinking,
    Turn,
)
from trio_gateway._translate._signature import (
    pack_anthropic_thinking,
    pack_openai_reasoning,
    unpack_openai_reasoning,
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


TOOL_TURNS: Final = [
    {"role": "user", "content": "go"},
    {"role": "assistant", "tool_calls": [call("a")]},
    {"role": "tool", "tool_call_id": "a", "content": "A"},
]


def test_thinking_from_an_effort_is_omitted_when_the_last_tool_turn_has_no_signed_thinking() -> (
    None
):
    body = translate(
        "openai-chat", {"reasoning_effort": "high", "messages": TOOL_TURNS}, "anthropic"
    )
    assert "thinking" not in body
    # Tool calls in an earlier turn do not matter, only the last assistant turn.
    later = [
        *TOOL_TURNS,
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "more"},
    ]
    body = translate("openai-chat", {"reasoning_effort": "high", "messages": later}, "anthropic")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4095}


def test_anthropic_clients_thinking_is_omitted_when_its_blocks_were_foreign() -> None:
    foreign = pack_openai_reasoning("rs_1", "gAAA")
    body = translate(
        "anthropic",
        {
            "max_tokens": 5000,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "plan", "signature": foreign},
                        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
                },
            ],
        },
        "anthropic",
    )
    assert "thinking" not in body
    messages = body["messages"]
    assert isinstance(messages, list)
    assert messages[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
    }


def test_thinking_from_an_effort_is_never_combined_with_a_forced_tool() -> None:
    fields = {
        "reasoning_effort": "low",
        "tools": CHAT_TOOLS,
        "max_tokens": 5000,
        "messages": [{"role": "user", "content": "go"}],
    }
    assert (
        translate("openai-chat", {**fields, "tool_choice": "required"}, "anthropic").get("thinking")
        is None
    )
    forced = {**fields, "tool_choice": {"type": "function", "function": {"name": "f"}}}
    assert translate("openai-chat", forced, "anthropic").get("thinking") is None
    auto = translate("openai-chat", {**fields, "tool_choice": "auto"}, "anthropic")
    assert auto["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_a_final_assistant_prefill_loses_its_thinking_when_thinking_is_off() -> None:
    token = pack_anthropic_thinking("thinking", "sig")
    body = translate(
        "openai-responses",
        {
            "input": [
                {"role": "user", "content": "go"},
                {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": token},
                {"role": "assistant", "content": "Partial"},
            ]
        },
        "anthropic",
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Partial"}]},
    ]
    only_thinking = translate(
        "openai-responses",
        {
            "input": [
                {"role": "user", "content": "go"},
                {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": token},
            ]
        },
        "anthropic",
    )
    assert only_thinking["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]}
    ]


def test_responses_reasoning_tokens_become_the_original_anthropic_blocks() -> None:
    thinking = pack_anthropic_thinking("thinking", "EqQBsig")
    redacted = pack_anthropic_thinking("redacted_thinking", "EmwKdata")
    body = translate(
        "openai-responses",
        {
            "reasoning": {"effort": "medium"},
            "max_output_tokens": 9000,
            "input": [
                {"role": "user", "content": "go"},
                {
                    "type": "reasoning",
                    "id": "rs_a",
                    "summary": [
                        {"type": "summary_text", "text": "Part one."},
                        {"type": "summary_text", "text": "Part two."},
                    ],
                    "encrypted_content": thinking,
                },
                {"type": "reasoning", "id": "rs_b", "summary": [], "encrypted_content": redacted},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "done"},
            ],
        },
        "anthropic",
    )
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    messages = body["messages"]
    assert isinstance(messages, list)
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Part one.\n\nPart two.", "signature": "EqQBsig"},
            {"type": "redacted_thinking", "data": "EmwKdata"},
            {"type": "tool_use", "id": "c", "name": "f", "input": {}},
        ],
    }


def test_anthropic_thinking_tokens_become_the_original_responses_items() -> None:
    with_content = pack_openai_reasoning("rs_1", "gAAAAB-enc")
    without_content = pack_openai_reasoning("rs_2", None)
    body = translate(
        "anthropic",
        {
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Plan.", "signature": with_content},
                        {"type": "thinking", "thinking": "", "signature": without_content},
                        {"type": "thinking", "thinking": "native", "signature": "EqQBnative"},
                        {"type": "redacted_thinking", "data": "EmwK"},
                        {"type": "text", "text": "Calling."},
                        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    ],
                },
            ],
        },
        "openai-responses",
    )
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Plan."}],
            "encrypted_content": "gAAAAB-enc",
        },
        {"type": "reasoning", "id": "rs_2", "summary": []},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Calling.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "t", "name": "f", "arguments": "{}"},
    ]


def test_responses_reasoning_items_survive_a_responses_round_trip() -> None:
    """Anthropic client → Responses body → (read back as Responses) → Responses body: the
    reasoning item an OpenAI model made is the same item again; on Anthropic it is foreign."""
    token = pack_openai_reasoning("rs_9", "gAAA-enc")
    first = translate(
        "anthropic",
        {
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "S", "signature": token}],
                },
                {"role": "user", "content": "more"},
            ],
        },
        "openai-responses",
    )
    conversation = parse_conversation("openai-responses", first)
    assert conversation.ignored == ("store", "input[1]")
    assistant = conversation.turns[1]
    assert assistant == Turn("assistant", (Thinking("S", token),))
    assert unpack_openai_reasoning(token) == ("rs_9", "gAAA-enc")
    assert render_request("openai-responses", conversation, model="m")["input"] == first["input"]
    on_anthropic = render_request("anthropic", conversation, model="m")
    assert on_anthropic["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "go"}, {"type": "text", "text": "more"}],
        }
    ]
