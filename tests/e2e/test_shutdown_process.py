"""Graceful shutdown of a real ``trio-gateway serve`` process (RELIABILITY S1, S2).

The process runs the shipped config with its built-in mock upstream, a short
``graceful_timeout`` and ``accept_grace``, and a fresh ledger file. Streams are read by raw
httpx clients so every byte is seen: a stream that finished normally ends with its protocol's
terminal event, one cut by the shutdown ends with an in-band error event. Afterwards the
ledger is read back through ``trio-gateway usage --json``: every row settled, none left in
flight.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import pytest
import trio

from tests.support import sse_events

pytestmark = pytest.mark.slow

ROOT: Final = Path(__file__).resolve().parents[2]
SHIPPED: Final = ROOT / "config.toml"
GRACE: Final = 4.0
ACCEPT_GRACE: Final = 1.0
HEADERS: Final = {"x-api-key": "sk-demo-key", "anthropic-version": "2023-06-01"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    config: Path
    process: trio.Process
    stderr: list[bytes] = field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        result = subprocess.run(
            [sys.executable, "-m", "trio_gateway", "usage", "--config", str(self.config), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [json.loads(line) for line in result.stdout.splitlines()]


@asynccontextmanager
async def running(
    tmp_path: Path, *, workers: int = 1, metrics_bind: str | None = None, token: bool = True
) -> AsyncGenerator[Server, None]:
    gateway_port, mock_port = _free_port(), _free_port()
    text = (
        SHIPPED.read_text()
        .replace("127.0.0.1:8080", f"127.0.0.1:{gateway_port}")
        .replace("127.0.0.1:8081", f"127.0.0.1:{mock_port}")
        .replace('path = "trio-gateway.db"', f'path = "{tmp_path / "ledger.db"}"')
        .replace("graceful_timeout = 60.0", f"graceful_timeout = {GRACE}")
        .replace("accept_grace = 5.0", f"accept_grace = {ACCEPT_GRACE}")
        .replace("workers = 1", f"workers = {workers}")
    )
    if metrics_bind is not None:
        text = text.replace('# bind = "127.0.0.1:9464"', f'bind = "{metrics_bind}"')
        assert metrics_bind in text
    assert f"graceful_timeout = {GRACE}" in text
    assert f"accept_grace = {ACCEPT_GRACE}" in text
    config = tmp_path / "config.toml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "TRIO_GATEWAY_METRICS_TOKEN"}
    if token:
        env["TRIO_GATEWAY_METRICS_TOKEN"] = "metrics-token"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_gateway", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    server = Server(f"http://127.0.0.1:{gateway_port}", config, process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, process, server.stderr)
            async with httpx.AsyncClient() as client:
                with trio.fail_after(30):
                    while True:
                        try:
                            if (await client.get(server.base + "/readyz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await trio.sleep(0.1)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _collect(process: trio.Process, into: list[bytes]) -> None:
    assert process.stderr is not None
    async with process.stderr:
        while chunk := await process.stderr.receive_some():
            into.append(bytes(chunk))


@dataclass
class Seen:
    """One stream as its client saw it."""

    started: trio.Event = field(default_factory=trio.Event)
    body: bytes = b""
    ended_at: float = 0.0

    @property
    def names(self) -> list[str | None]:
        return [name for name, _ in sse_events(self.body)]


async def read_stream(base: str, model: str, seen: Seen) -> None:
    body = {
        "model": model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("POST", base + "/v1/messages", json=body, headers=HEADERS) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            seen.body += chunk
            if b"content_block_delta" in seen.body:
                seen.started.set()
    seen.ended_at = trio.current_time()


async def test_s1_sigterm_lets_short_streams_finish_and_ends_the_rest_with_an_error(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as server, trio.open_nursery() as nursery:
        short = [Seen() for _ in range(8)]
        long = [Seen() for _ in range(2)]
        for seen in short:
            nursery.start_soon(read_stream, server.base, "mock-text:tokens=20,interval=0.1", seen)
        for seen in long:
            nursery.start_soon(read_stream, server.base, "mock-text:tokens=600,interval=0.1", seen)
        with trio.fail_after(20):
            for seen in short + long:
                await seen.started.wait()
        signalled = trio.current_time()
        server.process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient() as client:
            # Inside accept_grace: still accepting, but not ready and not admitting.
            ready = await client.get(server.base + "/readyz")
            healthy = await client.get(server.base + "/healthz")
            late = await client.post(
                server.base + "/v1/messages",
                json={
                    "model": "demo",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "x"}],
                },
                headers=HEADERS,
            )
        assert (ready.status_code, healthy.status_code, late.status_code) == (503, 200, 503)
        assert late.json()["error"]["type"] == "overloaded_error"
        with trio.fail_after(GRACE + 15):
            code = await server.process.wait()
        exited = trio.current_time() - signalled
    assert code == 0, b"".join(server.stderr)[-2000:]
    assert exited < GRACE + 5
    for seen in short:  # finished untouched
        assert seen.names[-1] == "message_stop"
        assert "error" not in seen.names
    for seen in long:  # cut at the end of the grace period, with an error event
        assert seen.names[-1] == "error"
        assert "message_stop" not in seen.names
        assert GRACE - 0.5 <= seen.ended_at - signalled <= GRACE + 3
    rows = server.rows()
    assert len(rows) == 10
    outcomes = sorted(str(row["outcome"]) for row in rows)
    assert outcomes == ["completed"] * 8 + ["interrupted"] * 2
    for row in rows:
        if row["outcome"] == "interrupted":
            assert row["usage_source"] in {"partial", "reported"}
            assert row["input_tokens"] == 25  # known from message_start
    log = b"".join(server.stderr).decode()
    assert "sk-demo-key" not in log


async def test_s2_a_second_sigterm_ends_the_drain_at_once_and_still_settles(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as server, trio.open_nursery() as nursery:
        long = [Seen() for _ in range(3)]
        for seen in long:
            nursery.start_soon(read_stream, server.base, "mock-text:tokens=600,interval=0.1", seen)
        with trio.fail_after(20):
            for seen in long:
                await seen.started.wait()
        server.process.send_signal(signal.SIGTERM)
        await trio.sleep(0.5)
        second = trio.current_time()
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await server.process.wait()
    assert code == 0, b"".join(server.stderr)[-2000:]
    for seen in long:
        assert seen.names[-1] == "error"
        assert seen.ended_at - second < 2.0  # not the 4 s grace
    rows = server.rows()
    assert [row["outcome"] for row in rows] == ["interrupted"] * 3
    assert all(row["finished_at"] for row in rows)
