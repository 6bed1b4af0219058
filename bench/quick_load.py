"""A small bounded SSE load client: N concurrent keep-alive streams for D seconds.

It speaks raw HTTP/1.1 on trio sockets (no HTTP client library, so its own cost stays low and
is reported), counts streams, events and time-to-first-byte, and stops by itself. It is the
quick baseline until the benchmarks issue builds the full bench (DESIGN §7).

    python bench/quick_load.py --port 8080 --path /v1/messages --model 'mock-text:tokens=20' \\
        --concurrency 32 --seconds 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field

import trio

_CHUNKED_END = b"\r\n0\r\n\r\n"


@dataclass
class Tally:
    """What the workers measured."""

    streams: int = 0
    events: int = 0
    ttfb: list[float] = field(default_factory=list)


def build_request(path: str, model: str, key: str) -> bytes:
    """One streaming request for ``path`` (Anthropic or OpenAI shape)."""
    body: dict[str, object] = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if path == "/v1/messages":
        body["max_tokens"] = 1024
    if path == "/v1/responses":
        body = {"model": model, "stream": True, "input": "hi"}
    raw = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\nx-api-key: {key}\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


async def worker(host: str, port: int, request: bytes, deadline: float, tally: Tally) -> None:
    """Send streams back to back on one keep-alive connection until ``deadline``."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await stream.send_all(request)
            received = b""
            first = True
            while not received.endswith(_CHUNKED_END):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return  # the server closed the connection (e.g. its keep-alive request cap)
                if first and b"data:" in chunk:
                    tally.ttfb.append(time.perf_counter() - started)
                    first = False
                received += chunk
            tally.events += received.count(b"\ndata:")
            tally.streams += 1


async def run(args: argparse.Namespace) -> str:
    """Run the load and return one summary line."""
    request = build_request(args.path, args.model, args.key)
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.seconds
    async with trio.open_nursery() as nursery:
        for _ in range(args.concurrency):
            nursery.start_soon(worker, args.host, args.port, request, deadline, tally)
    elapsed = time.monotonic() - started
    ttfb = sorted(tally.ttfb) or [0.0]
    p99 = ttfb[min(len(ttfb) - 1, int(len(ttfb) * 0.99))]
    return (
        f"{args.path} {args.model} c={args.concurrency}: "
        f"{tally.streams / elapsed:.0f} streams/s, {tally.events / elapsed:.0f} events/s, "
        f"ttfb p50 {1000 * statistics.median(ttfb):.1f} ms p99 {1000 * p99:.1f} ms, "
        f"client cpu {time.process_time():.1f} s over {elapsed:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--path", default="/v1/messages")
    parser.add_argument("--model", default="mock-text:tokens=20")
    parser.add_argument("--key", default="sk-demo-key")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if not 0 < args.seconds <= 120 or not 0 < args.concurrency <= 1024:
        parser.error("bounded runs only: 0 < seconds <= 120, 0 < concurrency <= 1024")
    print(trio.run(run, args))


if __name__ == "__main__":
    main()
