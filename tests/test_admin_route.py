"""``GET /admin/usage`` through the gateway's router (DESIGN §2, §5)."""

from __future__ import annotations

import json
from pathlib import Path

import trio.testing

from tests.support import ADMIN_TOKEN, CLIENT_KEY, gateway_config
from trio_gateway._gateway import open_gateway
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector

MESSAGE = {
    "model": "mock-text",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


async def test_admin_usage_serves_the_ledger_rows(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    config = gateway_config(ledger_path=str(tmp_path / "ledger.db"))
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        client = AsgiClient(gateway)
        reply = await client.request(
            "POST", "/v1/messages", json=MESSAGE, headers={"x-api-key": CLIENT_KEY}
        )
        assert reply.status == 200
        await gateway.ledger.flush()

        bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        usage = await client.request("GET", "/admin/usage", headers=bearer)
        assert usage.status == 200
        assert usage.headers["content-type"] == "application/x-ndjson"
        [row] = [json.loads(line) for line in usage.body.decode().splitlines()]
        assert (row["key"], row["outcome"], row["attempt"]) == ("alice", "completed", 1)
        assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (25, 100, 8)
        assert row["cost_usd"] == "0.00036"  # (25*3 + 8*15 + 100*0.3 + 20*3.75 + 10*6) / 10**6

        other = await client.request("GET", "/admin/usage?key=bob", headers=bearer)
        assert (other.status, other.body) == (200, b"")

        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": ADMIN_TOKEN}):
            refused = await client.request("GET", "/admin/usage", headers=headers)
            assert refused.status == 401
            assert b"input_tokens" not in refused.body

        wrong_method = await client.request("POST", "/admin/usage", headers=bearer)
        assert (wrong_method.status, wrong_method.headers["allow"]) == (405, "GET")
        bad_since = await client.request("GET", "/admin/usage?since=yesterday", headers=bearer)
        assert bad_since.status == 400
