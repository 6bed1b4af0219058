"""``trio-gateway serve`` with two workers: one socket, metrics summed across workers, a dead
worker restarted (issue 5; RELIABILITY PEER-BUGS 36).

The process runs the shipped config (built-in mock upstream) with ``workers = 2`` and a
metrics token. Load runs through real sockets while ``/metrics`` is scraped repeatedly:
whichever worker answers, the counters never go down, and at the end they equal the ledger.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Final

import httpx
import psutil
import pytest
import trio

from tests.e2e.test_shutdown_process import HEADERS, _free_port, running

pytestmark = pytest.mark.slow

METRICS: Final = {"authorization": "Bearer metrics-token"}


def total(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples in a Prometheus text exposition (optionally filtered)."""
    found = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{(.*)\}})? (\S+)", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found += float(match.group(3))
    return found


async def one_request(client: httpx.AsyncClient, base: str, index: int) -> None:
    body = {
        "model": "mock-text:tokens=20,interval=0.02",
        "max_tokens": 64,
        "stream": index % 3 != 0,
        "messages": [{"role": "user", "content": "hi"}],
    }
    # A new connection per request, as many different clients would make.
    headers = {**HEADERS, "connection": "close"}
    response = await client.post(base + "/v1/messages", json=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_two_workers_counters_stay_monotonic_and_equal_the_ledger(tmp_path: Path) -> None:
    requests = 60
    async with running(tmp_path, workers=2) as server:
        async with httpx.AsyncClient(timeout=60) as client:
            scraped: list[float] = []

            async def load() -> None:
                async with trio.open_nursery() as nursery:
                    limiter = trio.CapacityLimiter(12)

                    async def limited(index: int) -> None:
                        async with limiter:
                            await one_request(client, server.base, index)

                    for index in range(requests):
                        nursery.start_soon(limited, index)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(load)
                for _ in range(20):
                    # A new connection per scrape: whichever worker answers, the same totals.
                    answer = await client.get(
                        server.base + "/metrics", headers={**METRICS, "connection": "close"}
                    )
                    assert answer.status_code == 200
                    scraped.append(total(answer.text, "trio_gateway_requests_total"))
                    await trio.sleep(0.1)
            # Every request has ended; give the last settle steps a moment.
            with trio.fail_after(10):
                while True:
                    final = (await client.get(server.base + "/metrics", headers=METRICS)).text
                    if total(final, "trio_gateway_requests_total") == requests:
                        break
                    await trio.sleep(0.1)
        assert scraped == sorted(scraped), scraped  # never decreases, whichever worker answers
        assert scraped[-1] > scraped[0]
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.process.wait() == 0
    rows = server.rows()
    assert len(rows) == requests
    assert total(final, "trio_gateway_requests_total", outcome="completed") == requests
    output = sum(int(str(row["output_tokens"])) for row in rows)
    assert total(final, "trio_gateway_tokens_total", kind="output") == output
    assert total(final, "trio_gateway_streams_in_flight") == 0
    # Both workers served: one JSON log line per settled attempt carries the worker's pid.
    pids = set()
    for line in b"".join(server.stderr).decode().splitlines():
        if line.startswith("{") and '"attempt settled"' in line:
            pids.add(json.loads(line)["pid"])
    assert len(pids) == 2


async def test_a_worker_that_dies_is_restarted(tmp_path: Path) -> None:
    async with running(tmp_path, workers=2) as server:
        supervisor = psutil.Process(server.process.pid)
        workers = supervisor.children()
        assert len(workers) == 2
        victim = workers[0].pid
        workers[0].send_signal(signal.SIGKILL)
        with trio.fail_after(20):
            while True:
                pids = {child.pid for child in supervisor.children()}
                if len(pids) == 2 and victim not in pids:
                    break
                await trio.sleep(0.1)
        async with httpx.AsyncClient(timeout=60) as client:
            for index in range(6):
                await one_request(client, server.base, index)
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            code = await server.process.wait()
    assert code == 0
    log = b"".join(server.stderr).decode()
    assert f"(pid {victim}) died" in log
    assert len(server.rows()) == 6


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_loopback_metrics_listener_needs_no_token(tmp_path: Path, workers: int) -> None:
    port = _free_port()
    async with (
        running(tmp_path, workers=workers, metrics_bind=f"127.0.0.1:{port}", token=False) as server,
        httpx.AsyncClient(timeout=60) as client,
    ):
        for index in range(4):
            await one_request(client, server.base, index)
        public = await client.get(server.base + "/metrics")
        assert public.status_code == 404  # no token: never on the public listener
        with trio.fail_after(10):
            while True:
                scrape = await client.get(f"http://127.0.0.1:{port}/metrics")
                assert scrape.status_code == 200
                if total(scrape.text, "trio_gateway_requests_total") == 4:
                    break  # every worker's requests, summed
                await trio.sleep(0.1)
        other = await client.get(f"http://127.0.0.1:{port}/v1/messages")
        assert other.status_code == 404
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            assert await server.process.wait() == 0
