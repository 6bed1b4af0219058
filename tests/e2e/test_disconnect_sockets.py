"""Client disconnects, end to end on real hypercorn sockets (DESIGN §4; RELIABILITY C1–C4).

hypercorn's trio worker never reports a disconnect through ``send()`` (STACK-FACTS §2, and
the open hypercorn issue #210), so only a real socket can prove the gateway notices one.
After every case nothing may be left: no task, no pool slot, no file descriptor.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable

import psutil
import pytest
import trio
import trio.testing

from tests.conftest import Live, start_live
from tests.support import CLIENT_KEY

pytestmark = pytest.mark.slow


def _count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


def _task_names() -> list[str]:
    def walk(task: trio.lowlevel.Task) -> list[str]:
        names = [task.name]
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                names.extend(walk(child))
        return names

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def _wait_for(condition: Callable[[], bool], *, seconds: float = 5.0) -> None:
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.01)


def _request(model: str, *, path: str = "/v1/messages") -> bytes:
    if path == "/v1/messages":
        body = {
            "model": model,
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
    else:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    raw = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: gateway\r\nx-api-key: {CLIENT_KEY}\r\n"
        f"authorization: Bearer {CLIENT_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


async def _read_until(stream: trio.SocketStream, marker: bytes, count: int) -> bytes:
    """Read until ``marker`` has been seen ``count`` times."""
    data = b""
    with trio.fail_after(10):
        while data.count(marker) < count:
            chunk = await stream.receive_some(65536)
            assert chunk, "gateway closed the connection early"
            data += chunk
    return data


class _Baseline:
    def __init__(self, live: Live) -> None:
        self.live = live
        self.tasks = _count_tasks()
        self.fds = psutil.Process().num_fds()

    async def assert_nothing_left(self) -> None:
        live = self.live
        gateway = live.gateway

        def settled() -> bool:
            return (
                not gateway.ledger.in_flight()
                and gateway.relay.streams_in_flight == 0
                and gateway.relay.drains_in_flight == 0
                and all(u.in_flight == 0 for u in gateway.upstreams.values())
                and all(u.pool.statistics().active == 0 for u in gateway.upstreams.values())
            )

        upstreams = list(gateway.upstreams.values())
        try:
            await _wait_for(settled)
        except trio.TooSlowError:
            raise AssertionError(
                f"left over: in_flight={gateway.ledger.in_flight()} "
                f"streams={gateway.relay.streams_in_flight} "
                f"drains={gateway.relay.drains_in_flight} "
                f"upstreams={[(u.name, u.in_flight, u.pool.statistics()) for u in upstreams]}"
            ) from None
        # Idle keep-alive connections are allowed to stay pooled; close them, then no fd
        # may remain beyond the baseline.
        # (the mock serves each pooled connection in a task of its own).
        await gateway.aclose()
        try:
            await _wait_for(lambda: _count_tasks() <= self.tasks)
        except trio.TooSlowError:
            raise AssertionError(f"tasks left: {_task_names()}") from None
        await _wait_for(lambda: psutil.Process().num_fds() <= self.fds)


@pytest.fixture
async def live_drain() -> AsyncIterator[Live]:
    async with trio.open_nursery() as nursery:
        yield await start_live(nursery, on_client_disconnect="drain")
        nursery.cancel_scope.cancel()


@pytest.fixture
async def live_cancel() -> AsyncIterator[Live]:
    async with trio.open_nursery() as nursery:
        yield await start_live(nursery, on_client_disconnect="cancel")
        nursery.cancel_scope.cancel()


async def _connect(live: Live) -> trio.SocketStream:
    host, port = live.url.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
async def test_drain_reads_upstream_to_the_end_after_disconnect(
    live_drain: Live, path: str
) -> None:
    live = live_drain
    baseline = _Baseline(live)
    stream = await _connect(live)
    await stream.send_all(_request("mock-text:tokens=30,interval=0.02", path=path))
    marker = b"content_block_delta" if path == "/v1/messages" else b'"content"'
    await _read_until(stream, marker, 3)
    await stream.aclose()

    await _wait_for(
        lambda: bool(live.gateway.ledger.records) and not live.gateway.ledger.in_flight()
    )
    record = live.gateway.ledger.records[-1]
    upstream_request = live.mock.requests[-1]
    await _wait_for(lambda: upstream_request.outcome != "in_progress")
    assert upstream_request.outcome == "completed"
    assert record.outcome == "client_disconnected"
    assert record.usage_source == "reported"
    assert record.usage.output_tokens == 30
    await baseline.assert_nothing_left()


async def test_cancel_policy_closes_upstream_at_once(live_cancel: Live) -> None:
    live = live_cancel
    baseline = _Baseline(live)
    stream = await _connect(live)
    await stream.send_all(_request("mock-text:tokens=200,interval=0.05"))
    await _read_until(stream, b"content_block_delta", 2)
    left_at = trio.current_time()
    await stream.aclose()

    await _wait_for(lambda: live.mock.requests[-1].outcome == "client_closed", seconds=2)
    assert trio.current_time() - left_at < 1.0  # the stream would take 10 s
    await _wait_for(lambda: not live.gateway.ledger.in_flight())
    record = live.gateway.ledger.records[-1]
    assert record.outcome == "client_disconnected"
    assert record.usage_source == "partial"
    assert record.usage.input_tokens == 25  # from message_start: what was known
    assert live.mock.requests[-1].events_sent < 50
    await baseline.assert_nothing_left()


async def test_disconnect_before_first_content_cancels_even_under_drain(live_drain: Live) -> None:
    live = live_drain
    baseline = _Baseline(live)
    stream = await _connect(live)
    await stream.send_all(_request("mock-stall_headers:secs=30"))
    await _wait_for(lambda: bool(live.mock.requests))
    await stream.aclose()

    await _wait_for(lambda: live.mock.requests[-1].outcome != "in_progress", seconds=2)
    await _wait_for(lambda: not live.gateway.ledger.in_flight())
    record = live.gateway.ledger.records[-1]
    assert record.outcome == "client_disconnected"
    assert record.usage_source == "none"
    await baseline.assert_nothing_left()


async def test_client_that_stops_reading_does_not_stop_the_drain() -> None:
    async with trio.open_nursery() as nursery:
        live = await start_live(nursery, on_client_disconnect="drain", client_buffer_bytes=4096)
        await _stalled_client_case(live)
        nursery.cancel_scope.cancel()


async def _stalled_client_case(live: Live) -> None:
    await trio.testing.wait_all_tasks_blocked()  # the servers' own tasks have all started
    baseline = _Baseline(live)
    host, port = live.url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    # A tiny receive window, and we never read: the gateway's send() blocks (shielded, in
    # hypercorn), so only the byte budget can save the upstream side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    # 8 MB fill every kernel buffer on the way (loopback send buffers auto-tune to a few
    # MB), so the gateway's send() really blocks; the 100 small events behind it exceed the
    # 4 KiB client budget while that write is stuck.
    await stream.send_all(_request("mock-huge:bytes=8000000+text:tokens=100"))

    await _wait_for(lambda: bool(live.gateway.ledger.records), seconds=10)
    await _wait_for(lambda: not live.gateway.ledger.in_flight(), seconds=10)
    record = live.gateway.ledger.records[-1]
    await _wait_for(lambda: live.mock.requests[-1].outcome != "in_progress")
    assert live.mock.requests[-1].outcome == "completed"
    assert record.outcome == "client_disconnected"
    assert record.usage_source == "reported"
    assert record.usage.output_tokens == 100
    await stream.aclose()
    await baseline.assert_nothing_left()
