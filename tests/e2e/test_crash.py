"""Crash consistency of the ledger on a real gateway process (RELIABILITY L1, L2, §3.3).

Each seed: several streams through the gateway, ``kill -9`` at a random moment, restart on
the same database. Then: ``PRAGMA integrity_check`` is ok; every attempt the mock upstream
saw (joined by the ``x-trio-gateway-attempt`` header) has exactly one row; no row is left
``in_flight``; rows the crash cut short are ``interrupted``.

The default suite runs 50 seeds; ``TRIO_GATEWAY_CRASH_SEEDS=200`` is the slow mode.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.support import CLIENT_KEY
from trio_gateway._config import hash_key

pytestmark = pytest.mark.slow

SEEDS = int(os.environ.get("TRIO_GATEWAY_CRASH_SEEDS", "50"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(gateway_port: int, mock_port: int, db: Path) -> str:
    return f"""
[server]
bind = "127.0.0.1:{gateway_port}"
graceful_timeout = 1.0

[ledger]
path = "{db}"

[[keys]]
name = "alice"
sha256 = "{hash_key(CLIENT_KEY)}"

[[upstreams]]
name = "anthropic"
protocol = "anthropic"
base_url = "http://127.0.0.1:{mock_port}"

[[upstreams]]
name = "chat"
protocol = "openai-chat"
base_url = "http://127.0.0.1:{mock_port}/v1"

[[models]]
name = "mock-*"
upstreams = ["anthropic", "chat"]
price = {{ input = 3.0, output = 15.0, cache_read = 0.30, cache_write_5m = 3.75, \
cache_write_1h = 6.0 }}
"""


async def _start(args: list[str]) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_gateway", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_ready(client: httpx.AsyncClient, url: str) -> None:
    with trio.fail_after(30):
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.05)


async def _stream(port: int, path: str, model: str) -> None:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/messages":
        body["max_tokens"] = 64
    raw = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nhost: gw\r\nx-api-key: {CLIENT_KEY}\r\n"
        f"authorization: Bearer {CLIENT_KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(raw)}\r\n\r\n"
    ).encode() + raw
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            while await stream.receive_some(65536):
                pass
    except OSError:
        pass  # the gateway was killed under us: expected
    except trio.BrokenResourceError:
        pass


def _check(db: Path, seen: list[str]) -> None:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute(
            "SELECT request_id, attempt, outcome FROM attempts WHERE attempt > 0"
        ).fetchall()
    finally:
        connection.close()
    ids = [f"{request_id}/{attempt}" for request_id, attempt, _ in rows]
    assert len(ids) == len(set(ids)), "duplicate rows"
    missing = set(seen) - set(ids)
    assert not missing, f"attempts the upstream saw with no ledger row: {sorted(missing)[:5]}"
    outcomes = {outcome for _, _, outcome in rows}
    assert "in_flight" not in outcomes, "a row was left in flight after the restart"


async def test_kill_9_at_random_moments_keeps_the_ledger_exact(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    mock_port, gateway_port = _free_port(), _free_port()
    db = tmp_path / "ledger.db"
    config = tmp_path / "config.toml"
    config.write_text(_config(gateway_port, mock_port, db))
    mock = await _start(["mock-upstream", "--port", str(mock_port), "--interval", "0.02"])
    gateway: trio.Process | None = None
    base = f"http://127.0.0.1:{gateway_port}"
    mock_url = f"http://127.0.0.1:{mock_port}"
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await _wait_ready(client, mock_url + "/v1/models")
            gateway = await _start(["serve", "--config", str(config)])
            await _wait_ready(client, base + "/readyz")
            seen: list[str] = []
            interrupted_total = 0
            for _seed in range(SEEDS):
                await client.post(mock_url + "/_mock/reset")
                async with trio.open_nursery() as nursery:
                    for _ in range(rng.randint(2, 6)):
                        path = rng.choice(["/v1/messages", "/v1/chat/completions"])
                        tokens = rng.randint(5, 60)
                        model = f"mock-text:tokens={tokens}"
                        nursery.start_soon(_stream, gateway_port, path, model)
                    await trio.sleep(rng.uniform(0.0, 1.2))
                    gateway.send_signal(signal.SIGKILL)
                    await gateway.wait()
                log = (await client.get(mock_url + "/_mock/requests")).json()
                for entry in log:
                    headers = dict(entry["headers"])
                    seen.append(headers["x-trio-gateway-attempt"])
                gateway = await _start(["serve", "--config", str(config)])
                await _wait_ready(client, base + "/readyz")  # recovery ran at start-up
                _check(db, seen)
                connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                interrupted_total = connection.execute(
                    "SELECT count(*) FROM attempts WHERE outcome = 'interrupted'"
                ).fetchone()[0]
                connection.close()
            assert seen, "no request ever reached the upstream: the harness is broken"
            assert interrupted_total > 0, "no kill ever landed mid-stream: the harness is broken"
    finally:
        for process in (gateway, mock):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
