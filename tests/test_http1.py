"""Tests for the hand-rolled HTTP/1.1 upstream client (``trio_gateway._http1``).

The upstream is a tiny scripted server: h11 parses each request, and a per-test handler writes
raw response bytes, so framing, pauses, truncation and closes are exactly what the test says.
It runs over ``trio.testing.memory_stream_pair()`` via a custom connector, or over real
127.0.0.1 sockets (those tests are marked ``slow``, as conftest defines it).
"""

from __future__ import annotations

import random
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import h11
import pytest
import trio
import trio.testing

from trio_gateway._errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnavailable
from trio_gateway._http1 import (
    ConnectionPool,
    Origin,
    PoolStatistics,
    connect_tcp,
    create_ssl_context,
)

ORIGIN = Origin("http", "upstream.test", 80)
IDLE = PoolStatistics(active=0, idle=1)
EMPTY = PoolStatistics(active=0, idle=0)
STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


# ---------------------------------------------------------------- the scripted upstream


@dataclass
class Seen:
    """One request as the upstream received it."""

    connection: int
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    number_on_connection: int

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


@dataclass
class Exchange:
    """What a handler gets: the request and the raw server side of the connection."""

    request: Seen
    stream: trio.abc.Stream
    index: int  # the request's position among all requests the upstream saw

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        for piece in pieces:
            if pause:
                await trio.sleep(pause)
            await self.stream.send_all(piece)

    async def wait_closed(self) -> None:
        """Read until the client closes (or resets) the connection."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except STREAM_ERRORS:
            pass


Handler = Callable[[Exchange], Awaitable[bool]]  # returns: keep the connection for another


@dataclass
class FakeUpstream:
    """A scripted HTTP/1.1 upstream; ``connect`` is a :data:`Connector` over memory streams."""

    nursery: trio.Nursery
    handler: Handler
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    open_connections: int = 0
    client_closed: list[trio.Event] = field(default_factory=list)

    async def connect(self, host: str, port: int, tls: bool) -> trio.abc.Stream:
        assert (host, port, tls) == ("upstream.test", 80, False)
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.serve_connection, server)
        return client

    async def serve_connection(self, stream: trio.abc.Stream) -> None:
        index = self.connections
        self.connections += 1
        self.open_connections += 1
        closed = trio.Event()
        self.client_closed.append(closed)
        conn = h11.Connection(h11.SERVER)
        try:
            for number in range(1_000_000):
                request = await self._read_request(conn, stream, index, number)
                if request is None:
                    closed.set()
                    return
                self.requests.append(request)
                exchange = Exchange(request, stream, len(self.requests) - 1)
                try:
                    keep = await self.handler(exchange)
                except STREAM_ERRORS:  # the client went away while we answered
                    closed.set()
                    keep = False
                if not keep:
                    return
                leftover, _ = conn.trailing_data
                conn = h11.Connection(h11.SERVER)
                if leftover:  # (receive_data(b"") would mean EOF)
                    conn.receive_data(leftover)
        finally:
            self.open_connections -= 1
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    @staticmethod
    async def _read_request(
        conn: h11.Connection, stream: trio.abc.Stream, index: int, number: int
    ) -> Seen | None:
        seen: Seen | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except STREAM_ERRORS:
                    return None
                if not data:
                    return None
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Request):
                headers = [(name, value) for name, value in event.headers]
                seen = Seen(index, event.method, event.target, headers, b"", number)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert seen is not None
                seen.body = bytes(body)
                return seen
            else:
                raise AssertionError(f"unexpected {event!r}")


def head(status: int = 200, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"HTTP/{version} {status} Whatever", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def fixed(body: bytes, status: int = 200, *headers: str) -> bytes:
    return head(status, f"Content-Length: {len(body)}", *headers) + body


def make_pool(
    fake: FakeUpstream, *, max_idle: int = 64, idle_expiry: float = 30.0
) -> ConnectionPool:
    return ConnectionPool(
        ORIGIN, connector=fake.connect, max_idle=max_idle, idle_expiry=idle_expiry
    )


async def ok_handler(exchange: Exchange) -> bool:
    await exchange.send(fixed(b"ok:" + exchange.request.target))
    return True


async def get(pool: ConnectionPool, target: str = "/x", *, max_bytes: int = 1 << 20) -> bytes:
    async with await pool.send("GET", target, [], b"") as response:
        assert response.status == 200
        return await response.read_all(max_bytes=max_bytes)


# ---------------------------------------------------------------- Origin


@pytest.mark.parametrize(
    ("url", "origin", "prefix", "authority"),
    [
        ("https://api.example.com/v1/", Origin("https", "api.example.com", 443), "/v1", None),
        ("HTTP://Example.COM:80/a/b", Origin("http", "example.com", 80), "/a/b", "example.com"),
        ("http://[::1]:8080", Origin("http", "::1", 8080), "", "[::1]:8080"),
        ("https://[2001:db8::1]/", Origin("https", "2001:db8::1", 443), "", "[2001:db8::1]"),
        ("http://127.0.0.1:9000/x/", Origin("http", "127.0.0.1", 9000), "/x", "127.0.0.1:9000"),
        ("https://bücher.example", Origin("https", "xn--bcher-kva.example", 443), "", None),
    ],
)
def test_origin_from_url(url: str, origin: Origin, prefix: str, authority: str | None) -> None:
    assert Origin.from_url(url) == (origin, prefix)
    assert origin.authority == (authority or origin.host)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "example.com/v1",
        "https://user:s3cret@example.com",
        "https://example.com/v1?key=s3cret",
        "https://example.com/#s3cret",
        "https://:443/v1",
        "https://example.com:99999",
        "https://example.com:port",
    ],
)
def test_origin_from_url_rejects_without_echoing(url: str) -> None:
    with pytest.raises(ValueError, match="upstream URL") as caught:
        Origin.from_url(url)
    assert "s3cret" not in str(caught.value)
    assert "example.com" not in str(caught.value)


# ---------------------------------------------------------------- basic exchanges


async def test_get_with_content_length(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(fixed(b"hello", 200, "X-Custom-Thing: Yes", "X-Custom-Thing: No"))
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    response = await pool.send("GET", "/v1/models?limit=2", [(b"Accept", b"*/*")], b"")
    assert pool.statistics() == PoolStatistics(active=1, idle=0)
    assert (response.status, response.is_finished) == (200, False)
    assert (b"x-custom-thing", b"Yes") in response.headers
    assert all(name == name.lower() for name, _ in response.headers)
    assert response.header("X-CUSTOM-THING") == "Yes"
    assert response.header("missing") is None
    assert await response.read_all(max_bytes=5) == b"hello"
    assert response.is_finished
    assert await response.receive_some() == b""
    await response.aclose()
    await response.aclose()  # idempotent
    assert pool.statistics() == IDLE

    [seen] = fake.requests
    assert (seen.method, seen.target) == (b"GET", b"/v1/models?limit=2")
    assert seen.header(b"host") == b"upstream.test"
    assert seen.header(b"accept") == b"*/*"
    assert seen.header(b"content-length") is None
    assert seen.header(b"transfer-encoding") is None


async def test_post_with_chunked_response(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(
            head(201, "Transfer-Encoding: chunked"),
            chunk(b"abc"),
            chunk(b"defg"),
            LAST_CHUNK,
            pause=0.01,
        )
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    body = b'{"model": "m"}'
    response = await pool.send("POST", "/v1/messages", [(b"content-type", b"json")], body)
    assert response.status == 201
    chunks = []
    while data := await response.receive_some():
        chunks.append(data)
    assert b"".join(chunks) == b"abcdefg"
    await response.aclose()
    assert pool.statistics() == IDLE
    [seen] = fake.requests
    assert seen.body == body
    assert seen.header(b"content-length") == b"14"


async def test_one_read_returns_all_its_data_at_once(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(head(200, "Transfer-Encoding: chunked"))
        await trio.sleep(0.01)
        await exchange.send(chunk(b"a") + chunk(b"bb") + chunk(b"ccc"))
        await trio.sleep(0.01)
        await exchange.send(LAST_CHUNK)
        return True

    pool = make_pool(FakeUpstream(nursery, handler))
    async with await pool.send("GET", "/", [], b"") as response:
        assert await response.receive_some() == b"abbccc"
        assert await response.receive_some() == b""


async def test_empty_post_sends_content_length_zero(nursery: trio.Nursery) -> None:
    fake = FakeUpstream(nursery, ok_handler)
    pool = make_pool(fake)
    async with await pool.send("POST", "/p", [], b"") as response:
        assert await response.read_all(max_bytes=100) == b"ok:/p"
    assert fake.requests[0].header(b"content-length") == b"0"


async def test_head_response_has_no_body_and_is_reused(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        if exchange.request.method == b"HEAD":
            await exchange.send(head(200, "Content-Length: 1000"))
            return True
        return await ok_handler(exchange)

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    async with await pool.send("HEAD", "/h", [], b"") as response:
        assert response.header("content-length") == "1000"
        assert await response.read_all(max_bytes=10) == b""
    assert await get(pool) == b"ok:/x"
    assert fake.connections == 1


async def test_keep_alive_reuses_one_connection(nursery: trio.Nursery) -> None:
    fake = FakeUpstream(nursery, ok_handler)
    pool = make_pool(fake)
    assert await get(pool, "/1") == b"ok:/1"
    assert await get(pool, "/2") == b"ok:/2"
    assert fake.connections == 1
    assert [(r.connection, r.number_on_connection) for r in fake.requests] == [(0, 0), (0, 1)]
    assert pool.statistics() == IDLE


async def test_connection_close_response_is_not_reused(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(fixed(b"bye", 200, "Connection: close"))
        return False

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    assert await get(pool) == b"bye"
    assert pool.statistics() == EMPTY
    assert await get(pool) == b"bye"
    assert fake.connections == 2


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_a_close_delimited_body_is_read_to_the_close_and_not_reused(
    nursery: trio.Nursery, version: str
) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(
            head(200, version=version), b"no framing: ", b"ends at close", pause=0.01
        )
        return False  # the close ends the body

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    assert await get(pool) == b"no framing: ends at close"
    assert pool.statistics() == EMPTY


async def test_trailers_are_read_and_the_connection_reused(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(
            head(200, "Transfer-Encoding: chunked"),
            b"3;ext=1\r\nabc\r\n",
            b"0\r\nX-Checksum: 1\r\n",
            b"\r\n",
            pause=0.01,
        )
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    assert await get(pool) == b"abc"
    assert pool.statistics() == IDLE
    assert await get(pool) == b"abc"
    assert fake.connections == 1


@pytest.mark.parametrize(
    "after",
    [b"HTTP/1.1 200 OK\r\n", b"\r\n"],
    ids=["unsolicited-response", "stray-crlf"],
)
async def test_bytes_after_the_body_close_instead_of_pooling(
    nursery: trio.Nursery, after: bytes
) -> None:
    async def handler(exchange: Exchange) -> bool:
        # One write, so the client reads the bytes after the body with the body: an idle
        # connection that receives bytes later is caught by the readability check instead.
        await exchange.send(
            head(200, "Transfer-Encoding: chunked") + chunk(b"ab") + LAST_CHUNK + after
        )
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    async with await pool.send("GET", "/", [], b"") as response:
        assert await response.read_all(max_bytes=10) == b"ab"
    assert pool.statistics() == EMPTY


async def test_redirect_is_returned_not_followed(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(fixed(b"", 307, "Location: http://canary.test/steal"))
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    async with await pool.send("POST", "/v1/x", [], b"{}") as response:
        assert response.status == 307
        assert response.header("location") == "http://canary.test/steal"
        assert await response.receive_some() == b""
    assert len(fake.requests) == 1
    assert fake.connections == 1


async def test_informational_responses_are_skipped(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(head(103, "Link: </a>; rel=preload"), fixed(b"final"), pause=0.01)
        return True

    pool = make_pool(FakeUpstream(nursery, handler))
    assert await get(pool) == b"final"


async def test_reserved_and_invalid_headers_are_rejected(nursery: trio.Nursery) -> None:
    pool = make_pool(FakeUpstream(nursery, ok_handler))
    for name in (b"Host", b"content-length", b"Transfer-Encoding"):
        with pytest.raises(ValueError, match="set by the pool"):
            await pool.send("GET", "/", [(name, b"1")], b"")
    with pytest.raises(ValueError, match="invalid"):
        await pool.send("GET", "/", [(b"x-evil", b"a\r\nInjected: 1")], b"")
    assert pool.statistics() == EMPTY


async def test_read_all_enforces_max_bytes(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        if exchange.index == 0:
            await exchange.send(fixed(b"x" * 100))
        else:
            await exchange.send(head(200, "Transfer-Encoding: chunked"), chunk(b"y" * 100))
            await exchange.send(LAST_CHUNK)
        return True

    pool = make_pool(FakeUpstream(nursery, handler))
    for _ in range(2):
        async with await pool.send("GET", "/", [], b"") as response:
            with pytest.raises(UpstreamProtocolError, match="exceeds 99 bytes"):
                await response.read_all(max_bytes=99)
    assert pool.statistics().active == 0


# ---------------------------------------------------------------- cancel safety of the body


BODY_PIECES = [
    head(200, "Transfer-Encoding: chunked"),
    b"5\r\nhel",  # a chunk split inside its data
    b"lo\r\n",
    b"6\r\n",  # a chunk header without its data
    b" world\r\n",
    b"1",  # a chunk-size line split in two
    b"0\r\n0123456789abcdef\r\n",
    chunk(b"!") + chunk(b"?"),
    LAST_CHUNK,
]
FULL_BODY = b"hello world0123456789abcdef!?"


async def paced_handler(exchange: Exchange) -> bool:
    await exchange.send(*BODY_PIECES, pause=1.0)
    return True


@pytest.mark.parametrize("first_cancel", [0.5, 1.5, 2.0, 2.5, 3.5, 4.99, 6.5])
async def test_receive_some_is_cancel_safe_across_tasks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, first_cancel: float
) -> None:
    pool = make_pool(FakeUpstream(nursery, paced_handler))
    response = await pool.send("GET", "/", [], b"")
    received: list[bytes] = []

    async def task_a() -> None:
        with trio.move_on_after(first_cancel) as scope:
            while data := await response.receive_some():
                received.append(data)
        assert scope.cancelled_caught

    async def task_b() -> None:
        while data := await response.receive_some():
            received.append(data)

    async with trio.open_nursery() as readers:
        readers.start_soon(task_a)
    async with trio.open_nursery() as readers:
        readers.start_soon(task_b)
    assert b"".join(received) == FULL_BODY
    assert response.is_finished
    await response.aclose()
    assert pool.statistics() == IDLE


async def test_receive_some_survives_many_cancellations(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    pool = make_pool(FakeUpstream(nursery, paced_handler))
    received: list[bytes] = []
    cancellations = 0
    async with await pool.send("GET", "/", [], b"") as response:
        while not response.is_finished:
            async with trio.open_nursery() as readers:  # a new task for every attempt

                async def one_read() -> None:
                    nonlocal cancellations
                    with trio.move_on_after(0.3) as scope:
                        received.append(await response.receive_some())
                    cancellations += scope.cancelled_caught

                readers.start_soon(one_read)
    assert b"".join(received) == FULL_BODY
    assert cancellations >= 10
    assert pool.statistics() == IDLE


# ---------------------------------------------------------------- cancellation and accounting


async def test_cancel_before_head_closes_the_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server_saw_close = trio.Event()

    async def handler(exchange: Exchange) -> bool:
        if exchange.index == 0:  # never answer; notice the client going away
            await exchange.wait_closed()
            server_saw_close.set()
            return False
        return await ok_handler(exchange)

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    with trio.move_on_after(5) as scope:
        await pool.send("POST", "/slow", [], b"{}")
    assert scope.cancelled_caught
    assert pool.statistics() == EMPTY
    with trio.fail_after(1):
        await server_saw_close.wait()
    assert await get(pool, "/next") == b"ok:/next"
    assert fake.connections == 2


async def test_cancel_during_connect_keeps_accounting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hanging(host: str, port: int, tls: bool) -> trio.abc.Stream:
        await trio.sleep_forever()

    pool = ConnectionPool(ORIGIN, connector=hanging, connect_timeout=60)

    async def cancelled_request() -> None:
        with trio.move_on_after(1):
            await pool.send("GET", "/", [], b"")

    async with trio.open_nursery() as requests:  # RELIABILITY.md K2
        for _ in range(1000):
            requests.start_soon(cancelled_request)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.statistics() == PoolStatistics(active=1000, idle=0)
    assert pool.statistics() == EMPTY


async def test_double_cancel_mid_stream_then_aclose_in_cancelled_scope(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeUpstream(nursery, paced_handler)
    pool = make_pool(fake)
    response = await pool.send("GET", "/", [], b"")
    with trio.CancelScope() as outer:
        with trio.move_on_after(2.5):
            while await response.receive_some():
                pass
        outer.cancel()
        with pytest.raises(trio.Cancelled):
            await response.receive_some()
        await response.aclose()  # must finish despite the cancelled scope
        await response.aclose()
    assert pool.statistics() == EMPTY
    with pytest.raises(trio.ClosedResourceError):
        await response.receive_some()
    with trio.fail_after(1):
        await fake.client_closed[0].wait()


async def test_aclose_while_another_task_reads(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    pool = make_pool(FakeUpstream(nursery, paced_handler))
    response = await pool.send("GET", "/", [], b"")

    async def read_to_end() -> None:
        while await response.receive_some():
            pass

    async def reader() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await read_to_end()

    async with trio.open_nursery() as readers:
        readers.start_soon(reader)
        await trio.sleep(2.5)
        await response.aclose()
    assert pool.statistics() == EMPTY


@pytest.mark.parametrize("seed", range(4))
async def test_hundred_concurrent_requests_half_cancelled(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    rng = random.Random(seed)

    def expected(target: bytes) -> bytes:
        return (target + b";") * 50

    async def handler(exchange: Exchange) -> bool:
        body = expected(exchange.request.target)
        await exchange.send(head(200, "Transfer-Encoding: chunked"))
        for start in range(0, len(body), 97):
            await trio.sleep(rng.uniform(0, 0.2))
            await exchange.send(chunk(body[start : start + 97]))
        await exchange.send(LAST_CHUNK)
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake, max_idle=16)
    completed: dict[str, bytes] = {}
    partial: dict[str, bytes] = {}

    async def one_request(target: str, cancel_after: float) -> None:
        received: list[bytes] = []
        with trio.move_on_after(cancel_after):
            await trio.sleep(rng.uniform(0, 0.5))
            response = await pool.send("GET", target, [], b"")
            try:
                while data := await response.receive_some():
                    received.append(data)
                completed[target] = b"".join(received)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await response.aclose()
        partial[target] = b"".join(received)

    for round_ in range(2):
        completed.clear()
        async with trio.open_nursery() as requests:
            for i in range(100):
                cancel_after = rng.uniform(0, 3) if i % 2 else float("inf")
                requests.start_soon(one_request, f"/r{round_}-{i}", cancel_after)
        assert pool.statistics().active == 0
        assert pool.statistics().idle <= 16
        assert len(completed) >= 50
        for target, body in completed.items():
            assert body == expected(target.encode())
        for target, body in partial.items():
            assert expected(target.encode()).startswith(body)

    await pool.aclose()
    assert pool.statistics() == EMPTY
    # Every server task ends once it notices its client closed (within one 0.2 s pause):
    # no connection, and so no server task, outlives the pool.
    with trio.fail_after(1):
        while fake.open_connections:
            await trio.sleep(0.05)
    assert await get(pool, "/alive") == expected(b"/alive")


# ---------------------------------------------------------------- stale keep-alive and retries


async def test_stale_idle_connection_is_retried_on_a_fresh_one(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(fixed(b"ok"))
        return False  # keep-alive advertised, but the server closes the idle connection

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    assert await get(pool) == b"ok"
    assert pool.statistics() == IDLE
    await trio.testing.wait_all_tasks_blocked()
    assert await get(pool) == b"ok"
    assert fake.connections == 2
    assert [r.connection for r in fake.requests] == [0, 1]


async def test_reused_connection_closed_on_arrival_is_retried(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        if exchange.index == 1:  # the idle-timeout race: request read, connection closed
            return False
        await exchange.send(fixed(b"ok"))
        return True

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    assert await get(pool, "/a") == b"ok"
    assert await get(pool, "/b") == b"ok"
    assert [(r.connection, r.target) for r in fake.requests] == [(0, b"/a"), (0, b"/b"), (1, b"/b")]
    assert pool.statistics() == IDLE


async def test_fresh_connection_failure_is_not_retried(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        return False  # close without answering

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    with pytest.raises(UpstreamUnavailable, match="before sending a response"):
        await pool.send("POST", "/", [], b"{}")
    assert fake.connections == 1
    assert pool.statistics() == EMPTY


async def test_reused_connection_failing_after_head_bytes_is_not_retried(
    nursery: trio.Nursery,
) -> None:
    async def handler(exchange: Exchange) -> bool:
        if exchange.index == 0:
            await exchange.send(fixed(b"ok"))
            return True
        await exchange.send(b"HTTP/1.1 200 O")
        return False

    fake = FakeUpstream(nursery, handler)
    pool = make_pool(fake)
    assert await get(pool) == b"ok"
    with pytest.raises(UpstreamProtocolError):
        await pool.send("GET", "/", [], b"")
    assert fake.connections == 1
    assert pool.statistics() == EMPTY


async def test_idle_connections_expire(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    fake = FakeUpstream(nursery, ok_handler)
    pool = make_pool(fake, idle_expiry=10)
    assert await get(pool) == b"ok:/x"
    await trio.sleep(5)
    assert await get(pool) == b"ok:/x"
    assert fake.connections == 1
    await trio.sleep(11)
    assert await get(pool) == b"ok:/x"
    assert fake.connections == 2
    with trio.fail_after(1):
        await fake.client_closed[0].wait()
    assert pool.statistics() == IDLE


async def test_max_idle_and_pool_aclose(nursery: trio.Nursery) -> None:
    fake = FakeUpstream(nursery, ok_handler)
    pool = make_pool(fake, max_idle=2)
    responses = [await pool.send("GET", f"/{i}", [], b"") for i in range(4)]
    assert pool.statistics() == PoolStatistics(active=4, idle=0)
    for response in responses:
        await response.read_all(max_bytes=10)
        await response.aclose()
    assert pool.statistics() == PoolStatistics(active=0, idle=2)
    await trio.testing.wait_all_tasks_blocked()
    assert fake.open_connections == 2
    await pool.aclose()
    assert pool.statistics() == EMPTY
    await trio.testing.wait_all_tasks_blocked()
    assert fake.open_connections == 0
    assert await get(pool) == b"ok:/x"  # still usable
    # LIFO: the newest idle connection is reused first.
    assert fake.requests[-1].connection == 4


async def test_release_nowait_pools_only_what_needs_no_io(nursery: trio.Nursery) -> None:
    # The settle of every attempt entered a shielded scope and a timer for aclose(),
    # which for a finished keep-alive response never awaited anything.
    fake = FakeUpstream(nursery, ok_handler)
    pool = make_pool(fake, max_idle=2)
    responses = [await pool.send("GET", f"/{i}", [], b"") for i in range(4)]
    unread = responses.pop()
    assert not unread.release_nowait()  # its body was not read: it must be closed
    assert pool.statistics() == PoolStatistics(active=4, idle=0)
    await unread.aclose()
    for response in responses:
        await response.read_all(max_bytes=10)
    first, second, third = responses
    assert first.release_nowait()
    assert second.release_nowait()
    assert pool.statistics() == PoolStatistics(active=1, idle=2)
    assert first.release_nowait()  # idempotent, and aclose does nothing more
    await first.aclose()
    assert pool.statistics() == PoolStatistics(active=1, idle=2)
    assert not third.release_nowait()  # the pool is full: an idle one would be closed
    assert pool.statistics() == PoolStatistics(active=1, idle=2)
    await third.aclose()
    assert pool.statistics() == PoolStatistics(active=0, idle=2)
    await trio.testing.wait_all_tasks_blocked()
    assert fake.open_connections == 2


async def test_unread_body_closes_instead_of_pooling(nursery: trio.Nursery) -> None:
    fake = FakeUpstream(nursery, ok_handler)
    pool = make_pool(fake)
    async with await pool.send("GET", "/", [], b"") as response:
        assert response.status == 200
    assert pool.statistics() == EMPTY
    await trio.testing.wait_all_tasks_blocked()
    assert fake.client_closed[0].is_set()


# ---------------------------------------------------------------- connect failures


async def test_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async def hanging(host: str, port: int, tls: bool) -> trio.abc.Stream:
        await trio.sleep_forever()

    pool = ConnectionPool(ORIGIN, connector=hanging, connect_timeout=7)
    start = trio.current_time()
    with pytest.raises(UpstreamTimeout) as caught:
        await pool.send("GET", "/", [], b"")
    assert caught.value.phase == "connect"
    assert trio.current_time() - start == pytest.approx(7)
    assert pool.statistics() == EMPTY


async def test_connect_error_message_names_no_address() -> None:
    async def refused(host: str, port: int, tls: bool) -> trio.abc.Stream:
        raise ConnectionRefusedError(111, "Connection refused by 10.9.8.7:8443")

    pool = ConnectionPool(Origin("https", "10.9.8.7", 8443), connector=refused)
    with pytest.raises(UpstreamUnavailable) as caught:
        await pool.send("GET", "/", [], b"")
    assert caught.value.message == "connection to upstream failed (ConnectionRefusedError)"
    assert pool.statistics() == EMPTY


# ---------------------------------------------------------------- malformed responses


@pytest.mark.parametrize(
    "pieces",
    [
        [head(200, "Transfer-Encoding: chunked"), chunk(b"abc")],  # no last chunk
        [head(200, "Content-Length: 10"), b"abc"],  # short body
    ],
    ids=["chunked", "content-length"],
)
async def test_truncated_body_raises_then_releases(
    nursery: trio.Nursery, pieces: list[bytes]
) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(*pieces, pause=0.01)
        return False

    pool = make_pool(FakeUpstream(nursery, handler))
    response = await pool.send("GET", "/", [], b"")
    assert await response.receive_some() == b"abc"
    with pytest.raises(UpstreamProtocolError, match="before the response body was complete"):
        await response.receive_some()
    with pytest.raises(UpstreamProtocolError):  # the failure sticks
        await response.receive_some()
    assert not response.is_finished
    await response.aclose()
    assert pool.statistics() == EMPTY


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 200_000 + b"\r\n\r\n",
    ],
    ids=["bad-chunk-size", "duplicate-length", "bad-status", "garbage", "huge-head"],
)
async def test_malformed_responses(nursery: trio.Nursery, raw: bytes) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(raw)
        await exchange.wait_closed()
        return False

    pool = make_pool(FakeUpstream(nursery, handler))
    with pytest.raises(UpstreamProtocolError, match="malformed"):
        async with await pool.send("GET", "/", [], b"") as response:
            await response.read_all(max_bytes=100)
    assert pool.statistics() == EMPTY


async def test_unclosed_response_warns(nursery: trio.Nursery) -> None:
    pool = make_pool(FakeUpstream(nursery, ok_handler))
    responses = [await pool.send("GET", "/", [], b"")]
    with pytest.warns(ResourceWarning, match="never closed"):
        responses.clear()  # the last reference: CPython finalizes it right here
    assert pool.statistics().active == 1  # the leak is visible, as documented


# ---------------------------------------------------------------- real sockets


async def serve_on_localhost(nursery: trio.Nursery, handler: Handler) -> tuple[FakeUpstream, int]:
    fake = FakeUpstream(nursery, handler)
    serve = partial(trio.serve_tcp, fake.serve_connection, 0, host="127.0.0.1")
    listeners = await nursery.start(serve)
    port: int = listeners[0].socket.getsockname()[1]
    return fake, port


@pytest.mark.slow
async def test_real_socket_keep_alive_and_nodelay(nursery: trio.Nursery) -> None:
    fake, port = await serve_on_localhost(nursery, ok_handler)
    stream = await connect_tcp("127.0.0.1", port, False)
    assert isinstance(stream, trio.SocketStream)
    assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    await stream.aclose()

    pool = ConnectionPool(Origin("http", "127.0.0.1", port))
    assert await get(pool, "/1") == b"ok:/1"
    assert await get(pool, "/2") == b"ok:/2"
    assert fake.requests[1].connection == fake.requests[0].connection
    assert fake.requests[1].header(b"host") == f"127.0.0.1:{port}".encode()
    await pool.aclose()


@pytest.mark.slow
async def test_real_socket_stale_connection_is_detected(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        await exchange.send(fixed(b"ok"))
        return False

    fake, port = await serve_on_localhost(nursery, handler)
    pool = ConnectionPool(Origin("http", "127.0.0.1", port))
    assert await get(pool) == b"ok"
    with trio.fail_after(5):
        while fake.open_connections:
            await trio.sleep(0.01)
    await trio.sleep(0.05)  # let the FIN reach our socket
    assert await get(pool) == b"ok"
    assert [r.number_on_connection for r in fake.requests] == [0, 0]
    assert fake.connections == 2
    await pool.aclose()


@pytest.mark.slow
async def test_real_socket_cancel_and_truncation(nursery: trio.Nursery) -> None:
    async def handler(exchange: Exchange) -> bool:
        if exchange.request.target == b"/hang":
            await exchange.wait_closed()
            return False
        await exchange.send(head(200, "Transfer-Encoding: chunked"), chunk(b"abc"))
        await trio.sleep(0.05)
        return False  # cut mid-body

    fake, port = await serve_on_localhost(nursery, handler)
    pool = ConnectionPool(Origin("http", "127.0.0.1", port))
    with trio.move_on_after(0.2):
        await pool.send("GET", "/hang", [], b"")
    assert pool.statistics() == EMPTY
    async with await pool.send("GET", "/cut", [], b"") as response:
        assert await response.receive_some() == b"abc"
        with pytest.raises(UpstreamProtocolError):
            await response.receive_some()
    assert pool.statistics() == EMPTY
    with trio.fail_after(5):
        while fake.open_connections:
            await trio.sleep(0.01)


@pytest.mark.slow
async def test_real_connection_refused_message_names_no_address() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = ConnectionPool(Origin("http", "127.0.0.1", port))
    with pytest.raises(UpstreamUnavailable) as caught:
        await pool.send("GET", "/", [], b"")
    message = caught.value.message
    assert "127.0.0.1" not in message
    assert str(port) not in message
    assert "ConnectionRefusedError" in message
    assert pool.statistics() == EMPTY


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away certificate for 127.0.0.1 (key and certificate in one PEM file)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    pem = tmp_path_factory.mktemp("tls") / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(pem),
            "-out",
            str(pem),
        ],
        check=True,
        capture_output=True,
    )
    return pem


@pytest.mark.slow
async def test_real_tls_keep_alive_and_verification(
    nursery: trio.Nursery, self_signed_cert: Path
) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(self_signed_cert)
    server_context.set_alpn_protocols(["http/1.1"])
    fake = FakeUpstream(nursery, ok_handler)
    serve = partial(
        trio.serve_ssl_over_tcp,
        fake.serve_connection,
        0,
        server_context,
        host="127.0.0.1",
        https_compatible=True,
    )
    listeners = await nursery.start(serve)
    port: int = listeners[0].transport_listener.socket.getsockname()[1]
    origin = Origin("https", "127.0.0.1", port)

    client_context = create_ssl_context()
    client_context.load_verify_locations(self_signed_cert)
    stream = await connect_tcp("127.0.0.1", port, True, ssl_context=client_context)
    assert isinstance(stream, trio.SSLStream)
    assert stream.selected_alpn_protocol() == "http/1.1"
    await stream.aclose()

    pool = ConnectionPool(origin, connector=partial(connect_tcp, ssl_context=client_context))
    for i in range(3):
        assert await get(pool, f"/{i}") == f"ok:/{i}".encode()
    assert [r.connection for r in fake.requests] == [1, 1, 1]
    async with await pool.send("GET", "/unread", [], b"") as response:
        assert response.status == 200  # closed unread: a hard close, no close_notify wait
    assert pool.statistics() == EMPTY
    await pool.aclose()

    untrusting = ConnectionPool(origin)  # certifi's roots only
    with pytest.raises(UpstreamUnavailable) as caught:
        await untrusting.send("GET", "/", [], b"")
    assert caught.value.message == "connection to upstream failed (SSLCertVerificationError)"
    assert untrusting.statistics() == EMPTY
