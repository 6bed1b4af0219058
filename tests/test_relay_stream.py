from __future__ import annotations

import trio
import trio.testing
import pytest

from tests.support import CLIENT_KEY


async def test_explore(make_gateway, mock, autojump_clock) -> None:
    for model, kw in [
        ("mock-slow_first:secs=35", dict(keepalive_interval=10, commit_delay=5)),
        ("mock-stall_headers:secs=33", dict(keepalive_interval=10, commit_delay=5)),
        ("mock-stall_headers:secs=8", dict(keepalive_interval=0, commit_delay=5)),
        ("mock-stall_headers:secs=3600", dict(first_byte_timeout=20, commit_delay=30)),
        ("mock-stall_headers:secs=3600", dict(first_byte_timeout=20, commit_delay=5)),
        ("mock-cut:after=4", {}),
        ("mock-huge:bytes=2000", dict(max_event_bytes=1000)),
    ]:
        gateway, client = await make_gateway(**kw)
        t0 = trio.current_time()
        body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY}) as resp:
            print(model, "start", resp.status, trio.current_time() - t0)
            while (c := await resp.next_chunk()) is not None:
                print("  ", trio.current_time() - t0, c[:150])
        print(gateway.ledger.records[-1])
        print(mock.requests[-1].outcome, mock.requests[-1].events_sent)
