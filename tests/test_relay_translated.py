"""Translated streams in memory: the relay shape works identically on them (issue 4).

Every test runs each of the six translated (client, upstream) pairs through the real gateway
against the mock, under ``autojump_clock``: keepalive pings in the caller's form while the
upstream is silent, the data-interval timeout, drain-for-billing after a disconnect, broken
and failing upstream streams ending in the caller's in-band error (never a clean end), and
HTTP errors before commit. The model ``to-<upstream>/mock-<scenario>`` pins the upstream
(tests/support.py). Each test ends with :func:`assert_nothing_leaked`.
"""

from __future__ import annotations

import json
from typing import Final

import pytest
import trio
import trio.testing

from tests.conftest import GatewayFactory
from tests.support import PRICE, gateway_config, read_until_deltas, sse_events
from tests.test_relay_stream import (
    PATHS,
    assert_nothing_leaked,
    assert_pings_at_event_boundaries,
    assert_terminal,
    auth,
    check_error_type,
    in_band_error,
    only_record,
    request_body,
    stream,
)
from trio_gateway._gateway import open_gateway
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector

ALIAS: Final[dict[Protocol, str]] = {
    "anthropic": "anthropic",
    "openai-chat": "chat",
    "openai-responses": "responses",
}
TRANSLATED: Final = [(c, u) for c in PROTOCOLS for u in PROTOCOLS if c != u]
PAIRS = pytest.mark.parametrize(
    ("client", "upstream"), TRANSLATED, ids=[f"{c}<-{u}" for c, u in TRANSLATED]
)


def model(upstream: Protocol, scenario: str) -> str:
    return f"to-{ALIAS[upstream]}/mock-{scenario}"


@PAIRS
async def test_keepalive_pings_in_the_callers_form_while_the_upstream_thinks(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # PEER-BUGS 15/16: the upstream answers its headers at once, then is silent for 25 s
    # before its first event. The translated stream gets the caller's own ping form.
    gateway, http = await make_gateway(keepalive_interval=10.0)
    received = await stream(http, client, model(upstream, "slow_first:secs=25"))
    assert received.status == 200
    assert received.ping_times == [10.0, 20.0]
    assert all(at >= 25.0 for at in received.data_times)
    assert_pings_at_event_boundaries(received)
    assert_terminal(client, received.upstream_body)
    if client != "anthropic":
        assert b"event: ping" not in received.body  # never to an OpenAI client
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert_nothing_leaked(gateway)


@PAIRS
async def test_data_interval_timeout_ends_with_the_callers_in_band_error(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, http = await make_gateway(data_interval_timeout=30.0, keepalive_interval=0)
    received = await stream(http, client, model(upstream, "stall:after=4,secs=3600"))
    assert received.status == 200
    error = in_band_error(client, received.body)
    check_error_type(client, error, "timeout")
    assert received.finished_at == 30  # the in-memory mock sends its four events at once
    record = only_record(gateway)
    assert record.outcome == "upstream_timeout"
    assert mock.requests[0].outcome == "client_closed"  # the gateway hung up on it
    assert_nothing_leaked(gateway)


@PAIRS
@pytest.mark.parametrize("scenario", ["cut:after=4", "no_terminator"])
async def test_an_upstream_stream_that_breaks_off_is_never_a_clean_end(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    scenario: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # PEER-BUGS 8 and 10: EOF before the terminal event is an error frame, not success.
    # (A Chat upstream whose stream ends after its finish_reason and usage chunk, without
    # `[DONE]`, has finished: protocols.md §5.6 "or EOF after finish_reason".)
    gateway, http = await make_gateway()
    received = await stream(http, client, model(upstream, scenario))
    if scenario == "no_terminator" and upstream == "openai-chat":
        assert_terminal(client, received.body)
        assert only_record(gateway).outcome == "completed"
        assert_nothing_leaked(gateway)
        return
    error = in_band_error(client, received.body)
    check_error_type(client, error, "protocol")
    assert only_record(gateway).outcome == "upstream_error"
    assert_nothing_leaked(gateway)


@PAIRS
async def test_an_upstream_in_band_error_becomes_the_callers_in_band_error(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, http = await make_gateway()
    received = await stream(http, client, model(upstream, "error_event:after=4"))
    error = in_band_error(client, received.body)
    assert error["message"] == "Overloaded"
    record = only_record(gateway)
    assert (record.outcome, record.status) == ("upstream_error", 200)
    assert_nothing_leaked(gateway)


@PAIRS
async def test_drain_for_billing_after_a_disconnect(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # PEER-BUGS 21/23: the caller leaves after two deltas; the gateway keeps reading the
    # upstream to its end and bills what it really reported.
    gateway, http = await make_gateway(on_client_disconnect="drain")
    body = request_body(client, model(upstream, "text:tokens=10,interval=1"))
    async with http.stream("POST", PATHS[client], json=body, headers=auth(client)) as resp:
        await read_until_deltas(resp, client, 2)
        seen = len(resp.body)
        await resp.disconnect()
        await trio.sleep(0.5)
        assert gateway.relay.drains_in_flight == 1
    assert len(resp.body) == seen
    assert mock.requests[0].outcome == "completed"
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
    assert record.usage.output_tokens == 10
    assert record.usage.cache_read_tokens == 100
    assert_nothing_leaked(gateway)


@PAIRS
async def test_upstream_http_errors_keep_their_status_in_the_callers_shape(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, http = await make_gateway()
    body = request_body(client, model(upstream, "status:code=429,retry_after=7"))
    response = await http.request("POST", PATHS[client], json=body, headers=auth(client))
    assert response.status == 429
    assert response.headers["retry-after"] == "7"
    error = json.loads(response.body)
    if client == "anthropic":
        assert error["type"] == "error"
        assert error["error"]["type"] == "rate_limit_error"
    else:
        assert error["error"]["type"] == "rate_limit_error"
    assert only_record(gateway).outcome == "upstream_error"
    assert_nothing_leaked(gateway)


@PAIRS
@pytest.mark.parametrize("scenario", ["error_event:after=4", "cut:after=4"])
async def test_non_streaming_caller_gets_an_upstream_failure_as_an_http_error(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    scenario: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, http = await make_gateway()
    body = request_body(client, model(upstream, scenario))
    body["stream"] = False
    response = await http.request("POST", PATHS[client], json=body, headers=auth(client))
    if scenario.startswith("error_event"):
        # Anthropic's mid-stream error is overloaded_error (529); the OpenAI mocks'
        # server_error is an upstream fault (502).
        assert response.status == (529 if upstream == "anthropic" else 502)
        assert "Overloaded" in response.body.decode()
    else:  # the stream was cut before its terminal event
        assert response.status == 502
    assert mock.requests[0].body["stream"] is True  # type: ignore[index]
    assert only_record(gateway).outcome == "upstream_error"
    assert_nothing_leaked(gateway)


@pytest.mark.parametrize("client", PROTOCOLS)
async def test_the_first_upstreams_refusal_is_a_400_naming_the_field(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Responses has no stop parameter: never silently dropped.
    gateway, http = await make_gateway()
    target: Protocol = "openai-responses" if client != "openai-responses" else "openai-chat"
    body = request_body(client, model(target, "text"))
    field = {"anthropic": "stop_sequences", "openai-chat": "stop"}.get(client, "top_logprobs")
    body[field] = ["END"] if field != "top_logprobs" else 3
    response = await http.request("POST", PATHS[client], json=body, headers=auth(client))
    assert response.status == 400, response.body
    error = json.loads(response.body)["error"]
    if client == "anthropic":
        assert field in error["message"]
    else:
        assert error["param"] == field
    assert mock.requests == []
    assert gateway.ledger.records == []
    assert_nothing_leaked(gateway)


@PAIRS
async def test_advisory_fields_dropped_by_translation_are_named_in_a_header(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, http = await make_gateway()
    body = request_body(client, model(upstream, "text"))
    advisory = {"anthropic": "service_tier", "openai-chat": "seed"}.get(client, "truncation")
    body[advisory] = {"seed": 7}.get(advisory, "auto")
    received = await stream(http, client, str(body["model"]))
    assert received.headers.get("x-trio-gateway-ignored") is None  # nothing dropped
    async with http.stream("POST", PATHS[client], json=body, headers=auth(client)) as resp:
        assert resp.headers["x-trio-gateway-ignored"] == advisory
        await resp.read()
    assert advisory not in json.dumps(mock.requests[-1].body)
    assert_nothing_leaked(gateway)


async def test_count_tokens_is_forwarded_to_an_anthropic_upstream(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    gateway, http = await make_gateway()
    body = {"model": model("anthropic", "text"), "messages": [{"role": "user", "content": "Hi"}]}
    response = await http.request(
        "POST", "/v1/messages/count_tokens?beta=true", json=body, headers=auth("anthropic")
    )
    assert response.status == 200, response.body
    assert "x-trio-gateway-estimate" not in response.headers
    assert json.loads(response.body) == {"input_tokens": 25}
    (upstream_request,) = mock.requests
    assert upstream_request.path == "/v1/messages/count_tokens?beta=true"
    assert upstream_request.body == {**body, "model": "mock-text"}
    assert gateway.ledger.records == []  # counting is free: no row, no budget


@pytest.mark.parametrize("upstream", ["openai-chat", "openai-responses"])
async def test_count_tokens_without_an_anthropic_upstream_is_a_marked_estimate(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    _, http = await make_gateway()
    text = "x" * 400
    body = {"model": model(upstream, "text"), "messages": [{"role": "user", "content": text}]}
    response = await http.request(
        "POST", "/v1/messages/count_tokens", json=body, headers=auth("anthropic")
    )
    assert response.status == 200
    assert response.headers["x-trio-gateway-estimate"] == "true"
    # 400 characters of text, "user", and the keys "role" and "content": ⌈415 / 4⌉.
    assert json.loads(response.body) == {"input_tokens": 104}
    assert mock.requests == []


async def test_count_tokens_errors_are_in_the_anthropic_shape(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    _, http = await make_gateway()
    headers = auth("anthropic")
    bad = await http.request("POST", "/v1/messages/count_tokens", json=[], headers=headers)
    unknown = await http.request(
        "POST",
        "/v1/messages/count_tokens",
        json={"model": "nope", "messages": []},
        headers=headers,
    )
    wrong_method = await http.request("GET", "/v1/messages/count_tokens", headers=headers)
    anonymous = await http.request("POST", "/v1/messages/count_tokens", json={})
    assert [r.status for r in (bad, unknown, wrong_method, anonymous)] == [400, 404, 405, 401]
    for response in (bad, unknown, wrong_method, anonymous):
        assert json.loads(response.body)["type"] == "error"
    assert mock.requests == []


@pytest.mark.parametrize("client", PROTOCOLS)
async def test_a_translated_stream_has_only_the_callers_framing(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    client: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # protocols.md §6: Anthropic frames all named; Chat never named; Responses named with
    # sequence numbers. Checked on the bytes, for an upstream of each other protocol.
    gateway, http = await make_gateway()
    for upstream in PROTOCOLS:
        if upstream == client:
            continue
        received = await stream(http, client, model(upstream, "thinking+tools"))
        events = sse_events(received.body)
        names = {name for name, _ in events}
        match client:
            case "anthropic":
                assert None not in names
            case "openai-chat":
                assert names == {None}
                assert events[-1][1] == "[DONE]"
            case "openai-responses":
                numbers = [json.loads(data)["sequence_number"] for _, data in events]
                assert numbers == list(range(len(events)))
        assert b"\r" not in received.body
    assert_nothing_leaked(gateway)


@pytest.mark.parametrize("upstream", ["anthropic", "openai-chat"])
async def test_a_responses_caller_failed_before_any_event_still_gets_response_created(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    upstream: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The openai stream helper needs response.created first, and one id throughout.
    gateway, http = await make_gateway(data_interval_timeout=30.0, keepalive_interval=0)
    received = await stream(http, "openai-responses", model(upstream, "stall:after=0,secs=3600"))
    events = [json.loads(data) for _, data in sse_events(received.body)]
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert [event["sequence_number"] for event in events] == [0, 1, 2, 3]
    created, failed = events[0]["response"], events[-1]["response"]
    assert created["id"] == failed["id"]
    assert only_record(gateway).outcome == "upstream_timeout"
    assert_nothing_leaked(gateway)


def _route(first: str, second: str) -> dict[str, object]:
    """A model tried on the Chat upstream (scenario ``first``), then on the Responses one."""
    return {
        "name": "route",
        "upstreams": ["chat", "responses"],
        "upstream_model": {"chat": f"mock-{first}", "responses": f"mock-{second}"},
        "price": PRICE,
    }


@pytest.mark.parametrize("client", ["anthropic", "openai-chat"])
async def test_failover_crosses_protocols_while_nothing_is_committed(
    mock: MockUpstream, client: Protocol, autojump_clock: trio.testing.MockClock
) -> None:
    config = gateway_config(models=[_route("status:code=503", "text")])
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        received = await stream(AsgiClient(gateway), client, "route")
        assert received.status == 200
        assert_terminal(client, received.body)
        rows = [(r.attempt, r.upstream, r.outcome) for r in gateway.ledger.records]
        assert rows == [(1, "chat", "upstream_error"), (2, "responses", "completed")]
        assert [r.path for r in mock.requests] == ["/v1/chat/completions", "/v1/responses"]
        assert_nothing_leaked(gateway)


@pytest.mark.parametrize("client", ["anthropic", "openai-responses"])
async def test_no_failover_once_a_translated_byte_was_sent(
    mock: MockUpstream, client: Protocol, autojump_clock: trio.testing.MockClock
) -> None:
    # PEER-BUGS 9: a second upstream's answer must never be appended to a broken first one.
    config = gateway_config(models=[_route("cut:after=4", "text")])
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        received = await stream(AsgiClient(gateway), client, "route")
        in_band_error(client, received.body)
        assert len(mock.requests) == 1
        assert [r.outcome for r in gateway.ledger.records] == ["upstream_error"]
        assert_nothing_leaked(gateway)
