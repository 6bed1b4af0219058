"""The bench's load generator: bounded SSE streams on raw trio sockets, measured per request.

Theory of operation: one trio process speaks HTTP/1.1 by hand (no HTTP client library, so its
own cost stays small; it is measured with ``resource.getrusage`` and printed next to the
results). Each request is one streaming call in the Anthropic (``/v1/messages``), Chat
(``/v1/chat/completions``) or Responses (``/v1/responses``) shape, chosen by ``--path``.

Two ways to drive load:

* closed loop (default): ``--concurrency`` workers, each sending streams back to back on its
  own keep-alive connection (reconnecting when the server closes it, e.g. after hypercorn's
  1 000 requests per connection); ``--ramp`` spreads the workers' first starts.
* paced (``--rate R``): a new stream is started every ``1/R`` seconds, on an idle connection
  or a new one, with at most ``--concurrency`` in flight; arrivals beyond that are counted as
  ``dropped``.

Per request it records TTFB (response head complete), TTFE (first SSE event of any kind),
TTFT (first content event: Anthropic
``content_block_delta``, a Chat chunk with non-empty ``content`` or ``tool_calls``, a
Responses ``response.output_text.delta``), total time, events (SSE blocks) and the outcome:
``ok`` (status 200 and the protocol's terminal event: ``message_stop``, ``[DONE]``,
``response.completed``), ``status`` (any other status), ``error_event`` (an in-band error),
``incomplete`` (the body ended without the terminal event) or ``transport`` (connect or
socket failure). Streams still running at the deadline are ``aborted``: not errors, but
their events count toward events/s.

Invariants:
    * every run is bounded: ``--seconds`` (at most 600) and ``--max-requests``; the deadline
      cancels everything still running;
    * events/s counts every event received inside the window, also of aborted streams;
    * ``--measure-after`` (seconds) excludes an initial ramp from the rates: streams/s and
      events/s count only what completed or arrived after it.

    python bench/load.py --port 8080 --path /v1/messages --model 'mock-text:tokens=20' \\
        --concurrency 64 --seconds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import trio

__all__ = ["LoadResult", "Options", "percentile", "run_load"]

Protocol = Literal["anthropic", "chat", "responses"]
Outcome = Literal["ok", "status", "error_event", "incomplete", "transport", "aborted"]

_RECEIVE: Final = 262144
_MAX_HEAD: Final = 65536
_SEPARATOR: Final = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_CHAT_CONTENT: Final = re.compile(rb'"content":\s*"[^"]|"tool_calls":\s*\[')
_PATHS: Final[dict[str, Protocol]] = {
    "/v1/messages": "anthropic",
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
}


def protocol_for(path: str) -> Protocol:
    """The stream protocol of ``path`` (any prefix such as ``/merged`` is ignored)."""
    for suffix, protocol in _PATHS.items():
        if path.endswith(suffix):
            return protocol
    raise ValueError(f"unknown API path {path!r}")


def build_request(path: str, model: str, key: str, host: str) -> bytes:
    """One streaming request for ``path`` in its protocol's shape."""
    protocol = protocol_for(path)
    body: dict[str, object]
    if protocol == "responses":
        body = {"model": model, "stream": True, "input": "hi"}
    else:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        if protocol == "anthropic":
            body["max_tokens"] = 1024
    raw = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {key}\r\n"
        f"authorization: Bearer {key}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\naccept: text/event-stream\r\n"
        f"content-length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


@dataclass(slots=True)
class _Scanner:
    """Splits a decoded SSE body into events and judges each one (protocol-specific)."""

    protocol: Protocol
    started: float
    keep_largest: bool = False
    buffer: bytearray = field(default_factory=bytearray)
    scanned: int = 0
    events: int = 0
    ttft: float | None = None
    ttfe: float | None = None
    terminal: bool = False
    error: bool = False
    largest: int = 0
    largest_event: bytes = b""

    def feed(self, data: bytes, now: float) -> int:
        """Add body bytes; returns the number of complete events they finished."""
        buffer = self.buffer
        buffer += data
        if self.ttft is not None and not self.keep_largest and b"\r" not in buffer:
            return self._feed_fast(buffer)
        start = 0
        found = 0
        search_from = max(0, self.scanned - 3)
        while (match := _SEPARATOR.search(buffer, search_from)) is not None:
            self._event(buffer, start, match.start(), now)
            found += 1
            start = search_from = match.end()
        if start:
            del buffer[:start]
        self.scanned = len(buffer)
        return found

    def _feed_fast(self, buffer: bytearray) -> int:
        # After the first content event only counts, the terminal and errors matter: count
        # the separators and look for the markers in C instead of visiting every event.
        last = buffer.rfind(b"\n\n")
        if last < 0:
            self.scanned = len(buffer)
            return 0
        found = buffer.count(b"\n\n", 0, last + 2)
        block = bytes(buffer[: last + 2])
        del buffer[: last + 2]
        self.scanned = len(buffer)
        self.events += found
        match self.protocol:
            case "anthropic":
                self.terminal = self.terminal or b"message_stop" in block
                self.error = self.error or b"event: error" in block or b'"type":"error"' in block
            case "chat":
                self.terminal = self.terminal or b"[DONE]" in block
                self.error = self.error or b'data: {"error"' in block or b'data:{"error"' in block
            case "responses":
                self.terminal = self.terminal or b"response.completed" in block
                self.error = self.error or b"response.failed" in block or b"event: error" in block
        return found

    def _event(self, buffer: bytearray, start: int, end: int, now: float) -> None:
        self.events += 1
        if self.ttfe is None:
            self.ttfe = now - self.started
        size = end - start
        if size > self.largest:
            self.largest = size
            if self.keep_largest:
                self.largest_event = bytes(buffer[start:end])
        # Events are small except in the large-event run; a bounded view keeps the markers
        # cheap to find (they sit in the event line or the first JSON fields).
        head = bytes(buffer[start : min(end, start + 512)])
        match self.protocol:
            case "anthropic":
                if self.ttft is None and b"content_block_delta" in head:
                    self.ttft = now - self.started
                elif b"message_stop" in head:
                    self.terminal = True
                elif b"event: error" in head or b'"type":"error"' in head:
                    self.error = True
            case "chat":
                if b"[DONE]" in head:
                    self.terminal = True
                elif self.ttft is None and _CHAT_CONTENT.search(buffer, start, end):
                    self.ttft = now - self.started
                elif head.startswith(b'data: {"error"') or b'data:{"error"' in head:
                    self.error = True
            case "responses":
                if self.ttft is None and b"response.output_text.delta" in head:
                    self.ttft = now - self.started
                elif b"response.completed" in head:
                    self.terminal = True
                elif b"response.failed" in head or b"event: error" in head:
                    self.error = True


@dataclass(slots=True)
class _Chunked:
    """Incremental ``Transfer-Encoding: chunked`` decoder that yields data as it arrives."""

    buffer: bytearray = field(default_factory=bytearray)
    remaining: int = 0  # data bytes left in the current chunk
    crlf: int = 0  # CRLF bytes still expected after a chunk's data
    done: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add wire bytes; returns the body pieces they complete (possibly partial chunks)."""
        out: list[bytes] = []
        buffer = self.buffer
        buffer += data
        pos = 0
        while pos < len(buffer) and not self.done:
            if self.remaining:
                take = min(self.remaining, len(buffer) - pos)
                out.append(bytes(buffer[pos : pos + take]))
                self.remaining -= take
                pos += take
                if not self.remaining:
                    self.crlf = 2
                continue
            if self.crlf:
                take = min(self.crlf, len(buffer) - pos)
                self.crlf -= take
                pos += take
                continue
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
            pos = line_end + 2
            if size == 0:
                self.done = True  # trailers are not used by any server here
            else:
                self.remaining = size
        del buffer[:pos]
        return out


@dataclass(slots=True)
class _Tally:
    """Everything measured in one run."""

    window_start: float
    keep_largest: bool
    started: int = 0
    streams: int = 0  # completed ok after window_start
    events: int = 0  # events received after window_start
    events_total: int = 0
    dropped: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    ttfb: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    ttfe: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    largest: int = 0
    largest_sha256: str = ""
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""

    def count(self, outcome: Outcome, detail: str = "") -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome not in {"ok", "aborted"} and not self.first_error:
            self.first_error = f"{outcome}: {detail}"[:300]


class _Closed(Exception):
    """The server closed the connection before the response ended."""


@dataclass(slots=True)
class _Connection:
    stream: trio.SocketStream
    reusable: bool = True


async def _open(host: str, port: int) -> _Connection:
    return _Connection(await trio.open_tcp_stream(host, port))


async def _one_request(
    conn: _Connection, request: bytes, protocol: Protocol, tally: _Tally
) -> None:
    """Send one request on ``conn`` and read its whole response, recording everything."""
    started = time.perf_counter()
    scanner = _Scanner(protocol, started, keep_largest=tally.keep_largest)
    tally.started += 1
    outcome: Outcome = "aborted"
    detail = ""
    try:
        await conn.stream.send_all(request)
        outcome, detail = await _read_response(conn, scanner, tally)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, _Closed) as error:
        conn.reusable = False
        outcome, detail = ("incomplete" if scanner.events else "transport"), repr(error)
    except ValueError as error:  # a malformed head or chunk size
        conn.reusable = False
        outcome, detail = "transport", repr(error)
    finally:
        if outcome == "aborted":
            conn.reusable = False
        tally.count(outcome, detail)
        if scanner.ttft is not None:
            tally.ttft.append(scanner.ttft)
        if scanner.ttfe is not None:
            tally.ttfe.append(scanner.ttfe)
        if scanner.largest > tally.largest:
            tally.largest = scanner.largest
            if tally.keep_largest:
                tally.largest_sha256 = hashlib.sha256(scanner.largest_event).hexdigest()
    if outcome == "ok":
        now = time.perf_counter()
        tally.total.append(now - started)
        if now >= tally.window_start:
            tally.streams += 1


async def _receive(conn: _Connection) -> bytes:
    data = await conn.stream.receive_some(_RECEIVE)
    if not data:
        raise _Closed("connection closed by the server")
    return bytes(data)


async def _read_response(
    conn: _Connection, scanner: _Scanner, tally: _Tally
) -> tuple[Outcome, str]:
    head = bytearray()
    while (end := head.find(b"\r\n\r\n")) < 0:
        if len(head) > _MAX_HEAD:
            raise ValueError("response head too large")
        head += await _receive(conn)
    tally.ttfb.append(time.perf_counter() - scanner.started)
    lines = bytes(head[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if headers.get("connection") == "close":
        conn.reusable = False
    rest = bytes(head[end + 4 :])
    chunked = headers.get("transfer-encoding") == "chunked"
    length = int(headers.get("content-length", "-1"))
    body_seen = 0
    decoder = _Chunked()

    def consume(data: bytes) -> bool:
        nonlocal body_seen
        pieces = decoder.feed(data) if chunked else [data]
        now = time.perf_counter()
        for piece in pieces:
            body_seen += len(piece)
            found = scanner.feed(piece, now)
            tally.events_total += found
            if now >= tally.window_start:
                tally.events += found
        return decoder.done if chunked else 0 <= length <= body_seen

    finished = consume(rest) if rest else (not chunked and length == 0)
    while not finished:
        try:
            data = await _receive(conn)
        except _Closed:
            if chunked or length >= 0:
                raise
            conn.reusable = False  # a body delimited by the connection's end
            break
        finished = consume(data)
    if status != 200:
        return "status", f"HTTP {status}"
    if scanner.error:
        return "error_event", "in-band error event"
    if not scanner.terminal:
        return "incomplete", "no terminal event"
    return "ok", ""


@dataclass(frozen=True, slots=True)
class Options:
    """What to run (the command-line flags, see ``main``)."""

    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/v1/messages"
    model: str = "mock-text:tokens=20"
    key: str = "sk-demo-key"
    concurrency: int = 1
    seconds: float = 5.0
    max_requests: int = 1_000_000
    rate: float = 0.0
    ramp: float = 0.0
    measure_after: float = 0.0
    digest: bool = False


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The summary of one run (what ``--json`` prints)."""

    options: dict[str, object]
    elapsed: float
    window: float
    started: int
    streams: int
    streams_per_s: float
    events: int
    events_per_s: float
    errors: int
    dropped: int
    outcomes: dict[str, int]
    statuses: dict[int, int]
    ttfb_ms: dict[str, float]
    ttft_ms: dict[str, float]
    ttfe_ms: dict[str, float]
    total_ms: dict[str, float]
    client_cpu_s: float
    client_cpu_pct: float
    largest_event: int
    largest_sha256: str
    first_error: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {name: getattr(self, name) for name in self.__slots__}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "n": len(values),
        "p50": 1000 * statistics.median(values),
        "p90": 1000 * percentile(values, 0.90),
        "p99": 1000 * percentile(values, 0.99),
        "max": 1000 * max(values),
    }


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _closed_loop_worker(
    options: Options, index: int, request: bytes, tally: _Tally, budget: _Budget
) -> None:
    protocol = protocol_for(options.path)
    if options.ramp > 0:
        await trio.sleep(options.ramp * index / options.concurrency)
    conn: _Connection | None = None
    failures = 0
    try:
        while budget.take():
            if conn is None:
                try:
                    conn = await _open(options.host, options.port)
                except OSError as error:
                    tally.count("transport", repr(error))
                    failures += 1
                    await trio.sleep(min(1.0, 0.01 * 2**failures))
                    continue
            await _one_request(conn, request, protocol, tally)
            if not conn.reusable:
                await trio.aclose_forcefully(conn.stream)
                conn = None
    finally:
        if conn is not None:
            await trio.aclose_forcefully(conn.stream)


async def _paced(options: Options, request: bytes, tally: _Tally, budget: _Budget) -> None:
    protocol = protocol_for(options.path)
    idle: list[_Connection] = []
    in_flight = 0

    async def one() -> None:
        nonlocal in_flight
        conn: _Connection | None = idle.pop() if idle else None
        try:
            if conn is None:
                conn = await _open(options.host, options.port)
            await _one_request(conn, request, protocol, tally)
            if conn.reusable:
                idle.append(conn)
                conn = None
        except OSError as error:
            tally.count("transport", repr(error))
        finally:
            in_flight -= 1
            if conn is not None:
                await trio.aclose_forcefully(conn.stream)

    try:
        async with trio.open_nursery() as nursery:
            interval = 1.0 / options.rate
            next_at = trio.current_time()
            while budget.take():
                if in_flight >= options.concurrency:
                    tally.dropped += 1
                else:
                    in_flight += 1
                    nursery.start_soon(one)
                next_at += interval
                await trio.sleep_until(next_at)
    finally:
        for conn in idle:
            await trio.aclose_forcefully(conn.stream)


async def run_load(options: Options) -> LoadResult:
    """Run the load described by ``options`` and summarise it."""
    request = build_request(options.path, options.model, options.key, options.host)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    tally = _Tally(window_start=started + options.measure_after, keep_largest=options.digest)
    budget = _Budget(options.max_requests)
    with trio.move_on_after(options.seconds):
        if options.rate > 0:
            await _paced(options, request, tally, budget)
        else:
            async with trio.open_nursery() as nursery:
                for index in range(options.concurrency):
                    nursery.start_soon(_closed_loop_worker, options, index, request, tally, budget)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    window = max(1e-9, elapsed - options.measure_after)
    errors = sum(n for outcome, n in tally.outcomes.items() if outcome not in {"ok", "aborted"})
    return LoadResult(
        options={k: getattr(options, k) for k in Options.__slots__},
        elapsed=elapsed,
        window=window,
        started=tally.started,
        streams=tally.streams,
        streams_per_s=tally.streams / window,
        events=tally.events_total,
        events_per_s=tally.events / window,
        errors=errors,
        dropped=tally.dropped,
        outcomes=dict(tally.outcomes),
        statuses=dict(tally.statuses),
        ttfb_ms=_stats(tally.ttfb),
        ttft_ms=_stats(tally.ttft),
        ttfe_ms=_stats(tally.ttfe),
        total_ms=_stats(tally.total),
        client_cpu_s=cpu,
        client_cpu_pct=100 * cpu / max(elapsed, 1e-9),
        largest_event=tally.largest,
        largest_sha256=tally.largest_sha256,
        first_error=tally.first_error,
    )


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def format_result(result: LoadResult) -> str:
    """A short human-readable summary."""
    o = result.options
    ttft, ttfb = result.ttft_ms, result.ttfb_ms
    return (
        f"{o['path']} {o['model']} c={o['concurrency']}"
        f"{' rate=' + str(o['rate']) if result.options['rate'] else ''}: "
        f"{result.streams_per_s:.1f} streams/s, {result.events_per_s:.0f} events/s, "
        f"TTFB p50 {ttfb['p50']:.2f} ms, TTFT p50 {ttft['p50']:.2f} / p99 {ttft['p99']:.2f} ms, "
        f"errors {result.errors} {result.outcomes}, dropped {result.dropped}; "
        f"client CPU {result.client_cpu_s:.2f} s ({result.client_cpu_pct:.0f} % of a core) "
        f"over {result.elapsed:.1f} s"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--path", default="/v1/messages", help="API path (its protocol)")
    parser.add_argument("--model", default="mock-text:tokens=20")
    parser.add_argument("--key", default="sk-demo-key")
    parser.add_argument("--concurrency", type=int, default=1, help="streams in flight")
    parser.add_argument("--seconds", type=float, default=5.0, help="hard deadline of the run")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget")
    parser.add_argument("--rate", type=float, default=0.0, help="paced: new streams per second")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread worker starts (s)")
    parser.add_argument("--measure-after", type=float, default=0.0, help="exclude first S s")
    parser.add_argument("--digest", action="store_true", help="sha256 of the largest event")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one load from the command line."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 600 or not 0 < args.concurrency <= 5000:
        parser.error("bounded runs only: 0 < seconds <= 600, 0 < concurrency <= 5000")
    if args.max_requests < 1 or args.rate < 0 or not 0 <= args.measure_after < args.seconds:
        parser.error("--max-requests >= 1, --rate >= 0, 0 <= --measure-after < --seconds")
    try:
        protocol_for(args.path)
    except ValueError as error:
        parser.error(str(error))
    _raise_fd_limit()
    options = Options(
        host=args.host,
        port=args.port,
        path=args.path,
        model=args.model,
        key=args.key,
        concurrency=args.concurrency,
        seconds=args.seconds,
        max_requests=args.max_requests,
        rate=args.rate,
        ramp=args.ramp,
        measure_after=args.measure_after,
        digest=args.digest,
    )
    result = trio.run(run_load, options)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
    else:
        sys.stdout.write(format_result(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
