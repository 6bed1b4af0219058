"""The mock's strict request validation and ``count_tokens``, through the sans-IO router.

Each rule has at least one body the real API takes (200) and one it rejects (400, message
starting with the JSON path of the offending field). Bodies are built from a valid base by
replacing or adding top-level fields, so each case shows only what it is about.
"""

from __future__ import annotations

import json
from typing import Final

import anthropic
import pytest
import trio

from tests.mock._sse_checks import dig
from trio_gateway._mock import MockUpstream
from trio_gateway._mock._routes import route
from trio_gateway._mock._script import Script

MESSAGES: Final = "/v1/messages"
COUNT: Final = "/v1/messages/count_tokens"
CHAT: Final = "/v1/chat/completions"
RESPONSES: Final = "/v1/responses"
BASES: Final[dict[str, dict[str, object]]] = {
    MESSAGES: {"model": "mock", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]},
    COUNT: {"model": "mock", "messages": [{"role": "user", "content": "Hi"}]},
    CHAT: {"model": "mock", "messages": [{"role": "user", "content": "Hi"}]},
    RESPONSES: {"model": "mock", "input": "Hi"},
}

Json = dict[str, object]


def user(*content: object) -> Json:
    return {"role": "user", "content": list(content)}


def assistant(*content: object) -> Json:
    return {"role": "assistant", "content": list(content)}


def text(value: str) -> Json:
    return {"type": "text", "text": value}


def tool_use(tool_id: str = "toolu_1") -> Json:
    return {"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {"city": "Paris"}}


def result(tool_id: str = "toolu_1") -> Json:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "15 C"}


THINK: Final = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
HI: Final = user(text("Hi"))
TOOL_TURNS: Final = [HI, assistant(text("Checking."), tool_use()), user(result(), text("Go on"))]
IMAGE: Final = {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
BASE64: Final = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
TOOL: Final = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}


def chat_call(call_id: str = "call_1", arguments: object = '{"city":"Paris"}') -> Json:
    function = {"name": "get_weather", "arguments": arguments}
    call = {"id": call_id, "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def chat_tool(call_id: str = "call_1") -> Json:
    return {"role": "tool", "tool_call_id": call_id, "content": "15 C"}


CHAT_USER: Final = {"role": "user", "content": "Hi"}
CHAT_TOOL: Final = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
FLAT_TOOL: Final = {"type": "function", "name": "get_weather", "parameters": {}, "strict": False}
CALL: Final = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
OUTPUT: Final = {"type": "function_call_output", "call_id": "call_1", "output": "15 C"}
REASONING: Final = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "e"}


def easy(role: str, *parts: object) -> Json:
    return {"type": "message", "role": role, "content": list(parts)}


def post(path: str, body: object, *, headers: list[tuple[str, str]] | None = None) -> Script:
    raw = json.dumps(body).encode()
    routed = route("POST", path, headers or [], raw, number=3, default_interval=0, require_key=None)
    return routed.script


def body_of(script: Script) -> Json:
    value = json.loads(b"".join(write.data for write in script.writes))
    assert isinstance(value, dict)
    return value


def error_message(script: Script) -> str:
    message = dig(body_of(script), "error", "message")
    assert isinstance(message, str)
    return message


# (id, endpoint, fields merged into the base, the expected path or None for "accepted")
Case = tuple[str, str, Json, str | None]
DROP: Final = object()  # a field value that removes the field from the base

ANTHROPIC_CASES: Final[list[Case]] = [
    ("minimal", MESSAGES, {}, None),
    ("unknown top-level field (betas)", MESSAGES, {"context_management": {"x": 1}}, None),
    ("model missing", MESSAGES, {"model": DROP}, "model"),
    ("model not a string", MESSAGES, {"model": 5}, "model"),
    ("max_tokens missing", MESSAGES, {"max_tokens": DROP}, "max_tokens"),
    ("max_tokens zero", MESSAGES, {"max_tokens": 0}, "max_tokens"),
    ("max_tokens boolean", MESSAGES, {"max_tokens": True}, "max_tokens"),
    ("messages empty", MESSAGES, {"messages": []}, "messages"),
    ("messages not a list", MESSAGES, {"messages": "Hi"}, "messages"),
    ("role system", MESSAGES, {"messages": [{"role": "system", "content": "x"}]},
     "messages.0.role"),
    ("content list empty", MESSAGES, {"messages": [user()]}, "messages.0"),
    ("string content empty", MESSAGES, {"messages": [{"role": "user", "content": ""}]},
     "messages.0.content"),
    ("string content blank", MESSAGES, {"messages": [{"role": "user", "content": " "}]},
     "messages.0.content"),
    ("empty final assistant (prefill)", MESSAGES, {"messages": [HI, assistant()]}, None),
    ("prefill text", MESSAGES, {"messages": [HI, assistant(text("Sure"))]}, None),
    ("unknown block type", MESSAGES, {"messages": [user({"type": "video"})]},
     "messages.0.content.0.type"),
    ("server tool blocks pass", MESSAGES, {"messages": [HI, assistant(
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        text("Found it."),
    ), user(text("Thanks"))]}, None),
    ("text empty", MESSAGES, {"messages": [user(text(""))]}, "messages.0.content.0.text"),
    ("text whitespace", MESSAGES, {"messages": [user(text(" \n"))]}, "messages.0.content.0.text"),
    ("image url", MESSAGES, {"messages": [user(IMAGE, text("What?"))]}, None),
    ("image base64", MESSAGES, {"messages": [user({"type": "image", "source": BASE64})]}, None),
    ("image bmp", MESSAGES, {"messages": [user(
        {"type": "image", "source": {**BASE64, "media_type": "image/bmp"}})]},
     "messages.0.content.0.source.media_type"),
    ("image file source", MESSAGES, {"messages": [user(
        {"type": "image", "source": {"type": "file", "file_id": "f"}})]},
     "messages.0.content.0.source.type"),
    ("document", MESSAGES, {"messages": [user({"type": "document", "source": {
        "type": "text", "media_type": "text/plain", "data": "x"}})]}, None),
    ("tool round trip", MESSAGES, {"messages": TOOL_TURNS}, None),
    ("tool_use without result", MESSAGES, {"messages": [
        HI, assistant(tool_use()), user(text("Ignore it"))]}, "messages.1"),
    ("tool_use last", MESSAGES, {"messages": [HI, assistant(tool_use())]}, "messages.1"),
    ("tool_use then assistant", MESSAGES, {"messages": [
        HI, assistant(tool_use()), assistant(text("x"))]}, "messages.1"),
    ("one of two results missing", MESSAGES, {"messages": [
        HI, assistant(tool_use("toolu_1"), tool_use("toolu_2")), user(result("toolu_1"))]},
     "messages.1"),
    ("tool_result after text", MESSAGES, {"messages": [
        HI, assistant(tool_use()), user(text("Here"), result())]}, "messages.2.content.0"),
    ("tool_result for an unknown id", MESSAGES, {"messages": [
        HI, assistant(tool_use()), user(result(), result("toolu_9"))]}, "messages.2.content.1"),
    ("tool_result without tool_use", MESSAGES, {"messages": [user(result())]},
     "messages.0.content.0"),
    ("tool_use in a user turn", MESSAGES, {"messages": [user(tool_use())]},
     "messages.0.content.0"),
    ("duplicate tool_use ids", MESSAGES, {"messages": [
        HI, assistant(tool_use(), tool_use()), user(result())]}, "messages.1"),
    ("tool_use id with a colon", MESSAGES, {"messages": [
        HI, assistant(tool_use("call:1")), user(result("call:1"))]}, "messages.1.content.0.id"),
    ("tool_result content blocks", MESSAGES, {"messages": [HI, assistant(tool_use()), user(
        {**result(), "content": [text("15 C"), IMAGE], "is_error": False})]}, None),
    ("tool_result empty text block", MESSAGES, {"messages": [HI, assistant(tool_use()), user(
        {**result(), "content": [text("")]})]}, "messages.2.content.0.content.0.text"),
    ("system string", MESSAGES, {"system": "Be terse."}, None),
    ("system blocks", MESSAGES, {"system": [text("Be terse."), text("Really.")]}, None),
    ("system image block", MESSAGES, {"system": [IMAGE]}, "system.0.type"),
    ("system empty text", MESSAGES, {"system": [text("")]}, "system.0.text"),
    ("custom tool", MESSAGES, {"tools": [TOOL]}, None),
    ("server tool", MESSAGES, {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     None),
    ("tool name with a dot", MESSAGES, {"tools": [{**TOOL, "name": "a.b"}]}, "tools.0.name"),
    ("tool name of 65 chars", MESSAGES, {"tools": [{**TOOL, "name": "a" * 65}]}, "tools.0.name"),
    ("tool without input_schema", MESSAGES, {"tools": [{"name": "f"}]}, "tools.0.input_schema"),
    ("tool schema not an object schema", MESSAGES, {"tools": [
        {**TOOL, "input_schema": {"type": "string"}}]}, "tools.0.input_schema.type"),
    ("duplicate tool names", MESSAGES, {"tools": [TOOL, TOOL]}, "tools"),
    ("tool_choice any", MESSAGES, {"tools": [TOOL], "tool_choice": {
        "type": "any", "disable_parallel_tool_use": True}}, None),
    ("tool_choice tool", MESSAGES, {"tools": [TOOL], "tool_choice": {
        "type": "tool", "name": "get_weather"}}, None),
    ("tool_choice tool without name", MESSAGES, {"tool_choice": {"type": "tool"}},
     "tool_choice.name"),
    ("tool_choice required (OpenAI)", MESSAGES, {"tool_choice": {"type": "required"}},
     "tool_choice.type"),
    ("tool_choice string (OpenAI)", MESSAGES, {"tool_choice": "auto"}, "tool_choice"),
    ("thinking enabled", MESSAGES, {"max_tokens": 2048, "thinking": {
        "type": "enabled", "budget_tokens": 1024}}, None),
    ("thinking adaptive", MESSAGES, {"thinking": {"type": "adaptive"}}, None),
    ("thinking budget too small", MESSAGES, {"max_tokens": 4096, "thinking": {
        "type": "enabled", "budget_tokens": 1000}}, "thinking.budget_tokens"),
    ("thinking budget not below max_tokens", MESSAGES, {"max_tokens": 2048, "thinking": {
        "type": "enabled", "budget_tokens": 2048}}, "thinking.budget_tokens"),
    ("thinking type unknown", MESSAGES, {"thinking": {"type": "on"}}, "thinking.type"),
    ("thinking turn kept before tool_use", MESSAGES, {
        "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [HI, assistant(THINK, tool_use()), user(result())]}, None),
    ("thinking turn dropped before tool_use", MESSAGES, {
        "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": TOOL_TURNS}, "messages.1.content.0.type"),
    ("thinking in a prefill without thinking", MESSAGES, {"messages": [HI, assistant(THINK)]},
     "messages.1.content.0.type"),
    ("redacted thinking kept before tool_use", MESSAGES, {
        "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [HI, assistant({"type": "redacted_thinking", "data": "x"}, tool_use()),
                     user(result())]}, None),
    ("tool_result in an assistant turn", MESSAGES, {"messages": [HI, assistant(result())]},
     "messages.1.content.0"),
    ("stream not a boolean", MESSAGES, {"stream": "yes"}, "stream"),
    ("thinking history without thinking", MESSAGES, {"messages": [
        HI, assistant(THINK, text("Hello")), HI]}, None),
    ("temperature 1", MESSAGES, {"temperature": 1}, None),
    ("temperature 1.5", MESSAGES, {"temperature": 1.5}, "temperature"),
    ("temperature negative", MESSAGES, {"temperature": -0.1}, "temperature"),
    ("stop_sequences", MESSAGES, {"stop_sequences": ["END", "\n\n"]}, None),
    ("stop_sequences a string", MESSAGES, {"stop_sequences": "END"}, "stop_sequences"),
    ("stop_sequences a number", MESSAGES, {"stop_sequences": [1]}, "stop_sequences.0"),
    ("count_tokens without max_tokens", COUNT, {}, None),
    ("count_tokens with tools and system", COUNT, {"tools": [TOOL], "system": "x"}, None),
    ("count_tokens checks messages", COUNT, {"messages": [user(text(""))]},
     "messages.0.content.0.text"),
    ("count_tokens thinking budget", COUNT, {"thinking": {
        "type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
]  # fmt: skip

CHAT_CASES: Final[list[Case]] = [
    ("minimal", CHAT, {}, None),
    ("model missing", CHAT, {"model": DROP}, "model"),
    ("messages missing", CHAT, {"messages": DROP}, "messages"),
    ("messages empty", CHAT, {"messages": []}, "messages"),
    ("all roles", CHAT, {"messages": [
        {"role": "system", "content": "s"}, {"role": "developer", "content": "d"},
        CHAT_USER, {"role": "assistant", "content": "a"}, CHAT_USER]}, None),
    ("role robot", CHAT, {"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ("user parts", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]}]}, None),
    ("user part of Anthropic shape", CHAT, {"messages": [{"role": "user", "content": [IMAGE]}]},
     "messages.0.content.0.type"),
    ("image_url without url", CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {}}]}]}, "messages.0.content.0.image_url.url"),
    ("tool round trip", CHAT, {"messages": [CHAT_USER, chat_call(), chat_tool(), CHAT_USER]},
     None),
    ("system between call and result", CHAT, {"messages": [
        CHAT_USER, chat_call(), {"role": "system", "content": "s"}, chat_tool()]}, None),
    ("tool call never answered", CHAT, {"messages": [CHAT_USER, chat_call()]},
     "messages.1.tool_calls"),
    ("user before the tool answer", CHAT, {"messages": [
        CHAT_USER, chat_call(), CHAT_USER, chat_tool()]}, "messages.1.tool_calls"),
    ("tool message without a call", CHAT, {"messages": [CHAT_USER, chat_tool()]},
     "messages.1.role"),
    ("tool message for another id", CHAT, {"messages": [
        CHAT_USER, chat_call(), chat_tool("call_9")]}, "messages.2.role"),
    ("tool message without tool_call_id", CHAT, {"messages": [
        CHAT_USER, chat_call(), {"role": "tool", "content": "x"}]}, "messages.2.tool_call_id"),
    ("arguments as an object", CHAT, {"messages": [
        CHAT_USER, chat_call(arguments={"city": "Paris"}), chat_tool()]},
     "messages.1.tool_calls.0.function.arguments"),
    ("empty tool_calls", CHAT, {"messages": [
        CHAT_USER, {"role": "assistant", "content": "x", "tool_calls": []}]},
     "messages.1.tool_calls"),
    ("assistant without content or calls", CHAT, {"messages": [
        CHAT_USER, {"role": "assistant", "content": None}, CHAT_USER]}, "messages.1.content"),
    ("nested tools", CHAT, {"tools": [CHAT_TOOL], "tool_choice": "required",
                            "parallel_tool_calls": False}, None),
    ("flat (Responses) tool", CHAT, {"tools": [FLAT_TOOL]}, "tools.0.function"),
    ("Anthropic tool", CHAT, {"tools": [TOOL]}, "tools.0.type"),
    ("tool name with a space", CHAT, {"tools": [
        {"type": "function", "function": {"name": "get weather"}}]}, "tools.0.function.name"),
    ("tool_choice function", CHAT, {"tools": [CHAT_TOOL], "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}}, None),
    ("tool_choice flat (Responses)", CHAT, {"tools": [CHAT_TOOL], "tool_choice": {
        "type": "function", "name": "get_weather"}}, "tool_choice.function"),
    ("tool_choice any (Anthropic)", CHAT, {"tools": [CHAT_TOOL], "tool_choice": "any"},
     "tool_choice"),
    ("tool_choice without tools", CHAT, {"tool_choice": "required"}, "tool_choice"),
    ("parallel_tool_calls without tools", CHAT, {"parallel_tool_calls": False},
     "parallel_tool_calls"),
    ("model an array", CHAT, {"model": ["a"]}, "model"),
    ("model a boolean", CHAT, {"model": True}, "model"),
    ("n a decimal", CHAT, {"n": 1.5}, "n"),
    ("temperature a string", CHAT, {"temperature": "hot"}, "temperature"),
    ("stream a string", CHAT, {"stream": "yes"}, "stream"),
    ("stop with a null", CHAT, {"stop": ["a", None]}, "stop.1"),
    ("stop string", CHAT, {"stop": "END"}, None),
    ("stop four", CHAT, {"stop": ["a", "b", "c", "d"]}, None),
    ("stop five", CHAT, {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("temperature 2", CHAT, {"temperature": 2}, None),
    ("temperature 2.5", CHAT, {"temperature": 2.5}, "temperature"),
    ("max_completion_tokens", CHAT, {"max_completion_tokens": 100}, None),
    ("both token limits", CHAT, {"max_completion_tokens": 100, "max_tokens": 100}, "max_tokens"),
    ("n 1", CHAT, {"n": 1}, None),
    ("n 2", CHAT, {"n": 2}, "n"),
    ("stream_options with stream", CHAT, {"stream": True, "stream_options": {
        "include_usage": True}}, None),
    ("stream_options without stream", CHAT, {"stream_options": {"include_usage": True}},
     "stream_options"),
]  # fmt: skip

RESPONSES_CASES: Final[list[Case]] = [
    ("minimal", RESPONSES, {}, None),
    ("no input (previous_response_id)", RESPONSES, {"input": DROP, "previous_response_id": "r"},
     None),
    ("model missing", RESPONSES, {"model": DROP}, "model"),
    ("input a number", RESPONSES, {"input": 3}, "input"),
    ("easy and typed messages", RESPONSES, {"input": [
        {"role": "user", "content": "Hi"}, {"role": "developer", "content": "Be terse"},
        easy("user", {"type": "input_text", "text": "What?"},
             {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"}),
        easy("assistant", {"type": "output_text", "text": "Earlier", "annotations": []}),
        easy("assistant", {"type": "refusal", "refusal": "No."}),
        easy("user", {"type": "input_image", "file_id": "file_1"},
             {"type": "input_file", "file_id": "file_2"}),
        {"type": "item_reference", "id": "msg_1"}]}, None),
    ("role tool", RESPONSES, {"input": [{"role": "tool", "content": "x"}]}, "input.0.role"),
    ("user output_text", RESPONSES, {"input": [
        easy("user", {"type": "output_text", "text": "x"})]}, "input.0.content.0.type"),
    ("assistant input_text", RESPONSES, {"input": [
        easy("assistant", {"type": "input_text", "text": "x"})]}, "input.0.content.0.type"),
    ("Chat text part", RESPONSES, {"input": [easy("user", {"type": "text", "text": "x"})]},
     "input.0.content.0.type"),
    ("input_image without a source", RESPONSES, {"input": [
        easy("user", {"type": "input_image", "detail": "auto"})]},
     "input.0.content.0.image_url"),
    ("function call round trip", RESPONSES, {"input": [CALL, OUTPUT]}, None),
    ("output list", RESPONSES, {"input": [CALL, {
        **OUTPUT, "output": [{"type": "input_text", "text": "15 C"}]}]}, None),
    ("output before its call", RESPONSES, {"input": [OUTPUT, CALL]}, "input.0.call_id"),
    ("output without a call", RESPONSES, {"input": [OUTPUT]}, "input.0.call_id"),
    ("call without an output", RESPONSES, {"input": [{"role": "user", "content": "x"}, CALL]},
     "input.1"),
    ("arguments as an object", RESPONSES, {"input": [{**CALL, "arguments": {}}, OUTPUT]},
     "input.0.arguments"),
    ("Chat tool message", RESPONSES, {"input": [{"role": "tool", "tool_call_id": "c"}]},
     "input.0.role"),
    ("reasoning item", RESPONSES, {"input": [REASONING, {
        **REASONING, "id": "rs_2", "summary": [{"type": "summary_text", "text": "t"}]}]}, None),
    ("reasoning without id", RESPONSES, {"input": [{**REASONING, "id": DROP}]}, "input.0.id"),
    ("reasoning without summary", RESPONSES, {"input": [{**REASONING, "summary": DROP}]},
     "input.0.summary"),
    ("reasoning summary a string", RESPONSES, {"input": [{**REASONING, "summary": "t"}]},
     "input.0.summary"),
    ("unknown item type", RESPONSES, {"input": [{"type": "thinking", "thinking": "x"}]},
     "input.0.type"),
    ("built-in item", RESPONSES, {"input": [{"type": "web_search_call", "id": "ws_1"}]}, None),
    ("flat tools", RESPONSES, {"tools": [FLAT_TOOL, {"type": "web_search"}], "tool_choice": {
        "type": "function", "name": "get_weather"}}, None),
    ("nested (Chat) tool", RESPONSES, {"tools": [CHAT_TOOL]}, "tools.0.name"),
    ("tool_choice nested (Chat)", RESPONSES, {"tools": [FLAT_TOOL], "tool_choice": {
        "type": "function", "function": {"name": "get_weather"}}}, "tool_choice.name"),
    ("tool_choice required", RESPONSES, {"tools": [FLAT_TOOL], "tool_choice": "required"},
     None),
    ("tool_choice any (Anthropic)", RESPONSES, {"tools": [FLAT_TOOL], "tool_choice": "any"},
     "tool_choice"),
    ("stop", RESPONSES, {"stop": ["END"]}, "stop"),
    ("max_completion_tokens (Chat)", RESPONSES, {"max_completion_tokens": 100},
     "max_completion_tokens"),
    ("max_output_tokens 16", RESPONSES, {"max_output_tokens": 16}, None),
    ("max_output_tokens 15", RESPONSES, {"max_output_tokens": 15}, "max_output_tokens"),
    ("temperature 2.5", RESPONSES, {"temperature": 2.5}, "temperature"),
    ("include", RESPONSES, {"include": ["reasoning.encrypted_content"], "store": False}, None),
    ("include a string", RESPONSES, {"include": "reasoning.encrypted_content"}, "include"),
]  # fmt: skip

ALL_CASES: Final = ANTHROPIC_CASES + CHAT_CASES + RESPONSES_CASES


def build(endpoint: str, fields: Json) -> Json:
    body = {**BASES[endpoint], **fields}
    return _drop(body)


def _drop(value: Json) -> Json:
    out: Json = {}
    for key, item in value.items():
        if item is DROP:
            continue
        if isinstance(item, list):
            out[key] = [_drop(x) if isinstance(x, dict) else x for x in item]
        else:
            out[key] = item
    return out


@pytest.mark.parametrize(
    ("endpoint", "fields", "path"),
    [pytest.param(endpoint, fields, path, id=f"{endpoint}: {name}")
     for name, endpoint, fields, path in ALL_CASES],
)  # fmt: skip
def test_rule(endpoint: str, fields: Json, path: str | None) -> None:
    script = post(endpoint, build(endpoint, fields))
    if path is None:
        assert script.status == 200, error_message(script)
        return
    assert script.status == 400
    assert script.outcome == "rejected"
    message = error_message(script)
    assert message.startswith(f"{path}: "), message


def test_every_endpoint_has_valid_and_invalid_cases() -> None:
    for endpoint in BASES:
        paths = [path for _, where, _, path in ALL_CASES if where == endpoint]
        assert None in paths
        assert any(path is not None for path in paths)


@pytest.mark.parametrize(
    ("endpoint", "fields", "message"),
    [
        (RESPONSES, {"tools": [CHAT_TOOL]}, "Missing required parameter: 'tools[0].name'."),
        (RESPONSES, {"stop": "x"}, "Unsupported parameter: 'stop'"),
        (MESSAGES, {"messages": [user(text(""))]}, "text content blocks must be non-empty"),
        (MESSAGES, {"max_tokens": DROP}, "Field required"),
        (MESSAGES, {"messages": [HI, assistant(tool_use()), user(text("x"), result())]},
         "tool_result blocks must come first"),
        (MESSAGES, {"messages": [HI, assistant(tool_use("toolu_7")), HI]},
         "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_7"),
        (CHAT, {"messages": [CHAT_USER, chat_call()]},
         "did not have response messages: call_1"),
        (CHAT, {"messages": [CHAT_USER, chat_call(arguments={}), chat_tool()]},
         "Invalid type for 'messages[1].tool_calls[0].function.arguments': expected a string, "
         "but got an object instead."),
        (RESPONSES, {"input": [CALL]}, "No tool output found for function call call_1."),
        (CHAT, {"stop": ["a", None]},
         "Invalid type for 'stop[1]': expected a string, but got null instead."),
        (CHAT, {"n": 1.5}, "expected an integer, but got a decimal instead."),
        (MESSAGES, {"temperature": 2}, "temperature: Input should be less than or equal to 1"),
        (RESPONSES, {"max_output_tokens": 8},
         "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
         "but got 8 instead."),
    ],
)  # fmt: skip
def test_messages_are_worded_like_the_real_api(endpoint: str, fields: Json, message: str) -> None:
    assert message in error_message(post(endpoint, build(endpoint, fields)))


@pytest.mark.parametrize("endpoint", [MESSAGES, COUNT])
def test_anthropic_rejections_have_the_anthropic_shape(endpoint: str) -> None:
    script = post(endpoint, build(endpoint, {"model": DROP}))
    body = body_of(script)
    assert body["type"] == "error"
    assert body["error"] == {"type": "invalid_request_error", "message": "model: Field required"}
    assert ("request-id", "req_mock00000003") in script.headers


@pytest.mark.parametrize("endpoint", [CHAT, RESPONSES])
def test_openai_rejections_have_the_openai_shape(endpoint: str) -> None:
    body = body_of(post(endpoint, build(endpoint, {"model": DROP})))
    assert body == {
        "error": {
            "message": "model: Missing required parameter: 'model'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_unknown_scenario_is_reported_before_the_body() -> None:
    message = error_message(post(MESSAGES, {"model": "mock-nope"}))
    assert message.startswith("unknown mock scenario 'nope'")


def test_scripted_error_needs_a_valid_body() -> None:
    # A translator bug must not hide behind a scripted failure the test expected anyway.
    assert post(MESSAGES, build(MESSAGES, {"model": "mock-status:code=529"})).status == 529
    assert post(MESSAGES, {"model": "mock-status:code=529"}).status == 400


# --- count_tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "tokens"),
    [("demo", 25), ("mock-text:in=7", 7), ("mock-thinking+tools:in=300,cr=5", 300),
     ("mock-zero_usage", 0)],
)  # fmt: skip
def test_count_tokens(model: str, tokens: int) -> None:
    script = post(COUNT, build(COUNT, {"model": model}))
    assert script.status == 200
    assert body_of(script) == {"input_tokens": tokens}
    assert ("request-id", "req_mock00000003") in script.headers
    assert ("content-type", "application/json") in script.headers


def test_count_tokens_matches_the_messages_usage() -> None:
    body = build(MESSAGES, {"model": "mock-text:in=42"})
    usage = dig(body_of(post(MESSAGES, body)), "usage", "input_tokens")
    del body["max_tokens"]
    assert body_of(post(COUNT, body)) == {"input_tokens": usage}


def test_count_tokens_scripted_errors_and_routing() -> None:
    body = build(COUNT, {"model": "mock-status:code=429,retry_after=3"})
    script = post(COUNT, body)
    assert script.status == 429
    assert ("retry-after", "3") in script.headers
    assert dig(body_of(script), "error", "type") == "rate_limit_error"
    assert post(COUNT, build(COUNT, {"model": "mock-stall_headers:secs=9"})).head_delay == 9
    beta = route(
        "POST", COUNT + "?beta=true", [], json.dumps(BASES[COUNT]).encode(),
        number=1, default_interval=0, require_key=None,
    )  # fmt: skip
    assert beta.script.status == 200
    get = route("GET", COUNT, [], b"", number=1, default_interval=0, require_key=None)
    assert get.script.status == 405


async def test_count_tokens_with_the_anthropic_sdk(nursery: trio.Nursery) -> None:
    mock = MockUpstream()
    port: int = await nursery.start(mock.serve)
    client = anthropic.AsyncAnthropic(
        base_url=f"http://127.0.0.1:{port}", api_key="x", max_retries=0
    )
    counted = await client.messages.count_tokens(
        model="mock-text:in=11",
        messages=[{"role": "user", "content": "Hi"}],
        system="Be terse.",
        tools=[{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
    )
    with pytest.raises(
        anthropic.BadRequestError, match=r"'messages\.0\.content\.0\.text: text content"
    ):
        await client.messages.count_tokens(
            model="mock", messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]
        )
    await client.close()
    assert counted.input_tokens == 11
    assert [r.outcome for r in mock.requests] == ["completed", "rejected"]
    assert mock.requests[0].path == COUNT
