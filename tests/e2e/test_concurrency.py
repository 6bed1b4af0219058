"""512 concurrent streams through one gateway on real sockets (issue: prove the upstream
client holds where one shared httpx.AsyncClient degrades, STACK-FACTS §1).

Client, gateway and mock upstream all run in this one trio process, so the test is about
correctness under concurrency (no error, no pool timeout, every attempt settled, nothing
left over), not speed; the bench measures speed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio

from tests.conftest import Live, start_live
from tests.support import CLIENT_KEY

pytestmark = pytest.mark.slow

STREAMS = 512


@pytest.fixture
async def live_wide() -> AsyncIterator[Live]:
    async with trio.open_nursery() as nursery:
        started = await start_live(nursery, keepalive_interval=0.0)
        yield started
        nursery.cancel_scope.cancel()
    await started.gateway.aclose()


async def _one_stream(live: Live, results: list[bytes]) -> None:
    host, port = live.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(
        {
            # 8 events 1 s apart: long enough that all 512 are open at once even when the
            # one process running client, gateway and mock is slow to start them all.
            "model": "mock-text:tokens=8,interval=1.0",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()
    request = (
        f"POST /v1/messages HTTP/1.1\r\nhost: gw\r\nx-api-key: {CLIENT_KEY}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(request)
        received = b""
        while not received.endswith(b"\r\n0\r\n\r\n"):  # the chunked body's end
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            received += chunk
    results.append(received)


async def test_512_concurrent_streams_all_complete(live_wide: Live) -> None:
    live = live_wide
    gateway = live.gateway
    results: list[bytes] = []
    peak = 0

    async def sample_peak(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal peak
        task_status.started()
        while True:
            peak = max(peak, gateway.relay.streams_in_flight)
            await trio.sleep(0.05)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(sample_peak)
            async with trio.open_nursery() as clients:
                for _ in range(STREAMS):
                    clients.start_soon(_one_stream, live, results)
            nursery.cancel_scope.cancel()

    with trio.fail_after(10):  # handlers finish just after their last byte went out
        while gateway.relay.streams_in_flight or gateway.ledger.in_flight():
            await trio.sleep(0.01)
    assert len(results) == STREAMS
    for received in results:
        assert received.startswith(b"HTTP/1.1 200"), received[:200]
        assert b"event: message_stop" in received
        assert b"event: error" not in received
    assert peak == STREAMS  # every stream was open at the same time
    records = gateway.ledger.records
    assert len(records) == STREAMS
    assert {r.outcome for r in records} == {"completed"}
    assert {r.usage.output_tokens for r in records} == {8}
    assert not gateway.ledger.in_flight()
    upstream = gateway.upstreams["anthropic"]
    assert upstream.in_flight == 0
    assert upstream.pool.statistics().active == 0
