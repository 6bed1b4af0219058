"""Client disconnects in memory: drain for billing, cancel, drain bounds, stalled clients.

DESIGN §4: policy ``drain`` keeps reading the upstream after the client left and bills the
real usage; ``cancel``, or any disconnect before the first content byte, closes the upstream
at once and bills what is known. Drains are bounded by ``drain_timeout`` and
``max_concurrent_drains``. A client that stops reading is dropped once
``client_buffer_bytes`` are queued for it, and the upstream is still drained (RELIABILITY C4).

The mock upstream writes one event per ``interval`` seconds, so under ``autojump_clock`` the
client receives each event as its own chunk at an exact virtual time, and a disconnect lands
precisely between two upstream events. What the mock records (``outcome``,
``events_sent``) shows whether the gateway kept reading or hung up.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Final

import pytest
import trio
import trio.testing

from tests.conftest import GatewayFactory
from tests.support import read_until_deltas as read_deltas
from tests.support import sse_events
from tests.test_relay_stream import (
    ANTHROPIC_START_USAGE,
    PATHS,
    PING,
    PROTOCOLS,
    UPSTREAM,
    assert_nothing_leaked,
    auth,
    elapsed,
    only_record,
    request_body,
    text_usage,
)
from trio_gateway._gateway import Gateway
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._usage import Usage
from trio_gateway.testing import AsgiClient, AsgiResponse, MockUpstream

ALL = pytest.mark.parametrize("protocol", PROTOCOLS)

#: Events of a ``text:tokens=N`` stream besides the N text deltas (Chat: the gateway forces
#: the usage chunk on, so it is always among them).
FRAMING_EVENTS: Final[Mapping[Protocol, int]] = {
    "anthropic": 6,
    "openai-chat": 4,
    "openai-responses": 8,
}


def stream_events(protocol: Protocol, tokens: int) -> int:
    """Events the mock sends for a whole ``text:tokens=<tokens>`` stream."""
    return tokens + FRAMING_EVENTS[protocol]


async def read_chunks(resp: AsgiResponse, count: int) -> None:
    """Read ``count`` non-empty body chunks."""
    read = 0
    while read < count:
        chunk = await resp.next_chunk()
        assert chunk is not None, "the stream ended early"
        read += bool(chunk)


def only_record_outcomes(gateway: Gateway) -> list[str]:
    return [record.outcome for record in gateway.ledger.records]


def upstream_chunk_count(protocol: Protocol, body: bytes) -> int:
    """Events in a body once the gateway's pings are taken out."""
    return len(sse_events(body.replace(PING[protocol], b"")))


def open_stream(
    client: AsgiClient, protocol: Protocol, model: str, *, include_usage: bool | None = None
) -> AbstractAsyncContextManager[AsgiResponse]:
    body = request_body(protocol, model, include_usage=include_usage)
    return client.stream("POST", PATHS[protocol], json=body, headers=auth(protocol))


# --------------------------------------------------------------------------- drain


@ALL
async def test_drain_after_disconnect_bills_the_full_usage(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # PEER-BUGS 21/23/24: a caller that hangs up mid-stream is billed what the upstream
    # really generated.
    gateway, client = await make_gateway(on_client_disconnect="drain")
    start = trio.current_time()
    async with open_stream(client, protocol, "mock-text:tokens=10,interval=1") as resp:
        await read_until_deltas(resp, protocol, 2)
        left_at = elapsed(start)
        seen = len(resp.body)
        await resp.disconnect()
        await trio.sleep(0.5)  # half-way to the next upstream event
        assert gateway.relay.drains_in_flight == 1
        assert gateway.relay.streams_in_flight == 1
        assert mock.requests[0].outcome == "in_progress"
        assert [r.outcome for r in gateway.ledger.in_flight()] == ["in_flight"]
    (upstream_request,) = mock.requests
    assert upstream_request.events_sent == stream_events(protocol, 10)  # all of it was read
    last_event_at = upstream_request.events_sent - 1
    assert left_at < last_event_at
    assert elapsed(start) == last_event_at  # the request ended with the drain
    assert len(resp.body) == seen  # nothing was written after the disconnect
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
    assert record.usage == text_usage(protocol, 10)
    assert record.duration_ms == last_event_at * 1000
    assert_nothing_leaked(gateway)


@ALL
async def test_drain_reads_the_upstream_response_to_its_end(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A drained response is read like a relayed one: past the terminal event to the end of
    # the HTTP body, so the upstream sees a completed request (not a client abort) and the
    # connection goes back to the pool, exactly as after a stream the client read to the end.
    gateway, client = await make_gateway(on_client_disconnect="drain")
    pool = gateway.upstreams[UPSTREAM[protocol]].pool
    async with open_stream(client, protocol, "mock-text:tokens=10,interval=1") as resp:
        await resp.read()
    assert (mock.requests[0].outcome, pool.statistics().idle) == ("completed", 1)
    async with open_stream(client, protocol, "mock-text:tokens=10,interval=1") as resp:
        await read_until_deltas(resp, protocol, 2)
        await resp.disconnect()
    assert mock.requests[1].events_sent == stream_events(protocol, 10)
    assert only_record_outcomes(gateway) == ["completed", "client_disconnected"]
    assert mock.requests[1].outcome == "completed"
    assert pool.statistics().idle == 1
    assert_nothing_leaked(gateway)


@ALL
async def test_disconnect_at_every_event(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY C1: for every k, disconnect after the k-th chunk the client received.
    # slow_first puts the first event at t=1, so k=0 is a disconnect before any content
    # (DESIGN §4: the upstream is closed at once, even under drain; RELIABILITY C3).
    model = "mock-text:tokens=3,interval=1+slow_first:secs=1"
    gateway, client = await make_gateway(on_client_disconnect="drain")
    start = trio.current_time()
    arrivals: list[float] = []
    async with open_stream(client, protocol, model) as full:
        while (chunk := await full.next_chunk()) is not None:
            if chunk:
                arrivals.append(elapsed(start))
    total_chunks = len(arrivals)
    stream_time = elapsed(start)
    reference = gateway.ledger.records[-1]
    assert (reference.outcome, reference.usage) == ("completed", text_usage(protocol, 3))
    assert total_chunks >= 6
    for k in range(total_chunks + 1):
        start = trio.current_time()
        async with open_stream(client, protocol, model) as resp:
            await read_chunks(resp, k)
            left_at = elapsed(start)
            await resp.disconnect()
        assert left_at == (0 if k == 0 else arrivals[k - 1]), k
        upstream_request = mock.requests[-1]
        record = gateway.ledger.records[-1]
        assert record.request_id != reference.request_id
        if k == 0:
            assert upstream_request.outcome == "client_closed", k
            assert upstream_request.events_sent == 0
            assert elapsed(start) == 0  # no waiting for the upstream
            assert (record.outcome, record.usage_source) == ("client_disconnected", "none")
        elif k < total_chunks:
            assert upstream_request.events_sent == stream_events(protocol, 3), k
            assert elapsed(start) == stream_time, k  # drained to the end
            assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
            assert record.usage == text_usage(protocol, 3), k
        else:
            # The whole stream had reached the client.
            assert upstream_request.outcome == "completed"
            assert upstream_request.events_sent == stream_events(protocol, 3)
            assert (record.outcome, record.usage_source) == ("completed", "reported")
            assert record.usage == text_usage(protocol, 3)
        assert_nothing_leaked(gateway)
    assert len(gateway.ledger.records) == total_chunks + 2


async def test_disconnect_just_before_the_usage_chunk_bills_it(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY C2 (open-ace #3422): leave right before the Chat usage chunk.
    gateway, client = await make_gateway(on_client_disconnect="drain")
    async with open_stream(
        client, "openai-chat", "mock-text:tokens=3,interval=1", include_usage=True
    ) as resp:
        while True:
            chunk = await resp.next_chunk()
            assert chunk
            if b'"finish_reason":"stop"' in chunk:
                break
        await resp.disconnect()
    assert b'"choices":[]' not in resp.body  # the usage chunk never reached the client
    assert mock.requests[0].events_sent == stream_events("openai-chat", 3)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
    assert record.usage == text_usage("openai-chat", 3)
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- cancel


@ALL
async def test_cancel_policy_closes_the_upstream_at_once(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway(on_client_disconnect="cancel")
    start = trio.current_time()
    async with open_stream(client, protocol, "mock-text:tokens=10,interval=1") as resp:
        await read_until_deltas(resp, protocol, 2)
        left_at = elapsed(start)
        received_events = upstream_chunk_count(protocol, resp.body)
        await resp.disconnect()
    assert elapsed(start) == left_at  # virtual time did not run on to the stream's end
    (upstream_request,) = mock.requests
    assert upstream_request.outcome == "client_closed"
    assert upstream_request.events_sent == received_events
    record = only_record(gateway)
    assert record.outcome == "client_disconnected"
    if protocol == "anthropic":
        # What is known: message_start's input side (DESIGN §4 "bills what is known").
        assert (record.usage_source, record.usage) == ("partial", ANTHROPIC_START_USAGE)
    else:
        assert (record.usage_source, record.usage) == ("none", Usage())
    assert_nothing_leaked(gateway)


@ALL
async def test_disconnect_before_the_first_content_byte_cancels_even_under_drain(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY C3, PEER-BUGS 26: committed (and pinged), but no content yet.
    gateway, client = await make_gateway(on_client_disconnect="drain", keepalive_interval=10)
    start = trio.current_time()
    async with open_stream(client, protocol, "mock-slow_first:secs=100") as resp:
        assert resp.status == 200
        chunk = await resp.next_chunk()
        assert chunk == PING[protocol]
        assert elapsed(start) == 10
        await resp.disconnect()
    assert elapsed(start) == 10
    (upstream_request,) = mock.requests
    assert (upstream_request.outcome, upstream_request.events_sent) == ("client_closed", 0)
    record = only_record(gateway)
    assert (record.status, record.outcome, record.usage_source) == (
        200,
        "client_disconnected",
        "none",
    )
    assert record.ttft_ms is None
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- drain bounds


@ALL
async def test_disconnect_while_waiting_for_upstream_headers_closes_the_upstream(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Committed at commit_delay with a ping; the upstream has not even answered yet.
    gateway, client = await make_gateway(on_client_disconnect="drain", commit_delay=5)
    start = trio.current_time()
    async with open_stream(client, protocol, "mock-stall_headers:secs=100") as resp:
        assert elapsed(start) == 5
        assert await resp.next_chunk() == PING[protocol]
        await trio.sleep(2)
        assert gateway.upstreams[UPSTREAM[protocol]].pool.statistics().active == 1
        await resp.disconnect()
    assert elapsed(start) == 7
    (upstream_request,) = mock.requests
    assert (upstream_request.outcome, upstream_request.events_sent) == ("client_closed", 0)
    record = only_record(gateway)
    assert (record.status, record.outcome, record.usage_source) == (
        None,
        "client_disconnected",
        "none",
    )
    assert_nothing_leaked(gateway)


@ALL
async def test_data_interval_timeout_bounds_the_drain(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Events at t=0..7, then the upstream goes silent while being drained: the drain stops
    # data_interval_timeout after its last byte, well before drain_timeout.
    gateway, client = await make_gateway(
        on_client_disconnect="drain", data_interval_timeout=30, drain_timeout=300
    )
    start = trio.current_time()
    model = "mock-text:tokens=10,interval=1+stall:after=8,secs=3600"
    async with open_stream(client, protocol, model) as resp:
        await read_until_deltas(resp, protocol, 2)
        assert elapsed(start) < 7
        await resp.disconnect()
    assert elapsed(start) == 7 + 30
    (upstream_request,) = mock.requests
    assert (upstream_request.outcome, upstream_request.events_sent) == ("client_closed", 8)
    record = only_record(gateway)
    assert record.outcome == "client_disconnected"
    if protocol == "anthropic":
        assert (record.usage_source, record.usage) == ("partial", ANTHROPIC_START_USAGE)
    else:
        assert (record.usage_source, record.usage) == ("none", Usage())
    assert_nothing_leaked(gateway)


@ALL
async def test_drain_timeout_bounds_the_drain(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Events every 2 s, so the drain deadline (odd) never ties with an event (even).
    gateway, client = await make_gateway(on_client_disconnect="drain", drain_timeout=5)
    start = trio.current_time()
    async with open_stream(client, protocol, "mock-text:tokens=20,interval=2") as resp:
        await read_until_deltas(resp, protocol, 2)
        left_at = elapsed(start)
        await resp.disconnect()
        await trio.sleep(4)
        assert gateway.relay.drains_in_flight == 1
    assert elapsed(start) == left_at + 5
    (upstream_request,) = mock.requests
    assert upstream_request.outcome == "client_closed"
    # Events at t = 0, 2, 4, ...: those up to left_at + 5 were sent, and no more.
    assert upstream_request.events_sent == int((left_at + 5) // 2) + 1
    record = only_record(gateway)
    assert record.outcome == "client_disconnected"
    if protocol == "anthropic":
        assert (record.usage_source, record.usage) == ("partial", ANTHROPIC_START_USAGE)
    else:
        assert (record.usage_source, record.usage) == ("none", Usage())
    assert_nothing_leaked(gateway)


@ALL
async def test_drains_over_max_concurrent_drains_are_cancelled(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway(on_client_disconnect="drain", max_concurrent_drains=1)
    model = "mock-text:tokens=10,interval=1"
    start = trio.current_time()
    async with open_stream(client, protocol, model) as first:
        await read_until_deltas(first, protocol, 2)
        await first.disconnect()
        await trio.sleep(0.5)
        assert gateway.relay.drains_in_flight == 1
        async with open_stream(client, protocol, model) as second:
            await read_until_deltas(second, protocol, 2)
            second_left_at = elapsed(start)
            await second.disconnect()
        assert elapsed(start) == second_left_at  # not drained: closed at once
        assert gateway.relay.drains_in_flight == 1
        assert mock.requests[1].outcome == "client_closed"
        assert mock.requests[0].outcome == "in_progress"
    assert mock.requests[0].events_sent == stream_events(protocol, 10)
    drained, cancelled = gateway.ledger.records
    assert (drained.outcome, drained.usage_source) == ("client_disconnected", "reported")
    assert drained.usage == text_usage(protocol, 10)
    assert cancelled.outcome == "client_disconnected"
    if protocol == "anthropic":
        assert (cancelled.usage_source, cancelled.usage) == ("partial", ANTHROPIC_START_USAGE)
    else:
        assert (cancelled.usage_source, cancelled.usage) == ("none", Usage())
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- stalled client


@ALL
async def test_client_that_stops_reading_is_dropped_and_the_upstream_drained(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY C4: the client's window is shut; the gateway must not buffer without bound
    # nor let the blocked writer hold the upstream or the ledger row.
    gateway, client = await make_gateway(on_client_disconnect="drain", client_buffer_bytes=2000)
    start = trio.current_time()
    async with open_stream(client, protocol, "mock-text:tokens=200,interval=1") as resp:
        resp.stop_reading()
        await trio.sleep(50)
        # Dropped long before the upstream's end (t≈200); the upstream is being drained.
        assert gateway.relay.drains_in_flight == 1
        assert mock.requests[0].outcome == "in_progress"
        await trio.sleep(200)
        # The upstream finished; the row is settled and the request is over although the
        # client still has not read a byte of the body.
        assert not resp.complete
        assert resp.body == b""
        assert mock.requests[0].events_sent == stream_events(protocol, 200)
        assert gateway.ledger.in_flight() == []
        record = only_record(gateway)
        assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
        assert record.usage == text_usage(protocol, 200)
        assert record.duration_ms == (mock.requests[0].events_sent - 1) * 1000
        assert gateway.relay.streams_in_flight == 0
        await resp.disconnect()
    assert elapsed(start) == 250
    assert_nothing_leaked(gateway)


async def test_fast_stream_to_a_stalled_client_is_not_completed(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # The whole answer reaches the gateway at once, past client_buffer_bytes, while the
    # client reads nothing: the row must not say the client got it.
    gateway, client = await make_gateway(on_client_disconnect="drain", client_buffer_bytes=2000)
    async with open_stream(client, "anthropic", "mock-text:tokens=30") as resp:
        resp.stop_reading()
        await trio.sleep(1)
        assert resp.body == b""
        assert gateway.relay.streams_in_flight == 0
        record = only_record(gateway)
        assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
        assert record.usage == text_usage("anthropic", 30)
        await resp.disconnect()
    assert mock.requests[0].events_sent == stream_events("anthropic", 30)
    assert_nothing_leaked(gateway)


async def test_client_that_stops_reading_during_a_ping_is_dropped(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY C4 with the writer stuck in a keepalive ping: the answer that arrives
    # behind it counts toward client_buffer_bytes like frames behind any other write.
    gateway, client = await make_gateway(
        on_client_disconnect="drain", client_buffer_bytes=2000, keepalive_interval=10
    )
    async with open_stream(client, "anthropic", "mock-slow_first:secs=25+text:tokens=200") as resp:
        resp.stop_reading()  # the head has arrived; the ping at t=10 blocks
        await trio.sleep(30)
        assert resp.body == b""
        assert gateway.relay.streams_in_flight == 0
        record = only_record(gateway)
        assert (record.outcome, record.usage_source) == ("client_disconnected", "reported")
        assert record.usage == text_usage("anthropic", 200)
        await resp.disconnect()
    assert mock.requests[0].events_sent == stream_events("anthropic", 200)
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- server cancel


@ALL
@pytest.mark.parametrize("phase", ["waiting_for_headers", "streaming", "draining"])
async def test_request_cancelled_by_the_server_still_settles(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    phase: str,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The server cancels the request task (hypercorn does at the end of graceful_timeout;
    # RELIABILITY S2, PEER-BUGS 27): the row is still settled and nothing is left behind.
    # (Logging is tested below; a captured traceback would keep a leaked upstream response
    # alive, and its ResourceWarning would then be reported against a later test.)
    caplog.set_level(logging.CRITICAL, logger="trio_gateway")
    gateway, client = await make_gateway(on_client_disconnect="drain", commit_delay=5)
    waiting = phase == "waiting_for_headers"
    model = "mock-stall_headers:secs=100" if waiting else "mock-text:tokens=10,interval=1"
    start = trio.current_time()
    with trio.CancelScope() as server:
        async with open_stream(client, protocol, model) as resp:
            if waiting:
                assert await resp.next_chunk() == PING[protocol]
            else:
                await read_until_deltas(resp, protocol, 2)
            if phase == "draining":
                await resp.disconnect()
                await trio.sleep(0.5)
                assert gateway.relay.drains_in_flight == 1
            server.cancel()
            await trio.sleep_forever()
    assert server.cancelled_caught
    assert elapsed(start) < 10  # nothing waited for the upstream
    gc.collect()  # a leaked upstream response warns now, in this test
    (upstream_request,) = mock.requests
    assert upstream_request.outcome == "client_closed"  # the upstream was hung up on
    (record,) = gateway.ledger.records
    assert record.outcome != "in_flight"
    if protocol == "anthropic" and not waiting:
        assert (record.usage_source, record.usage) == ("partial", ANTHROPIC_START_USAGE)
    assert_nothing_leaked(gateway)


async def test_server_cancel_is_not_logged_as_an_unhandled_error(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A cancellation is the server shutting down, not a bug: no ERROR with a traceback for
    # every stream in flight (RELIABILITY U5 "no traceback noise").
    _, client = await make_gateway()
    with trio.CancelScope() as server:
        async with open_stream(client, "anthropic", "mock-text:tokens=10,interval=1") as resp:
            await read_until_deltas(resp, "anthropic", 2)
            server.cancel()
            await trio.sleep_forever()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    caplog.clear()  # captured tracebacks keep the request's objects alive
    gc.collect()
    assert errors == []


async def read_until_deltas(resp: AsgiResponse, protocol: Protocol, wanted: int) -> None:
    """Read chunks until exactly ``wanted`` text deltas have arrived (one per chunk here)."""
    assert await read_deltas(resp, protocol, wanted) == wanted
