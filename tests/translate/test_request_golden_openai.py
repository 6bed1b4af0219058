"""Golden request translations of OpenAI-SDK-like Chat and Responses requests, rendered for
every upstream protocol (protocols.md §5.1, reverse direction)."""

from __future__ import annotations

from typing import Final

import pytest

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import ignored_fields, parse_conversation, render_request
from trio_gateway._translate._signature import pack_anthropic_thinking

WEATHER: Final[dict[str, object]] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}

CHAT_SDK: Final[dict[str, object]] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in Celsius."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this, and the weather in Paris?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                },
            ],
            "name": "alice",
        },
        {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_def",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "15 C"},
        {"role": "tool", "tool_call_id": "call_def", "content": [{"type": "text", "text": "17 C"}]},
        {"role": "user", "content": "Thanks. Which is warmer?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER,
                "strict": True,
            },
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "max_completion_tokens": 1000,
    "temperature": 0.5,
    "top_p": 0.9,
    "user": "user-1234",
    "store": False,
    "metadata": {"trace": "t-1"},
    "seed": 7,
    "stream": True,
    "stream_options": {"include_usage": True},
}

CHAT_AS_ANTHROPIC: Final[dict[str, object]] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1000,
    "system": [
        {"type": "text", "text": "You are a weather bot."},
        {"type": "text", "text": "Answer in Celsius."},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this, and the weather in Paris?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_abc",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_def",
                    "name": "get_weather",
                    "input": {"city": "Lyon"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_abc",
                    "content": [{"type": "text", "text": "15 C"}],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "call_def",
                    "content": [{"type": "text", "text": "17 C"}],
                },
                {"type": "text", "text": "Thanks. Which is warmer?"},
            ],
        },
    ],
    "temperature": 0.5,
    "top_p": 0.9,
    "tools": [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER,
            "strict": True,
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "metadata": {"user_id": "user-1234"},
    "stream": True,
}

CHAT_AS_RESPONSES: Final[dict[str, object]] = {
    "model": "gpt-5",
    "instructions": "You are a weather bot.\n\nAnswer in Celsius.",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this, and the weather in Paris?"},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,iVBORw0KGgo=",
                    "detail": "auto",
                },
            ],
        },
        {
            "type": "function_call",
            "call_id": "call_abc",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "call_def",
            "name": "get_weather",
            "arguments": '{"city": "Lyon"}',
        },
        {"type": "function_call_output", "call_id": "call_abc", "output": "15 C"},
        {"type": "function_call_output", "call_id": "call_def", "output": "17 C"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Thanks. Which is warmer?"}],
        },
    ],
    "max_output_tokens": 1000,
    "temperature": 0.5,
    "top_p": 0.9,
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": WEATHER,
            "strict": True,
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "safety_identifier": "user-1234",
    "stream": True,
    "store": False,
}

CHAT_AS_CHAT: Final[dict[str, object]] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a weather bot.\n\nAnswer in Celsius."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_def",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "15 C"},
        {"role": "tool", "tool_call_id": "call_def", "content": "17 C"},
        {"role": "user", "content": "Thanks. Which is warmer?"},
    ],
    "max_completion_tokens": 1000,
    "temperature": 0.5,
    "top_p": 0.9,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER,
                "strict": True,
            },
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "safety_identifier": "user-1234",
    "stream": True,
    "stream_options": {"include_usage": True},
}

ANTHROPIC_TOKEN: Final = pack_anthropic_thinking("thinking", "EqQBsig")
SUMMARY_SCHEMA: Final[dict[str, object]] = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}

# What the openai SDK sends for responses.create(..., stream=True) on a continued turn
# whose earlier answer came from an Anthropic upstream through the gateway.
RESPONSES_SDK: Final[dict[str, object]] = {
    "model": "gpt-5",
    "instructions": "You summarise PDFs.",
    "input": [
        {"role": "developer", "content": "Be brief."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Summarise this."},
                {
                    "type": "input_file",
                    "file_data": "data:application/pdf;base64,JVBERi0=",
                    "filename": "report.pdf",
                },
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_0a1",
            "summary": [{"type": "summary_text", "text": "Open the report."}],
            "encrypted_content": ANTHROPIC_TOKEN,
        },
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Reading it.", "annotations": []}],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call.1:x",
            "name": "read_pages",
            "arguments": '{"first":1,"last":3}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call.1:x", "output": "Revenue grew 5%."},
    ],
    "tools": [
        {
            "type": "function",
            "name": "read_pages",
            "description": "Read pages of the report.",
            "parameters": {"type": "object", "properties": {"first": {}, "last": {}}},
            "strict": False,
        }
    ],
    "tool_choice": "auto",
    "max_output_tokens": 8000,
    "reasoning": {"effort": "high", "summary": "detailed"},
    "text": {
        "format": {"type": "json_schema", "name": "summary", "schema": SUMMARY_SCHEMA},
        "verbosity": "low",
    },
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "safety_identifier": "u-77",
    "stream": True,
}

RESPONSES_AS_ANTHROPIC: Final[dict[str, object]] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 8000,
    "system": [
        {"type": "text", "text": "You summarise PDFs."},
        {"type": "text", "text": "Be brief."},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise this."},
                {
                    "type": "document",
                    "source": {
                        "type": "base64",
                        "media_type": "application/pdf",
                        "data": "JVBERi0=",
                    },
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Open the report.", "signature": "EqQBsig"},
                {"type": "text", "text": "Reading it."},
                {
                    "type": "tool_use",
                    "id": "call_1_x",
                    "name": "read_pages",
                    "input": {"first": 1, "last": 3},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1_x",
                    "content": [{"type": "text", "text": "Revenue grew 5%."}],
                }
            ],
        },
    ],
    "tools": [
        {
            "name": "read_pages",
            "description": "Read pages of the report.",
            "input_schema": {"type": "object", "properties": {"first": {}, "last": {}}},
            "strict": False,
        }
    ],
    "tool_choice": {"type": "auto"},
    # effort high = 16384, clamped below max_tokens.
    "thinking": {"type": "enabled", "budget_tokens": 7999},
    "output_config": {"format": {"type": "json_schema", "schema": SUMMARY_SCHEMA}},
    "metadata": {"user_id": "u-77"},
    "stream": True,
}

RESPONSES_AS_CHAT: Final[dict[str, object]] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You summarise PDFs.\n\nBe brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise this."},
                {
                    "type": "file",
                    "file": {
                        "file_data": "data:application/pdf;base64,JVBERi0=",
                        "filename": "report.pdf",
                    },
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Reading it.",
            "tool_calls": [
                {
                    "id": "call.1:x",
                    "type": "function",
                    "function": {"name": "read_pages", "arguments": '{"first":1,"last":3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call.1:x", "content": "Revenue grew 5%."},
    ],
    "max_completion_tokens": 8000,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "read_pages",
                "description": "Read pages of the report.",
                "parameters": {"type": "object", "properties": {"first": {}, "last": {}}},
                "strict": False,
            },
        }
    ],
    "tool_choice": "auto",
    "reasoning_effort": "high",
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "summary", "schema": SUMMARY_SCHEMA, "strict": True},
    },
    "safety_identifier": "u-77",
    "stream": True,
    "stream_options": {"include_usage": True},
}


@pytest.mark.parametrize(
    ("client", "body", "upstream", "model", "expected"),
    [
        ("openai-chat", CHAT_SDK, "anthropic", "claude-sonnet-4-5", CHAT_AS_ANTHROPIC),
        ("openai-chat", CHAT_SDK, "openai-chat", "gpt-4o-mini", CHAT_AS_CHAT),
        ("openai-chat", CHAT_SDK, "openai-responses", "gpt-5", CHAT_AS_RESPONSES),
        (
            "openai-responses",
            RESPONSES_SDK,
            "anthropic",
            "claude-sonnet-4-5",
            RESPONSES_AS_ANTHROPIC,
        ),
        ("openai-responses", RESPONSES_SDK, "openai-chat", "gpt-4o", RESPONSES_AS_CHAT),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_openai_sdk_request(
    client: Protocol,
    body: dict[str, object],
    upstream: Protocol,
    model: str,
    expected: dict[str, object],
) -> None:
    conversation = parse_conversation(client, body)
    assert render_request(upstream, conversation, model=model) == expected


@pytest.mark.parametrize(
    ("client", "body", "ignored"),
    [
        ("openai-chat", CHAT_SDK, ("store", "metadata", "seed", "messages[].name")),
        ("openai-responses", RESPONSES_SDK, ("store", "include", "text.verbosity")),
    ],
)
def test_openai_sdk_ignored_fields(
    client: Protocol, body: dict[str, object], ignored: tuple[str, ...]
) -> None:
    assert ignored_fields(parse_conversation(client, body)) == ignored


def test_responses_golden_on_responses_keeps_the_anthropic_reasoning_token() -> None:
    """A Responses client's own request rendered for Responses (tests only: the gateway
    passes same-protocol requests through) keeps what the client said, except the thinking
    that is really Anthropic's (foreign to OpenAI, dropped)."""
    body = render_request(
        "openai-responses", parse_conversation("openai-responses", RESPONSES_SDK), model="gpt-5"
    )
    assert body["instructions"] == "You summarise PDFs.\n\nBe brief."
    assert body["reasoning"] == {"effort": "high", "summary": "detailed"}
    assert body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "summary",
            "schema": SUMMARY_SCHEMA,
            "strict": True,
        }
    }
    items = body["input"]
    assert isinstance(items, list)
    assert [item["type"] for item in items] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
    ]
