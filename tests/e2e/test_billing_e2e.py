"""Billing end to end on real sockets, with the ledger in an SQLite file.

What is proven here (DESIGN §4, §5; RELIABILITY I5, L4; PEER-BUGS 21, 23):

- a locked database never delays a stream: another connection holds the SQLite write lock
  while a stream is relayed; the events keep flowing on time, the stream ends while the
  lock is still held (its settle waits in the queue), and the row lands once it is released;
- callers that read N bytes of a stream and hang up, twenty at once on real hypercorn, are
  each billed the upstream's full usage (drain);
- the usage the official SDKs report to the caller is the usage the ledger bills.

The gateway serves on hypercorn and the mock upstream on its own socket, as in production;
the ledger is a real file, read back from another connection with ``read_rows``.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Final

import anthropic
import httpx
import openai
import pytest
import trio

from tests.conftest import Live, assert_no_secret_in_records
from tests.e2e._sdk import ANTHROPIC_MESSAGES, MESSAGES, PROMPT, SDK_WARNINGS
from tests.support import CLIENT_KEY, UPSTREAM_KEY, gateway_config, sse_events, wait_until
from trio_gateway._gateway import Gateway
from trio_gateway._ledger import read_rows
from trio_gateway._mock import MockUpstream
from trio_gateway._protocol._names import Protocol
from trio_gateway._server import serve_gateway

pytestmark = [pytest.mark.slow, SDK_WARNINGS]

PATHS: Final[dict[Protocol, str]] = {
    "anthropic": "/v1/messages",
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
}
PROTOCOLS: Final[tuple[Protocol, ...]] = tuple(PATHS)
MILLION: Final = Decimal(1_000_000)
Row = dict[str, object]


# --- helpers ------------------------------------------------------------------------------


async def _never(gateway: Gateway) -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def live_on_file(db: Path, **streaming: object) -> AsyncGenerator[Live]:
    """The mock and the gateway on real sockets; the gateway's ledger is the file ``db``."""
    async with trio.open_nursery() as nursery:
        mock = MockUpstream(require_key=UPSTREAM_KEY)
        port = await nursery.start(partial(mock.serve, host="127.0.0.1", port=0))
        config = gateway_config(port=port, streaming=streaming, ledger_path=str(db))
        gateway = Gateway(config)
        urls = await nursery.start(partial(serve_gateway, gateway, shutdown_trigger=_never))
        try:
            yield Live(url=urls[0], gateway=gateway, mock=mock, mock_port=port)
        finally:
            nursery.cancel_scope.cancel()
    await gateway.aclose()
    assert_no_secret_in_records(gateway)


def body(protocol: Protocol, model: str, *, stream: bool = True) -> dict[str, object]:
    if protocol == "openai-responses":
        return {"model": model, "input": PROMPT, "stream": stream}
    return {"model": model, "max_tokens": 256, "messages": MESSAGES, "stream": stream}


def caller_headers(protocol: Protocol) -> dict[str, str]:
    if protocol == "anthropic":
        return {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    return {"authorization": f"Bearer {CLIENT_KEY}"}


def tokens(row: Row) -> tuple[object, ...]:
    """(input, output, cache read, cache write 5 m, cache write 1 h, reasoning)"""
    return (
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_tokens"],
        row["cache_write_5m_tokens"],
        row["cache_write_1h_tokens"],
        row["reasoning_tokens"],
    )


def text_tokens(protocol: Protocol, output: int) -> tuple[int, ...]:
    """The mock's full usage for a ``text`` answer of ``output`` deltas, as ledger fields."""
    if protocol == "anthropic":
        return (25, output, 100, 20, 10, 0)
    return (25, output, 100, 0, 0, 0)


def text_cost(protocol: Protocol, output: int) -> Decimal:
    """Anthropic input side 25×3 + 100×0.30 + 20×3.75 + 10×6 = 240 µ$, OpenAI 25×3 + 100×0.30
    = 105 µ$, plus 15 µ$ per output token."""
    return Decimal((240 if protocol == "anthropic" else 105) + 15 * output) / MILLION


def cost(row: Row) -> Decimal:
    value = row["cost_usd"]
    assert isinstance(value, str), row
    return Decimal(value)


# --- a locked database never delays a stream ------------------------------------------------


@dataclass
class _WriteLock:
    """Another process's write transaction on the ledger file, held for a while."""

    db: Path
    seconds: float
    acquired_at: float | None = None
    released_at: float | None = None

    def hold(self, acquired: Callable[[], None]) -> None:
        """Run in a worker thread: ``BEGIN IMMEDIATE``, hold, roll back."""
        with closing(sqlite3.connect(self.db, isolation_level=None, timeout=5.0)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            self.acquired_at = time.perf_counter()
            acquired()
            time.sleep(self.seconds)
            connection.execute("ROLLBACK")
            self.released_at = time.perf_counter()

    def released(self) -> float | None:
        """When the lock was released (None: still held)."""
        return self.released_at


async def test_a_locked_database_does_not_delay_streaming_bytes(tmp_path: Path) -> None:
    # RELIABILITY L4 / I5: the ledger writes on its own thread; the trio side only queues.
    # While another connection holds the write lock, a stream's events keep arriving on
    # time and it completes; its settle waits in the queue and lands after the release.
    db = tmp_path / "ledger.db"
    lock = _WriteLock(db, seconds=1.5)
    arrivals: list[float] = []
    received = b""
    async with live_on_file(db) as live:
        ledger = live.gateway.ledger
        request = body("anthropic", "mock-text:tokens=30,interval=0.02")
        async with (
            httpx.AsyncClient(timeout=30.0) as http,
            trio.open_nursery() as nursery,
        ):
            lock_taken = trio.Event()
            async with http.stream(
                "POST", live.url + PATHS["anthropic"], json=request,
                headers=caller_headers("anthropic"),
            ) as response:  # fmt: skip
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    arrivals.append(time.perf_counter())
                    received += chunk
                    if len(arrivals) == 1:
                        acquired = partial(trio.from_thread.run_sync, lock_taken.set)
                        nursery.start_soon(partial(trio.to_thread.run_sync, lock.hold, acquired))
            ended_at = time.perf_counter()
            # The whole stream went by under the lock, and its settle is still waiting.
            assert lock_taken.is_set()
            assert lock.acquired_at is not None
            assert lock.released() is None
            assert lock.acquired_at < ended_at
            assert ledger.pending >= 1
            (row,) = read_rows(str(db))  # WAL: readers are not blocked by the writer lock
            assert row["outcome"] == "in_flight"
        released_at = lock.released()
        assert released_at is not None
        assert ended_at < released_at
        with trio.fail_after(10):
            await ledger.flush()
        (row,) = read_rows(str(db))
    names = [name for name, _ in sse_events(received)]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert names.count("content_block_delta") == 30
    after_lock = [at for at in arrivals if at > lock.acquired_at]
    assert len(after_lock) >= 10  # most of the stream arrived while the lock was held
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.3, max(gaps)
    assert (row["outcome"], row["usage_source"]) == ("completed", "reported")
    assert tokens(row) == text_tokens("anthropic", 30)
    assert cost(row) == Decimal("0.00069")  # 240 + 30 × 15 µ$


async def test_a_locked_database_does_not_delay_a_stream_across_a_checkpoint(
    tmp_path: Path,
) -> None:
    # RELIABILITY I3 + L4: the in-flight row is checkpointed every 5 s; a checkpoint due
    # while another connection holds the write lock is queued, never waited for.
    db = tmp_path / "ledger.db"
    lock = _WriteLock(db, seconds=2.0)
    arrivals: list[float] = []
    pending_under_lock: list[int] = []
    async with live_on_file(db) as live:
        ledger = live.gateway.ledger
        request = body("anthropic", "mock-text:tokens=30,interval=0.2")  # about 7 s
        async with (
            httpx.AsyncClient(timeout=30.0) as http,
            trio.open_nursery() as nursery,
            http.stream(
                "POST", live.url + PATHS["anthropic"], json=request,
                headers=caller_headers("anthropic"),
            ) as response,
        ):  # fmt: skip
            assert response.status_code == 200
            async for _ in response.aiter_raw():
                now = time.perf_counter()
                arrivals.append(now)
                if len(nursery.child_tasks) == 0 and now - arrivals[0] >= 4.0:
                    if lock.acquired_at is None:
                        nursery.start_soon(partial(trio.to_thread.run_sync, lock.hold, _nothing))
                elif lock.released() is None and now - arrivals[0] > 5.5:
                    pending_under_lock.append(ledger.pending)
        released_at = lock.released()
        assert lock.acquired_at is not None
        assert released_at is not None
        with trio.fail_after(10):
            await ledger.flush()
        (row,) = read_rows(str(db))
    assert lock.acquired_at - arrivals[0] < 4.5
    assert released_at - arrivals[0] > 6.0  # the 5 s checkpoint fell inside the lock
    assert pending_under_lock
    assert max(pending_under_lock) >= 1  # the checkpoint was queued behind the lock
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.5, max(gaps)
    assert (row["outcome"], tokens(row)) == ("completed", text_tokens("anthropic", 30))


def _nothing() -> None:
    return None


# --- PEER-BUGS 21 on real sockets --------------------------------------------------------------


def _raw_request(protocol: Protocol, model: str) -> bytes:
    raw = json.dumps(body(protocol, model)).encode()
    headers = "".join(f"{name}: {value}\r\n" for name, value in caller_headers(protocol).items())
    head = (
        f"POST {PATHS[protocol]} HTTP/1.1\r\nhost: gateway\r\n{headers}"
        f"content-type: application/json\r\ncontent-length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


async def _read_then_hang_up(port: int, protocol: Protocol, body_bytes: int) -> str:
    """Send a streamed request, read ``body_bytes`` bytes of the body, close the socket.
    Returns the request id from the response head."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(_raw_request(protocol, "mock-text:tokens=20,interval=0.05"))
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < body_bytes:
                chunk = await stream.receive_some(65536)
                assert chunk, "the gateway closed the connection early"
                data += chunk
    finally:
        await stream.aclose()
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"message_stop" not in rest
    assert b"[DONE]" not in rest
    assert b"response.completed" not in rest
    name = b"request-id: " if protocol == "anthropic" else b"x-request-id: "
    (line,) = [line for line in head.split(b"\r\n") if line.lower().startswith(name)]
    return line[len(name) :].decode()


async def test_twenty_callers_hanging_up_after_n_bytes_are_billed_in_full(
    tmp_path: Path,
) -> None:
    # PEER-BUGS 21 (an abuse pattern: read part of the answer, hang up before the usage) and
    # 23: on real hypercorn, each such request is drained and billed its full usage.
    db = tmp_path / "ledger.db"
    ids: dict[str, Protocol] = {}
    async with live_on_file(db) as live:
        port = int(live.url.rsplit(":", 1)[1])

        async def one(n: int) -> None:
            protocol = PROTOCOLS[n % 3]
            ids[await _read_then_hang_up(port, protocol, 1 + 40 * n)] = protocol

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(one, n)
        gateway = live.gateway
        await wait_until(
            lambda: not gateway.ledger.in_flight() and gateway.relay.drains_in_flight == 0
        )
        with trio.fail_after(10):
            await gateway.ledger.flush()
        rows = read_rows(str(db))
        assert [r.outcome for r in live.mock.requests] == ["completed"] * 20  # all drained
    assert len(ids) == 20
    assert sorted(str(row["request_id"]) for row in rows) == sorted(ids)
    for row in rows:
        protocol = ids[str(row["request_id"])]
        assert (row["outcome"], row["usage_source"]) == ("client_disconnected", "reported")
        assert tokens(row) == text_tokens(protocol, 20)
        assert cost(row) == text_cost(protocol, 20)  # 540 or 405 µ$


# --- what the SDK reports is what the ledger bills --------------------------------------------


async def _sdk_usage(url: str, protocol: Protocol, *, stream: bool) -> tuple[int, ...]:
    """The usage the official SDK hands the caller for ``mock-thinking``, as ledger fields
    (Anthropic semantics: uncached input; OpenAI's prompt count includes cached tokens)."""
    model = "mock-thinking"
    message: anthropic.types.Message
    completion: openai.types.chat.ChatCompletion
    response: openai.types.responses.Response
    if protocol == "anthropic":
        async with anthropic.AsyncAnthropic(
            base_url=url, api_key=CLIENT_KEY, max_retries=0
        ) as client:
            if stream:
                async with client.messages.stream(
                    model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES
                ) as events:
                    message = await events.get_final_message()
            else:
                message = await client.messages.create(
                    model=model, max_tokens=256, messages=ANTHROPIC_MESSAGES
                )
        a_usage = message.usage
        assert a_usage.cache_creation is not None
        assert a_usage.cache_read_input_tokens is not None
        assert a_usage.cache_creation_input_tokens == (
            a_usage.cache_creation.ephemeral_5m_input_tokens
            + a_usage.cache_creation.ephemeral_1h_input_tokens
        )
        return (
            a_usage.input_tokens,
            a_usage.output_tokens,
            a_usage.cache_read_input_tokens,
            a_usage.cache_creation.ephemeral_5m_input_tokens,
            a_usage.cache_creation.ephemeral_1h_input_tokens,
            0,  # the Messages API reports no separate thinking count
        )
    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0
    ) as client:
        if protocol == "openai-chat":
            if stream:
                async with client.chat.completions.stream(
                    model=model, messages=MESSAGES, stream_options={"include_usage": True}
                ) as chunks:
                    completion = await chunks.get_final_completion()
            else:
                completion = await client.chat.completions.create(model=model, messages=MESSAGES)
            c_usage = completion.usage
            assert c_usage is not None
            assert c_usage.prompt_tokens_details is not None
            assert c_usage.completion_tokens_details is not None
            cached = c_usage.prompt_tokens_details.cached_tokens or 0
            reasoning = c_usage.completion_tokens_details.reasoning_tokens or 0
            return (
                c_usage.prompt_tokens - cached, c_usage.completion_tokens, cached, 0, 0, reasoning,
            )  # fmt: skip
        if stream:
            async with client.responses.stream(model=model, input=PROMPT) as events:
                response = await events.get_final_response()
        else:
            response = await client.responses.create(model=model, input=PROMPT)
        r_usage = response.usage
        assert r_usage is not None
        cached = r_usage.input_tokens_details.cached_tokens
        reasoning = r_usage.output_tokens_details.reasoning_tokens
        return (r_usage.input_tokens - cached, r_usage.output_tokens, cached, 0, 0, reasoning)


#: mock-thinking: 8 text + 12 reasoning = 20 output tokens.
THINKING: Final[dict[Protocol, tuple[tuple[int, ...], str]]] = {
    "anthropic": ((25, 20, 100, 20, 10, 0), "0.00054"),  # 240 + 300 µ$
    "openai-chat": ((25, 20, 100, 0, 0, 12), "0.000405"),  # 105 + 300 µ$
    "openai-responses": ((25, 20, 100, 0, 0, 12), "0.000405"),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_sdk_reports_what_the_ledger_bills(tmp_path: Path, protocol: Protocol) -> None:
    # DESIGN §5: usage comes from the upstream's own numbers; what the caller's SDK shows,
    # streamed or not, is exactly what the row bills (converted to ledger semantics).
    db = tmp_path / "ledger.db"
    expected_tokens, expected_cost = THINKING[protocol]
    async with live_on_file(db) as live:
        streamed = await _sdk_usage(live.url, protocol, stream=True)
        unary = await _sdk_usage(live.url, protocol, stream=False)
        await wait_until(lambda: not live.gateway.ledger.in_flight())
        with trio.fail_after(10):
            await live.gateway.ledger.flush()
        rows = read_rows(str(db))
    assert streamed == unary == expected_tokens
    assert [row["stream"] for row in rows] == [True, False]
    for row in rows:
        assert (row["outcome"], row["usage_source"]) == ("completed", "reported")
        assert tokens(row) == expected_tokens
        assert cost(row) == Decimal(expected_cost)
