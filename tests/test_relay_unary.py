"""Non-streaming requests: a disconnect settles the attempt and closes the upstream at once
(no content byte has reached the client, DESIGN §4)."""

from __future__ import annotations

import json
from collections.abc import MutableMapping

import pytest
import trio
import trio.testing

from tests.conftest import GatewayFactory
from tests.support import CLIENT_KEY
from trio_gateway.testing import MockUpstream

Message = MutableMapping[str, object]


@pytest.mark.parametrize("policy", ["drain", "cancel"])
async def test_disconnect_during_a_unary_request_settles_and_closes_the_upstream(
    make_gateway: GatewayFactory,
    mock: MockUpstream,
    policy: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway, _ = await make_gateway(on_client_disconnect=policy, first_byte_timeout=600)
    body = {
        "model": "mock-stall_headers:secs=100",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    raw = json.dumps(body).encode()
    scope: dict[str, object] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/messages",
        "query_string": b"",
        "headers": [(b"x-api-key", CLIENT_KEY.encode()), (b"content-type", b"application/json")],
    }
    left = trio.Event()
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(gateway, scope, receive, send)
        await trio.sleep(5)  # the gateway waits for the upstream's headers (a 100 s stall)
        assert mock.requests
        assert mock.requests[-1].outcome == "stalled"
        left.set()  # the client goes away; the app must return by itself
    left_at = trio.current_time()
    with trio.fail_after(1):
        while (
            gateway.ledger.in_flight()
            or not mock.requests
            or mock.requests[-1].outcome == "stalled"
        ):
            await trio.sleep(0.01)
    assert trio.current_time() - left_at < 1  # closed at once, not after the 100 s stall
    [record] = gateway.ledger.records
    assert (record.outcome, record.usage_source, record.stream) == (
        "client_disconnected",
        "none",
        False,
    )
    assert mock.requests[-1].outcome == "client_closed"
    assert sent == []  # nothing was committed: nobody to answer
    upstream = gateway.upstreams["anthropic"]
    assert (upstream.in_flight, upstream.pool.statistics().active) == (0, 0)
