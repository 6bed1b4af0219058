"""Prometheus metrics through the whole gateway, in memory: the scrape tells what the ledger says.

What is proven here (DESIGN §2, §6, §8; RELIABILITY B8, B9, B10; PEER-BUGS 27, 36, 37):

- after scripted traffic (completed streams and unary calls of every protocol, a drained
  disconnect, an upstream data-interval timeout, a failover, a budget refusal, a translated
  request, refusals before admission) the scraped values equal the ledger exactly: requests
  per outcome, attempts per upstream / outcome / status, tokens per kind, the cost (within
  float precision of the exact decimal sum), TTFT and duration counts, timeouts by phase;
  pings equal the ping frames the clients received; the gauges are back to 0;
- disconnects are counted by phase: ``before_first_byte``, ``disconnect``, ``stalled``;
- ``/metrics`` matches its exact path only, needs the bearer token, answers 401 in the
  OpenAI shape with ``WWW-Authenticate: Bearer``, and does not exist without a token (B8);
- 10 000 bogus model names add no series (B9); no key, upstream secret or canary reaches the
  scrape (B10), with or without per-key labels (which carry the key's *name*);
- a failure inside metrics code fails no request and is counted and logged once (PEER-BUGS
  37); a failing render is a 500 and counted too;
- with ``PROMETHEUS_MULTIPROC_DIR`` two worker processes' counters are summed by one render,
  a dead worker's gauges are dropped and its counters kept (PEER-BUGS 36; subprocesses, slow).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import assert_no_secret_in_records
from tests.support import ADMIN_TOKEN, CLIENT_KEY, UPSTREAM_KEY, gateway_config, read_until_deltas
from trio_gateway._gateway import Gateway, open_gateway
from trio_gateway._ledger import AttemptRecord
from trio_gateway._mock import CANARY_KEY, CANARY_URL
from trio_gateway._protocol._names import Protocol
from trio_gateway.testing import AsgiClient, AsgiResponse, MockUpstream, open_memory_connector

METRICS_TOKEN: Final = "metrics-token-8e1f4c0d"
BEARER: Final = {"authorization": f"Bearer {METRICS_TOKEN}"}
PATHS: Final[Mapping[Protocol, str]] = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
}
PROTOCOLS: Final[tuple[Protocol, ...]] = tuple(PATHS)
#: The keepalive frames of protocols.md §4.5.
PING: Final[Mapping[Protocol, bytes]] = {
    "anthropic": b'event: ping\ndata: {"type": "ping"}\n\n',
    "openai-chat": b": keepalive\n\n",
    "openai-responses": b": keepalive\n\n",
}
KINDS: Final[Mapping[str, str]] = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write_5m": "cache_write_5m_tokens",
    "cache_write_1h": "cache_write_1h_tokens",
    "reasoning": "reasoning_tokens",
}
Labels = frozenset[tuple[str, str]]


# --------------------------------------------------------------------------- helpers


def body(
    protocol: Protocol, model: str, *, stream: bool = True, limit: int = 64
) -> dict[str, object]:
    """A minimal valid request with output cap ``limit``."""
    if protocol == "openai-responses":
        return {"model": model, "input": "Hi", "stream": stream, "max_output_tokens": limit}
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
        "max_tokens": limit,
    }


def auth(protocol: Protocol) -> dict[str, str]:
    if protocol == "anthropic":
        return {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {CLIENT_KEY}"}


async def post(
    client: AsgiClient, protocol: Protocol, model: str, *, stream: bool = True, limit: int = 64
) -> AsgiResponse:
    """Send a request and read the whole response."""
    return await client.request(
        "POST", PATHS[protocol], json=body(protocol, model, stream=stream, limit=limit),
        headers=auth(protocol),
    )  # fmt: skip


@asynccontextmanager
async def open_metered_gateway(
    mock: MockUpstream,
    *,
    key: Mapping[str, object] | None = None,
    per_key_labels: bool = False,
    metrics_token: str | None = METRICS_TOKEN,
    **streaming: object,
) -> AsyncGenerator[tuple[Gateway, AsgiClient]]:
    """A gateway on ``mock`` (in memory) that serves ``/metrics`` with ``METRICS_TOKEN``."""
    config = gateway_config(streaming=streaming, key=key, metrics_token=metrics_token)
    if per_key_labels:
        config = replace(config, metrics=replace(config.metrics, per_key_labels=True))
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        yield gateway, AsgiClient(gateway)
    assert_no_secret_in_records(gateway)


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` answer, parsed."""

    text: str
    samples: tuple[tuple[str, Labels, float], ...]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for n, have, v in self.samples if n == name and wanted <= have)

    def series(self, name: str) -> dict[Labels, float]:
        return {have: v for n, have, v in self.samples if n == name}


def parse_scrape(text: str) -> Scrape:
    samples = tuple(
        (sample.name, frozenset(sample.labels.items()), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )
    return Scrape(text, samples)


async def scrape(client: AsgiClient) -> Scrape:
    response = await client.request("GET", "/metrics", headers=BEARER)
    assert response.status == 200, response.body
    return parse_scrape(response.body.decode())


def final_records(records: list[AttemptRecord]) -> list[AttemptRecord]:
    """Each request's last attempt (its outcome is the request's)."""
    last: dict[str, AttemptRecord] = {}
    for record in records:
        if record.request_id not in last or record.attempt > last[record.request_id].attempt:
            last[record.request_id] = record
    return list(last.values())


async def call_raw(
    gateway: Gateway,
    path: str,
    payload: bytes,
    headers: Mapping[str, str],
    *,
    disconnect_at: float | None = None,
) -> int | None:
    """Run one request straight through the ASGI app (no test client: cheap enough for
    thousands); the client disconnects at ``disconnect_at``. Returns the status sent, if any."""
    delivered = False
    status: int | None = None

    async def receive() -> dict[str, object]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        if disconnect_at is None:
            await trio.sleep_forever()
        await trio.sleep_until(disconnect_at)
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            value = message["status"]
            assert isinstance(value, int)
            status = value

    scope: dict[str, object] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    await gateway(scope, receive, send)
    return status


# ------------------------------------------------------ the scrape equals the ledger


async def test_scraped_values_equal_the_ledger_after_scripted_traffic(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    key = {"budget_usd": "1", "budget_period": "total"}
    async with open_metered_gateway(
        mock, key=key, data_interval_timeout=30, on_client_disconnect="drain"
    ) as (gateway, client):
        streamed = [await post(client, p, "mock-text") for p in PROTOCOLS]
        unary = [await post(client, p, "mock-tools", stream=False) for p in PROTOCOLS]
        thinking = await post(client, "openai-responses", "mock-thinking", stream=False)
        drain_body = body("openai-responses", "mock-text:tokens=10,interval=1")
        async with client.stream(
            "POST", PATHS["openai-responses"], json=drain_body, headers=auth("openai-responses")
        ) as drained:
            await read_until_deltas(drained, "openai-responses", 2)
            await drained.disconnect()
        timed_out = await post(client, "openai-chat", "mock-stall:after=3,secs=3600")
        failover = await post(client, "anthropic", "failover-x")
        translated = await post(client, "anthropic", "to-chat/mock-text")
        # 200 000 output tokens reserve 3 USD: more than the whole 1 USD budget.
        broke = await post(client, "openai-chat", "mock-text", limit=200_000)
        unknown = await post(client, "anthropic", "no-such-model")
        no_key = await client.request("POST", PATHS["openai-chat"], json=body("openai-chat", "x"))
        # Let the drain finish: the scrape is compared with settled rows.
        await trio.sleep(20)
        assert gateway.ledger.in_flight() == []
        result = await scrape(client)
        records = gateway.ledger.records

    served = [*streamed, *unary, thinking, drained, timed_out, failover, translated]
    assert [r.status for r in served] == [200] * len(served)
    assert (broke.status, unknown.status, no_key.status) == (429, 404, 401)
    assert "budget" in broke.body.decode()
    assert b"upstream sent nothing for 30 s" in timed_out.body

    finals = final_records(records)
    # Requests by outcome: the ledger's final outcome per request, plus the two requests
    # refused before admission, which leave no row.
    by_outcome = Counter(record.outcome for record in finals)
    by_outcome["rejected"] += 2
    assert by_outcome == {
        "completed": 9,
        "client_disconnected": 1,
        "upstream_timeout": 1,
        "rejected": 3,
    }
    for outcome, count in by_outcome.items():
        assert result.value("trio_gateway_requests_total", outcome=outcome) == count
    assert sum(result.series("trio_gateway_requests_total").values()) == len(finals) + 2
    # Statuses the callers got: a stream committed before its timeout is still a 200.
    assert result.value("trio_gateway_requests_total", status="200") == 11
    assert result.value("trio_gateway_requests_total", status="429", model="mock-*") == 1
    assert result.value("trio_gateway_requests_total", status="404", model="other") == 1
    assert result.value("trio_gateway_requests_total", status="401", model="other") == 1
    assert result.value("trio_gateway_requests_total", model="failover-*") == 1
    assert result.value("trio_gateway_requests_total", model="to-chat/*") == 1
    assert (
        result.value(
            "trio_gateway_requests_total",
            client_protocol="openai-chat",
            model="mock-*",
            outcome="upstream_timeout",
            status="200",
        )
        == 1
    )

    # Upstream attempts: one per ledger row with an upstream call, same labels.
    attempts = Counter(
        (record.upstream, record.outcome, "none" if record.status is None else str(record.status))
        for record in records
        if record.attempt
    )
    assert attempts["anthropic", "upstream_error", "503"] == 1  # the failover's first try
    scraped = {
        (dict(labels)["upstream"], dict(labels)["outcome"], dict(labels)["status"]): value
        for labels, value in result.series("trio_gateway_upstream_attempts_total").items()
    }
    assert scraped == attempts

    # Tokens per kind and the cost: sums over every row.
    for kind, field in KINDS.items():
        expected = sum(getattr(record.usage, field) for record in records)
        assert result.value("trio_gateway_tokens_total", kind=kind) == expected, kind
    assert result.value("trio_gateway_tokens_total", kind="reasoning") > 0
    exact = sum((record.cost_usd or Decimal(0) for record in records), Decimal(0))
    assert exact > 0
    assert result.value("trio_gateway_cost_usd_total") == pytest.approx(float(exact), rel=1e-12)
    assert result.value("trio_gateway_cost_usd_total", model="to-chat/*") == pytest.approx(
        float(sum(r.cost_usd or 0 for r in records if r.model == "to-chat/mock-text")), rel=1e-12
    )

    # Histograms: a duration per request that reached an upstream, a TTFT per request whose
    # final attempt sent content (the ledger's ttft_ms), and the same seconds.
    attempted = [record for record in finals if record.attempt]
    assert result.value("trio_gateway_request_duration_seconds_count") == len(attempted) == 11
    with_ttft = [record.ttft_ms for record in attempted if record.ttft_ms is not None]
    assert result.value("trio_gateway_time_to_first_token_seconds_count") == len(with_ttft)
    assert result.value("trio_gateway_time_to_first_token_seconds_sum") == pytest.approx(
        sum(with_ttft) / 1000, rel=1e-9
    )
    assert result.value("trio_gateway_request_duration_seconds_bucket", le="+Inf") == 11

    # Timeouts by phase, disconnects by phase, pings, gauges.
    assert result.series("trio_gateway_upstream_timeouts_total") == {
        frozenset({("phase", "data_interval")}): 1
    }
    assert result.series("trio_gateway_client_disconnects_total") == {
        frozenset({("phase", "disconnect")}): 1
    }
    pings = sum(r.body.count(PING[p]) for r, p in zip(streamed, PROTOCOLS, strict=True))
    pings += timed_out.body.count(PING["openai-chat"])
    pings += drained.body.count(PING["openai-responses"])
    pings += failover.body.count(PING["anthropic"]) + translated.body.count(PING["anthropic"])
    assert pings >= 2  # the 30 s of silence before the timeout
    assert result.value("trio_gateway_keepalive_pings_total") == pings
    assert result.value("trio_gateway_streams_in_flight") == 0
    assert result.value("trio_gateway_drains_in_flight") == 0
    assert result.value("trio_gateway_metrics_errors_total") == 0


async def test_gauges_follow_the_relay_while_streams_and_drains_are_open(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_metered_gateway(mock, on_client_disconnect="drain") as (gateway, client):
        request = body("anthropic", "mock-text:tokens=20,interval=1")
        async with client.stream(
            "POST", PATHS["anthropic"], json=request, headers=auth("anthropic")
        ) as resp:
            await read_until_deltas(resp, "anthropic", 2)
            during = await scrape(client)
            await resp.disconnect()
            await trio.sleep(1)
            draining = await scrape(client)
            assert gateway.relay.drains_in_flight == 1
        await trio.sleep(30)
        after = await scrape(client)
    assert during.value("trio_gateway_streams_in_flight") == 1
    assert during.value("trio_gateway_drains_in_flight") == 0
    assert draining.value("trio_gateway_streams_in_flight") == 1
    assert draining.value("trio_gateway_drains_in_flight") == 1
    assert after.value("trio_gateway_streams_in_flight") == 0
    assert after.value("trio_gateway_drains_in_flight") == 0


async def test_disconnects_are_counted_by_phase(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_metered_gateway(
        mock, on_client_disconnect="drain", client_buffer_bytes=2000
    ) as (gateway, client):
        # Before any byte: a stream whose upstream has not answered when the client leaves
        # (t=1, before commit_delay).
        stalled_head = json.dumps(body("openai-chat", "mock-stall_headers:secs=60")).encode()
        status = await call_raw(
            gateway,
            PATHS["openai-chat"],
            stalled_head,
            auth("openai-chat"),
            disconnect_at=trio.current_time() + 1,
        )
        assert status is None
        # Stalled: the client stops reading and more than client_buffer_bytes queue up.
        request = body("anthropic", "mock-text:tokens=30")
        async with client.stream(
            "POST", PATHS["anthropic"], json=request, headers=auth("anthropic")
        ) as resp:
            resp.stop_reading()
            await trio.sleep(1)
            await resp.disconnect()
        result = await scrape(client)
    assert result.series("trio_gateway_client_disconnects_total") == {
        frozenset({("phase", "before_first_byte")}): 1,
        frozenset({("phase", "stalled")}): 1,
    }
    assert (
        result.value("trio_gateway_requests_total", outcome="client_disconnected", status="none")
        == 1
    )
    assert (
        result.value("trio_gateway_requests_total", outcome="client_disconnected", status="200")
        == 1
    )


# --------------------------------------------------------------------- the route (B8)


async def test_metrics_route_is_exact_and_needs_the_token(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_metered_gateway(mock) as (_, client):
        ok = await client.request("GET", "/metrics", headers=BEARER)
        assert ok.status == 200
        assert ok.headers["content-type"] == CONTENT_TYPE_LATEST
        assert ok.headers["cache-control"] == "no-store"
        assert b"# TYPE trio_gateway_requests_total counter" in ok.body
        # A query string does not change the path: the same route, the same answer.
        with_query = await client.request("GET", "/metrics?x=1", headers=BEARER)
        assert with_query.status == 200
        for path in ("/metrics/", "/metrics/x", "/foo/metrics", "/metrics/../x", "/Metrics"):
            near = await client.request("GET", path, headers=BEARER)
            assert near.status == 404, path
            assert b"trio_gateway_" not in near.body
        refusals = [
            {},
            {"authorization": "Bearer wrong"},
            {"authorization": "Bearer"},
            {"authorization": f"Basic {METRICS_TOKEN}"},
            {"authorization": f"Token {METRICS_TOKEN}"},
            {"authorization": METRICS_TOKEN},
            {"x-api-key": METRICS_TOKEN},
            {"authorization": f"Bearer {METRICS_TOKEN}x"},
            {"authorization": f"Bearer {CLIENT_KEY}"},
            {"authorization": f"Bearer {ADMIN_TOKEN}"},
        ]
        for headers in refusals:
            refused = await client.request("GET", "/metrics", headers=headers)
            assert refused.status == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
            error = refused.json()
            assert isinstance(error, dict)
            assert error["error"]["type"] == "authentication_error"  # the OpenAI shape
            assert b"trio_gateway_" not in refused.body
        lower = await client.request(
            "GET", "/metrics", headers={"authorization": f"bearer  {METRICS_TOKEN} "}
        )
        assert lower.status == 200  # RFC 9110 §11.1: the scheme is case-insensitive
        posted = await client.request("POST", "/metrics", headers=BEARER)
        assert (posted.status, posted.headers["allow"]) == (405, "GET")


async def test_metrics_route_does_not_exist_without_a_token(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_metered_gateway(mock, metrics_token=None) as (gateway, client):
        assert gateway.config.metrics.token is None
        for headers in ({}, BEARER, {"authorization": "Bearer "}):
            route = await client.request("GET", "/metrics", headers=headers)
            unknown = await client.request("GET", "/nothing", headers=headers)
            assert route.status == unknown.status == 404
            assert set(route.headers) == set(unknown.headers)
            assert route.body.replace(b"/metrics", b"/nothing") == unknown.body


# ------------------------------------------------------ cardinality (B9), secrets (B10)


def request_series(result: Scrape) -> int:
    """The sample lines of ``trio_gateway_requests_total`` in the scrape's text."""
    return sum(line.startswith("trio_gateway_requests_total{") for line in result.text.split("\n"))


async def test_bogus_model_names_leave_the_series_count_bounded(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_metered_gateway(mock) as (gateway, client):
        headers = auth("openai-chat")
        path = PATHS["openai-chat"]

        async def bogus(name: str) -> int | None:
            payload = json.dumps(body("openai-chat", name, stream=False)).encode()
            return await call_raw(gateway, path, payload, headers)

        assert await bogus("bogus-model-warmup") == 404
        assert await bogus("failover-warmup") == 200
        before = await scrape(client)
        for n in range(10_000):
            assert await bogus(f"bogus-{n}-{'x' * (n % 7)}") == 404
        for n in range(20):  # names a pattern serves: labelled with the pattern
            assert await bogus(f"failover-{n}") == 200
        after = await scrape(client)
    assert request_series(before) == request_series(after) == 2
    assert after.value("trio_gateway_requests_total", model="other") == 10_001
    assert after.value("trio_gateway_requests_total", model="failover-*") == 21
    assert (
        after.series("trio_gateway_tokens_total").keys()
        == before.series("trio_gateway_tokens_total").keys()
    )
    assert "bogus" not in after.text
    assert len(after.text.split("\n")) == len(before.text.split("\n"))


@pytest.mark.parametrize("per_key_labels", [False, True])
async def test_no_secret_reaches_the_scrape(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock, per_key_labels: bool
) -> None:
    async with open_metered_gateway(mock, per_key_labels=per_key_labels) as (_, client):
        for protocol in PROTOCOLS:
            # The upstream answers 401 with a body that echoes the canary key and URL.
            canary = await post(client, protocol, "mock-canary", stream=False)
            assert canary.status == 502
            assert (await post(client, protocol, "mock-canary")).status == 502
            assert (await post(client, protocol, "mock-text")).status == 200
        result = await scrape(client)
    for secret in (CANARY_KEY, CANARY_URL, UPSTREAM_KEY, CLIENT_KEY, METRICS_TOKEN, ADMIN_TOKEN):
        assert secret not in result.text
    assert "CANARY" not in result.text
    assert result.value("trio_gateway_upstream_attempts_total", status="401") == 6
    keyed = result.value("trio_gateway_requests_total", key="alice")
    assert keyed == (9 if per_key_labels else 0)
    if per_key_labels:
        assert result.value("trio_gateway_tokens_total", key="alice", kind="output") > 0
        assert result.value("trio_gateway_cost_usd_total", key="alice") > 0
    else:
        assert all("key" not in dict(labels) for _, labels, _ in result.samples)


# ---------------------------------------------------------- metrics failures (PEER-BUGS 37)


async def test_a_metrics_failure_fails_no_request_and_is_counted(
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(amount: float = 1) -> None:
        raise RuntimeError("metric storage broke")

    async with open_metered_gateway(mock) as (gateway, client):
        metrics = gateway.metrics
        child = metrics.upstream_attempts_total.labels("anthropic", "completed", "200")
        monkeypatch.setattr(child, "inc", broken)
        monkeypatch.setattr(metrics.keepalive_pings_total, "inc", broken)
        with caplog.at_level(logging.ERROR, logger="trio_gateway.metrics"):
            first = await post(client, "anthropic", "mock-text")
            second = await post(client, "anthropic", "mock-text", stream=False)
            # The head comes after commit_delay: the gateway commits with a ping, whose
            # count fails too.
            slow = await post(client, "anthropic", "mock-stall_headers:secs=12")
        for response in (first, second, slow):
            assert response.status == 200
        assert b"message_stop" in first.body
        assert b"message_stop" in slow.body
        assert [r.outcome for r in gateway.ledger.records] == ["completed"] * 3
        result = await scrape(client)
    # Three attempts, and the pings of the slow one, each failed once: all counted; each
    # place logged once.
    pings = slow.body.count(PING["anthropic"])
    assert pings >= 1
    assert result.value("trio_gateway_metrics_errors_total") == 3 + pings
    logged = [r for r in caplog.records if r.name == "trio_gateway.metrics"]
    assert sorted(r.getMessage().split(" in ")[1].split(";")[0] for r in logged) == [
        "attempt_settled",
        "ping_sent",
    ]
    assert all(r.exc_info is not None for r in logged)
    # Everything else still counted.
    assert result.value("trio_gateway_requests_total", outcome="completed") == 3
    assert result.value("trio_gateway_tokens_total", kind="output") > 0


async def test_a_failing_render_is_a_500_and_counted(
    mock: MockUpstream, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("collector broke")

    async with open_metered_gateway(mock) as (gateway, client):
        with monkeypatch.context() as patch:
            patch.setattr(gateway.metrics.registry, "collect", broken)
            failed = await client.request("GET", "/metrics", headers=BEARER)
        assert failed.status == 500
        assert b"collector broke" not in failed.body
        result = await scrape(client)
    assert result.value("trio_gateway_metrics_errors_total") == 1


# ----------------------------------------------------- several workers (PEER-BUGS 36)

_WORKER: Final = """
import sys
from trio_gateway._ledger import AttemptRecord
from trio_gateway._metrics import Metrics
from trio_gateway._protocol._usage import Usage
from decimal import Decimal

metrics = Metrics(model_names=["m"])
record = AttemptRecord(
    request_id="r", attempt=1, key="alice", model="m", upstream="up", upstream_model="m",
    client_protocol="anthropic", upstream_protocol="anthropic", stream=True, status=200,
    outcome="completed", usage=Usage(input_tokens=10, output_tokens=5),
    cost_usd=Decimal("0.25"),
)
for _ in range(int(sys.argv[1])):
    metrics.attempt_settled(record, model="m", error=None)
    metrics.ping_sent()
metrics.set_streams_in_flight(int(sys.argv[1]))
print(__import__("os").getpid())
"""

_RENDER: Final = """
import sys
from trio_gateway._metrics import Metrics, mark_worker_dead

for pid in sys.argv[1:]:
    mark_worker_dead(int(pid))
sys.stdout.write(Metrics(model_names=["m"]).render().decode())
"""


def _python(code: str, *args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_workers_counters_are_summed_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    first = _python(_WORKER, "2", env=env).strip()
    second = _python(_WORKER, "3", env=env).strip()
    assert first != second
    both = parse_scrape(_python(_RENDER, env=env))
    assert both.value("trio_gateway_upstream_attempts_total", upstream="up") == 5
    assert both.value("trio_gateway_tokens_total", kind="input", model="m") == 50
    assert both.value("trio_gateway_cost_usd_total", model="m") == pytest.approx(1.25)
    assert both.value("trio_gateway_keepalive_pings_total") == 5
    assert both.value("trio_gateway_streams_in_flight") == 5  # livesum
    # The first worker died: its gauge no longer counts, its counters still do (monotonic).
    after = parse_scrape(_python(_RENDER, first, env=env))
    assert after.value("trio_gateway_streams_in_flight") == 3
    assert after.value("trio_gateway_upstream_attempts_total", upstream="up") == 5
    # Without the variable the scrape is the process's own registry: empty here.
    alone = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    own = parse_scrape(_python(_RENDER, env=alone))
    assert own.value("trio_gateway_keepalive_pings_total") == 0


@pytest.mark.slow
def test_a_variable_set_after_import_is_refused(tmp_path: Path) -> None:
    code = f"""
    import os
    import prometheus_client
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
    from trio_gateway._metrics import Metrics
    try:
        Metrics(model_names=[])
    except RuntimeError as error:
        print(error)
    """
    alone = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    assert "before prometheus_client is first imported" in _python(code, env=alone)
