"""Billing through the whole gateway, in memory: what the SQLite ledger ends up saying.

What is proven here (DESIGN §5, §8; RELIABILITY §4 I1, I3, I7, I8, I11, rows B1, B4, B7;
PEER-BUGS 21, 22, 25, 28–30, 33):

- a streamed and a non-streamed run of the same request bill the same six token counts and
  the same exact cost, equal to the value computed by hand from the mock's usage and the
  test prices (input 3, output 15, cache read 0.30, cache write 5 m 3.75, 1 h 6 USD/M);
- the rows in the SQLite file equal the in-memory records after every kind of ending
  (completed, drained, cancelled, failover, rejected), one row per attempt even under 200
  concurrent requests, and a repeated settle changes nothing;
- budgets: 100 concurrent requests against a budget for 10 admit exactly 10, and the
  budget's spent is the exact sum of the ledger's costs (conservation, also after a restart);
- invalid output limits are refused before any upstream call and leave no row;
- long streams are checkpointed while in flight (I3).

The gateway runs against the mock upstream over memory streams with a *file* ledger, so the
rows can be read back from another connection (``read_rows``). The ledger's writer thread
runs on real time while ``autojump_clock`` runs virtual time: whenever a test waits for the
thread (``Ledger.flush``) it freezes the mock clock first (:func:`persisted`), or virtual
time would race ahead while the thread commits. Requests wait for their write-ahead commit
too; :func:`open_billing_gateway` removes the deadlines virtual time could jump to then.

Hand-computed costs, in micro-dollars (USD per million tokens × tokens):
- the mock's input side on an Anthropic upstream: 25 uncached × 3 + 100 cache reads × 0.30
  + 20 cache writes (5 m) × 3.75 + 10 cache writes (1 h) × 6 = 75 + 30 + 75 + 60 = 240;
- on an OpenAI upstream (no cache-write tiers; cached tokens are part of the prompt):
  25 × 3 + 100 × 0.30 = 105;
- plus 15 per output token.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest
import trio
import trio.testing

from tests.conftest import assert_no_secret_in_records
from tests.support import (
    CLIENT_KEY,
    PRICE,
    content_deltas,
    gateway_config,
    read_until_deltas,
    sse_events,
)
from trio_gateway import _budgets
from trio_gateway._budgets import window_start
from trio_gateway._gateway import Gateway, open_gateway
from trio_gateway._ledger import read_rows, spent_since
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._usage import Usage
from trio_gateway.testing import AsgiClient, AsgiResponse, MockUpstream, open_memory_connector

PATHS: Final[Mapping[Protocol, str]] = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
}
PROTOCOLS: Final[tuple[Protocol, ...]] = tuple(PATHS)
ALL: Final = pytest.mark.parametrize("protocol", PROTOCOLS)
#: The upstream serving each client protocol for ``mock-*`` models (no translation yet).
UPSTREAM: Final[Mapping[Protocol, str]] = {
    "anthropic": "anthropic",
    "openai-chat": "chat",
    "openai-responses": "responses",
}
MILLION: Final = Decimal(1_000_000)
#: A field left out of the request body altogether (unlike an explicit ``null``).
MISSING: Final = "<missing>"
Row = dict[str, object]


@dataclass(frozen=True, slots=True)
class Bill:
    """The six token counts of a ledger row (DESIGN §8 semantics)."""

    input: int
    output: int
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0

    def row(self) -> dict[str, int]:
        return {
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_read_tokens": self.cache_read,
            "cache_write_5m_tokens": self.cache_write_5m,
            "cache_write_1h_tokens": self.cache_write_1h,
            "reasoning_tokens": self.reasoning,
        }


NOTHING: Final = Bill(0, 0)
#: What an Anthropic ``message_start`` alone tells: the input side, and output 1.
#: 240 + 1 × 15 = 255 µ$.
START: Final = Bill(25, 1, 100, 20, 10)
START_COST: Final = Decimal("0.000255")


def text_bill(protocol: Protocol, output: int) -> Bill:
    """The full usage of a ``text`` answer with ``output`` deltas."""
    if protocol == "anthropic":
        return Bill(25, output, 100, 20, 10)
    return Bill(25, output, 100)


def text_cost(protocol: Protocol, output: int) -> Decimal:
    """240 (Anthropic) or 105 (OpenAI) µ$ of input side, plus 15 µ$ per output token."""
    base = 240 if protocol == "anthropic" else 105
    return Decimal(base + 15 * output) / MILLION


# --------------------------------------------------------------------------- helpers


def body(protocol: Protocol, model: str, *, stream: bool, limit: object = 256) -> dict[str, object]:
    """A minimal valid request; ``limit`` is the protocol's output cap (``MISSING``: none)."""
    if protocol == "openai-responses":
        out: dict[str, object] = {"model": model, "input": "Hi", "stream": stream}
        field = "max_output_tokens"
    else:
        out = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
        field = "max_tokens"
    if limit != MISSING:
        out[field] = limit
    return out


def auth(protocol: Protocol) -> dict[str, str]:
    if protocol == "anthropic":
        return {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {CLIENT_KEY}"}


def request_id(protocol: Protocol, response: AsgiResponse) -> str:
    return response.headers["request-id" if protocol == "anthropic" else "x-request-id"]


def error_message(response: AsgiResponse) -> str:
    """The ``error.message`` of a pre-commit error body (same path in every protocol)."""
    error = as_dict(response.json())["error"]
    message = as_dict(error)["message"]
    assert isinstance(message, str)
    return message


def as_dict(value: object) -> dict[str, object]:
    assert isinstance(value, dict), value
    return value


async def post(
    client: AsgiClient, protocol: Protocol, model: str, *, stream: bool, limit: object = 256
) -> AsgiResponse:
    """Send a request and read the whole response."""
    return await client.request(
        "POST", PATHS[protocol], json=body(protocol, model, stream=stream, limit=limit),
        headers=auth(protocol),
    )  # fmt: skip


@contextmanager
def frozen(clock: trio.testing.MockClock | None) -> Generator[None]:
    """Stop the mock clock's autojump while waiting on the ledger's writer thread.

    The thread commits in real time; with autojump on, trio sees every task blocked and
    jumps virtual time to the next deadline, so streams would race on meanwhile.
    """
    if clock is None:
        yield
        return
    clock.autojump_threshold = math.inf
    try:
        yield
    finally:
        clock.autojump_threshold = 0


async def persisted(gateway: Gateway, clock: trio.testing.MockClock | None) -> list[Row]:
    """Every row as the SQLite file has it, once everything queued so far is committed."""
    with frozen(clock):
        await gateway.ledger.flush()
    return read_rows(gateway.config.ledger.path)


def tokens(row: Row) -> dict[str, object]:
    return {name: row[name] for name in Bill(0, 0).row()}


def cost(row: Row) -> Decimal:
    value = row["cost_usd"]
    assert isinstance(value, str), row
    return Decimal(value)


def assert_rows_equal_records(rows: Sequence[Row], gateway: Gateway) -> None:
    """The SQLite rows are exactly the in-memory records, field by field."""
    records = [record.as_json() for record in gateway.ledger.records]
    by_attempt = {(row["request_id"], row["attempt"]): row for row in rows}
    assert len(by_attempt) == len(rows) == len(records)
    for record in records:
        assert by_attempt[record["request_id"], record["attempt"]] == record
    assert gateway.ledger.in_flight() == []


@asynccontextmanager
async def open_billing_gateway(
    mock: MockUpstream,
    db: Path,
    *,
    key: Mapping[str, object] | None = None,
    models: list[dict[str, object]] | None = None,
    **streaming: object,
) -> AsyncGenerator[tuple[Gateway, AsgiClient]]:
    """A gateway on ``mock`` (in memory) whose ledger is the SQLite file ``db``.

    Keepalives are off and the response is never committed before the upstream answers
    (``commit_delay`` infinite, which the config file cannot say): while a request waits
    for its write-ahead commit (real time), autojump moves virtual time to the next
    deadline, however far, and those two would then commit the response (no failover after
    that) and add pings. Nothing here is about commit timing (``test_relay_stream`` is).
    """
    streaming = {"keepalive_interval": 0, **streaming}
    config = gateway_config(streaming=streaming, key=key, models=models, ledger_path=str(db))
    config = replace(config, streaming=replace(config.streaming, commit_delay=math.inf))
    async with (
        open_memory_connector(mock) as connector,
        open_gateway(config, connector=connector) as gateway,
    ):
        yield gateway, AsgiClient(gateway)
    assert_no_secret_in_records(gateway)


def by_request(rows: Sequence[Row]) -> dict[object, list[tuple[object, ...]]]:
    """Per request id: (attempt, upstream, status, outcome, usage_source) of each row."""
    out: dict[object, list[tuple[object, ...]]] = {}
    for row in sorted(rows, key=lambda r: (str(r["request_id"]), str(r["attempt"]))):
        out.setdefault(row["request_id"], []).append(
            (row["attempt"], row["upstream"], row["status"], row["outcome"], row["usage_source"])
        )
    return out


# ------------------------------------------------- streamed and non-streamed bill the same

#: (protocol, model, the usage both runs must bill, its cost computed by hand)
SAME_BILL: Final = [
    # 3 text deltas + 4 tool-argument fragments = 7 output: 240 + 105 = 345 µ$
    ("anthropic", "mock-tools", Bill(25, 7, 100, 20, 10), "0.000345"),
    # 8 text + 12 thinking = 20 output (Anthropic reports no separate thinking count):
    # 240 + 300 = 540 µ$
    ("anthropic", "mock-thinking", Bill(25, 20, 100, 20, 10), "0.00054"),
    # message_delta usage 10, 25, 40 is cumulative, never summed (RELIABILITY U15):
    # 240 + 600 = 840 µ$
    ("anthropic", "mock-cumulative", Bill(25, 40, 100, 20, 10), "0.00084"),
    # input and cache counts only in the final message_delta (PEER-BUGS 29): 240 + 120
    ("anthropic", "mock-usage_in_delta", Bill(25, 8, 100, 20, 10), "0.00036"),
    # prompt 125 includes 100 cached: 105 + 105 = 210 µ$
    ("openai-chat", "mock-tools", Bill(25, 7, 100), "0.00021"),
    # 20 output of which 12 reasoning: 105 + 300 = 405 µ$
    ("openai-chat", "mock-thinking", Bill(25, 20, 100, reasoning=12), "0.000405"),
    # usage riding on the finish chunk that still has choices (PEER-BUGS 28): 105 + 120
    ("openai-chat", "mock-usage_with_choices", Bill(25, 8, 100), "0.000225"),
    ("openai-responses", "mock-tools", Bill(25, 7, 100), "0.00021"),
    ("openai-responses", "mock-thinking", Bill(25, 20, 100, reasoning=12), "0.000405"),
]


@pytest.mark.parametrize(("protocol", "model", "expected", "expected_cost"), SAME_BILL)
async def test_streamed_and_unary_runs_bill_the_same(
    tmp_path: Path,
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    protocol: Protocol,
    model: str,
    expected: Bill,
    expected_cost: str,
) -> None:
    # RELIABILITY §4 gap 6 / PEER-BUGS 28, 31: the same request streamed and not streamed
    # must cost the same, in the rows read back from the SQLite file.
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):
        streamed = await post(client, protocol, model, stream=True)
        unary = await post(client, protocol, model, stream=False)
        assert (streamed.status, unary.status) == (200, 200)
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
    by_id = {row["request_id"]: row for row in rows}
    assert len(rows) == len(by_id) == 2
    stream_row = by_id[request_id(protocol, streamed)]
    unary_row = by_id[request_id(protocol, unary)]
    assert (stream_row["stream"], unary_row["stream"]) == (True, False)
    for row in (stream_row, unary_row):
        assert (row["attempt"], row["upstream"], row["status"]) == (1, UPSTREAM[protocol], 200)
        assert (row["outcome"], row["usage_source"]) == ("completed", "reported")
    assert tokens(stream_row) == tokens(unary_row) == expected.row()
    assert cost(stream_row) == cost(unary_row) == Decimal(expected_cost)
    assert len(mock.requests) == 2


# ------------------------------------------------- persisted rows equal in-memory records


async def test_rows_equal_records_after_scripted_traffic(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    """Completed (streamed and not), drained disconnect, failover, and the three refusals
    (concurrency, budget, model not allowed): SQLite holds exactly the records."""
    key = {
        "budget_usd": "1",
        "budget_period": "total",
        "max_concurrency": 1,
        "models": ["mock-*", "failover-*"],
    }
    async with open_billing_gateway(mock, tmp_path / "ledger.db", key=key) as (gateway, client):
        completed = await post(client, "anthropic", "mock-text", stream=True)
        unary = await post(client, "openai-chat", "mock-tools", stream=False)
        drain_body = body("openai-responses", "mock-text:tokens=10,interval=1", stream=True)
        async with client.stream(
            "POST", PATHS["openai-responses"], json=drain_body, headers=auth("openai-responses")
        ) as drained:
            await read_until_deltas(drained, "openai-responses", 2)
            await drained.disconnect()
        failover = await post(client, "anthropic", "failover-x", stream=True)
        held_body = body("anthropic", "mock-text:tokens=3,interval=1", stream=True)
        async with client.stream(
            "POST", PATHS["anthropic"], json=held_body, headers=auth("anthropic")
        ) as held:
            busy = await post(client, "openai-chat", "mock-text", stream=False)
            await held.read()
        # 64 000 output tokens reserve 0.96 USD: it fits the 1 USD budget (a request whose own
        # reservation does not fit is refused); the next request's 10 000 output tokens
        # (0.15 USD) then no longer fit.
        big_body = body("anthropic", "mock-text:tokens=3,interval=1", stream=True, limit=64_000)
        async with client.stream(
            "POST", PATHS["anthropic"], json=big_body, headers=auth("anthropic")
        ) as big:
            broke = await post(client, "openai-responses", "mock-text", stream=True, limit=10_000)
            await big.read()
        forbidden = await post(client, "anthropic", "demo", stream=False)
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)

    assert [r.status for r in (completed, unary, drained, failover, held, big)] == [200] * 6
    assert (busy.status, broke.status, forbidden.status) == (429, 429, 403)
    assert "max_concurrency" in error_message(busy)
    assert "budget" in error_message(broke)
    assert by_request(rows) == {
        request_id("anthropic", completed): [(1, "anthropic", 200, "completed", "reported")],
        request_id("openai-chat", unary): [(1, "chat", 200, "completed", "reported")],
        request_id("openai-responses", drained): [
            (1, "responses", 200, "client_disconnected", "reported")
        ],
        request_id("anthropic", failover): [
            (1, "anthropic", 503, "upstream_error", "none"),
            (2, "anthropic-b", 200, "completed", "reported"),
        ],
        request_id("anthropic", held): [(1, "anthropic", 200, "completed", "reported")],
        request_id("openai-chat", busy): [(0, "", 429, "rejected", "none")],
        request_id("anthropic", big): [(1, "anthropic", 200, "completed", "reported")],
        request_id("openai-responses", broke): [(0, "", 429, "rejected", "none")],
        request_id("anthropic", forbidden): [(0, "", 403, "rejected", "none")],
    }
    rows_by_id = {(row["request_id"], row["attempt"]): row for row in rows}
    drained_row = rows_by_id[request_id("openai-responses", drained), 1]
    assert tokens(drained_row) == text_bill("openai-responses", 10).row()  # drained to the end
    assert cost(drained_row) == Decimal("0.000255")  # 105 + 150 µ$
    first, second = (rows_by_id[request_id("anthropic", failover), n] for n in (1, 2))
    assert (first["upstream_model"], second["upstream_model"]) == (
        "mock-status:code=503",
        "mock-text",
    )
    assert (tokens(first), cost(first)) == (NOTHING.row(), Decimal(0))
    assert (tokens(second), cost(second)) == (text_bill("anthropic", 8).row(), Decimal("0.00036"))
    for row in rows:
        if row["outcome"] == "rejected":
            assert (tokens(row), row["cost_usd"], row["upstream"]) == (NOTHING.row(), None, "")
    # The refused requests never reached the upstream: one upstream request per attempt row.
    assert len(mock.requests) == sum(1 for row in rows if row["attempt"] != 0) == 7


@pytest.mark.parametrize(
    ("protocol", "bill", "source", "expected_cost"),
    [
        # the input side of message_start and its placeholder output of 1 (255 µ$)
        ("anthropic", START, "partial", START_COST),
        # OpenAI upstreams report usage only at the end: nothing was known
        ("openai-chat", NOTHING, "none", Decimal(0)),
        ("openai-responses", NOTHING, "none", Decimal(0)),
    ],
)
async def test_cancel_policy_rows_bill_what_was_known(
    tmp_path: Path,
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    protocol: Protocol,
    bill: Bill,
    source: str,
    expected_cost: Decimal,
) -> None:
    # DESIGN §4: under "cancel" a disconnect closes the upstream at once and bills what is
    # known; the row in SQLite is the record.
    db = tmp_path / "ledger.db"
    async with open_billing_gateway(mock, db, on_client_disconnect="cancel") as (gateway, client):
        request = body(protocol, "mock-text:tokens=10,interval=1", stream=True)
        async with client.stream(
            "POST", PATHS[protocol], json=request, headers=auth(protocol)
        ) as resp:
            await read_until_deltas(resp, protocol, 2)
            await resp.disconnect()
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
    (row,) = rows
    assert (row["outcome"], row["usage_source"], row["status"]) == (
        "client_disconnected", source, 200,
    )  # fmt: skip
    assert tokens(row) == bill.row()
    assert cost(row) == expected_cost
    assert mock.requests[0].outcome == "client_closed"  # the upstream was not drained


# ------------------------------------------------------------ one row per attempt, always


def _concurrent_plan(n: int) -> tuple[Protocol, str, bool, int]:
    """Request ``n`` of the mix: (protocol, model, stream, attempts it must make)."""
    match n % 5:
        case 0:
            return "anthropic", "failover-x", True, 2
        case 1:
            return "openai-chat", "failover-x", False, 2
        case 2:
            return "anthropic", "mock-text:interval=0.5", True, 1
        case 3:
            return "openai-chat", "mock-tools:interval=0.5", True, 1
        case _:
            return "openai-responses", "mock-thinking:interval=0.5", n % 2 == 0, 1


async def test_two_hundred_concurrent_requests_leave_one_row_per_attempt(
    tmp_path: Path, mock: MockUpstream
) -> None:
    # RELIABILITY I1 and PEER-BUGS 30: exactly one row per (request id, attempt), joined
    # one to one with what the upstream saw (the x-trio-gateway-attempt header). Real clock:
    # nothing here is timed, and an autojump clock busy-spins while requests wait on the
    # ledger thread's commits.
    expected_attempts: dict[str, int] = {}
    statuses: list[int] = []
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):

        async def one(n: int) -> None:
            protocol, model, stream, attempts = _concurrent_plan(n)
            resp = await post(client, protocol, model, stream=stream)
            statuses.append(resp.status)
            expected_attempts[request_id(protocol, resp)] = attempts

        async with trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(one, n)
        rows = await persisted(gateway, None)
        assert_rows_equal_records(rows, gateway)
    assert statuses == [200] * 200
    assert sum(expected_attempts.values()) == 280
    pairs = Counter((row["request_id"], row["attempt"]) for row in rows)
    assert len(rows) == len(pairs) == 280
    assert max(pairs.values()) == 1
    attempts_by_id: dict[object, list[object]] = {}
    for row in rows:
        attempts_by_id.setdefault(row["request_id"], []).append(row["attempt"])
    assert {rid: sorted(map(str, a)) for rid, a in attempts_by_id.items()} == {
        rid: [str(k) for k in range(1, count + 1)] for rid, count in expected_attempts.items()
    }
    for row in rows:
        final = row["attempt"] == expected_attempts[str(row["request_id"])]
        assert row["outcome"] == ("completed" if final else "upstream_error"), row
    seen_upstream = Counter(
        value for request in mock.requests for name, value in request.headers
        if name == "x-trio-gateway-attempt"
    )  # fmt: skip
    assert seen_upstream == Counter(f"{row['request_id']}/{row['attempt']}" for row in rows)


async def test_a_repeated_settle_is_a_no_op(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY B7: settling an already settled attempt again (the same record, or a
    # different version of it) returns False, queues nothing and leaves the row unchanged.
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):
        resp = await post(client, "anthropic", "mock-text", stream=True)
        assert resp.status == 200
        before = await persisted(gateway, autojump_clock)
        (record,) = gateway.ledger.records
        committed = gateway.ledger.statistics().committed_ops
        assert gateway.ledger.settle(record) is False
        tampered = replace(
            record,
            outcome="upstream_error",
            usage=Usage(output_tokens=1_000_000),
            cost_usd=Decimal(15),
            finished_at=None,
        )
        assert gateway.ledger.settle(tampered) is False
        assert gateway.ledger.pending == 0
        after = await persisted(gateway, autojump_clock)
        assert gateway.ledger.statistics().committed_ops == committed
        assert [r.as_json() for r in gateway.ledger.records] == before
    assert after == before
    (row,) = after
    assert (row["outcome"], cost(row)) == ("completed", Decimal("0.00036"))


# ------------------------------------------------------------------------------ budgets


def _budget_error(response: AsgiResponse) -> bool:
    return response.status == 429 and "budget" in error_message(response)


@pytest.mark.parametrize("round_", range(3))
async def test_hundred_concurrent_requests_against_a_budget_for_ten(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock, round_: int
) -> None:
    """RELIABILITY B4 through the gateway, one fresh gateway per round.

    The reservation of each request is known exactly (``_budgets.estimate_cost``): its body
    bytes // 2 input tokens at 3 USD/M plus its 1000 output tokens at 15 USD/M. The budget
    is exactly ten reservations. All 100 requests are admitted or refused in one wave
    (admission never waits once the budget window is loaded), and the stream is slow (one
    event per virtual second), so no real cost settles before the wave is decided: exactly
    10 are admitted, never 11.
    """
    protocol = PROTOCOLS[round_ % 3]
    raw = json.dumps(
        body(protocol, "mock-text:tokens=8,interval=1", stream=True, limit=1000)
    ).encode()
    reservation = Decimal(3 * (len(raw) // 2) + 15 * 1000) / MILLION
    budget = 10 * reservation
    key = {"budget_usd": str(budget), "budget_period": "day"}
    responses: list[AsgiResponse] = []
    #: (remaining budget, requests settled) when the 90th refusal arrived
    at_decision: list[tuple[Decimal | None, int]] = []
    async with open_billing_gateway(mock, tmp_path / "ledger.db", key=key) as (gateway, client):
        key_config = gateway.config.keys[0]

        async def one() -> None:
            async with client.stream(
                "POST", PATHS[protocol], content=raw, headers=auth(protocol)
            ) as resp:
                responses.append(resp)
                if resp.status == 429 and sum(r.status == 429 for r in responses) == 90:
                    settled = [r for r in gateway.ledger.records if r.outcome == "completed"]
                    at_decision.append((gateway.budgets.remaining(key_config), len(settled)))
                await resp.read()

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(one)
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
        remaining = gateway.budgets.remaining(key_config)
    # Decided in one wave: ten reservations held, no real cost settled yet.
    assert at_decision == [(Decimal(0), 0)]
    admitted = [r for r in responses if r.status == 200]
    assert len(admitted) == 10
    assert sum(map(_budget_error, responses)) == 90
    assert len(mock.requests) == 10
    real = text_cost(protocol, 8)  # 360 or 225 µ$, far below the reservation
    assert real < reservation
    completed = [row for row in rows if row["outcome"] == "completed"]
    rejected = [row for row in rows if row["outcome"] == "rejected"]
    assert len(completed) == 10
    assert len(rejected) == 90
    assert {(row["attempt"], row["status"], row["cost_usd"]) for row in rejected} == {
        (0, 429, None)
    }
    assert {request_id(protocol, r) for r in responses if r.status == 429} == {
        row["request_id"] for row in rejected
    }
    total = sum((cost(row) for row in completed), Decimal(0))
    assert total == 10 * real
    assert total <= budget + reservation
    assert remaining == budget - total  # I11: the window's spent is the ledger's sum
    assert remaining is not None
    assert remaining >= -reservation


#: Traffic of every ending, with the cost each attempt must bill (computed by hand).
#: (protocol, model, stream, deltas to read before disconnecting or None, [cost per attempt])
CONSERVATION_TRAFFIC: Final[list[tuple[Protocol, str, bool, int | None, list[str]]]] = [
    ("anthropic", "mock-text", True, None, ["0.00036"]),  # 240 + 8 × 15
    ("openai-chat", "mock-tools", False, None, ["0.00021"]),  # 105 + 7 × 15
    ("openai-responses", "mock-thinking", True, None, ["0.000405"]),  # 105 + 20 × 15
    ("anthropic", "failover-x", True, None, ["0", "0.00036"]),  # 503, then text
    ("openai-chat", "failover-x", True, None, ["0", "0.000225"]),  # 503, then 105 + 120
    ("anthropic", "mock-cut:after=1", True, None, ["0.000255"]),  # message_start only
    ("anthropic", "mock-error_event:after=3", True, None, ["0.000255"]),  # idem
    ("openai-chat", "mock-error_event:after=3", True, None, ["0"]),  # nothing reported
    ("openai-chat", "mock-text:tokens=10,interval=1", True, 2, ["0.000255"]),  # drained
    ("anthropic", "mock-status:code=503", False, None, ["0"]),  # no failover for mock-*
]


async def test_budget_spent_equals_the_ledger_sum(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY I11: for the key's window, spent == Σ ledger costs, exactly; and a fresh
    # gateway on the same file loads that same amount.
    db = tmp_path / "ledger.db"
    key = {"budget_usd": "5", "budget_period": "day"}
    expected = [Decimal(c) for *_, costs in CONSERVATION_TRAFFIC for c in costs]
    async with open_billing_gateway(mock, db, key=key) as (gateway, client):
        key_config = gateway.config.keys[0]
        for protocol, model, stream, leave_after, _ in CONSERVATION_TRAFFIC:
            request = body(protocol, model, stream=stream)
            async with client.stream(
                "POST", PATHS[protocol], json=request, headers=auth(protocol)
            ) as resp:
                if leave_after is None:
                    await resp.read()
                else:
                    await read_until_deltas(resp, protocol, leave_after)
                    await resp.disconnect()
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
        remaining = gateway.budgets.remaining(key_config)
    assert key_config.budget_usd is not None
    assert remaining is not None
    spent = key_config.budget_usd - remaining
    assert sorted(cost(row) for row in rows) == sorted(expected)
    assert spent == sum((cost(row) for row in rows), Decimal(0)) == sum(expected) > 0
    since = window_start("day", datetime.now(UTC))
    assert spent_since(str(db), key="alice", since=since) == spent

    async with open_billing_gateway(mock, db, key=key) as (restarted, _):
        reservation = await restarted.budgets.admit(restarted.config.keys[0], Decimal(0))
        assert reservation is not None
        assert restarted.budgets.remaining(restarted.config.keys[0]) == remaining
        restarted.budgets.release(reservation)


async def test_a_request_admitted_before_midnight_counts_in_the_window_of_its_row(
    tmp_path: Path,
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RELIABILITY I11 at a window boundary ("for every window").

    Request L is admitted at the very end of yesterday (the budget's clock is set back a
    day for its admission) and its attempt starts today, so its row belongs to today's
    window (``spent_since`` and the window loader select rows by ``started_at``). Then
    request E, admitted today, loads today's window from the ledger while L is in flight.
    When both have settled, today's spent must be the sum of today's rows: both costs.
    (In production: any attempt that starts after the boundary its request was admitted
    before, e.g. a failover after a first attempt that waited for ``first_byte_timeout``.)
    """
    db = tmp_path / "ledger.db"
    shift = [timedelta(days=1)]
    real_window_start = _budgets.window_start

    def budget_clock_window(period: str, now: datetime) -> str:
        return real_window_start(period, now - shift[0])

    monkeypatch.setattr(_budgets, "window_start", budget_clock_window)
    key = {"budget_usd": "5", "budget_period": "day"}
    async with open_billing_gateway(mock, db, key=key) as (gateway, client):
        key_config = gateway.config.keys[0]
        late_body = body("anthropic", "mock-text:tokens=8,interval=1", stream=True)
        async with client.stream(
            "POST", PATHS["anthropic"], json=late_body, headers=auth("anthropic")
        ) as late:
            assert late.status == 200
            shift[0] = timedelta(0)  # midnight has passed
            with frozen(autojump_clock):  # L stays in flight while E loads today's window
                early = await post(client, "openai-chat", "mock-text", stream=False)
            assert early.status == 200
            assert [r.request_id for r in gateway.ledger.in_flight()] == [
                request_id("anthropic", late)
            ]
            await late.read()
        rows = await persisted(gateway, autojump_clock)
        remaining = gateway.budgets.remaining(key_config)
    today = real_window_start("day", datetime.now(UTC))
    assert all(str(row["started_at"]) >= today for row in rows)  # both rows are today's
    assert sorted(cost(row) for row in rows) == [Decimal("0.000225"), Decimal("0.00036")]
    assert spent_since(str(db), key="alice", since=today) == Decimal("0.000585")
    assert key_config.budget_usd is not None
    assert remaining is not None
    assert key_config.budget_usd - remaining == Decimal("0.000585")  # today's spent


# --------------------------------------------------------- B1: output limits, validated


_INVALID_LIMITS: Final = [-1, 0, 1.5, "10", True]
INVALID: Final = [
    *(("anthropic", "max_tokens", value) for value in [*_INVALID_LIMITS, None, MISSING]),
    *(("openai-chat", "max_tokens", value) for value in _INVALID_LIMITS),
    *(("openai-chat", "max_completion_tokens", value) for value in _INVALID_LIMITS),
    *(("openai-responses", "max_output_tokens", value) for value in _INVALID_LIMITS),
]


@pytest.mark.parametrize(("protocol", "field", "value"), INVALID)
async def test_invalid_output_limit_is_refused_before_any_upstream_call(
    tmp_path: Path, mock: MockUpstream, protocol: Protocol, field: str, value: object
) -> None:
    # RELIABILITY B1 / I8: 400 without calling the upstream. The gateway refuses these while
    # parsing, before admission, so not even a `rejected` row is written (rejected rows are
    # for admission refusals: 403 and 429).
    request = body(protocol, "mock-text", stream=True)
    if value == MISSING:
        del request[field]
    else:
        request[field] = value
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):
        resp = await client.request("POST", PATHS[protocol], json=request, headers=auth(protocol))
        assert resp.status == 400
        assert f"`{field}`" in error_message(resp)
        if protocol != "anthropic":
            assert as_dict(as_dict(resp.json())["error"])["param"] == field
        assert gateway.ledger.records == []
        assert await persisted(gateway, None) == []
        valid = await post(client, protocol, "mock-text", stream=True)  # positive control
        assert valid.status == 200
    assert len(mock.requests) == 1


@pytest.mark.parametrize(
    ("limit", "reserved_output"),
    [(MISSING, 4096), (None, 4096), (100, 100)],
    ids=["missing", "null", "100"],
)
async def test_chat_without_output_limit_reserves_the_default(
    tmp_path: Path,
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    limit: object,
    reserved_output: int,
) -> None:
    # RELIABILITY B1: a missing (or null) max_tokens on Chat is admitted, with the default
    # output reservation of 4096 tokens (15 USD/M each); an explicit one reserves itself.
    raw = json.dumps(
        body("openai-chat", "mock-text:tokens=3,interval=1", stream=True, limit=limit)
    ).encode()
    reservation = Decimal(3 * (len(raw) // 2) + 15 * reserved_output) / MILLION
    key = {"budget_usd": "1", "budget_period": "total"}
    async with open_billing_gateway(mock, tmp_path / "ledger.db", key=key) as (gateway, client):
        key_config = gateway.config.keys[0]
        async with client.stream(
            "POST", PATHS["openai-chat"], content=raw, headers=auth("openai-chat")
        ) as resp:
            assert resp.status == 200
            assert gateway.budgets.remaining(key_config) == 1 - reservation
            await resp.read()
        (row,) = await persisted(gateway, autojump_clock)
        assert gateway.budgets.remaining(key_config) == 1 - Decimal("0.00015")  # 105 + 45 µ$
    assert (row["outcome"], cost(row)) == ("completed", Decimal("0.00015"))


# ----------------------------------------------------------------- I3: checkpoints


async def test_long_stream_row_is_checkpointed_while_in_flight(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY I3: during a long stream the in-flight row carries the usage seen so far,
    # so a crash loses at most one checkpoint interval (5 s). Anthropic reports the input
    # side and an output count in message_start; the checkpoint writes them.
    db = tmp_path / "ledger.db"
    async with open_billing_gateway(mock, db) as (gateway, client):
        request = body("anthropic", "mock-text:tokens=40,interval=1", stream=True)
        async with client.stream(
            "POST", PATHS["anthropic"], json=request, headers=auth("anthropic")
        ) as resp:
            await read_until_deltas(resp, "anthropic", 12)  # ~14 s after message_start
            (row,) = await persisted(gateway, autojump_clock)
            assert (row["outcome"], row["usage_source"]) == ("in_flight", "partial")
            assert tokens(row) == START.row()
            assert row["output_tokens"] == 1
            assert row["cost_usd"] is None  # priced at settle (or by recovery)
            await resp.read()
        (row,) = await persisted(gateway, autojump_clock)
    assert (row["outcome"], row["usage_source"]) == ("completed", "reported")
    assert tokens(row) == text_bill("anthropic", 40).row()
    assert cost(row) == Decimal("0.00084")  # 240 + 40 × 15


async def test_usage_known_before_a_silence_is_checkpointed_within_one_interval(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # RELIABILITY I3 ("kill -9 then loses at most one interval"): message_start reports the
    # input side, then the upstream is silent for 60 s (thinking; well within the 180 s
    # data-interval timeout). 30 s into the silence the in-flight row must carry that usage.
    db = tmp_path / "ledger.db"
    async with open_billing_gateway(mock, db) as (gateway, client):
        request = body("anthropic", "mock-text:tokens=3+stall:after=1,secs=60", stream=True)
        async with client.stream(
            "POST", PATHS["anthropic"], json=request, headers=auth("anthropic")
        ) as resp:
            while b"message_start" not in resp.body:
                assert await resp.next_chunk() is not None
            await trio.sleep(30)
            assert mock.requests[0].outcome == "stalled"
            (row,) = await persisted(gateway, autojump_clock)
            assert row["outcome"] == "in_flight"
            assert (tokens(row), row["usage_source"]) == (START.row(), "partial")
            await resp.read()
        (row,) = await persisted(gateway, autojump_clock)
    assert (row["outcome"], tokens(row)) == ("completed", text_bill("anthropic", 3).row())


# ------------------------------------------------------------------------ PEER-BUGS


async def test_disconnect_after_n_bytes_looped_always_bills_real_usage(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # PEER-BUGS 21 (abuse: read some bytes, hang up before the terminal event, repeat) and
    # 23: under "drain" every one of those rows bills the upstream's full, real usage.
    # Keepalives are off, so the first body bytes are always content (a disconnect before
    # any content cancels instead, DESIGN §4).
    db = tmp_path / "ledger.db"
    expected: dict[str, Protocol] = {}
    async with open_billing_gateway(mock, db) as (gateway, client):
        for n in range(20):
            protocol = PROTOCOLS[n % 3]
            wanted = 1 + 50 * n
            request = body(protocol, "mock-text:tokens=10,interval=1", stream=True)
            async with client.stream(
                "POST", PATHS[protocol], json=request, headers=auth(protocol)
            ) as resp:
                while len(resp.body) < wanted:
                    assert await resp.next_chunk() is not None
                await resp.disconnect()
            expected[request_id(protocol, resp)] = protocol
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
    assert len(rows) == 20
    for row in rows:
        protocol = expected[str(row["request_id"])]
        assert (row["outcome"], row["usage_source"]) == ("client_disconnected", "reported")
        assert tokens(row) == text_bill(protocol, 10).row()
        assert cost(row) == text_cost(protocol, 10)  # 390 or 255 µ$
    assert {request.outcome for request in mock.requests} == {"completed"}  # all drained


async def test_upstream_closing_after_message_start_bills_the_input_side(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock
) -> None:
    # PEER-BUGS 22: the upstream closes right after message_start; the row bills what it
    # had reported (input and cache tokens), marked partial, outcome upstream_error.
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):
        resp = await post(client, "anthropic", "mock-cut:after=1", stream=True)
        rows = await persisted(gateway, autojump_clock)
    assert resp.status == 200
    names = [name for name, _ in sse_events(resp.body)]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    (row,) = rows
    assert (row["outcome"], row["usage_source"]) == ("upstream_error", "partial")
    assert tokens(row) == START.row()
    assert cost(row) == START_COST


@pytest.mark.parametrize(
    ("protocol", "bill", "source", "expected_cost"),
    [
        ("anthropic", START, "partial", START_COST),
        ("openai-chat", NOTHING, "none", Decimal(0)),
        ("openai-responses", NOTHING, "none", Decimal(0)),
    ],
)
async def test_in_band_upstream_error_is_never_billed_as_output(
    tmp_path: Path,
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    protocol: Protocol,
    bill: Bill,
    source: str,
    expected_cost: Decimal,
) -> None:
    # PEER-BUGS 25: an in-band error after some text (error_event after 10 events of a
    # 20-token answer) bills exactly what the upstream reported: the text relayed and the
    # error's text are never counted as output tokens.
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):
        resp = await post(client, protocol, "mock-text:tokens=20+error_event:after=10", stream=True)
        rows = await persisted(gateway, autojump_clock)
    assert resp.status == 200
    assert b"Overloaded" in resp.body
    assert content_deltas(protocol, resp.body) > 0  # text did reach the caller
    (row,) = rows
    assert (row["outcome"], row["usage_source"]) == ("upstream_error", source)
    assert tokens(row) == bill.row()
    assert cost(row) == expected_cost


@pytest.mark.parametrize(
    "model", ["mock-cumulative", "mock-usage_in_delta", "mock-cumulative+usage_in_delta"]
)
async def test_message_delta_usage_never_makes_a_row_of_its_own(
    tmp_path: Path, mock: MockUpstream, autojump_clock: trio.testing.MockClock, model: str
) -> None:
    # PEER-BUGS 30: exactly one row per request id and attempt, however many message_delta
    # events carry usage; the cumulative counts are taken, not summed.
    async with open_billing_gateway(mock, tmp_path / "ledger.db") as (gateway, client):
        responses = [await post(client, "anthropic", model, stream=True) for _ in range(3)]
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
    output = 40 if "cumulative" in model else 8
    assert sorted(str(row["request_id"]) for row in rows) == sorted(
        request_id("anthropic", r) for r in responses
    )
    for row in rows:
        assert (row["attempt"], row["outcome"]) == (1, "completed")
        assert tokens(row) == text_bill("anthropic", output).row()
        assert cost(row) == text_cost("anthropic", output)


#: The serving upstream reports 777 uncached input tokens and 3 cache reads; the first
#: upstream fails with 529 before any byte.
FAILOVER_33: Final[list[dict[str, object]]] = [
    {
        "name": "fo-33",
        "upstreams": ["anthropic", "anthropic-b", "chat", "chat-b"],
        "upstream_model": {
            "anthropic": "mock-status:code=529",
            "chat": "mock-status:code=529",
            "anthropic-b": "mock-text:in=777,cr=3,cw5=0,cw1=0",
            "chat-b": "mock-text:in=777,cr=3",
        },
        "routing": "same-protocol-only",
        "price": PRICE,
    }
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize(
    ("protocol", "second"), [("anthropic", "anthropic-b"), ("openai-chat", "chat-b")]
)
async def test_after_failover_the_serving_upstream_is_billed_as_reported(
    tmp_path: Path,
    mock: MockUpstream,
    autojump_clock: trio.testing.MockClock,
    protocol: Protocol,
    second: str,
    stream: bool,
) -> None:
    # PEER-BUGS 33: no cache assumption carries over from the failed attempt: the row of the
    # attempt that served bills exactly its upstream's numbers; the failed one bills 0.
    db = tmp_path / "ledger.db"
    async with open_billing_gateway(mock, db, models=FAILOVER_33) as (gateway, client):
        resp = await post(client, protocol, "fo-33", stream=stream)
        rows = await persisted(gateway, autojump_clock)
        assert_rows_equal_records(rows, gateway)
    assert resp.status == 200
    first, served = sorted(rows, key=lambda row: str(row["attempt"]))
    assert (first["attempt"], first["status"], first["outcome"]) == (1, 529, "upstream_error")
    assert (tokens(first), cost(first)) == (NOTHING.row(), Decimal(0))
    assert (served["attempt"], served["upstream"], served["outcome"]) == (2, second, "completed")
    assert tokens(served) == Bill(777, 8, 3).row()
    # 777 × 3 + 3 × 0.30 + 8 × 15 = 2331 + 0.9 + 120 = 2451.9 µ$
    assert cost(served) == Decimal("0.0024519")
