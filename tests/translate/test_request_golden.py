"""Golden request translation of a Claude Code–like Anthropic request (system blocks with
``cache_control``, tools, tool_use / tool_result history, thinking), rendered for every
upstream protocol (protocols.md §5.1)."""

from __future__ import annotations

import hashlib
from typing import Final

import pytest

from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import ignored_fields, parse_conversation, render_request

BASH: Final[dict[str, object]] = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
    "required": ["command"],
}
READ: Final[dict[str, object]] = {
    "type": "object",
    "properties": {"file_path": {"type": "string"}},
    "required": ["file_path"],
}
SYSTEM_1: Final = "You are Claude Code, Anthropic's official CLI for Claude."
SYSTEM_2: Final = "Working directory: /repo"
CLAUDE_USER: Final = "user_" + "3f" * 32 + "_account_5b0c_session_0d4e"
CLAUDE_USER_HASH: Final = hashlib.sha256(CLAUDE_USER.encode()).hexdigest()
CALL_1: Final = "toolu_01A09q90qw90lq917835lq9"
CALL_2: Final = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"

CLAUDE_CODE: Final[dict[str, object]] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": SYSTEM_1},
        {"type": "text", "text": SYSTEM_2, "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {"name": "Bash", "description": "Run a shell command.", "input_schema": BASH},
        {
            "name": "Read",
            "description": "Read a file.",
            "input_schema": READ,
            "cache_control": {"type": "ephemeral"},
        },
    ],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "metadata": {"user_id": CLAUDE_USER},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {
                    "type": "text",
                    "text": "Why does the test fail?",
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Run the tests.", "signature": "EqQBCgIYAhIM1"},
                {"type": "text", "text": "Let me run the tests."},
                {"type": "tool_use", "id": CALL_1, "name": "Bash", "input": {"command": "pytest"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": CALL_1,
                    "content": [{"type": "text", "text": "1 failed"}],
                    "is_error": False,
                }
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Read it.", "signature": "EqQBCgIYAhIM2"},
                {"type": "tool_use", "id": CALL_2, "name": "Read", "input": {"file_path": "t.py"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": CALL_2,
                    "content": "def test_x(): assert 1 == 2",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ],
}

CLAUDE_CODE_AS_ANTHROPIC: Final[dict[str, object]] = {
    "model": "claude-opus-4-1",
    "max_tokens": 32000,
    "system": [{"type": "text", "text": SYSTEM_1}, {"type": "text", "text": SYSTEM_2}],
    "tools": [
        {"name": "Bash", "description": "Run a shell command.", "input_schema": BASH},
        {"name": "Read", "description": "Read a file.", "input_schema": READ},
    ],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "metadata": {"user_id": CLAUDE_USER},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": "Why does the test fail?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Run the tests.", "signature": "EqQBCgIYAhIM1"},
                {"type": "text", "text": "Let me run the tests."},
                {"type": "tool_use", "id": CALL_1, "name": "Bash", "input": {"command": "pytest"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": CALL_1,
                    "content": [{"type": "text", "text": "1 failed"}],
                }
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Read it.", "signature": "EqQBCgIYAhIM2"},
                {"type": "tool_use", "id": CALL_2, "name": "Read", "input": {"file_path": "t.py"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": CALL_2,
                    "content": [{"type": "text", "text": "def test_x(): assert 1 == 2"}],
                }
            ],
        },
    ],
    "stream": True,
}

CLAUDE_CODE_AS_CHAT: Final[dict[str, object]] = {
    "model": "gpt-5",
    "messages": [
        {"role": "system", "content": f"{SYSTEM_1}\n\n{SYSTEM_2}"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": "Why does the test fail?"},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me run the tests.",
            "tool_calls": [
                {
                    "id": CALL_1,
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command":"pytest"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": CALL_1, "content": "1 failed"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": CALL_2,
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"file_path":"t.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": CALL_2, "content": "def test_x(): assert 1 == 2"},
    ],
    "max_completion_tokens": 32000,
    "tools": [
        {
            "type": "function",
            "function": {"name": "Bash", "description": "Run a shell command.", "parameters": BASH},
        },
        {
            "type": "function",
            "function": {"name": "Read", "description": "Read a file.", "parameters": READ},
        },
    ],
    "tool_choice": "auto",
    "reasoning_effort": "medium",
    "safety_identifier": CLAUDE_USER_HASH,
    "stream": True,
    "stream_options": {"include_usage": True},
}

CLAUDE_CODE_AS_RESPONSES: Final[dict[str, object]] = {
    "model": "gpt-5",
    "instructions": f"{SYSTEM_1}\n\n{SYSTEM_2}",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "input_text", "text": "Why does the test fail?"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Let me run the tests.", "annotations": []}
            ],
        },
        {
            "type": "function_call",
            "call_id": CALL_1,
            "name": "Bash",
            "arguments": '{"command":"pytest"}',
        },
        {"type": "function_call_output", "call_id": CALL_1, "output": "1 failed"},
        {
            "type": "function_call",
            "call_id": CALL_2,
            "name": "Read",
            "arguments": '{"file_path":"t.py"}',
        },
        {
            "type": "function_call_output",
            "call_id": CALL_2,
            "output": "def test_x(): assert 1 == 2",
        },
    ],
    "max_output_tokens": 32000,
    "tools": [
        {
            "type": "function",
            "name": "Bash",
            "description": "Run a shell command.",
            "parameters": BASH,
            "strict": False,
        },
        {
            "type": "function",
            "name": "Read",
            "description": "Read a file.",
            "parameters": READ,
            "strict": False,
        },
    ],
    "tool_choice": "auto",
    "reasoning": {"effort": "medium", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "safety_identifier": CLAUDE_USER_HASH,
    "stream": True,
    "store": False,
}

# What the openai SDK sends for chat.completions.create(..., stream=True).


@pytest.mark.parametrize(
    ("upstream", "model", "expected"),
    [
        ("anthropic", "claude-opus-4-1", CLAUDE_CODE_AS_ANTHROPIC),
        ("openai-chat", "gpt-5", CLAUDE_CODE_AS_CHAT),
        ("openai-responses", "gpt-5", CLAUDE_CODE_AS_RESPONSES),
    ],
)
def test_claude_code_request(upstream: Protocol, model: str, expected: dict[str, object]) -> None:
    conversation = parse_conversation("anthropic", CLAUDE_CODE)
    assert render_request(upstream, conversation, model=model) == expected
    assert ignored_fields(conversation) == ("cache_control",)
