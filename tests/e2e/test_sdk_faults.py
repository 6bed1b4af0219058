"""Upstream faults as the official SDKs see them through the gateway on real hypercorn.

What is proven here (DESIGN §4, §8; protocols.md §1.8, §2.6, §4.5; RELIABILITY U/C/B rows):

- before commit, an upstream error status is a real HTTP error the SDKs type and retry;
- after ``commit_delay`` the response is committed and keepalives flow, in the right form
  for each client protocol and only at event boundaries;
- after commit, every upstream failure (silence, cut, reset, no terminator) ends the body
  with an in-band error event, never a clean end, and the ledger says what happened;
- failover before commit, secret hygiene (canary, redirect, hop-by-hop headers, caller
  credentials) and the request body limit.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import Final, Literal

import anthropic
import httpx
import openai
import pytest
import trio

from tests.conftest import Live, start_live
from tests.e2e._sdk import ANTHROPIC_MESSAGES, MESSAGES, PROMPT, SDK_WARNINGS, TEXT
from tests.support import CLIENT_KEY, UPSTREAM_KEY, gateway_config, sse_events
from trio_gateway._gateway import Gateway
from trio_gateway._ledger import AttemptRecord
from trio_gateway._mock import CANARY_KEY, REDIRECT_LOCATION, MockRequest, MockUpstream
from trio_gateway._server import serve_gateway

pytestmark = SDK_WARNINGS
ANTHROPIC_PING: Final = b'event: ping\ndata: {"type": "ping"}\n\n'
OPENAI_KEEPALIVE: Final = b": keepalive\n\n"
_MOCK_ID: Final = re.compile(rb"mock\d{8}")

Path = Literal["/v1/messages", "/v1/chat/completions", "/v1/responses"]
ANTHROPIC: Final = "/v1/messages"
CHAT: Final = "/v1/chat/completions"
RESPONSES: Final = "/v1/responses"


# --- helpers ------------------------------------------------------------------------------


def _anthropic(base_url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base_url, api_key=CLIENT_KEY, max_retries=0)


def _openai(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)


def _body(path: str, model: str, *, stream: bool = True) -> dict[str, object]:
    if path == ANTHROPIC:
        return {"model": model, "max_tokens": 256, "messages": ANTHROPIC_MESSAGES, "stream": stream}
    if path == CHAT:
        return {"model": model, "messages": MESSAGES, "stream": stream}
    return {"model": model, "input": PROMPT, "stream": stream}


def _caller_headers(path: str, key: str = CLIENT_KEY) -> dict[str, str]:
    if path == ANTHROPIC:
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {key}"}


async def _raw_post(
    base_url: str,
    path: str,
    body: Mapping[str, object],
    *,
    key: str = CLIENT_KEY,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST ``body`` with httpx; ``headers`` replace the default caller headers."""
    sent = _caller_headers(path, key) if headers is None else dict(headers)
    async with httpx.AsyncClient(timeout=30.0) as client:
        return await client.post(base_url + path, json=dict(body), headers=sent)


async def _records(live: Live) -> list[AttemptRecord]:
    """The ledger records once every attempt is settled (settling may trail the body end)."""
    with trio.fail_after(5):
        while live.gateway.ledger.in_flight():
            await trio.sleep(0.01)
    return live.gateway.ledger.records


async def _final_outcome(request: MockRequest) -> str:
    """The mock's outcome for ``request`` once its response is over."""
    with trio.fail_after(5):
        while request.outcome in {"in_progress", "stalled"}:
            await trio.sleep(0.01)
    return request.outcome


@asynccontextmanager
async def _live_with(**streaming: object) -> AsyncGenerator[Live]:
    """A live stack with ``[streaming]`` overrides."""
    async with trio.open_nursery() as nursery:
        started = await start_live(nursery, **streaming)
        try:
            yield started
        finally:
            nursery.cancel_scope.cancel()
    await started.gateway.aclose()


async def _no_shutdown(gateway: Gateway) -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def _live_with_body_limit(max_request_bytes: int) -> AsyncGenerator[Live]:
    """A live stack whose ``[server] max_request_bytes`` is ``max_request_bytes``
    (``start_live`` only overrides ``[streaming]``)."""
    async with trio.open_nursery() as nursery:
        mock = MockUpstream(require_key=UPSTREAM_KEY)
        port = await nursery.start(partial(mock.serve, host="127.0.0.1", port=0))
        config = gateway_config(port=port)
        config = replace(config, server=replace(config.server, max_request_bytes=max_request_bytes))
        gateway = Gateway(config)
        urls = await nursery.start(partial(serve_gateway, gateway, shutdown_trigger=_no_shutdown))
        try:
            yield Live(url=urls[0], gateway=gateway, mock=mock, mock_port=port)
        finally:
            nursery.cancel_scope.cancel()
    await gateway.aclose()


async def _anthropic_text(base_url: str, model: str) -> str:
    async with (
        _anthropic(base_url) as client,
        client.messages.stream(model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES) as stream,
    ):
        message = await stream.get_final_message()
    block = message.content[0]
    assert block.type == "text"
    return block.text


async def _chat_text(base_url: str, model: str) -> str:
    async with (
        _openai(base_url) as client,
        client.chat.completions.stream(model=model, messages=MESSAGES) as stream,
    ):
        completion = await stream.get_final_completion()
    return completion.choices[0].message.content or ""


async def _responses_text(base_url: str, model: str) -> str:
    async with (
        _openai(base_url) as client,
        client.responses.stream(model=model, input=PROMPT) as stream,
    ):
        response = await stream.get_final_response()
    return response.output_text


def _at_boundaries(body: bytes, marker: bytes) -> int:
    """How many times ``marker`` occurs; asserts each starts the body or follows a blank line."""
    positions = [m.start() for m in re.finditer(re.escape(marker), body)]
    for position in positions:
        assert position == 0 or body[:position].endswith((b"\n\n", b"\r\n\r\n")), (
            f"{marker!r} inside an event at byte {position}: {body[max(0, position - 80) :]!r}"
        )
    return len(positions)


def _field_lines(body: bytes, *prefixes: bytes) -> list[bytes]:
    return [line for line in body.split(b"\n") if line.startswith(prefixes)]


# --- errors before commit: real HTTP statuses ---------------------------------------------

AnthropicMode = Literal["create", "create_stream", "stream_helper"]


async def _anthropic_call(base_url: str, model: str, mode: AnthropicMode) -> None:
    async with _anthropic(base_url) as client:
        if mode == "create":
            await client.messages.create(model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES)
        elif mode == "create_stream":
            stream = await client.messages.create(
                model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES, stream=True
            )
            async for _ in stream:
                pass
        else:
            async with client.messages.stream(
                model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES
            ) as helper:
                await helper.get_final_message()


OpenAIMode = Literal["chat", "chat_stream", "chat_helper", "responses", "responses_stream"]


async def _openai_call(base_url: str, model: str, mode: OpenAIMode) -> None:
    async with _openai(base_url) as client:
        if mode == "chat":
            await client.chat.completions.create(model=model, messages=MESSAGES)
        elif mode == "chat_stream":
            chunks = await client.chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )
            async for _ in chunks:
                pass
        elif mode == "chat_helper":
            async with client.chat.completions.stream(model=model, messages=MESSAGES) as helper:
                await helper.get_final_completion()
        elif mode == "responses":
            await client.responses.create(model=model, input=PROMPT)
        else:
            events = await client.responses.create(model=model, input=PROMPT, stream=True)
            async for _ in events:
                pass


@pytest.mark.parametrize("mode", ["create", "create_stream", "stream_helper"])
async def test_anthropic_sdk_gets_real_429_with_retry_after(
    live: Live, mode: AnthropicMode
) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        await _anthropic_call(live.url, "mock-status:code=429,retry_after=2", mode)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    [record] = await _records(live)
    assert (record.status, record.outcome, record.usage_source) == (429, "upstream_error", "none")


@pytest.mark.parametrize("mode", ["chat", "chat_stream", "chat_helper", "responses_stream"])
async def test_openai_sdk_gets_real_429_with_retry_after(live: Live, mode: OpenAIMode) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await _openai_call(live.url, "mock-status:code=429,retry_after=2", mode)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    [record] = await _records(live)
    assert (record.status, record.outcome) == (429, "upstream_error")


@pytest.mark.parametrize("mode", ["create", "create_stream", "stream_helper"])
async def test_anthropic_sdk_gets_real_529_overloaded(live: Live, mode: AnthropicMode) -> None:
    with pytest.raises(anthropic.OverloadedError) as caught:
        await _anthropic_call(live.url, "mock-status:code=529", mode)
    assert caught.value.status_code == 529
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    [record] = await _records(live)
    assert (record.status, record.outcome) == (529, "upstream_error")


async def test_openai_sdk_gets_real_529_as_server_error(live: Live) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await _openai_call(live.url, "mock-status:code=529", "chat_stream")
    assert caught.value.status_code == 529


# --- keepalive: before the upstream answers, and before the first token -------------------


@pytest.mark.slow
async def test_headers_later_than_commit_delay_get_pings_then_complete() -> None:
    """DESIGN §4 commit rule, PEER-BUGS 15/16: after commit_delay the 200 goes out and pings
    flow while the upstream has not even sent its headers; the stream then completes."""
    model = "mock-stall_headers:secs=1.0"
    raw: dict[str, httpx.Response] = {}
    texts: dict[str, str] = {}
    async with _live_with(commit_delay=0.3, keepalive_interval=0.2) as live:

        async def fetch(path: str) -> None:
            raw[path] = await _raw_post(live.url, path, _body(path, model))

        async def sdk(name: str, call: Callable[[str, str], Awaitable[str]]) -> None:
            texts[name] = await call(live.url, model)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch, ANTHROPIC)
            nursery.start_soon(fetch, CHAT)
            nursery.start_soon(sdk, "anthropic", _anthropic_text)
            nursery.start_soon(sdk, "chat", _chat_text)
        records = await _records(live)
    assert texts == {"anthropic": TEXT, "chat": TEXT}
    anthropic_body = raw[ANTHROPIC].content
    assert raw[ANTHROPIC].status_code == 200
    head = anthropic_body[: anthropic_body.index(b"event: message_start")]
    pings = head.count(ANTHROPIC_PING)
    assert pings >= 2
    assert head == ANTHROPIC_PING * pings  # nothing but whole ping events before the data
    assert sse_events(anthropic_body)[-1][0] == "message_stop"
    chat_body = raw[CHAT].content
    assert raw[CHAT].status_code == 200
    head = chat_body[: chat_body.index(b"data: ")]
    keepalives = head.count(OPENAI_KEEPALIVE)
    assert keepalives >= 2
    assert head == OPENAI_KEEPALIVE * keepalives
    assert _field_lines(chat_body, b"event:", b"id:", b"retry:") == []
    assert sse_events(chat_body)[-1] == (None, "[DONE]")
    assert sorted((r.upstream, r.outcome) for r in records) == [
        ("anthropic", "completed"),
        ("anthropic", "completed"),
        ("chat", "completed"),
        ("chat", "completed"),
    ]


@pytest.mark.slow
async def test_slow_first_token_keeps_alive_at_event_boundaries() -> None:
    """An upstream that waits 3x keepalive_interval before its first event: pings of the
    client protocol's form, only between events; OpenAI streams never get event:/id:/retry:
    fields from the gateway; all three SDKs complete."""
    model = "mock-slow_first:secs=0.6"
    raw: dict[str, httpx.Response] = {}
    texts: dict[str, str] = {}
    async with _live_with(keepalive_interval=0.2) as live:

        async def fetch(path: str) -> None:
            raw[path] = await _raw_post(live.url, path, _body(path, model))

        async def sdk(name: str, call: Callable[[str, str], Awaitable[str]]) -> None:
            texts[name] = await call(live.url, model)

        async with trio.open_nursery() as nursery:
            for path in (ANTHROPIC, CHAT, RESPONSES):
                nursery.start_soon(fetch, path)
            nursery.start_soon(sdk, "anthropic", _anthropic_text)
            nursery.start_soon(sdk, "chat", _chat_text)
            nursery.start_soon(sdk, "responses", _responses_text)
        records = await _records(live)
    assert texts == {"anthropic": TEXT, "chat": TEXT, "responses": TEXT}
    assert all(response.status_code == 200 for response in raw.values())

    anthropic_body = raw[ANTHROPIC].content
    assert anthropic_body.count(ANTHROPIC_PING) >= 2
    # Every ping (the gateway's and the mock's own, compact one) starts an event.
    assert _at_boundaries(anthropic_body, b"event: ping") == anthropic_body.count(
        ANTHROPIC_PING
    ) + anthropic_body.count(b'event: ping\ndata: {"type":"ping"}\n\n')
    assert sse_events(anthropic_body)[-1][0] == "message_stop"

    chat_body = raw[CHAT].content
    assert _at_boundaries(chat_body, b": keepalive") >= 2
    assert _field_lines(chat_body, b":") == [b": keepalive"] * chat_body.count(OPENAI_KEEPALIVE)
    assert _field_lines(chat_body, b"event:", b"id:", b"retry:") == []
    assert sse_events(chat_body)[-1] == (None, "[DONE]")

    responses_body = raw[RESPONSES].content
    assert _at_boundaries(responses_body, b": keepalive") >= 2
    assert _field_lines(responses_body, b"id:", b"retry:") == []
    # The only event: lines are the upstream's own response.* names (no `event: ping`).
    names = [line.removeprefix(b"event: ") for line in _field_lines(responses_body, b"event:")]
    assert names
    assert all(name.startswith(b"response.") for name in names)
    assert sse_events(responses_body)[-1][0] == "response.completed"
    assert [r.outcome for r in records] == ["completed"] * 6


# --- failures after commit: in-band errors, never a clean end -----------------------------


@pytest.mark.slow
async def test_data_interval_timeout_anthropic() -> None:
    async with _live_with(data_interval_timeout=0.5) as live:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await _anthropic_text(live.url, "mock-stall:after=3,secs=30")
        [record] = await _records(live)
        mock_outcome = await _final_outcome(live.mock.requests[0])
        events_sent = live.mock.requests[0].events_sent
    error = caught.value
    assert error.status_code == 200  # in-band: the 200 had long been sent
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "timeout_error"
    assert (record.outcome, record.usage_source) == ("upstream_timeout", "partial")
    usage = record.usage
    # message_start's input side, and its placeholder output count.
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (25, 100, 1)
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (20, 10)
    assert mock_outcome == "client_closed"
    assert events_sent == 3


@pytest.mark.slow
async def test_data_interval_timeout_chat() -> None:
    async with _live_with(data_interval_timeout=0.5) as live:
        with pytest.raises(openai.APIError) as caught:
            await _openai_call(live.url, "mock-stall:after=3,secs=30", "chat_stream")
        [record] = await _records(live)
        mock_outcome = await _final_outcome(live.mock.requests[0])
    assert not isinstance(caught.value, openai.APIStatusError)  # in-band, not an HTTP error
    assert (record.status, record.outcome, record.usage_source) == (200, "upstream_timeout", "none")
    assert mock_outcome == "client_closed"


_BROKEN_ENDINGS: Final = ["cut:after=4", "reset:after=4", "no_terminator"]


@pytest.mark.parametrize("scenario", _BROKEN_ENDINGS)
async def test_broken_upstream_ending_is_an_in_band_error_anthropic(
    live: Live, scenario: str
) -> None:
    model = f"mock-{scenario}"
    response = await _raw_post(live.url, ANTHROPIC, _body(ANTHROPIC, model))
    assert response.status_code == 200
    events = sse_events(response.content)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert json.loads(events[-1][1])["type"] == "error"
    assert response.content.endswith(b"\n\n")
    with pytest.raises(anthropic.APIStatusError) as caught:
        await _anthropic_text(live.url, model)
    assert caught.value.status_code == 200
    records = await _records(live)
    assert [(r.outcome, r.status) for r in records] == [("upstream_error", 200)] * 2
    if scenario == "no_terminator":
        # RELIABILITY U13: the usage the upstream did send is recorded.
        assert (records[0].usage_source, records[0].usage.output_tokens) == ("reported", 8)


@pytest.mark.parametrize("scenario", _BROKEN_ENDINGS)
async def test_broken_upstream_ending_is_an_in_band_error_chat(live: Live, scenario: str) -> None:
    model = f"mock-{scenario}"
    response = await _raw_post(live.url, CHAT, _body(CHAT, model))
    assert response.status_code == 200
    events = sse_events(response.content)
    assert all(name is None for name, _ in events)
    assert (None, "[DONE]") not in events
    last = json.loads(events[-1][1])
    assert isinstance(last["error"], dict)
    assert last["error"]["message"]
    with pytest.raises(openai.APIError) as caught:
        await _openai_call(live.url, model, "chat_stream")
    assert not isinstance(caught.value, openai.APIStatusError)
    records = await _records(live)
    assert [(r.outcome, r.status) for r in records] == [("upstream_error", 200)] * 2
    if scenario == "no_terminator":
        assert (records[0].usage_source, records[0].usage.output_tokens) == ("reported", 8)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "model"),
    [
        (ANTHROPIC, "mock-malformed:at=3"),
        (ANTHROPIC, "mock-malformed:at=0"),
        (CHAT, "mock-malformed:at=3"),
    ],
)
async def test_malformed_event_forwarded_whole_and_gateway_keeps_serving(
    live: Live, path: str, model: str
) -> None:
    body = _body(path, model)
    if path == CHAT:
        body["stream_options"] = {"include_usage": True}  # as forced: no rewrite expected
    raws = []
    for url, key in ((live.url, CLIENT_KEY), (f"http://127.0.0.1:{live.mock_port}", UPSTREAM_KEY)):
        response = await _raw_post(url, path, body, key=key)
        assert response.status_code == 200
        raws.append(_MOCK_ID.sub(b"mockXXXXXXXX", response.content))
    via_gateway, direct = raws
    assert b", oops\n" in direct
    assert via_gateway == direct
    # The gateway is alive and well.
    if path == ANTHROPIC:
        assert await _anthropic_text(live.url, "mock-text") == TEXT
    else:
        assert await _chat_text(live.url, "mock-text") == TEXT
    records = await _records(live)
    assert records[-1].outcome == "completed"


# --- failover before commit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "first", "second"),
    [(ANTHROPIC, "anthropic", "anthropic-b"), (CHAT, "chat", "chat-b")],
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
async def test_failover_to_second_upstream(
    live: Live, path: str, first: str, second: str, stream: bool
) -> None:
    if path == ANTHROPIC:
        if stream:
            text = await _anthropic_text(live.url, "failover-x")
        else:
            async with _anthropic(live.url) as client:
                message = await client.messages.create(
                    model="failover-x", max_tokens=256, messages=ANTHROPIC_MESSAGES
                )
            assert message.content[0].type == "text"
            text = message.content[0].text
    elif stream:
        text = await _chat_text(live.url, "failover-x")
    else:
        async with _openai(live.url) as client:
            completion = await client.chat.completions.create(model="failover-x", messages=MESSAGES)
        text = completion.choices[0].message.content or ""
    assert text == TEXT
    records = await _records(live)
    request_id = records[-1].request_id
    attempts = [r for r in records if r.request_id == request_id]
    assert [(r.attempt, r.upstream, r.status, r.outcome) for r in attempts] == [
        (1, first, 503, "upstream_error"),
        (2, second, 200, "completed"),
    ]
    assert [r.upstream_model for r in attempts] == ["mock-status:code=503", "mock-text"]
    assert (attempts[0].usage_source, attempts[1].usage_source) == ("none", "reported")
    assert attempts[1].usage.output_tokens == 8
    upstream_models = [r.body["model"] for r in live.mock.requests if isinstance(r.body, dict)]
    assert upstream_models == ["mock-status:code=503", "mock-text"]


# --- secrets and hygiene ------------------------------------------------------------------


def _leaks(text: str) -> list[str]:
    return [s for s in (CANARY_KEY, "CANARY", "internal-upstream", UPSTREAM_KEY) if s in text]


@pytest.mark.parametrize("path", [ANTHROPIC, CHAT])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
async def test_canary_401_becomes_clean_502(
    live: Live, path: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """RELIABILITY U10: the upstream's 401 echoes a key and an internal URL; nothing of it
    reaches the caller, the ledger or the logs."""
    caplog.set_level(logging.DEBUG)
    response = await _raw_post(live.url, path, _body(path, "mock-canary", stream=stream))
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    shown = response.text + json.dumps(dict(response.headers))
    assert _leaks(shown) == []
    error = response.json()
    if path == ANTHROPIC:
        assert error["type"] == "error"
        assert error["error"]["type"] == "api_error"
    else:
        assert isinstance(error["error"]["message"], str)
    [record] = await _records(live)
    assert (record.status, record.outcome) == (401, "upstream_error")
    assert _leaks(json.dumps(record.as_json())) == []
    assert _leaks(caplog.text) == []
    assert live.mock.requests[0].outcome == "error_status"


@pytest.mark.parametrize("path", [ANTHROPIC, CHAT])
async def test_redirect_is_not_followed(live: Live, path: str) -> None:
    """RELIABILITY U11: a 307 to a canary host is a 502; nothing is followed."""
    response = await _raw_post(live.url, path, _body(path, "mock-redirect", stream=False))
    assert response.status_code == 502
    assert "location" not in response.headers
    assert "canary.invalid" not in response.text
    assert REDIRECT_LOCATION not in response.text
    assert [(r.scenario, r.outcome) for r in live.mock.requests] == [("redirect", "error_status")]
    [record] = await _records(live)
    assert (record.status, record.outcome) == (307, "upstream_error")


_ALLOWED_UPSTREAM_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "accept-encoding",
        "user-agent",
        "connection",
        "anthropic-version",
        "anthropic-beta",
        "x-api-key",
        "authorization",
        "x-trio-gateway-attempt",
    }
)


@pytest.mark.parametrize("path", [ANTHROPIC, CHAT])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
async def test_caller_cannot_steer_upstream_headers_or_host(
    live: Live, path: str, stream: bool
) -> None:
    """RELIABILITY C10 and B3: hop-by-hop headers, headers named in Connection and the
    caller's own credentials never reach the upstream; body fields that name a host or key
    are plain content, and the request still goes to the configured upstream."""
    headers = {
        "connection": "X-Foo",
        "x-foo": "1",
        "keep-alive": "5",
        "te": "trailers",
        "proxy-authorization": "Basic cHJveHk6c2VjcmV0",
        "authorization": f"Bearer {CLIENT_KEY}",
    }
    if path == ANTHROPIC:
        headers["anthropic-version"] = "2023-06-01"
    steering = {
        "api_base": "http://canary.invalid/v1",
        "base_url": "http://canary.invalid",
        "api_key": "sk-steer-canary-key",
        "extra_headers": {"x-steer": "1", "authorization": "Bearer sk-steer-canary-key"},
    }
    body = {**_body(path, "mock-text", stream=stream), **steering}
    response = await _raw_post(live.url, path, body, headers=headers)
    assert response.status_code == 200
    [seen] = live.mock.requests
    assert seen.path == ("/v1/messages" if path == ANTHROPIC else "/v1/chat/completions")
    assert isinstance(seen.body, dict)
    assert {k: seen.body[k] for k in steering} == steering
    names = [name for name, _ in seen.headers]
    assert set(names) <= _ALLOWED_UPSTREAM_HEADERS, set(names) - _ALLOWED_UPSTREAM_HEADERS
    assert not {"x-foo", "keep-alive", "te", "proxy-authorization", "x-steer"} & set(names)
    assert all("x-foo" not in value.lower() for name, value in seen.headers if name == "connection")
    assert all(CLIENT_KEY not in value for _, value in seen.headers)
    assert all("sk-steer" not in value for _, value in seen.headers)
    if path == ANTHROPIC:
        assert [v for n, v in seen.headers if n == "x-api-key"] == [UPSTREAM_KEY]
        assert "authorization" not in names
    else:
        assert [v for n, v in seen.headers if n == "authorization"] == [f"Bearer {UPSTREAM_KEY}"]
        assert "x-api-key" not in names
    [record] = await _records(live)
    assert record.outcome == "completed"


@pytest.mark.parametrize("path", [ANTHROPIC, CHAT])
@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
async def test_body_over_limit_is_413_without_upstream_call(path: str, chunked: bool) -> None:
    """RELIABILITY C8 with a 4 KiB ``max_request_bytes`` (the limit is the same code path
    at any size): 413 in the caller's shape, and the upstream never hears of it."""
    limit = 4096
    body = _body(path, "mock-text", stream=False)
    body["padding"] = "x" * limit
    payload = json.dumps(body).encode()
    assert len(payload) > limit

    async def chunks() -> AsyncGenerator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    async with _live_with_body_limit(limit) as live:
        headers = {**_caller_headers(path), "content-type": "application/json"}
        upload = chunks()
        async with httpx.AsyncClient(timeout=30.0) as client:
            try:
                response = await client.post(
                    live.url + path, content=upload if chunked else payload, headers=headers
                )
            finally:
                await upload.aclose()
        ok = await _raw_post(live.url, path, _body(path, "mock-text", stream=False))
        requests = list(live.mock.requests)
        records = await _records(live)
    assert response.status_code == 413
    if path == ANTHROPIC:
        assert response.json()["error"]["type"] == "request_too_large"
    else:
        assert isinstance(response.json()["error"]["message"], str)
    # Only the small follow-up request reached the upstream.
    assert ok.status_code == 200
    assert [r.outcome for r in requests] == ["completed"]
    assert [r.outcome for r in records] == ["completed"]


@pytest.mark.slow
# httpx abandons its upload generator when the server answers before the body is sent.
@pytest.mark.filterwarnings(
    r"ignore:Async generator 'httpx\._content\.ByteStream\.__aiter__':ResourceWarning"
)
async def test_body_over_default_limit_is_413(live: Live) -> None:
    """The shipped default: 32 MiB + 1 byte is refused before any upstream call."""
    limit = live.gateway.config.server.max_request_bytes
    assert limit == 33_554_432
    body = _body(ANTHROPIC, "mock-text", stream=False)
    overhead = len(json.dumps({**body, "padding": ""}).encode())
    body["padding"] = "x" * (limit + 1 - overhead)
    payload = json.dumps(body).encode()
    assert len(payload) == limit + 1
    headers = {**_caller_headers(ANTHROPIC), "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.post(live.url + ANTHROPIC, content=payload, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert live.mock.requests == []
    assert live.gateway.ledger.records == []


# --- usage --------------------------------------------------------------------------------


async def test_cumulative_message_delta_usage_is_not_summed(live: Live) -> None:
    """RELIABILITY U15: message_delta output counts 10, 25, 40 bill 40, not 75."""
    async with (
        _anthropic(live.url) as client,
        client.messages.stream(
            model="mock-cumulative", max_tokens=256, messages=ANTHROPIC_MESSAGES
        ) as stream,
    ):
        message = await stream.get_final_message()
    assert message.usage.output_tokens == 40
    [record] = await _records(live)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage.output_tokens == 40
    assert (record.usage.input_tokens, record.usage.cache_read_tokens) == (25, 100)
