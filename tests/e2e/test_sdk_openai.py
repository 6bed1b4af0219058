"""The official OpenAI SDK (Chat Completions and Responses) through the gateway on real
hypercorn, and the upstream framing quirks every SDK must survive.

Each SDK result is compared with the same call made directly against the mock upstream, with
per-request ids normalised (the mock numbers its ids per request). Where the gateway must be
byte-faithful (CRLF framing, a 10 MB single ``data:`` line) the raw SSE bodies are compared
byte for byte with httpx instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

import anthropic
import httpx
import openai
import pytest
import trio
from openai.types.chat import ChatCompletionStreamOptionsParam

from tests.conftest import Live
from tests.e2e._sdk import ANTHROPIC_MESSAGES, MESSAGES, PROMPT, SDK_WARNINGS, TEXT
from tests.support import CLIENT_KEY, UPSTREAM_KEY, sse_events
from trio_gateway._ledger import AttemptRecord

pytestmark = SDK_WARNINGS
#: The mock's three tool-scenario text deltas, joined.
TOOLS_TEXT: Final = "Hello from the"
TOOL_ARGUMENTS: Final = '{"city": "Paris"}'
_IDS: Final = {"id", "call_id", "item_id"}
_MOCK_ID: Final = re.compile(rb"mock\d{8}")


def _anthropic(base_url: str, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0)


def _openai(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)


def _mock_url(live: Live) -> str:
    return f"http://127.0.0.1:{live.mock_port}"


def _targets(live: Live) -> tuple[tuple[str, str], tuple[str, str]]:
    """(url, key) of the gateway, then of the mock directly."""
    return (live.url, CLIENT_KEY), (_mock_url(live), UPSTREAM_KEY)


def _normalised(value: object, *, blank: frozenset[str] = frozenset()) -> object:
    """A model_dump with per-request ids (and the keys in ``blank``) replaced."""
    if isinstance(value, dict):
        return {
            k: "<id>" if k in _IDS or k in blank else _normalised(v, blank=blank)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normalised(v, blank=blank) for v in value]
    return value


def _raw_ids_normalised(body: bytes) -> bytes:
    return _MOCK_ID.sub(b"mockXXXXXXXX", body)


async def _raw_post(
    base_url: str, key: str, path: str, body: Mapping[str, object]
) -> httpx.Response:
    """POST ``body`` to ``base_url + path`` with the caller headers of ``path``'s protocol."""
    headers = (
        {"x-api-key": key, "anthropic-version": "2023-06-01"}
        if path == "/v1/messages"
        else {"authorization": f"Bearer {key}"}
    )
    async with httpx.AsyncClient(timeout=60.0) as client:
        return await client.post(base_url + path, json=dict(body), headers=headers)


async def _records(live: Live) -> list[AttemptRecord]:
    """The ledger records once every attempt is settled (settling may trail the body end)."""
    with trio.fail_after(5):
        while live.gateway.ledger.in_flight():
            await trio.sleep(0.01)
    return live.gateway.ledger.records


# --- Chat Completions ---------------------------------------------------------------------


@pytest.mark.slow
async def test_chat_stream_helper_with_include_usage_matches_upstream(live: Live) -> None:
    results = []
    for url, key in _targets(live):
        async with (
            _openai(url, key) as client,
            client.chat.completions.stream(
                model="mock-text", messages=MESSAGES, stream_options={"include_usage": True}
            ) as stream,
        ):
            results.append(await stream.get_final_completion())
    via_gateway, direct = results
    assert _normalised(via_gateway.model_dump()) == _normalised(direct.model_dump())
    assert via_gateway.choices[0].message.content == TEXT
    assert via_gateway.choices[0].finish_reason == "stop"
    usage = via_gateway.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (125, 8, 133)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 100
    [record] = await _records(live)
    assert (record.outcome, record.usage_source, record.upstream) == (
        "completed",
        "reported",
        "chat",
    )
    assert (record.usage.input_tokens, record.usage.cache_read_tokens) == (25, 100)
    assert record.usage.output_tokens == 8


@pytest.mark.parametrize(
    "stream_options",
    [None, {"include_usage": False}],
    ids=["no_stream_options", "include_usage_false"],
)
@pytest.mark.parametrize("model", ["mock-text", "mock-usage_with_choices"])
async def test_chat_create_stream_without_usage_request_hides_usage_chunk(
    live: Live, stream_options: ChatCompletionStreamOptionsParam | None, model: str
) -> None:
    """RELIABILITY B2: upstream always asked for usage, the caller never sees it (neither
    as a ``choices: []`` chunk nor riding on the finish chunk, PEER-BUGS 28)."""
    dumps = []
    texts = []
    for url, key in _targets(live):
        async with _openai(url, key) as client:
            stream = await client.chat.completions.create(
                model=model,
                messages=MESSAGES,
                stream=True,
                stream_options=openai.omit if stream_options is None else stream_options,
            )
            chunks = [chunk async for chunk in stream]
        assert chunks
        for chunk in chunks:
            assert chunk.choices != []
            assert chunk.usage is None
        texts.append("".join(c.choices[0].delta.content or "" for c in chunks))
        dumps.append([_normalised(c.model_dump()) for c in chunks])
    assert texts == [TEXT, TEXT]
    assert dumps[0] == dumps[1]
    # What the gateway sent upstream, and what it billed.
    gateway_request = live.mock.requests[0]
    assert isinstance(gateway_request.body, dict)
    assert gateway_request.body["stream_options"] == {"include_usage": True}
    assert gateway_request.outcome == "completed"
    direct_request = live.mock.requests[1]
    assert isinstance(direct_request.body, dict)
    assert direct_request.body.get("stream_options") == stream_options
    [record] = await _records(live)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert (record.usage.input_tokens, record.usage.cache_read_tokens) == (25, 100)
    assert record.usage.output_tokens == 8
    # USD per million: 25 uncached x 3.0 + 100 cache reads x 0.30 + 8 output x 15.0.
    assert record.cost_usd == Decimal("0.000225")


async def test_chat_tools_stream_assembles_one_tool_call(live: Live) -> None:
    finals = []
    for url, key in _targets(live):
        async with _openai(url, key) as client:
            raw = await client.chat.completions.create(
                model="mock-tools",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in raw]
            async with client.chat.completions.stream(
                model="mock-tools", messages=MESSAGES, stream_options={"include_usage": True}
            ) as helper:
                finals.append(await helper.get_final_completion())
        deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
        assert [d.id for d in deltas if d.id is not None] == [deltas[0].id]
        assert deltas[0].id is not None
        assert deltas[0].id.startswith("call_")
        names = [d.function.name for d in deltas if d.function and d.function.name is not None]
        assert names == ["get_weather"]
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        assert arguments == TOOL_ARGUMENTS
        assert json.loads(arguments) == {"city": "Paris"}
        assert {d.index for d in deltas} == {0}
    via_gateway, direct = finals
    assert _normalised(via_gateway.model_dump()) == _normalised(direct.model_dump())
    message = via_gateway.choices[0].message
    assert message.content == TOOLS_TEXT
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", TOOL_ARGUMENTS)
    assert via_gateway.choices[0].finish_reason == "tool_calls"
    assert via_gateway.usage is not None
    assert (via_gateway.usage.prompt_tokens, via_gateway.usage.completion_tokens) == (125, 7)


@pytest.mark.parametrize("scenario", ["text", "tools"])
async def test_chat_non_stream_matches_upstream(live: Live, scenario: str) -> None:
    results = []
    for url, key in _targets(live):
        async with _openai(url, key) as client:
            results.append(
                await client.chat.completions.create(model=f"mock-{scenario}", messages=MESSAGES)
            )
    via_gateway, direct = results
    assert _normalised(via_gateway.model_dump()) == _normalised(direct.model_dump())
    assert via_gateway.id.startswith("chatcmpl-")
    assert via_gateway.usage is not None
    expected_output = 8 if scenario == "text" else 7
    assert via_gateway.usage.completion_tokens == expected_output
    [record] = await _records(live)
    assert (record.outcome, record.stream, record.usage_source) == ("completed", False, "reported")
    assert (record.usage.input_tokens, record.usage.cache_read_tokens) == (25, 100)
    assert record.usage.output_tokens == expected_output


# --- Responses ----------------------------------------------------------------------------

# scenario -> (output item types, output tokens, reasoning tokens)
_RESPONSES_EXPECTED: Final = {
    "text": (["message"], 8, 0),
    "tools": (["message", "function_call"], 7, 0),
    "thinking": (["reasoning", "message"], 20, 12),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["text", "tools", "thinking"])
async def test_responses_stream_matches_upstream(live: Live, scenario: str) -> None:
    results = []
    for url, key in _targets(live):
        async with (
            _openai(url, key) as client,
            client.responses.stream(model=f"mock-{scenario}", input=PROMPT) as stream,
        ):
            results.append(await stream.get_final_response())
    via_gateway, direct = results
    assert _normalised(via_gateway.model_dump()) == _normalised(direct.model_dump())
    types, output_tokens, reasoning_tokens = _RESPONSES_EXPECTED[scenario]
    assert [item.type for item in via_gateway.output] == types
    assert via_gateway.status == "completed"
    assert via_gateway.output_text == (TOOLS_TEXT if scenario == "tools" else TEXT)
    usage = via_gateway.usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (125, 100)
    assert usage.output_tokens == output_tokens
    assert usage.output_tokens_details.reasoning_tokens == reasoning_tokens
    if scenario == "tools":
        call = via_gateway.output[-1]
        assert call.type == "function_call"
        assert (call.name, call.arguments) == ("get_weather", TOOL_ARGUMENTS)
    [record] = await _records(live)
    assert (record.outcome, record.usage_source, record.upstream) == (
        "completed",
        "reported",
        "responses",
    )
    assert (record.usage.input_tokens, record.usage.cache_read_tokens) == (25, 100)
    assert (record.usage.output_tokens, record.usage.reasoning_tokens) == (
        output_tokens,
        reasoning_tokens,
    )


@pytest.mark.parametrize("scenario", ["text", "tools", "thinking"])
async def test_responses_non_stream_matches_upstream(live: Live, scenario: str) -> None:
    results = []
    for url, key in _targets(live):
        async with _openai(url, key) as client:
            results.append(
                await client.responses.create(model=f"mock-{scenario}", input=PROMPT, stream=False)
            )
    via_gateway, direct = results
    assert _normalised(via_gateway.model_dump()) == _normalised(direct.model_dump())
    types, output_tokens, _ = _RESPONSES_EXPECTED[scenario]
    assert [item.type for item in via_gateway.output] == types
    assert via_gateway.usage is not None
    assert via_gateway.usage.output_tokens == output_tokens
    [record] = await _records(live)
    assert (record.outcome, record.stream, record.usage_source) == ("completed", False, "reported")
    assert record.usage.output_tokens == output_tokens


# --- Anthropic upstream framing quirks ----------------------------------------------------


async def _anthropic_final(url: str, key: str, model: str) -> anthropic.types.Message:
    async with (
        _anthropic(url, key) as client,
        client.messages.stream(model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES) as stream,
    ):
        return await stream.get_final_message()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["no_event_lines", "done", "no_event_lines+done"])
async def test_anthropic_sdk_survives_upstream_framing(live: Live, scenario: str) -> None:
    """Frames without ``event:`` lines get one; a trailing ``data: [DONE]`` is dropped
    (DESIGN §4), so the Anthropic SDK sees the same message as from a clean upstream."""
    via_gateway = await _anthropic_final(live.url, CLIENT_KEY, f"mock-{scenario}")
    reference = await _anthropic_final(_mock_url(live), UPSTREAM_KEY, "mock-text")
    blank = frozenset({"model"})
    assert _normalised(via_gateway.model_dump(), blank=blank) == _normalised(
        reference.model_dump(), blank=blank
    )
    assert via_gateway.model == f"mock-{scenario}"
    assert [block.type for block in via_gateway.content] == ["text"]
    assert via_gateway.content[0].type == "text"
    assert via_gateway.content[0].text == TEXT
    usage = via_gateway.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (25, 8, 100)
    [record] = await _records(live)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert (record.usage.input_tokens, record.usage.output_tokens) == (25, 8)
    # The raw stream: every frame named, no [DONE], message_stop last.
    response = await _raw_post(
        live.url,
        CLIENT_KEY,
        "/v1/messages",
        {"model": f"mock-{scenario}", "max_tokens": 256, "messages": MESSAGES, "stream": True},
    )
    assert response.status_code == 200
    events = sse_events(response.content)
    assert all(name is not None for name, _ in events)
    assert all(json.loads(data)["type"] == name for name, data in events)
    assert b"[DONE]" not in response.content
    assert events[-1][0] == "message_stop"
    assert response.content.endswith(b"\n\n")


# --- byte fidelity: CRLF and a 10 MB line -------------------------------------------------


def _stream_body(path: str, model: str) -> dict[str, object]:
    if path == "/v1/messages":
        return {"model": model, "max_tokens": 256, "messages": MESSAGES, "stream": True}
    if path == "/v1/chat/completions":
        # include_usage as the gateway forces it, so the upstream bytes need no rewrite.
        return {
            "model": model,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    return {"model": model, "input": PROMPT, "stream": True}


async def _raw_pair(live: Live, path: str, model: str) -> tuple[bytes, bytes]:
    """The raw SSE bodies of the same request via the gateway and directly, ids normalised."""
    bodies = []
    for url, key in _targets(live):
        response = await _raw_post(url, key, path, _stream_body(path, model))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        bodies.append(_raw_ids_normalised(response.content))
    return bodies[0], bodies[1]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/v1/responses"])
async def test_crlf_framing_is_forwarded_byte_for_byte(live: Live, path: str) -> None:
    via_gateway, direct = await _raw_pair(live, path, "mock-crlf")
    assert via_gateway == direct
    assert via_gateway.count(b"\r\n\r\n") == len(sse_events(direct))
    assert b"\n\n" not in via_gateway.replace(b"\r\n", b"")


@pytest.mark.slow
async def test_crlf_framing_works_in_every_sdk(live: Live) -> None:
    messages = [await _anthropic_final(u, k, "mock-crlf") for u, k in _targets(live)]
    assert _normalised(messages[0].model_dump()) == _normalised(messages[1].model_dump())
    assert messages[0].content[0].type == "text"
    assert messages[0].content[0].text == TEXT
    assert messages[0].usage.output_tokens == 8
    completions = []
    responses = []
    for url, key in _targets(live):
        async with _openai(url, key) as client:
            async with client.chat.completions.stream(
                model="mock-crlf", messages=MESSAGES, stream_options={"include_usage": True}
            ) as chat:
                completions.append(await chat.get_final_completion())
            async with client.responses.stream(model="mock-crlf", input=PROMPT) as stream:
                responses.append(await stream.get_final_response())
    assert _normalised(completions[0].model_dump()) == _normalised(completions[1].model_dump())
    assert completions[0].choices[0].message.content == TEXT
    assert completions[0].usage is not None
    assert completions[0].usage.completion_tokens == 8
    assert _normalised(responses[0].model_dump()) == _normalised(responses[1].model_dump())
    assert responses[0].output_text == TEXT
    outcomes = [(r.upstream, r.outcome, r.usage_source) for r in await _records(live)]
    assert outcomes == [
        ("anthropic", "completed", "reported"),
        ("chat", "completed", "reported"),
        ("responses", "completed", "reported"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
async def test_ten_megabyte_data_line_passes_byte_identical(live: Live, path: str) -> None:
    try:
        via_gateway, direct = await _raw_pair(live, path, "mock-huge:bytes=10000000")
    except httpx.RemoteProtocolError as error:
        outcomes = [(r.upstream, r.outcome) for r in await _records(live)]
        pytest.fail(f"the 10 MB event did not reach the client ({error}); ledger: {outcomes}")
    assert len(via_gateway) > 10_000_000
    assert via_gateway == direct
    longest = max(len(line) for line in via_gateway.split(b"\n"))
    assert longest > 10_000_000
    [record] = await _records(live)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage.output_tokens == 8
