"""Every 400 of request translation: ``param`` is the client's field path, and the message
names it (RELIABILITY.md B1)."""

from __future__ import annotations

from typing import Final

import pytest

from trio_gateway._errors import InvalidRequest
from trio_gateway._protocol._names import Protocol
from trio_gateway._translate._request import parse_conversation, render_request

BASE: Final[dict[Protocol, dict[str, object]]] = {
    "anthropic": {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]},
    "openai-chat": {"model": "m", "messages": [{"role": "user", "content": "Hi"}]},
    "openai-responses": {"model": "m", "input": "Hi"},
}
SCHEMA: Final[dict[str, object]] = {"type": "object", "properties": {}}


def user(*content: object) -> list[object]:
    return [{"role": "user", "content": list(content)}]


def assistant(*content: object) -> list[object]:
    return [{"role": "assistant", "content": list(content)}]


def chat_assistant(**fields: object) -> list[object]:
    return [{"role": "assistant", **fields}]


def chat_call(**changes: object) -> dict[str, object]:
    call: dict[str, object] = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    return {**call, **changes}


def check(error: InvalidRequest, param: str) -> None:
    assert error.param == param
    assert f"`{param}`" in error.message
    assert error.status == 400


PARSE_ERRORS: Final[list[tuple[Protocol, dict[str, object], str]]] = [
    # Anthropic client
    ("anthropic", {"container": "cnt_1"}, "container"),
    ("anthropic", {"mcp_servers": []}, "mcp_servers"),
    ("anthropic", {"messages": "Hi"}, "messages"),
    ("anthropic", {"messages": ["Hi"]}, "messages[0]"),
    ("anthropic", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ("anthropic", {"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ("anthropic", {"messages": user({"text": "no type"})}, "messages[0].content[0].type"),
    (
        "anthropic",
        {"messages": assistant({"type": "server_tool_use", "id": "s", "name": "web_search"})},
        "messages[0].content[0].type",
    ),
    (
        "anthropic",
        {"messages": user({"type": "web_search_tool_result", "tool_use_id": "s"})},
        "messages[0].content[0].type",
    ),
    (
        "anthropic",
        {"messages": [{"role": "user", "content": "a"}, *user({"type": "search_result"})]},
        "messages[1].content[0].type",
    ),
    ("anthropic", {"messages": user({"type": "container_upload"})}, "messages[0].content[0].type"),
    (
        "anthropic",
        {"messages": user({"type": "tool_use", "id": "t", "name": "f", "input": {}})},
        "messages[0].content[0].type",
    ),
    (
        "anthropic",
        {"messages": assistant({"type": "image", "source": {"type": "url", "url": "https://x"}})},
        "messages[0].content[0].type",
    ),
    (
        "anthropic",
        {"messages": user({"type": "image", "source": {"type": "file", "file_id": "f"}})},
        "messages[0].content[0].source.type",
    ),
    (
        "anthropic",
        {"messages": user({"type": "document", "source": {"type": "content", "content": []}})},
        "messages[0].content[0].source.type",
    ),
    (
        "anthropic",
        {"messages": user({"type": "image", "source": {"type": "base64", "data": "x"}})},
        "messages[0].content[0].source.media_type",
    ),
    (
        "anthropic",
        {
            "messages": user(
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}
            )
        },
        "messages[0].content[0].content[0].type",
    ),
    (
        "anthropic",
        {"messages": user({"type": "tool_result", "tool_use_id": ""})},
        "messages[0].content[0].tool_use_id",
    ),
    (
        "anthropic",
        {"messages": user({"type": "tool_result", "tool_use_id": "t", "is_error": "yes"})},
        "messages[0].content[0].is_error",
    ),
    (
        "anthropic",
        {"messages": assistant({"type": "tool_use", "id": "t", "name": "f", "input": "{}"})},
        "messages[0].content[0].input",
    ),
    (
        "anthropic",
        {
            "messages": assistant(
                {"type": "tool_use", "id": "t", "name": "f", "input": {"x": float("nan")}}
            )
        },
        "messages[0].content[0].input",
    ),
    (
        "anthropic",
        {"messages": assistant({"type": "thinking", "signature": "s"})},
        "messages[0].content[0].thinking",
    ),
    (
        "anthropic",
        {"messages": assistant({"type": "redacted_thinking"})},
        "messages[0].content[0].data",
    ),
    ("anthropic", {"system": [{"type": "image"}]}, "system[0].type"),
    ("anthropic", {"system": 5}, "system"),
    (
        "anthropic",
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        "tools[0].type",
    ),
    ("anthropic", {"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type"),
    ("anthropic", {"tools": [{"type": "text_editor_20250728", "name": "e"}]}, "tools[0].type"),
    ("anthropic", {"tools": [{"type": "computer_20250124", "name": "c"}]}, "tools[0].type"),
    ("anthropic", {"tools": [{"type": "code_execution_20250825", "name": "c"}]}, "tools[0].type"),
    ("anthropic", {"tools": [{"type": "web_fetch_20250910", "name": "w"}]}, "tools[0].type"),
    ("anthropic", {"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    (
        "anthropic",
        {"tools": [{"name": "f", "input_schema": SCHEMA, "strict": 1}]},
        "tools[0].strict",
    ),
    (
        "anthropic",
        {"tools": [{"name": "f", "input_schema": {"maximum": float("inf")}}]},
        "tools[0].input_schema",
    ),
    (
        "anthropic",
        {"output_config": {"format": {"type": "json_schema", "schema": {"x": [float("nan")]}}}},
        "output_config.format.schema",
    ),
    ("anthropic", {"tool_choice": {"type": "required"}}, "tool_choice.type"),
    ("anthropic", {"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ("anthropic", {"thinking": {"type": "on"}}, "thinking.type"),
    ("anthropic", {"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
    ("anthropic", {"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens"),
    ("anthropic", {"output_config": {"effort": "extreme"}}, "output_config.effort"),
    (
        "anthropic",
        {"output_config": {"format": {"type": "json_object"}}},
        "output_config.format.type",
    ),
    (
        "anthropic",
        {"output_config": {"format": {"type": "json_schema"}}},
        "output_config.format.schema",
    ),
    ("anthropic", {"temperature": "hot"}, "temperature"),
    ("anthropic", {"temperature": float("nan")}, "temperature"),
    ("anthropic", {"temperature": 10**400}, "temperature"),
    ("anthropic", {"temperature": True}, "temperature"),
    ("anthropic", {"top_p": 1.5}, "top_p"),
    ("anthropic", {"top_k": -1}, "top_k"),
    ("anthropic", {"stop_sequences": "END"}, "stop_sequences"),
    ("anthropic", {"stop_sequences": [1]}, "stop_sequences[0]"),
    ("anthropic", {"metadata": {"user_id": 5}}, "metadata.user_id"),
    # Chat client
    ("openai-chat", {"foo": 1}, "foo"),
    ("openai-chat", {"functions": [{"name": "f"}]}, "functions"),
    ("openai-chat", {"function_call": "auto"}, "function_call"),
    ("openai-chat", {"audio": {"voice": "alloy"}}, "audio"),
    ("openai-chat", {"prediction": {"type": "content"}}, "prediction"),
    ("openai-chat", {"web_search_options": {}}, "web_search_options"),
    ("openai-chat", {"n": 2}, "n"),
    ("openai-chat", {"n": 0}, "n"),
    ("openai-chat", {"modalities": ["text", "audio"]}, "modalities"),
    (
        "openai-chat",
        {"messages": [{"role": "function", "name": "f", "content": "x"}]},
        "messages[0].role",
    ),
    ("openai-chat", {"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    (
        "openai-chat",
        {
            "messages": chat_assistant(
                tool_calls=[chat_call(function={"name": "f", "arguments": "{x"})]
            )
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "openai-chat",
        {
            "messages": chat_assistant(
                tool_calls=[chat_call(function={"name": "f", "arguments": "[1]"})]
            )
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "openai-chat",
        {
            "messages": chat_assistant(
                tool_calls=[chat_call(function={"name": "f", "arguments": '{"a": NaN}'})]
            )
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "openai-chat",
        {
            "messages": chat_assistant(
                tool_calls=[chat_call(function={"name": "f", "arguments": {}})]
            )
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        "openai-chat",
        {"messages": chat_assistant(tool_calls=[chat_call(type="custom")])},
        "messages[0].tool_calls[0].type",
    ),
    (
        "openai-chat",
        {"messages": chat_assistant(tool_calls=[chat_call(id="")])},
        "messages[0].tool_calls[0].id",
    ),
    (
        "openai-chat",
        {"messages": chat_assistant(content=None, function_call={"name": "f", "arguments": "{}"})},
        "messages[0].function_call",
    ),
    (
        "openai-chat",
        {"messages": chat_assistant(content=[{"type": "image_url"}])},
        "messages[0].content[0].type",
    ),
    (
        "openai-chat",
        {"messages": user({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}})},
        "messages[0].content[0].type",
    ),
    (
        "openai-chat",
        {"messages": user({"type": "file", "file": {"file_id": "file-1"}})},
        "messages[0].content[0].file.file_id",
    ),
    (
        "openai-chat",
        {"messages": user({"type": "file", "file": {"file_data": "JVBERi0="}})},
        "messages[0].content[0].file.file_data",
    ),
    (
        "openai-chat",
        {"messages": user({"type": "image_url", "image_url": {"url": "ftp://x/a.png"}})},
        "messages[0].content[0].image_url.url",
    ),
    (
        "openai-chat",
        {"messages": user({"type": "image_url", "image_url": {"url": "data:image/png,raw"}})},
        "messages[0].content[0].image_url.url",
    ),
    (
        "openai-chat",
        {"messages": [{"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url"}]}]},
        "messages[0].content[0].type",
    ),
    ("openai-chat", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    (
        "openai-chat",
        {"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
        "messages[0].content[0].type",
    ),
    ("openai-chat", {"tools": [{"type": "custom", "custom": {"name": "c"}}]}, "tools[0].type"),
    (
        "openai-chat",
        {"tools": [{"type": "function", "function": {"parameters": SCHEMA}}]},
        "tools[0].function.name",
    ),
    (
        "openai-chat",
        {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}},
        "tool_choice.type",
    ),
    ("openai-chat", {"tool_choice": "sometimes"}, "tool_choice"),
    (
        "openai-chat",
        {"tool_choice": {"type": "function", "function": {}}},
        "tool_choice.function.name",
    ),
    (
        "openai-chat",
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"m": float("-inf")}}}
            ]
        },
        "tools[0].function.parameters",
    ),
    (
        "openai-chat",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"d": float("nan")}},
            }
        },
        "response_format.json_schema.schema",
    ),
    ("openai-chat", {"logit_bias": {"1": float("nan")}}, "logit_bias"),
    ("openai-chat", {"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ("openai-chat", {"reasoning_effort": "ultra"}, "reasoning_effort"),
    ("openai-chat", {"response_format": {"type": "grammar"}}, "response_format.type"),
    (
        "openai-chat",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
        "response_format.json_schema.schema",
    ),
    ("openai-chat", {"temperature": 2.5}, "temperature"),
    ("openai-chat", {"presence_penalty": 3}, "presence_penalty"),
    ("openai-chat", {"frequency_penalty": "x"}, "frequency_penalty"),
    ("openai-chat", {"logit_bias": []}, "logit_bias"),
    ("openai-chat", {"stop": [1]}, "stop[0]"),
    ("openai-chat", {"user": 5}, "user"),
    # Responses client
    ("openai-responses", {"foo": 1}, "foo"),
    ("openai-responses", {"previous_response_id": "resp_1"}, "previous_response_id"),
    ("openai-responses", {"conversation": "conv_1"}, "conversation"),
    ("openai-responses", {"prompt": {"id": "pmpt_1"}}, "prompt"),
    ("openai-responses", {"max_tool_calls": 3}, "max_tool_calls"),
    ("openai-responses", {"background": True}, "background"),
    ("openai-responses", {"top_logprobs": 2}, "top_logprobs"),
    ("openai-responses", {"instructions": ["x"]}, "instructions"),
    ("openai-responses", {"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ("openai-responses", {"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
    ("openai-responses", {"input": [{"content": "no role or type"}]}, "input[0].type"),
    ("openai-responses", {"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    (
        "openai-responses",
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
        "input[0].content[0].file_id",
    ),
    (
        "openai-responses",
        {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        "input[0].content[0].image_url",
    ),
    (
        "openai-responses",
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
        "input[0].content[0].file_id",
    ),
    (
        "openai-responses",
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}]},
        "input[0].content[0].file_url",
    ),
    (
        "openai-responses",
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "JVBE"}]}]},
        "input[0].content[0].file_data",
    ),
    (
        "openai-responses",
        {
            "input": [
                {
                    "role": "assistant",
                    "content": [{"type": "input_image", "image_url": "https://x"}],
                }
            ]
        },
        "input[0].content[0].type",
    ),
    (
        "openai-responses",
        {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        "input[0].content[0].type",
    ),
    (
        "openai-responses",
        {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "nope"}]},
        "input[0].arguments",
    ),
    (
        "openai-responses",
        {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
        "input[0].call_id",
    ),
    (
        "openai-responses",
        {
            "input": [
                {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file"}]}
            ]
        },
        "input[0].output[0].type",
    ),
    (
        "openai-responses",
        {"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]},
        "input[0].output",
    ),
    (
        "openai-responses",
        {"input": [{"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text"}]}]},
        "input[0].summary[0].text",
    ),
    ("openai-responses", {"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ("openai-responses", {"tools": [{"type": "mcp", "server_label": "x"}]}, "tools[0].type"),
    (
        "openai-responses",
        {"tools": [{"type": "function", "name": "f", "parameters": []}]},
        "tools[0].parameters",
    ),
    (
        "openai-responses",
        {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
        "tool_choice.type",
    ),
    (
        "openai-responses",
        {"tools": [{"type": "function", "name": "f", "parameters": {"m": float("inf")}}]},
        "tools[0].parameters",
    ),
    ("openai-responses", {"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ("openai-responses", {"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ("openai-responses", {"reasoning": {"effort": "huge"}}, "reasoning.effort"),
    ("openai-responses", {"reasoning": {"summary": "long"}}, "reasoning.summary"),
    ("openai-responses", {"text": {"format": {"type": "grammar"}}}, "text.format.type"),
    (
        "openai-responses",
        {"text": {"format": {"type": "json_schema", "name": "x"}}},
        "text.format.schema",
    ),
    ("openai-responses", {"text": "plain"}, "text"),
    ("openai-responses", {"safety_identifier": 1}, "safety_identifier"),
]


@pytest.mark.parametrize(("client", "fields", "param"), PARSE_ERRORS)
def test_parse_error(client: Protocol, fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_conversation(client, {**BASE[client], **fields})
    check(caught.value, param)


RENDER_ERRORS: Final[list[tuple[Protocol, dict[str, object], Protocol, str]]] = [
    ("anthropic", {"top_k": 40}, "openai-chat", "top_k"),
    ("anthropic", {"top_k": 40}, "openai-responses", "top_k"),
    ("anthropic", {"stop_sequences": ["END"]}, "openai-responses", "stop_sequences"),
    ("anthropic", {"stop_sequences": ["1", "2", "3", "4", "5"]}, "openai-chat", "stop_sequences"),
    ("openai-chat", {"stop": "END"}, "openai-responses", "stop"),
    ("openai-chat", {"stop": ["1", "2", "3", "4", "5"]}, "openai-chat", "stop"),
    ("openai-chat", {"temperature": 1.5}, "anthropic", "temperature"),
    ("openai-responses", {"temperature": 1.01}, "anthropic", "temperature"),
    ("openai-chat", {"logprobs": True}, "anthropic", "logprobs"),
    ("openai-chat", {"logprobs": True, "top_logprobs": 2}, "openai-responses", "logprobs"),
    ("openai-chat", {"top_logprobs": 2}, "openai-responses", "top_logprobs"),
    ("openai-chat", {"logit_bias": {"1": 5}}, "anthropic", "logit_bias"),
    ("openai-chat", {"presence_penalty": 0.5}, "openai-responses", "presence_penalty"),
    ("openai-chat", {"frequency_penalty": -1}, "anthropic", "frequency_penalty"),
    ("openai-chat", {"response_format": {"type": "json_object"}}, "anthropic", "response_format"),
    ("openai-responses", {"text": {"format": {"type": "json_object"}}}, "anthropic", "text.format"),
    (
        "openai-chat",
        {
            "messages": user(
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
            )
        },
        "anthropic",
        "messages[0].content[0].image_url.url",
    ),
    (
        "openai-chat",
        {"messages": user({"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}})},
        "anthropic",
        "messages[0].content[0].file.file_data",
    ),
    (
        "openai-responses",
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": "data:image/tiff;base64,SUkq"}
                    ],
                }
            ]
        },
        "anthropic",
        "input[0].content[0].image_url",
    ),
    (
        "openai-responses",
        {
            "input": [
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [
                        {"type": "input_image", "image_url": "data:image/svg+xml;base64,PHN2"}
                    ],
                }
            ]
        },
        "anthropic",
        "input[0].output[0].image_url",
    ),
    (
        "anthropic",
        {
            "messages": user(
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/bmp", "data": "Qk0="},
                }
            )
        },
        "anthropic",
        "messages[0].content[0].source",
    ),
    (
        "anthropic",
        {
            "messages": user(
                {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
            )
        },
        "openai-chat",
        "messages[0].content[0].source",
    ),
]


@pytest.mark.parametrize(("client", "fields", "upstream", "param"), RENDER_ERRORS)
def test_render_error(
    client: Protocol, fields: dict[str, object], upstream: Protocol, param: str
) -> None:
    conversation = parse_conversation(client, {**BASE[client], **fields})
    with pytest.raises(InvalidRequest) as caught:
        render_request(upstream, conversation, model="up")
    check(caught.value, param)


@pytest.mark.parametrize(
    ("client", "fields", "upstream"),
    [
        ("anthropic", {"top_k": 40}, "anthropic"),
        ("anthropic", {"stop_sequences": ["1", "2", "3", "4", "5"]}, "anthropic"),
        (
            "openai-chat",
            {"temperature": 1.5, "logprobs": True, "presence_penalty": 1},
            "openai-chat",
        ),
        ("openai-chat", {"stop": ["1", "2", "3", "4"]}, "openai-chat"),
        ("openai-chat", {"response_format": {"type": "json_object"}}, "openai-chat"),
        ("openai-chat", {"temperature": 1}, "anthropic"),
    ],
)
def test_what_the_target_can_express_is_not_an_error(
    client: Protocol, fields: dict[str, object], upstream: Protocol
) -> None:
    conversation = parse_conversation(client, {**BASE[client], **fields})
    assert render_request(upstream, conversation, model="up")["stream"] is True
