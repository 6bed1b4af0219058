"""The streaming relay end to end in memory: commit, keepalive, timeouts, cuts, failover, usage.

Every test drives the real gateway (``make_gateway``) against the mock upstream over memory
streams, under ``autojump_clock``, so times are virtual and exact: a value such as "the 504
arrives at t=20" is asserted with ``==``, not approximately. Times are relative to the moment
the request was sent. Every test ends by checking that the request left nothing behind
(:func:`assert_nothing_leaked`): no open ledger row, no stream or drain counted, no pool slot
or upstream slot held, no relay task alive.

The gateway serves each client protocol from the upstream of the same protocol (no
translation yet), so ``UPSTREAM[protocol]`` names the upstream a request goes to.
"""

from __future__ import annotations

import gc
import json
import math
import types
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing

import trio_gateway
from tests.conftest import GatewayFactory
from tests.support import CLIENT_KEY, PRICE, gateway_config, json_events, sse_events
from trio_gateway._attempts import Exchange
from trio_gateway._gateway import Gateway, open_gateway
from trio_gateway._ledger import AttemptRecord
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._usage import Usage
from trio_gateway._relay import _slices
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector

PROTOCOLS: Final[tuple[Protocol, ...]] = ("anthropic", "openai-chat", "openai-responses")
PATHS: Final[Mapping[Protocol, str]] = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
}
#: The upstream that serves each client protocol for ``mock-*`` models.
UPSTREAM: Final[Mapping[Protocol, str]] = {
    "anthropic": "anthropic",
    "openai-chat": "chat",
    "openai-responses": "responses",
}
#: The exact keepalive frames of protocols.md §4.5.
PING: Final[Mapping[Protocol, bytes]] = {
    "anthropic": b'event: ping\ndata: {"type": "ping"}\n\n',
    "openai-chat": b": keepalive\n\n",
    "openai-responses": b": keepalive\n\n",
}
#: The mock's default input-side usage (``in``, ``cr``, ``cw5``, ``cw1``).
UNCACHED: Final = 25
CACHE_READ: Final = 100
CACHE_WRITE_5M: Final = 20
CACHE_WRITE_1H: Final = 10
#: What a ``message_start`` alone tells (Anthropic): the input side, output 1.
ANTHROPIC_START_USAGE: Final = Usage(
    input_tokens=UNCACHED,
    output_tokens=1,
    cache_read_tokens=CACHE_READ,
    cache_write_5m_tokens=CACHE_WRITE_5M,
    cache_write_1h_tokens=CACHE_WRITE_1H,
)


# --------------------------------------------------------------------------- helpers


def request_body(
    protocol: Protocol, model: str, *, include_usage: bool | None = None
) -> dict[str, object]:
    """A minimal valid streaming request body for ``protocol``."""
    if protocol == "openai-responses":
        return {"model": model, "input": "Hi", "stream": True}
    body: dict[str, object] = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    return body


def auth(protocol: Protocol) -> dict[str, str]:
    """The caller's credentials the way that protocol's SDK sends them."""
    if protocol == "anthropic":
        return {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {CLIENT_KEY}"}


@dataclass
class Received:
    """What the client saw: status, headers, and every body chunk with its arrival time."""

    protocol: Protocol
    status: int
    headers: dict[str, str]
    committed_at: float
    chunks: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)

    @property
    def upstream_body(self) -> bytes:
        """The body without the gateway's keepalive chunks."""
        ping = PING[self.protocol]
        return b"".join(chunk for _, chunk in self.chunks if chunk != ping)

    @property
    def ping_times(self) -> list[float]:
        """Arrival times of the gateway's keepalive chunks (each is its own write)."""
        ping = PING[self.protocol]
        return [at for at, chunk in self.chunks if chunk == ping]

    @property
    def data_times(self) -> list[float]:
        """Arrival times of the chunks that carry upstream data (not pings)."""
        ping = PING[self.protocol]
        return [at for at, chunk in self.chunks if chunk != ping]

    @property
    def finished_at(self) -> float:
        return self.chunks[-1][0]


def elapsed(since: float) -> float:
    return trio.current_time() - since


async def stream(
    client: AsgiClient,
    protocol: Protocol,
    model: str,
    *,
    include_usage: bool | None = None,
) -> Received:
    """Send a streaming request and read the whole response, timing every chunk."""
    start = trio.current_time()
    body = request_body(protocol, model, include_usage=include_usage)
    async with client.stream("POST", PATHS[protocol], json=body, headers=auth(protocol)) as resp:
        received = Received(protocol, resp.status, resp.headers, elapsed(start))
        while (chunk := await resp.next_chunk()) is not None:
            if chunk:
                received.chunks.append((elapsed(start), chunk))
        assert resp.complete
    return received


def live_relay_tasks() -> list[str]:
    """Names of the relay's and gateway's tasks still running anywhere in the run."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names.append(child.name)
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return [
        name for name in names if name.startswith(("trio_gateway._relay", "trio_gateway._gateway"))
    ]


def assert_nothing_leaked(gateway: Gateway) -> None:
    """DESIGN §4 "Nothing leaks": after a request, every counter is back to rest."""
    assert gateway.ledger.in_flight() == []
    assert gateway.relay.streams_in_flight == 0
    assert gateway.relay.drains_in_flight == 0
    for name, upstream in gateway.upstreams.items():
        assert upstream.pool.statistics().active == 0, name
        assert upstream.in_flight == 0, name
    assert live_relay_tasks() == []


def only_record(gateway: Gateway) -> AttemptRecord:
    (record,) = gateway.ledger.records
    return record


def text_usage(protocol: Protocol, output: int) -> Usage:
    """The full usage of a ``text`` answer with ``output`` deltas, in ledger semantics
    (OpenAI upstreams have no cache-write tiers; cached tokens are taken out of input)."""
    if protocol == "anthropic":
        return Usage(
            input_tokens=UNCACHED,
            output_tokens=output,
            cache_read_tokens=CACHE_READ,
            cache_write_5m_tokens=CACHE_WRITE_5M,
            cache_write_1h_tokens=CACHE_WRITE_1H,
        )
    return Usage(input_tokens=UNCACHED, output_tokens=output, cache_read_tokens=CACHE_READ)


def assert_terminal(protocol: Protocol, body: bytes) -> None:
    """The stream ended with the protocol's clean terminal event and carries no error."""
    events = sse_events(body)
    assert events, body
    name, data = events[-1]
    match protocol:
        case "anthropic":
            assert name == "message_stop"
            assert "error" not in {n for n, _ in events}
        case "openai-chat":
            assert data == "[DONE]"
            assert not [d for _, d in events if d.startswith('{"error"')]
        case "openai-responses":
            assert name in {"response.completed", "response.incomplete"}
            assert not {"error", "response.failed"} & {n for n, _ in events}


def in_band_error(protocol: Protocol, body: bytes) -> dict[str, object]:
    """Check that ``body`` ends with the protocol's in-band error and never reached a clean
    end; returns the error object (``error`` of the body)."""
    events = sse_events(body)
    names = [name for name, _ in events]
    match protocol:
        case "anthropic":
            assert names[-1] == "error"
            assert "message_stop" not in names
            last = json.loads(events[-1][1])
            assert last["type"] == "error"
        case "openai-chat":
            assert "[DONE]" not in [data for _, data in events]
            last = json.loads(events[-1][1])
            assert set(last) == {"error"}
        case "openai-responses":
            assert names[-2:] == ["error", "response.failed"]
            assert not {"response.completed", "response.incomplete"} & set(names)
            last = json.loads(events[-2][1])
            failed = json.loads(events[-1][1])
            assert failed["sequence_number"] == last["sequence_number"] + 1
            assert failed["response"]["status"] == "failed"
    error = last["error"]
    assert isinstance(error, dict)
    return error


def responses_error_ids(body: bytes) -> tuple[int, str]:
    """Responses: the ``sequence_number`` of the in-band ``error`` event and the response id
    of ``response.failed``."""
    events = json_events(body)
    error, failed = events[-2], events[-1]
    sequence = error["sequence_number"]
    response = failed["response"]
    assert isinstance(sequence, int)
    assert isinstance(response, dict)
    return sequence, str(response["id"])


def check_error_type(protocol: Protocol, error: Mapping[str, object], kind: str) -> None:
    """``kind`` is "timeout" or "protocol": the type strings every protocol must use."""
    if protocol == "anthropic":
        assert error["type"] == ("timeout_error" if kind == "timeout" else "api_error")
    else:
        expected_type = "timeout" if kind == "timeout" else "server_error"
        expected_code = "upstream_timeout" if kind == "timeout" else "upstream_protocol_error"
        assert (error["type"], error["code"]) == (expected_type, expected_code)
    assert isinstance(error["message"], str)
    assert error["message"]


def assert_pings_at_event_boundaries(received: Received) -> None:
    """Every keepalive is its own write, after a complete event (or first in the body), and
    never appears inside a data write (protocols.md §4.5)."""
    ping = PING[received.protocol]
    sent = b""
    for _, chunk in received.chunks:
        if chunk == ping:
            assert sent == b"" or sent.endswith((b"\n\n", b"\r\n\r\n")), sent[-80:]
        else:
            assert ping not in chunk
        sent += chunk


def error_status_body(protocol: Protocol, raw: bytes) -> dict[str, object]:
    """The error object of a pre-commit JSON error body, checking the protocol's shape."""
    body = json.loads(raw)
    if protocol == "anthropic":
        assert set(body) == {"type", "error", "request_id"}
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
    else:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert isinstance(error, dict)
    return error


def request_id(received: Received) -> str:
    name = "request-id" if received.protocol == "anthropic" else "x-request-id"
    return received.headers[name]


ALL: Final = pytest.mark.parametrize("protocol", PROTOCOLS)
#: The protocols that have two upstreams, for failover: (protocol, first, second).
FAILOVER: Final = pytest.mark.parametrize(
    ("protocol", "first", "second"),
    [("anthropic", "anthropic", "anthropic-b"), ("openai-chat", "chat", "chat-b")],
)


# --------------------------------------------------------------------------- keepalive


@ALL
async def test_pings_flow_while_upstream_headers_are_late(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # PEER-BUGS 15/16a: nothing may be silent while the upstream has not answered.
    gateway, client = await make_gateway(keepalive_interval=10, commit_delay=5)
    received = await stream(client, protocol, "mock-stall_headers:secs=33")
    assert received.status == 200
    assert received.committed_at == 5
    assert received.ping_times == [5, 15, 25]
    assert min(received.data_times) == 33
    assert_pings_at_event_boundaries(received)
    assert_terminal(protocol, received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage(protocol, 8)
    assert record.ttft_ms == 33_000
    assert_nothing_leaked(gateway)


@ALL
async def test_pings_flow_before_a_slow_first_token(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The upstream's 200 arrives at once, so there is nothing to hold back: the gateway
    # commits at t=0 (DESIGN §4: the commit is held only "while waiting for upstream
    # headers") and pings after every keepalive_interval of silence until the first token.
    gateway, client = await make_gateway(keepalive_interval=10, commit_delay=5)
    received = await stream(client, protocol, "mock-slow_first:secs=35")
    assert received.status == 200
    assert received.committed_at == 0
    assert received.ping_times == [10, 20, 30]
    assert min(received.data_times) == 35
    assert received.finished_at == 35
    assert_pings_at_event_boundaries(received)
    assert_terminal(protocol, received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage(protocol, 8)
    assert mock.requests[0].outcome == "completed"
    assert_nothing_leaked(gateway)


@ALL
async def test_pings_mid_stream_only_between_events(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway(keepalive_interval=10, commit_delay=5)
    received = await stream(client, protocol, "mock-stall:after=2,secs=35")
    assert received.status == 200
    assert received.ping_times == [10, 20, 30]
    # The first two events came before the pings, the rest after the stall.
    data_times = received.data_times
    assert data_times[0] == 0
    assert max(data_times) == 35
    assert not [at for at in data_times if 0 < at < 35]
    ping = PING[protocol]
    before_pings = received.body.split(ping)[0]
    assert len(sse_events(before_pings)) == 2
    assert_pings_at_event_boundaries(received)
    assert_terminal(protocol, received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert_nothing_leaked(gateway)


@ALL
@pytest.mark.parametrize("scenario", ["slow_first:secs=35", "stall_headers:secs=8"])
async def test_keepalive_interval_zero_sends_no_pings(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    scenario: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # DESIGN §3: keepalive_interval = 0 turns pings off.
    gateway, client = await make_gateway(keepalive_interval=0, commit_delay=5)
    received = await stream(client, protocol, f"mock-{scenario}")
    assert received.status == 200
    assert received.ping_times == []
    assert PING[protocol] not in received.body
    assert_terminal(protocol, received.body)
    assert only_record(gateway).outcome == "completed"
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- commit delay


@ALL
async def test_upstream_429_before_commit_is_a_real_429(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U7: the SDKs retry a real 429 and honour retry-after themselves.
    gateway, client = await make_gateway(commit_delay=5)
    received = await stream(client, protocol, "mock-status:code=429,retry_after=2")
    assert received.status == 429
    assert received.committed_at == 0  # an upstream answer is passed on at once
    assert received.headers["retry-after"] == "2"
    assert received.headers["content-type"] == "application/json"
    error = error_status_body(protocol, received.body)
    assert error["type"] == "rate_limit_error"
    if protocol != "anthropic":
        assert error["code"] == "rate_limit_exceeded"
    assert PING[protocol] not in received.body
    record = only_record(gateway)
    assert (record.status, record.outcome, record.usage_source) == (429, "upstream_error", "none")
    assert len(mock.requests) == 1  # no retry against the same upstream within the request
    assert_nothing_leaked(gateway)


@ALL
async def test_headers_after_commit_delay_commit_with_a_ping(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway(commit_delay=5)
    received = await stream(client, protocol, "mock-stall_headers:secs=8")
    assert received.status == 200
    assert received.committed_at == 5
    assert received.ping_times == [5]
    assert received.chunks[0] == (5.0, PING[protocol])
    assert min(received.data_times) == 8
    assert received.finished_at == 8
    assert_terminal(protocol, received.body)
    record = only_record(gateway)
    assert (record.status, record.outcome, record.usage_source) == (200, "completed", "reported")
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- first byte


@ALL
async def test_first_byte_timeout_before_commit_is_504(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U1, DESIGN §8: upstream headers later than first_byte_timeout -> 504.
    gateway, client = await make_gateway(first_byte_timeout=20, commit_delay=30)
    received = await stream(client, protocol, "mock-stall_headers:secs=3600")
    assert received.status == 504
    assert received.committed_at == 20
    assert received.headers["content-type"] == "application/json"
    check_error_type(protocol, error_status_body(protocol, received.body), "timeout")
    record = only_record(gateway)
    assert (record.status, record.outcome, record.usage_source) == (
        None,
        "upstream_timeout",
        "none",
    )
    assert record.duration_ms == 20_000
    assert mock.requests[0].outcome == "client_closed"  # the gateway hung up
    assert_nothing_leaked(gateway)


@ALL
async def test_first_byte_timeout_after_commit_is_an_in_band_error(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway(first_byte_timeout=20, commit_delay=5)
    received = await stream(client, protocol, "mock-stall_headers:secs=3600")
    assert received.status == 200
    assert received.committed_at == 5
    assert received.ping_times == [5, 15]
    assert received.finished_at == 20
    error = in_band_error(protocol, received.body)
    check_error_type(protocol, error, "timeout")
    if protocol == "openai-responses":
        # Nothing came from the upstream: the gateway's own response id, numbering from 0.
        assert responses_error_ids(received.body) == (0, f"resp_{request_id(received)}")
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("upstream_timeout", "none")
    assert mock.requests[0].outcome == "client_closed"
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- data interval


@ALL
async def test_data_interval_timeout_is_an_in_band_error(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U3: three events at t=0, then silence; the timer counts upstream bytes.
    gateway, client = await make_gateway(data_interval_timeout=30, keepalive_interval=7)
    received = await stream(client, protocol, "mock-stall:after=3,secs=3600")
    assert received.status == 200
    assert received.data_times[0] == 0
    assert received.ping_times == [7, 14, 21, 28]  # pings to the client do not reset it
    assert received.finished_at == 30
    error = in_band_error(protocol, received.body)
    check_error_type(protocol, error, "timeout")
    end = -2 if protocol == "openai-responses" else -1
    upstream_events = sse_events(received.upstream_body)[:end]
    assert len(upstream_events) == 3
    if protocol == "openai-responses":
        created = json_events(received.body)[0]
        response = created["response"]
        assert isinstance(response, dict)
        assert responses_error_ids(received.body) == (3, response["id"])
    (upstream_request,) = mock.requests
    assert upstream_request.outcome == "client_closed"  # the gateway closed the upstream
    assert upstream_request.events_sent == 3
    record = only_record(gateway)
    assert record.outcome == "upstream_timeout"
    if protocol == "anthropic":
        # message_start told the input side: billed as partial (PEER-BUGS 22).
        assert record.usage_source == "partial"
        assert record.usage == ANTHROPIC_START_USAGE
    else:
        assert record.usage_source == "none"  # OpenAI streams report usage only at the end
    assert record.duration_ms == 30_000
    assert_nothing_leaked(gateway)


@ALL
async def test_long_stream_with_gaps_below_the_data_interval_survives(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # PEER-BUGS 18: an inter-chunk timer, never a total deadline.
    gateway, client = await make_gateway(data_interval_timeout=30, keepalive_interval=10)
    received = await stream(client, protocol, "mock-text:tokens=20,interval=25")
    (upstream_request,) = mock.requests
    assert upstream_request.outcome == "completed"
    total = (upstream_request.events_sent - 1) * 25
    assert total > 500
    assert received.finished_at == total
    assert_terminal(protocol, received.body)
    assert_pings_at_event_boundaries(received)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage(protocol, 20)
    assert record.duration_ms == total * 1000
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- broken streams


@ALL
async def test_upstream_cut_ends_with_an_error_event(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U4: a FIN mid-stream is never passed on as a clean end.
    gateway, client = await make_gateway()
    received = await stream(client, protocol, "mock-cut:after=4")
    assert received.status == 200
    error = in_band_error(protocol, received.body)
    check_error_type(protocol, error, "protocol")
    assert mock.requests[0].outcome == "cut"
    assert mock.requests[0].events_sent == 4
    record = only_record(gateway)
    assert record.outcome == "upstream_error"
    if protocol == "anthropic":
        assert (record.usage_source, record.usage) == ("partial", ANTHROPIC_START_USAGE)
    else:
        assert (record.usage_source, record.usage) == ("none", Usage())
    assert_nothing_leaked(gateway)


@ALL
async def test_malformed_event_is_forwarded_and_the_gateway_stays_healthy(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U12 with DESIGN §4's rule: a frame whose JSON does not parse is forwarded
    # whole; the stream goes on.
    gateway, client = await make_gateway()
    received = await stream(client, protocol, "mock-malformed:at=3")
    assert received.status == 200
    broken = [data for _, data in sse_events(received.body) if data.endswith(", oops")]
    assert len(broken) == 1
    assert_terminal(protocol, received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage(protocol, 8)
    # alive_after (RELIABILITY K3)
    healthy = await stream(client, protocol, "mock-text")
    assert healthy.status == 200
    assert_terminal(protocol, healthy.body)
    assert [r.outcome for r in gateway.ledger.records] == ["completed", "completed"]
    assert_nothing_leaked(gateway)


@ALL
async def test_stream_without_terminator_ends_with_an_error_event(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U13: the HTTP body ends cleanly but the protocol's terminal never came.
    gateway, client = await make_gateway()
    received = await stream(client, protocol, "mock-no_terminator")
    assert received.status == 200
    assert received.finished_at == 0  # finalised at the upstream's EOF, not by a timer
    check_error_type(protocol, in_band_error(protocol, received.body), "protocol")
    assert mock.requests[0].outcome == "completed"
    record = only_record(gateway)
    assert record.outcome == "upstream_error"
    if protocol == "openai-responses":
        # The usage lives in the missing terminal event.
        assert (record.usage_source, record.usage) == ("none", Usage())
    else:
        # Anthropic message_delta and the (forced) Chat usage chunk precede the terminator.
        assert (record.usage_source, record.usage) == ("reported", text_usage(protocol, 8))
    assert_nothing_leaked(gateway)


@ALL
async def test_event_larger_than_max_event_bytes_is_an_error_event(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U14.
    gateway, client = await make_gateway(max_event_bytes=1000)
    received = await stream(client, protocol, "mock-huge:bytes=2000")
    assert received.status == 200
    error = in_band_error(protocol, received.body)
    check_error_type(protocol, error, "protocol")
    assert "max_event_bytes" in str(error["message"])
    assert b"lorem ipsum" not in received.body  # no piece of the huge event got through
    assert mock.requests[0].outcome == "client_closed"  # the gateway closed the upstream
    record = only_record(gateway)
    assert record.outcome == "upstream_error"
    assert_nothing_leaked(gateway)


@ALL
async def test_event_larger_than_one_send_goes_out_in_slices_between_pings(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Issue 6: hypercorn copies what one send() carries, so an event over 1 MiB goes out in
    # sends of at most 1 MiB, one after another from the writer task: no ping between them.
    # The client stops reading while the t=30 ping is being sent, so the whole answer
    # (3 MB event included) queues up and then goes out as one batch of several frames. The
    # buffer budget is set above the answer: this test is not about stalled clients.
    gateway, client = await make_gateway(
        keepalive_interval=10, commit_delay=5, client_buffer_bytes=1 << 26
    )
    start = trio.current_time()
    usage = True if protocol == "openai-chat" else None  # every upstream event reaches us
    body = request_body(protocol, "mock-huge:bytes=3000000+slow_first:secs=35", include_usage=usage)
    received: Received | None = None
    async with client.stream("POST", PATHS[protocol], json=body, headers=auth(protocol)) as resp:
        received = Received(protocol, resp.status, resp.headers, elapsed(start))
        while (chunk := await resp.next_chunk()) is not None:
            received.chunks.append((elapsed(start), chunk))
            if elapsed(start) == 20:
                await trio.sleep(5)
                resp.stop_reading()
                await trio.sleep(15)
                assert gateway.relay.streams_in_flight == 1  # not dropped as stalled
                resp.resume_reading()
    assert received.status == 200
    assert received.ping_times == [10, 20, 40]  # the t=30 ping was read at t=40
    assert set(received.data_times) == {40}
    assert_pings_at_event_boundaries(received)
    assert_terminal(protocol, received.body)
    sizes = [len(chunk) for _, chunk in received.chunks]
    assert max(sizes) == 1 << 20
    assert sum(size > 100_000 for size in sizes) >= 3  # the event took several sends
    # Intact and in order: every event of the upstream arrived, and the 3 MB delta whole,
    # also inside each later event that repeats it (Responses' closing events).
    assert len(sse_events(received.upstream_body)) == mock.requests[0].events_sent
    huge = [data for _, data in sse_events(received.body) if len(data) > 3_000_000]
    delta = max(_strings(json.loads(huge[0])), key=len)
    assert len(delta) == 3_000_000
    assert delta.startswith("lorem ipsum")
    assert received.body.count(delta.encode()) == len(huge)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert_nothing_leaked(gateway)


@pytest.mark.parametrize("sizes", [[5, 3, 12, 1], [8], [2, 2], [1] * 9, [0, 9, 0]])
def test_slices_cut_a_batch_into_full_pieces_in_order(sizes: list[int]) -> None:
    parts = [bytes([65 + i]) * size for i, size in enumerate(sizes)]
    pieces = list(_slices(parts, 4))
    assert b"".join(pieces) == b"".join(parts)
    assert [len(piece) for piece in pieces[:-1]] == [4] * (len(pieces) - 1)
    assert 0 < len(pieces[-1]) <= 4


def _strings(value: object) -> list[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


@ALL
async def test_the_last_bytes_end_the_body_in_the_same_message(
    make_gateway: GatewayFactory, mock: MockUpstream, protocol: Protocol
) -> None:
    # The terminal event and the end of the body travel in one ASGI message (one hypercorn
    # app_send fewer per stream), not as bytes followed by an empty closing message.
    _, client = await make_gateway()
    body = request_body(protocol, "mock-text:tokens=3")
    async with client.stream("POST", PATHS[protocol], json=body, headers=auth(protocol)) as resp:
        chunks = []
        while (chunk := await resp.next_chunk()) is not None:
            chunks.append(chunk)
    assert resp.complete
    assert chunks[-1], chunks  # the message that ended the body carried bytes
    assert_terminal(protocol, chunks[-1])
    assert_terminal(protocol, b"".join(chunks))


# --------------------------------------------------------------------------- usage rows


async def test_cumulative_message_delta_usage_is_not_summed(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY U15: message_delta usage 10, 25, 40 -> 40.
    gateway, client = await make_gateway()
    received = await stream(client, "anthropic", "mock-cumulative")
    deltas = [e for e in json_events(received.body) if e["type"] == "message_delta"]
    assert len(deltas) == 3
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage.output_tokens == 40
    assert record.usage == Usage(
        input_tokens=UNCACHED,
        output_tokens=40,
        cache_read_tokens=CACHE_READ,
        cache_write_5m_tokens=CACHE_WRITE_5M,
        cache_write_1h_tokens=CACHE_WRITE_1H,
    )
    assert_nothing_leaked(gateway)


async def test_input_usage_reported_only_in_message_delta(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # PEER-BUGS 29: later message_delta fields override message_start's zeros.
    gateway, client = await make_gateway()
    received = await stream(client, "anthropic", "mock-usage_in_delta")
    start = json_events(received.body)[0]
    message = start["message"]
    assert isinstance(message, dict)
    assert message["usage"]["input_tokens"] == 0
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage("anthropic", 8)
    assert_nothing_leaked(gateway)


@pytest.mark.parametrize("scenario", ["text", "usage_with_choices"])
async def test_chat_usage_forced_upstream_and_stripped_for_the_caller(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    scenario: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY B2: the caller did not ask for usage; the upstream must still send it.
    gateway, client = await make_gateway()
    received = await stream(client, "openai-chat", f"mock-{scenario}")
    upstream_body = mock.requests[0].body
    assert isinstance(upstream_body, dict)
    assert upstream_body["stream_options"] == {"include_usage": True}
    chunks = json_events(received.body)
    assert chunks
    assert all(chunk["choices"] != [] for chunk in chunks)
    assert all(chunk.get("usage") is None for chunk in chunks)
    finish = [c for c in chunks if c["choices"][0]["finish_reason"] is not None]  # type: ignore[index]
    assert len(finish) == 1  # a usage riding on the finish chunk is cut out, not the chunk
    assert_terminal("openai-chat", received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage("openai-chat", 8)
    assert_nothing_leaked(gateway)


async def test_chat_usage_chunk_reaches_a_caller_that_asked(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    gateway, client = await make_gateway()
    received = await stream(client, "openai-chat", "mock-text", include_usage=True)
    usage_chunks = [c for c in json_events(received.body) if c["choices"] == []]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["usage"]["completion_tokens"] == 8  # type: ignore[index]
    assert only_record(gateway).usage == text_usage("openai-chat", 8)
    assert_nothing_leaked(gateway)


@ALL
async def test_explicit_zero_usage_is_reported_not_missing(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U16.
    gateway, client = await make_gateway()
    received = await stream(client, protocol, "mock-zero_usage")
    assert_terminal(protocol, received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source, record.usage) == ("completed", "reported", Usage())
    assert_nothing_leaked(gateway)


async def test_responses_incomplete_usage_is_recorded(
    make_gateway: GatewayFactory, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY U17: the usage rides on response.incomplete.
    gateway, client = await make_gateway()
    received = await stream(client, "openai-responses", "mock-incomplete")
    assert sse_events(received.body)[-1][0] == "response.incomplete"
    assert_terminal("openai-responses", received.body)
    record = only_record(gateway)
    assert (record.outcome, record.usage_source) == ("completed", "reported")
    assert record.usage == text_usage("openai-responses", 8)
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- failover


@FAILOVER
async def test_failover_before_commit_gives_one_response_and_two_rows(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    first: str,
    second: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, client = await make_gateway()
    received = await stream(client, protocol, "failover-x")
    assert received.status == 200
    assert received.committed_at == 0
    assert_terminal(protocol, received.body)
    assert [r.body["model"] for r in mock.requests] == [  # type: ignore[index]
        "mock-status:code=503",
        "mock-text",
    ]
    failed, served = gateway.ledger.records
    assert failed.request_id == served.request_id == request_id(received)
    assert (failed.attempt, failed.upstream, failed.status, failed.outcome) == (
        1,
        first,
        503,
        "upstream_error",
    )
    assert (failed.usage_source, failed.ttft_ms) == ("none", None)
    assert (served.attempt, served.upstream, served.status, served.outcome) == (
        2,
        second,
        200,
        "completed",
    )
    assert (served.model, served.upstream_model) == ("failover-x", "mock-text")
    assert served.usage == text_usage(protocol, 8)
    assert_nothing_leaked(gateway)


@asynccontextmanager
async def gateway_with_route(
    mock: MockUpstream, first: str, second: str, **streaming: object
) -> AsyncGenerator[tuple[Gateway, AsgiClient]]:
    """A gateway whose model ``route`` tries an upstream answering with scenario ``first``,
    then one answering with ``second`` (per protocol: anthropic/anthropic-b, chat/chat-b)."""
    route: dict[str, object] = {
        "name": "route",
        "upstreams": ["anthropic", "anthropic-b", "chat", "chat-b"],
        "upstream_model": {
            "anthropic": f"mock-{first}",
            "chat": f"mock-{first}",
            "anthropic-b": f"mock-{second}",
            "chat-b": f"mock-{second}",
        },
        "routing": "same-protocol-only",
        "price": PRICE,
    }
    config = gateway_config(streaming=streaming, models=[route])
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        yield gateway, AsgiClient(gateway)


@FAILOVER
async def test_upstream_400_is_never_failed_over(
    mock: MockUpstream,
    protocol: Protocol,
    first: str,
    second: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U9: the caller's own error: exactly one attempt, passed on as it is.
    async with gateway_with_route(mock, "status:code=400", "text") as (gateway, client):
        received = await stream(client, protocol, "route")
        assert received.status == 400
        assert error_status_body(protocol, received.body)["type"] == "invalid_request_error"
        assert [r.body["model"] for r in mock.requests] == ["mock-status:code=400"]  # type: ignore[index]
        record = only_record(gateway)
        assert (record.upstream, record.status, record.outcome) == (first, 400, "upstream_error")
        assert_nothing_leaked(gateway)


@FAILOVER
async def test_upstream_429_fails_over_before_commit(
    mock: MockUpstream,
    protocol: Protocol,
    first: str,
    second: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U7: "honour it or fail over"; another account is the faster answer.
    route = ("status:code=429,retry_after=2", "text")
    async with gateway_with_route(mock, *route) as (gateway, client):
        received = await stream(client, protocol, "route")
        assert (received.status, received.committed_at) == (200, 0)
        assert_terminal(protocol, received.body)
        failed, served = gateway.ledger.records
        assert (failed.upstream, failed.status, failed.outcome) == (first, 429, "upstream_error")
        assert (served.upstream, served.status, served.outcome) == (second, 200, "completed")
        assert_nothing_leaked(gateway)


@FAILOVER
async def test_first_byte_timeout_fails_over_while_uncommitted(
    mock: MockUpstream,
    protocol: Protocol,
    first: str,
    second: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U1: headers timeout -> the next upstream, if nothing is committed yet.
    streaming = {"first_byte_timeout": 20, "commit_delay": 30}
    async with gateway_with_route(mock, "stall_headers:secs=3600", "text", **streaming) as (
        gateway,
        client,
    ):
        received = await stream(client, protocol, "route")
        assert (received.status, received.committed_at) == (200, 20)
        assert received.ping_times == []
        assert_terminal(protocol, received.body)
        assert [r.outcome for r in mock.requests] == ["client_closed", "completed"]
        failed, served = gateway.ledger.records
        assert (failed.upstream, failed.outcome) == (first, "upstream_timeout")
        assert (served.upstream, served.outcome) == (second, "completed")
        assert_nothing_leaked(gateway)


@FAILOVER
async def test_no_failover_once_committed(
    mock: MockUpstream,
    protocol: Protocol,
    first: str,
    second: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # DESIGN §8: a ping commits the response; after that an upstream failure is final.
    streaming = {"first_byte_timeout": 20, "commit_delay": 5}
    async with gateway_with_route(mock, "stall_headers:secs=3600", "text", **streaming) as (
        gateway,
        client,
    ):
        received = await stream(client, protocol, "route")
        assert (received.status, received.committed_at) == (200, 5)
        assert received.finished_at == 20
        check_error_type(protocol, in_band_error(protocol, received.body), "timeout")
        assert len(mock.requests) == 1
        record = only_record(gateway)
        assert (record.upstream, record.outcome) == (first, "upstream_timeout")
        assert_nothing_leaked(gateway)


@ALL
async def test_upstream_400_is_tried_once_and_passed_on(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    protocol: Protocol,
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RELIABILITY U9: a caller error is never retried or failed over.
    gateway, client = await make_gateway()
    received = await stream(client, protocol, "mock-status:code=400")
    assert received.status == 400
    assert received.committed_at == 0
    error = error_status_body(protocol, received.body)
    assert error["type"] == "invalid_request_error"
    assert len(mock.requests) == 1
    record = only_record(gateway)
    assert (record.attempt, record.status, record.outcome) == (1, 400, "upstream_error")
    assert_nothing_leaked(gateway)


# --------------------------------------------------------------------------- memory


def gateway_locals_holding_the_request() -> list[str]:
    """``function.variable`` for every local of a suspended gateway coroutine (the modules
    of ``trio_gateway`` itself, not the mock's or the test kit's) that is the request body,
    raw (bytes) or parsed (a dict with ``messages``)."""
    package = Path(trio_gateway.__file__).parent
    found: list[str] = []
    for obj in gc.get_objects():
        if not isinstance(obj, types.CoroutineType) or obj.cr_frame is None:
            continue
        if Path(obj.cr_code.co_filename).parent != package:
            continue
        for name, value in obj.cr_frame.f_locals.items():
            if (isinstance(value, bytes) and b'"messages"' in value) or (
                isinstance(value, dict) and "messages" in value
            ):
                found.append(f"{obj.cr_code.co_qualname}.{name}")
    return found


async def test_an_open_stream_holds_no_copy_of_the_request_body(
    make_gateway: GatewayFactory, autojump_clock: trio.testing.MockClock
) -> None:
    # A stream lives for minutes and a caller's request (a long conversation) is often
    # hundreds of KB; failover, the only reader of it after admission, ends once an upstream
    # answered. Holding it for the whole stream multiplies it by every open stream.
    gateway, client = await make_gateway()
    body = request_body("anthropic", "mock-text:tokens=2,interval=10")
    async with client.stream(
        "POST", PATHS["anthropic"], json=body, headers=auth("anthropic")
    ) as resp:
        assert resp.status == 200
        received = [await resp.next_chunk() or b""]
        assert received[0]  # the upstream accepted the request: the stream is open
        (exchange,) = gateway._exchanges
        assert (exchange.plan.raw, exchange.plan.body) == (b"", {})
        assert gateway_locals_holding_the_request() == []
        while (chunk := await resp.next_chunk()) is not None:
            received.append(chunk)
    assert_terminal("anthropic", b"".join(received))
    assert_nothing_leaked(gateway)


async def test_a_fast_stream_arms_the_readers_timers_once(
    make_gateway: GatewayFactory, mock: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keepalive timer's origin was 0.0 until the writer's first write: the reader's
    # first timer scope (Relay._feed) took a ping as long overdue, so every stream had
    # its read cancelled by that deadline and entered a second scope.
    armed: list[float] = []
    real_cuttable = Exchange.cuttable

    def cuttable(
        self: Exchange, deadline: float = math.inf, *, replacing: trio.CancelScope | None = None
    ) -> trio.CancelScope:
        if replacing is not None:  # the reader's timers, replacing the scope of the open
            armed.append(deadline - trio.current_time())
        return real_cuttable(self, deadline, replacing=replacing)

    monkeypatch.setattr(Exchange, "cuttable", cuttable)
    _, client = await make_gateway()
    body = request_body("anthropic", "mock-text:tokens=3")
    for _ in range(5):
        async with client.stream(
            "POST", PATHS["anthropic"], json=body, headers=auth("anthropic")
        ) as resp:
            while await resp.next_chunk() is not None:
                pass
        assert resp.complete
    assert len(armed) == 5, armed
    assert all(delay > 0 for delay in armed), armed
