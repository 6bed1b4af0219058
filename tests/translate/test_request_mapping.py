"""One row of protocols.md §5.1 (and its reverse direction) per test case: a client field and
what each upstream body carries for it."""

from __future__ import annotations

import hashlib
from typing import Final

import pytest

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import ignored_fields, parse_conversation, render_request

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

ANTHROPIC_ROWS: Final[list[Row]] = [
    (
        "anthropic",
        {"system": "S"},
        "openai-chat",
        "messages",
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Hi"},
        ],
    ),
    ("anthropic", {"system": "S"}, "openai-responses", "instructions", "S"),
    (
        "anthropic",
        {"system": [{"type": "text", "text": " "}]},
        "openai-responses",
        "instructions",
        None,
    ),
    ("anthropic", {"stop_sequences": ["a", "b"]}, "openai-chat", "stop", ["a", "b"]),
    ("anthropic", {"stop_sequences": ["a"]}, "anthropic", "stop_sequences", ["a"]),
    ("anthropic", {"stop_sequences": []}, "openai-responses", "stream", True),
    ("anthropic", {"temperature": 0.3}, "openai-chat", "temperature", 0.3),
    ("anthropic", {"top_p": 0.8}, "openai-responses", "top_p", 0.8),
    ("anthropic", {"top_k": 5}, "anthropic", "top_k", 5),
    (
        "anthropic",
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "any"}},
        "openai-chat",
        "tool_choice",
        "required",
    ),
    (
        "anthropic",
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "any"}},
        "openai-responses",
        "tool_choice",
        "required",
    ),
    (
        "anthropic",
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "tool", "name": "f"}},
        "openai-chat",
        "tool_choice",
        {"type": "function", "function": {"name": "f"}},
    ),
    (
        "anthropic",
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "tool", "name": "f"}},
        "openai-responses",
        "tool_choice",
        {"type": "function", "name": "f"},
    ),
    (
        "anthropic",
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "none"}},
        "openai-chat",
        "tool_choice",
        "none",
    ),
    (
        "anthropic",
        {"tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "none"}},
        "anthropic",
        "tool_choice",
        {"type": "none"},
    ),
    (
        "anthropic",
        {
            "tools": ANTHROPIC_TOOLS,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
        "openai-chat",
        "parallel_tool_calls",
        False,
    ),
    (
        "anthropic",
        {
            "tools": ANTHROPIC_TOOLS,
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        },
        "openai-responses",
        "parallel_tool_calls",
        False,
    ),
    # tool_choice without tools is an API error everywhere: dropped.
    ("anthropic", {"tool_choice": {"type": "auto"}}, "openai-chat", "tool_choice", None),
    (
        "anthropic",
        {"tools": [{**ANTHROPIC_TOOLS[0], "strict": True}]},
        "openai-responses",
        "tools",
        [
            {
                "type": "function",
                "name": "f",
                "description": "F.",
                "parameters": SCHEMA,
                "strict": True,
            }
        ],
    ),
    (
        "anthropic",
        {"tools": [{**ANTHROPIC_TOOLS[0], "type": "custom", "strict": False}]},
        "openai-chat",
        "tools",
        [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "F.",
                    "parameters": SCHEMA,
                    "strict": False,
                },
            }
        ],
    ),
    (
        "anthropic",
        {"tools": [{"name": "g", "input_schema": SCHEMA}]},
        "openai-responses",
        "tools",
        [{"type": "function", "name": "g", "parameters": SCHEMA, "strict": False}],
    ),
    (
        "anthropic",
        {"thinking": {"type": "enabled", "budget_tokens": 2000}},
        "openai-chat",
        "reasoning_effort",
        "low",
    ),
    (
        "anthropic",
        {"thinking": {"type": "enabled", "budget_tokens": 4096}},
        "openai-chat",
        "reasoning_effort",
        "medium",
    ),
    (
        "anthropic",
        {"thinking": {"type": "enabled", "budget_tokens": 16383}},
        "openai-chat",
        "reasoning_effort",
        "medium",
    ),
    (
        "anthropic",
        {"thinking": {"type": "enabled", "budget_tokens": 16384}},
        "openai-chat",
        "reasoning_effort",
        "high",
    ),
    ("anthropic", {"thinking": {"type": "adaptive"}}, "openai-chat", "reasoning_effort", "medium"),
    (
        "anthropic",
        {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
        "openai-responses",
        "reasoning",
        {"effort": "max", "summary": "auto"},
    ),
    (
        "anthropic",
        {"thinking": {"type": "disabled"}, "output_config": {"effort": "low"}},
        "openai-chat",
        "reasoning_effort",
        None,
    ),
    ("anthropic", {"output_config": {"effort": "low"}}, "openai-chat", "reasoning_effort", "low"),
    (
        "anthropic",
        {"output_config": {"effort": "low"}},
        "anthropic",
        "output_config",
        {"effort": "low"},
    ),
    (
        "anthropic",
        {
            "thinking": {"type": "adaptive", "display": "omitted"},
            "output_config": {"effort": "high"},
        },
        "anthropic",
        "thinking",
        {"type": "adaptive", "display": "omitted"},
    ),
    (
        "anthropic",
        {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "openai-responses",
        "include",
        ["reasoning.encrypted_content"],
    ),
    (
        "anthropic",
        {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
        "openai-chat",
        "response_format",
        {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
        },
    ),
    (
        "anthropic",
        {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}},
        "openai-responses",
        "text",
        {"format": {"type": "json_schema", "name": "output", "schema": SCHEMA, "strict": True}},
    ),
    ("anthropic", {"metadata": {"user_id": "abc"}}, "openai-chat", "safety_identifier", "abc"),
    ("anthropic", {"metadata": {"user_id": "abc"}}, "openai-chat", "metadata", None),
    (
        "anthropic",
        {"metadata": {"user_id": LONG_USER}},
        "openai-responses",
        "safety_identifier",
        hashlib.sha256(LONG_USER.encode()).hexdigest(),
    ),
    ("anthropic", {"metadata": {}}, "openai-responses", "safety_identifier", None),
    (
        "anthropic",
        {"messages": user({"type": "image", "source": {"type": "url", "url": "https://x/a.png"}})},
        "openai-chat",
        "messages",
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
            }
        ],
    ),
    (
        "anthropic",
        {"messages": user({"type": "image", "source": PNG})},
        "openai-responses",
        "input",
        [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,iVBO",
                        "detail": "auto",
                    }
                ],
            }
        ],
    ),
    (
        "anthropic",
        {
            "messages": user(
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                }
            )
        },
        "openai-chat",
        "messages",
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JVBE",
                            "filename": "document.pdf",
                        },
                    }
                ],
            }
        ],
    ),
    (
        "anthropic",
        {
            "messages": user(
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                }
            )
        },
        "openai-responses",
        "input",
        [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,JVBE",
                        "filename": "document.pdf",
                    }
                ],
            }
        ],
    ),
    (
        "anthropic",
        {
            "messages": user(
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "plain words"},
                }
            )
        },
        "openai-chat",
        "messages",
        [{"role": "user", "content": "plain words"}],
    ),
    (
        "anthropic",
        {
            "messages": user(
                {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
            )
        },
        "openai-responses",
        "input",
        [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}],
            }
        ],
    ),
    (
        "anthropic",
        {
            "messages": user(
                {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
            )
        },
        "anthropic",
        "messages",
        [
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
                ],
            }
        ],
    ),
    (
        "anthropic",
        {
            "messages": [
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "redacted_thinking", "data": "EmwK"},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "is_error": True,
                            "content": "boom",
                        }
                    ],
                },
            ]
        },
        "openai-chat",
        "messages",
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"},
        ],
    ),
    (
        "anthropic",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "is_error": True,
                            "content": "boom",
                        }
                    ],
                }
            ]
        },
        "openai-responses",
        "input",
        [{"type": "function_call_output", "call_id": "t1", "output": "Error: boom"}],
    ),
    (
        "anthropic",
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]},
        "anthropic",
        "messages",
        [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}],
    ),
]


@pytest.mark.parametrize(("client", "fields", "upstream", "key", "expected"), ANTHROPIC_ROWS)
def test_mapping_row(
    client: Protocol, fields: dict[str, object], upstream: Protocol, key: str, expected: object
) -> None:
    assert render(client, upstream, **fields).get(key) == expected


@pytest.mark.parametrize(
    ("client", "fields", "ignored"),
    [
        (
            "anthropic",
            {
                "service_tier": "auto",
                "context_management": {},
                "inference_geo": "us",
                "cache_control": {"type": "ephemeral"},
            },
            ("service_tier", "context_management", "inference_geo", "cache_control"),
        ),
        (
            "anthropic",
            {
                "tools": [{**ANTHROPIC_TOOLS[0], "cache_control": {"type": "ephemeral"}}],
                "messages": user(
                    {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}
                ),
            },
            ("cache_control",),
        ),
        (
            "openai-chat",
            {
                "prompt_cache_key": "k",
                "prompt_cache_retention": "24h",
                "service_tier": "flex",
                "verbosity": "low",
                "stream_options": {"include_usage": True, "include_obfuscation": False},
            },
            (
                "prompt_cache_key",
                "prompt_cache_retention",
                "service_tier",
                "verbosity",
                "stream_options.include_obfuscation",
            ),
        ),
        ("openai-chat", {"stream_options": {"include_usage": True}}, ()),
        (
            "openai-responses",
            {
                "metadata": {},
                "service_tier": "auto",
                "prompt_cache_key": "k",
                "prompt_cache_retention": "in_memory",
                "truncation": "auto",
                "stream_options": {"include_obfuscation": True},
            },
            (
                "metadata",
                "service_tier",
                "prompt_cache_key",
                "prompt_cache_retention",
                "truncation",
                "stream_options",
            ),
        ),
        (
            "openai-responses",
            {
                "input": [
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"},
                ]
            },
            ("input[0]", "input[1]"),
        ),
    ],
)
def test_ignored_fields(
    client: Protocol, fields: dict[str, object], ignored: tuple[str, ...]
) -> None:
    assert ignored_fields(parse_conversation(client, {**BASE[client], **fields})) == ignored


def test_default_max_tokens_is_the_renderers_choice() -> None:
    conversation = parse_conversation("openai-responses", BASE["openai-responses"])
    body = render_request("anthropic", conversation, model="c", default_max_tokens=123)
    assert body["max_tokens"] == 123
    assert body["model"] == "c"
