"""Graceful shutdown inside one gateway, in memory (the process-level view, with signals and
timings, is ``tests/e2e/test_shutdown_process.py``).

``begin_shutdown`` refuses new API requests; ``cut_in_flight`` ends every request still
running: a committed stream with the caller's in-band error, an uncommitted request with a
503, a drain after a disconnect by stopping it. Every cut attempt is settled ``interrupted``
with the usage seen so far, and nothing is left behind.
"""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from tests.conftest import GatewayFactory
from tests.support import read_until_deltas
from tests.test_relay_stream import (
    PATHS,
    assert_nothing_leaked,
    auth,
    in_band_error,
    only_record,
    request_body,
)
from trio_gateway._protocol._names import PROTOCOLS, Protocol
from trio_gateway.testing import MockUpstream


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_cut_stream_ends_with_the_callers_error_and_is_settled_interrupted(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway()
    body = request_body(protocol, "mock-text:tokens=100,interval=1")
    async with client.stream("POST", PATHS[protocol], json=body, headers=auth(protocol)) as resp:
        await read_until_deltas(resp, protocol, 2)
        gateway.begin_shutdown()
        refused = await client.request("POST", PATHS[protocol], json=body, headers=auth(protocol))
        assert refused.status == 503
        assert gateway.cut_in_flight() == 1
        await resp.read()
    error = in_band_error(protocol, resp.body)
    assert "shutting down" in str(error["message"])
    record = only_record(gateway)
    assert record.outcome == "interrupted"
    assert record.usage_source in {"partial", "none"}
    assert mock.requests[0].outcome == "client_closed"  # the upstream was closed
    with trio.fail_after(1):
        await gateway.wait_idle()
    assert_nothing_leaked(gateway)


async def test_a_cut_reaches_a_reader_that_re_armed_its_timers(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # The reader's timer scope is its cuttable scope while it streams, re-armed in place at
    # every keepalive ping and usage checkpoint: the cut must reach the current one, and the
    # exchange must not collect a scope per re-arm.
    gateway, client = await make_gateway(keepalive_interval=2)
    body = request_body("anthropic", "mock-text:tokens=100,interval=7")
    async with client.stream(
        "POST", PATHS["anthropic"], json=body, headers=auth("anthropic")
    ) as resp:
        await read_until_deltas(resp, "anthropic", 2)
        (exchange,) = gateway._exchanges
        assert exchange.pings >= 3  # the timers were re-armed several times
        assert len(exchange._cut_scopes) == 1  # the current timers, in place of the open's
        cut_at = trio.current_time()
        assert gateway.cut_in_flight() == 1
        await resp.read()
        assert trio.current_time() - cut_at < 1  # at once, not at the next timer (2 s)
    error = in_band_error("anthropic", resp.body)
    assert "shutting down" in str(error["message"])
    assert only_record(gateway).outcome == "interrupted"
    with trio.fail_after(1):
        await gateway.wait_idle()
    assert_nothing_leaked(gateway)


async def test_a_cut_unary_request_gets_a_503(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    gateway, client = await make_gateway()
    body = request_body("anthropic", "mock-stall_headers:secs=100")
    body["stream"] = False
    async with trio.open_nursery() as nursery:
        responses = []

        async def call() -> None:
            responses.append(
                await client.request(
                    "POST", PATHS["anthropic"], json=body, headers=auth("anthropic")
                )
            )

        nursery.start_soon(call)
        await trio.sleep(10)
        assert gateway.cut_in_flight() == 1
    (response,) = responses
    assert response.status == 503
    assert json.loads(response.body)["error"]["type"] == "overloaded_error"
    assert only_record(gateway).outcome == "interrupted"
    assert_nothing_leaked(gateway)


async def test_a_cut_stops_a_drain(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    gateway, client = await make_gateway(on_client_disconnect="drain")
    body = request_body("anthropic", "mock-text:tokens=100,interval=1")
    async with client.stream("POST", PATHS["anthropic"], json=body, headers=auth("anthropic")) as r:
        await read_until_deltas(r, "anthropic", 2)
        await r.disconnect()
        await trio.sleep(1)
        assert gateway.relay.drains_in_flight == 1
        cut_at = trio.current_time()
        assert gateway.cut_in_flight() == 1
        with trio.fail_after(1):
            await gateway.wait_idle()
    assert trio.current_time() - cut_at < 1  # not the ~97 s the rest of the stream takes
    assert only_record(gateway).outcome == "interrupted"
    assert mock.requests[0].outcome == "client_closed"
    assert_nothing_leaked(gateway)
