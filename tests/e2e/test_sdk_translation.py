"""Every (client protocol, upstream protocol) pair through real hypercorn, judged by the
official SDKs' own accumulators (issue 4).

The client asks for ``to-<upstream>/mock-<scenario>``: the test config pins that name to one
upstream, which the mock answers with ``mock-<scenario>``. So each test drives one pair:
same protocol (pass-through, the control) or translated. The judges are the SDK helpers real
applications use: ``messages.stream().get_final_message()``,
``chat.completions.stream().get_final_completion()``, ``responses.stream().get_final_response()``
and the non-streaming ``create`` calls. What they assemble must carry the mock's content
(text, complete tool-call JSON, thinking where both sides have it), the mapped stop reason, and
usage that is the upstream's own numbers mapped per protocols.md §5.4 — the same numbers the
ledger row holds. A second turn sends the tool call and its result back in the client's own
format, so the request translators are judged by the mock's strict validator too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final, Literal

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Live
from tests.e2e._sdk import PROMPT, SDK_WARNINGS, TEXT
from tests.support import CLIENT_KEY, wait_until
from trio_gateway._ledger import AttemptRecord
from trio_gateway._protocol._names import PROTOCOLS, Protocol

pytestmark = SDK_WARNINGS

ALIAS: Final[dict[Protocol, str]] = {
    "anthropic": "anthropic",
    "openai-chat": "chat",
    "openai-responses": "responses",
}
PAIRS: Final = [(client, upstream) for client in PROTOCOLS for upstream in PROTOCOLS]
PAIR_IDS: Final = [f"{c}<-{u}" for c, u in PAIRS]
THINKING: Final = "Let me think about this step by step."
TOOL_ARGS: Final = {"city": "Paris"}
WEATHER_SCHEMA: Final[dict[str, object]] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
Stop = Literal["end", "tool", "length"]


@dataclass
class Seen:
    """What a client assembled, in protocol-neutral terms."""

    text: str = ""
    tools: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    thinking: str = ""
    stop: Stop = "end"
    #: (all input tokens, cache reads, output tokens): comparable across protocols.
    usage: tuple[int, int, int] = (0, 0, 0)


def _anthropic(live: Live) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=live.url, api_key=CLIENT_KEY, max_retries=0)


def _openai(live: Live) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=live.url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _seen_anthropic(message: anthropic.types.Message) -> Seen:
    seen = Seen()
    for block in message.content:
        if block.type == "text":
            assert block.text, "an empty text block reached an Anthropic client"
            seen.text += block.text
        elif block.type == "thinking":
            seen.thinking += block.thinking
        elif block.type == "tool_use":
            assert isinstance(block.input, dict)
            seen.tools.append((block.id, block.name, block.input))
    stops: dict[str | None, Stop] = {"end_turn": "end", "tool_use": "tool", "max_tokens": "length"}
    seen.stop = stops[message.stop_reason]
    usage = message.usage
    cache_read = usage.cache_read_input_tokens or 0
    total = usage.input_tokens + cache_read + (usage.cache_creation_input_tokens or 0)
    seen.usage = (total, cache_read, usage.output_tokens)
    return seen


def _seen_chat(completion: openai.types.chat.ChatCompletion) -> Seen:
    choice = completion.choices[0]
    seen = Seen(text=choice.message.content or "")
    for call in choice.message.tool_calls or []:
        assert call.type == "function"
        seen.tools.append((call.id, call.function.name, json.loads(call.function.arguments)))
    stops: dict[str, Stop] = {"stop": "end", "tool_calls": "tool", "length": "length"}
    seen.stop = stops[choice.finish_reason]
    usage = completion.usage
    assert usage is not None
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    seen.usage = (usage.prompt_tokens, cached or 0, usage.completion_tokens)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    return seen


def _seen_responses(response: openai.types.responses.Response) -> Seen:
    seen = Seen()
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                assert part.type == "output_text"
                seen.text += part.text
        elif item.type == "reasoning":
            seen.thinking += "\n\n".join(summary.text for summary in item.summary)
        elif item.type == "function_call":
            seen.tools.append((item.call_id, item.name, json.loads(item.arguments)))
    if response.status == "incomplete":
        seen.stop = "length"
    else:
        assert response.status == "completed"
        seen.stop = "tool" if seen.tools else "end"
    usage = response.usage
    assert usage is not None
    cached = usage.input_tokens_details.cached_tokens
    seen.usage = (usage.input_tokens, cached, usage.output_tokens)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    return seen


async def _call(live: Live, client: Protocol, model: str, *, stream: bool, tools: bool) -> Seen:
    match client:
        case "anthropic":
            anthropic_tools: list[anthropic.types.ToolParam] = [
                {"name": "get_weather", "description": "Weather for a city",
                 "input_schema": WEATHER_SCHEMA}
            ]  # fmt: skip
            messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": PROMPT}]
            async with _anthropic(live) as sdk:
                if stream:
                    async with sdk.messages.stream(
                        model=model,
                        max_tokens=1024,
                        messages=messages,
                        tools=anthropic_tools if tools else anthropic.omit,
                    ) as events:
                        return _seen_anthropic(await events.get_final_message())
                message = await sdk.messages.create(
                    model=model,
                    max_tokens=1024,
                    messages=messages,
                    tools=anthropic_tools if tools else anthropic.omit,
                )
                return _seen_anthropic(message)
        case "openai-chat":
            chat_tools: list[openai.types.chat.ChatCompletionToolParam] = [
                {"type": "function", "function": {
                    "name": "get_weather", "description": "Weather for a city",
                    "parameters": WEATHER_SCHEMA}}
            ]  # fmt: skip
            chat_messages: list[openai.types.chat.ChatCompletionMessageParam] = [
                {"role": "user", "content": PROMPT}
            ]
            async with _openai(live) as sdk:
                if stream:
                    async with sdk.chat.completions.stream(
                        model=model,
                        messages=chat_messages,
                        stream_options={"include_usage": True},
                        tools=chat_tools if tools else openai.omit,
                    ) as events:
                        return _seen_chat(await events.get_final_completion())
                completion = await sdk.chat.completions.create(
                    model=model,
                    messages=chat_messages,
                    tools=chat_tools if tools else openai.omit,
                )
                return _seen_chat(completion)
        case "openai-responses":
            response_tools: list[openai.types.responses.ToolParam] = [
                {"type": "function", "name": "get_weather", "description": "Weather for a city",
                 "parameters": WEATHER_SCHEMA, "strict": False}
            ]  # fmt: skip
            async with _openai(live) as sdk:
                if stream:
                    async with sdk.responses.stream(
                        model=model,
                        input=PROMPT,
                        tools=response_tools if tools else openai.omit,
                    ) as events:
                        return _seen_responses(await events.get_final_response())
                response = await sdk.responses.create(
                    model=model,
                    input=PROMPT,
                    tools=response_tools if tools else openai.omit,
                )
                return _seen_responses(response)


def _expected_total_input(upstream: Protocol) -> int:
    # The mock's default usage: 25 uncached, 100 cache reads, 20 + 10 cache writes. OpenAI
    # dialects have no cache-write tiers, so their prompt counts 25 + 100.
    return 155 if upstream == "anthropic" else 125


async def _row(live: Live) -> AttemptRecord:
    """The last attempt's row, once settled (the answer can reach the client first)."""
    await wait_until(lambda: not live.gateway.ledger.in_flight())
    rows = [r for r in live.gateway.ledger.records if r.attempt > 0]
    return rows[-1]


def _check_usage(seen: Seen, row: AttemptRecord, upstream: Protocol, output: int) -> None:
    usage = row.usage
    total = (
        usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
    )
    # The ledger has the upstream's own numbers ...
    assert (total, usage.cache_read_tokens, usage.output_tokens) == (
        _expected_total_input(upstream),
        100,
        output,
    )
    # ... and the client sees exactly those, mapped to its protocol (protocols.md §5.4).
    assert seen.usage == (total, usage.cache_read_tokens, usage.output_tokens)
    assert row.usage_source == "reported"
    assert row.outcome == "completed"


def _thinking_expected(client: Protocol, upstream: Protocol) -> bool:
    """Thinking reaches clients whose protocol carries it (Chat has no field for it)."""
    return client != "openai-chat"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=PAIR_IDS)
async def test_text(live: Live, client: Protocol, upstream: Protocol, stream: bool) -> None:
    model = f"to-{ALIAS[upstream]}/mock-text"
    seen = await _call(live, client, model, stream=stream, tools=False)
    assert len(live.mock.requests) == 1
    assert seen.text == TEXT
    assert seen.tools == []
    assert seen.stop == "end"
    row = await _row(live)
    assert (row.client_protocol, row.upstream_protocol) == (client, upstream)
    assert (row.model, row.upstream_model) == (model, "mock-text")
    assert row.stream is stream
    _check_usage(seen, row, upstream, output=8)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=PAIR_IDS)
async def test_thinking_and_tool_call(
    live: Live, client: Protocol, upstream: Protocol, stream: bool
) -> None:
    model = f"to-{ALIAS[upstream]}/mock-thinking+tools"
    seen = await _call(live, client, model, stream=stream, tools=True)
    assert len(live.mock.requests) == 1  # PEER-BUGS 4: no fallback request by the SDK
    assert seen.text == "Hello from the"
    assert [(name, args) for _, name, args in seen.tools] == [("get_weather", TOOL_ARGS)]
    call_id = seen.tools[0][0]
    assert call_id
    assert all(ch.isalnum() or ch in "_-" for ch in call_id)
    assert seen.stop == "tool"
    if _thinking_expected(client, upstream):
        assert seen.thinking == THINKING
    else:
        assert seen.thinking == ""
    # 3 text deltas + 4 argument fragments + 12 reasoning tokens.
    _check_usage(seen, await _row(live), upstream, output=19)


@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=PAIR_IDS)
async def test_max_tokens_stop(live: Live, client: Protocol, upstream: Protocol) -> None:
    model = f"to-{ALIAS[upstream]}/mock-incomplete"
    # The OpenAI stream helpers refuse to assemble a cut answer (Chat raises
    # LengthFinishReasonError, Responses wants response.completed): judge those unary.
    seen = await _call(live, client, model, stream=client == "anthropic", tools=False)
    assert seen.stop == "length"
    assert seen.text == TEXT


def _history(client: Protocol, model: str) -> tuple[str, dict[str, object]]:
    """A second turn in the client's format: the prompt, the assistant's tool call (with its
    text), the tool's result, and a follow-up question."""
    match client:
        case "anthropic":
            return "/v1/messages", {
                "model": model,
                "max_tokens": 512,
                "system": [{"type": "text", "text": "Be brief.",
                            "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": PROMPT},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                         "input": TOOL_ARGS},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 C"},
                        {"type": "text", "text": "And tomorrow?"},
                    ]},
                ],
                "tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}],
            }  # fmt: skip
        case "openai-chat":
            return "/v1/chat/completions", {
                "model": model,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": PROMPT},
                    {"role": "assistant", "content": "Let me check.", "tool_calls": [
                        {"id": "call_01", "type": "function", "function": {
                            "name": "get_weather", "arguments": json.dumps(TOOL_ARGS)}},
                    ]},
                    {"role": "tool", "tool_call_id": "call_01", "content": "15 C"},
                    {"role": "user", "content": "And tomorrow?"},
                ],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "parameters": WEATHER_SCHEMA}}],
            }  # fmt: skip
        case "openai-responses":
            return "/v1/responses", {
                "model": model,
                "instructions": "Be brief.",
                "input": [
                    {"role": "user", "content": PROMPT},
                    {"type": "message", "role": "assistant",
                     "content": [{"type": "output_text", "text": "Let me check.",
                                  "annotations": []}]},
                    {"type": "function_call", "call_id": "call_01", "name": "get_weather",
                     "arguments": json.dumps(TOOL_ARGS)},
                    {"type": "function_call_output", "call_id": "call_01", "output": "15 C"},
                    {"role": "user", "content": "And tomorrow?"},
                ],
                "tools": [{"type": "function", "name": "get_weather",
                           "parameters": WEATHER_SCHEMA, "strict": False}],
            }  # fmt: skip


@pytest.mark.parametrize(("client", "upstream"), PAIRS, ids=PAIR_IDS)
async def test_tool_history_reaches_the_upstream_in_its_own_format(
    live: Live, client: Protocol, upstream: Protocol
) -> None:
    """The mock validates like the real APIs (tool_result first, ids match, strict tools):
    a translated history it accepts is one the real upstream accepts."""
    path, body = _history(client, f"to-{ALIAS[upstream]}/mock-text")
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        response = await http.post(
            path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
        )
    assert response.status_code == 200, response.text
    received = live.mock.requests[-1].body
    assert isinstance(received, dict)
    text = json.dumps(received)
    assert "15 C" in text
    assert "Be brief." in text
    assert "And tomorrow?" in text
    if client != upstream:
        assert "cache_control" not in text or upstream == "anthropic"
        assert response.headers.get("x-trio-gateway-ignored", "") == (
            "cache_control" if client == "anthropic" and upstream != "anthropic" else ""
        )
