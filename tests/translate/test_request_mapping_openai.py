"""One row of protocols.md §5.1 (reverse direction) per test case, for OpenAI clients: a
client field and what each upstream body carries for it."""

from __future__ import annotations

import hashlib
from typing import Final

import pytest

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import parse_conversation, render_request

BASE: Final[dict[Protocol, dict[str, object]]] = {
    "anthropic": {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]},
    "openai-chat": {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
    "openai-responses": {"model": "m", "input": "Hi"},
}
SCHEMA: Final[dict[str, object]] = {"type": "object", "properties": {"q": {"type": "string"}}}
ANTHROPIC_TOOLS: Final = [{"name": "f", "description": "F.", "input_schema": SCHEMA}]
CHAT_TOOLS: Final = [
    {"type": "function", "function": {"name": "f", "description": "F.", "parameters": SCHEMA}}
]
RESPONSES_TOOLS: Final = [{"type": "function", "name": "f", "parameters": SCHEMA}]
PNG: Final = {"type": "base64", "media_type": "image/png", "data": "iVBO"}
LONG_USER: Final = "u" * 65


def render(client: Protocol, upstream: Protocol, **fields: object) -> dict[str, object]:
    conversation = parse_conversation(client, {**BASE[client], **fields})
    return render_request(upstream, conversation, model="up")


def user(*content: object) -> list[object]:
    return [{"role": "user", "content": list(content)}]


Row = tuple[Protocol, dict[str, object], Protocol, str, object]

CHAT_ROWS: Final[list[Row]] = [
    ("openai-chat", {"max_tokens": 77}, "anthropic", "max_tokens", 77),
    ("openai-chat", {"max_tokens": 77, "max_completion_tokens": 88}, "anthropic", "max_tokens", 88),
    ("openai-chat", {}, "anthropic", "max_tokens", 4096),
    ("openai-chat", {}, "openai-chat", "max_completion_tokens", None),
    ("openai-chat", {"max_completion_tokens": 5}, "openai-responses", "max_output_tokens", 5),
    ("openai-chat", {"stop": "END"}, "anthropic", "stop_sequences", ["END"]),
    ("openai-chat", {"stop": ["a", "b", "c", "d"]}, "openai-chat", "stop", ["a", "b", "c", "d"]),
    ("openai-chat", {"stop": None}, "openai-responses", "stream", True),
    ("openai-chat", {"temperature": 1}, "anthropic", "temperature", 1),
    ("openai-chat", {"temperature": 1.5}, "openai-responses", "temperature", 1.5),
    (
        "openai-chat",
        {"tools": CHAT_TOOLS, "tool_choice": "required"},
        "anthropic",
        "tool_choice",
        {"type": "any"},
    ),
    (
        "openai-chat",
        {"tools": CHAT_TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}},
        "anthropic",
        "tool_choice",
        {"type": "tool", "name": "f"},
    ),
    (
        "openai-chat",
        {"tools": CHAT_TOOLS, "tool_choice": "none", "parallel_tool_calls": False},
        "anthropic",
        "tool_choice",
        {"type": "none"},
    ),
    (
        "openai-chat",
        {"tools": CHAT_TOOLS, "parallel_tool_calls": False},
        "anthropic",
        "tool_choice",
        {"type": "auto", "disable_parallel_tool_use": True},
    ),
    (
        "openai-chat",
        {"tools": CHAT_TOOLS, "parallel_tool_calls": True},
        "anthropic",
        "tool_choice",
        None,
    ),
    (
        "openai-chat",
        {"tools": CHAT_TOOLS},
        "anthropic",
        "tools",
        [{"name": "f", "description": "F.", "input_schema": SCHEMA}],
    ),
    (
        "openai-chat",
        {"tools": [{"type": "function", "function": {"name": "g"}}]},
        "anthropic",
        "tools",
        [{"name": "g", "input_schema": {"type": "object", "properties": {}}}],
    ),
    (
        "openai-chat",
        {"reasoning_effort": "low"},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 1024},
    ),
    (
        "openai-chat",
        {"reasoning_effort": "medium", "max_tokens": 10000},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 4096},
    ),
    (
        "openai-chat",
        {"reasoning_effort": "high", "max_tokens": 20000},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 16384},
    ),
    (
        "openai-chat",
        {"reasoning_effort": "xhigh", "max_tokens": 40000},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 32768},
    ),
    (
        "openai-chat",
        {"reasoning_effort": "max", "max_tokens": 40000},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 32768},
    ),
    (
        "openai-chat",
        {"reasoning_effort": "high", "max_tokens": 2000},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 1999},
    ),
    ("openai-chat", {"reasoning_effort": "low", "max_tokens": 1024}, "anthropic", "thinking", None),
    (
        "openai-chat",
        {"reasoning_effort": "medium"},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 4095},
    ),
    ("openai-chat", {"reasoning_effort": "minimal"}, "anthropic", "thinking", None),
    ("openai-chat", {"reasoning_effort": "none"}, "anthropic", "thinking", None),
    ("openai-chat", {"reasoning_effort": "medium"}, "anthropic", "output_config", None),
    (
        "openai-chat",
        {"reasoning_effort": "minimal"},
        "openai-responses",
        "reasoning",
        {"effort": "minimal", "summary": "auto"},
    ),
    ("openai-chat", {"response_format": {"type": "text"}}, "anthropic", "output_config", None),
    (
        "openai-chat",
        {"response_format": {"type": "json_object"}},
        "openai-responses",
        "text",
        {"format": {"type": "json_object"}},
    ),
    (
        "openai-chat",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": SCHEMA, "strict": False, "description": "D"},
            }
        },
        "anthropic",
        "output_config",
        {"format": {"type": "json_schema", "schema": SCHEMA}},
    ),
    (
        "openai-chat",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": SCHEMA, "strict": False, "description": "D"},
            }
        },
        "openai-responses",
        "text",
        {
            "format": {
                "type": "json_schema",
                "name": "r",
                "schema": SCHEMA,
                "description": "D",
                "strict": False,
            }
        },
    ),
    (
        "openai-chat",
        {"user": "a", "safety_identifier": "b"},
        "anthropic",
        "metadata",
        {"user_id": "b"},
    ),
    (
        "openai-chat",
        {"safety_identifier": LONG_USER},
        "openai-chat",
        "safety_identifier",
        hashlib.sha256(LONG_USER.encode()).hexdigest(),
    ),
    (
        "openai-chat",
        {
            "n": 1,
            "modalities": ["text"],
            "logprobs": False,
            "logit_bias": {},
            "presence_penalty": 0,
            "frequency_penalty": 0.0,
            "top_logprobs": 0,
        },
        "anthropic",
        "stream",
        True,
    ),
    ("openai-chat", {"logprobs": True, "top_logprobs": 3}, "openai-chat", "top_logprobs", 3),
    ("openai-chat", {"logit_bias": {"50256": -100}}, "openai-chat", "logit_bias", {"50256": -100}),
    ("openai-chat", {"presence_penalty": -0.5}, "openai-chat", "presence_penalty", -0.5),
    ("openai-chat", {"frequency_penalty": 1}, "openai-chat", "frequency_penalty", 1),
    (
        "openai-chat",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "file_data": "data:application/pdf;base64,JVBE",
                                "filename": "a.pdf",
                            },
                        }
                    ],
                }
            ]
        },
        "anthropic",
        "messages",
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBE",
                        },
                    }
                ],
            }
        ],
    ),
    (
        "openai-chat",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "HTTPS://x/a.jpg"}}],
                }
            ]
        },
        "anthropic",
        "messages",
        [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "HTTPS://x/a.jpg"}}],
            }
        ],
    ),
    (
        "openai-chat",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "A "},
                        {"type": "refusal", "refusal": "no."},
                    ],
                },
            ]
        },
        "openai-chat",
        "messages",
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A no."}],
    ),
    (
        "openai-chat",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "refusal": "I can't."},
            ]
        },
        "anthropic",
        "messages",
        [
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "I can't."}]},
        ],
    ),
    (
        "openai-chat",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
                    ],
                },
            ]
        },
        "anthropic",
        "messages",
        [
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
            },
        ],
    ),
]

RESPONSES_ROWS: Final[list[Row]] = [
    (
        "openai-responses",
        {},
        "anthropic",
        "messages",
        [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    ),
    (
        "openai-responses",
        {"instructions": "I"},
        "anthropic",
        "system",
        [{"type": "text", "text": "I"}],
    ),
    (
        "openai-responses",
        {
            "instructions": "I",
            "input": [
                {"role": "user", "content": "a"},
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "S"}],
                },
                {"role": "assistant", "content": "b"},
            ],
        },
        "openai-chat",
        "messages",
        [
            {"role": "system", "content": "I\n\nS"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
        ],
    ),
    ("openai-responses", {"max_output_tokens": 9}, "openai-chat", "max_completion_tokens", 9),
    ("openai-responses", {"temperature": 0.2, "top_p": 0.5}, "anthropic", "top_p", 0.5),
    (
        "openai-responses",
        {"tools": RESPONSES_TOOLS},
        "openai-chat",
        "tools",
        [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}],
    ),
    (
        "openai-responses",
        {"tools": RESPONSES_TOOLS, "tool_choice": {"type": "function", "name": "f"}},
        "anthropic",
        "tool_choice",
        {"type": "tool", "name": "f"},
    ),
    (
        "openai-responses",
        {"tools": RESPONSES_TOOLS, "tool_choice": "required"},
        "openai-chat",
        "tool_choice",
        "required",
    ),
    (
        "openai-responses",
        {"reasoning": {"effort": "low"}},
        "anthropic",
        "thinking",
        {"type": "enabled", "budget_tokens": 1024},
    ),
    (
        "openai-responses",
        {"reasoning": {"effort": "high", "summary": "concise"}},
        "openai-chat",
        "reasoning_effort",
        "high",
    ),
    (
        "openai-responses",
        {"reasoning": {"summary": "auto"}},
        "openai-chat",
        "reasoning_effort",
        None,
    ),
    ("openai-responses", {"reasoning": {}}, "anthropic", "thinking", None),
    (
        "openai-responses",
        {"text": {"format": {"type": "json_object"}}},
        "openai-chat",
        "response_format",
        {"type": "json_object"},
    ),
    (
        "openai-responses",
        {"text": {"format": {"type": "text"}}},
        "openai-chat",
        "response_format",
        None,
    ),
    ("openai-responses", {"user": "legacy"}, "anthropic", "metadata", {"user_id": "legacy"}),
    ("openai-responses", {"background": False, "store": True}, "anthropic", "stream", True),
    (
        "openai-responses",
        {
            "input": [
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [
                        {"type": "input_text", "text": "see"},
                        {"type": "input_image", "image_url": "data:image/gif;base64,R0lG"},
                    ],
                }
            ]
        },
        "anthropic",
        "messages",
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "c",
                        "content": [
                            {"type": "text", "text": "see"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/gif",
                                    "data": "R0lG",
                                },
                            },
                        ],
                    }
                ],
            }
        ],
    ),
    (
        "openai-responses",
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://x/a.webp"}],
                }
            ]
        },
        "openai-chat",
        "messages",
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/a.webp"}}],
            }
        ],
    ),
]


@pytest.mark.parametrize(
    ("client", "fields", "upstream", "key", "expected"), CHAT_ROWS + RESPONSES_ROWS
)
def test_mapping_row(
    client: Protocol, fields: dict[str, object], upstream: Protocol, key: str, expected: object
) -> None:
    assert render(client, upstream, **fields).get(key) == expected
