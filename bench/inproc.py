"""CPU per stream of the gateway's own code, in one process: for before/after comparisons.

Theory of operation: the real bench (``run.py``) measures whole processes on real sockets,
which on this shared 2-core machine moves with whatever else runs. This script takes the
sockets and hypercorn out: the shipped ``config.toml`` (its ``[mock_upstream]`` removed and
the ledger in a temporary SQLite file, so the ledger thread's work is counted) is served by
an in-process :class:`~trio_gateway.testing.MockUpstream` over memory streams and driven by
:class:`~trio_gateway.testing.AsgiClient`. It runs ``--streams`` streams after a warm-up and
divides the process's CPU time (``time.process_time``: all threads) by the streams. The
figure includes the in-memory mock and client, which a change to the gateway does not
touch, so compare runs with each other, never with ``run.py``'s per-process numbers.
``--profile FILE`` writes a cProfile of the measured part.

Invariants:
    * bounded: ``--streams`` (at most 100 000) and ``--seconds`` (at most 600);
    * no sockets at all.

    python bench/inproc.py --streams 3000 --concurrency 1
    python bench/inproc.py --model 'mock-text:tokens=20,interval=0.001' --concurrency 64
"""

from __future__ import annotations

import argparse
import cProfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio
from _procs import gateway_config

from trio_gateway._config import load_config
from trio_gateway._gateway import open_gateway
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector


async def _one(client: AsgiClient, body: dict[str, object]) -> None:
    headers = {"x-api-key": "sk-demo-key", "anthropic-version": "2023-06-01"}
    async with client.stream("POST", "/v1/messages", json=body, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"status {response.status}: {await response.read()!r}")
        await response.read()


async def _run(args: argparse.Namespace) -> dict[str, float]:
    body: dict[str, object] = {
        "model": args.model,
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    with tempfile.TemporaryDirectory() as directory:
        path = gateway_config(Path(directory), port=8080, mock_port=8081)
        config = load_config(path)
        mock = MockUpstream(interval=0.0)
        async with (
            open_memory_connector(mock) as connector,
            open_gateway(config, connector=connector) as gateway,
        ):
            client = AsgiClient(gateway)

            async def batch(count: int) -> None:
                remaining = count

                async def worker() -> None:
                    nonlocal remaining
                    while remaining > 0:
                        remaining -= 1
                        await _one(client, body)
                        if len(mock.requests) > 1000:
                            mock.requests.clear()

                async with trio.open_nursery() as nursery:
                    for _ in range(min(args.concurrency, count)):
                        nursery.start_soon(worker)

            await batch(args.warmup)
            profiler = cProfile.Profile() if args.profile else None
            with trio.move_on_after(args.seconds):
                cpu, wall = time.process_time(), time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                await batch(args.streams)
                if profiler is not None:
                    profiler.disable()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if profiler is not None:
                profiler.dump_stats(args.profile)
    return {"cpu_us_per_stream": cpu / args.streams * 1e6, "streams_per_s": args.streams / wall}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mock-text:tokens=20")
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is printed")
    parser.add_argument("--profile", default="", help="write a cProfile of the last run")
    args = parser.parse_args(argv)
    if not 0 < args.streams <= 100_000 or not 0 < args.seconds <= 600:
        parser.error("--streams must be 1..100000 and --seconds 1..600")
    results = [trio.run(_run, args) for _ in range(args.repeat)]
    cpu = sorted(r["cpu_us_per_stream"] for r in results)
    rate = sorted(r["streams_per_s"] for r in results)
    print(
        f"{args.model} c={args.concurrency}: CPU per stream {cpu[len(cpu) // 2]:.0f} µs median, "
        f"{cpu[0]:.0f} min "
        f"(runs: {', '.join(f'{c:.0f}' for c in cpu)}), {rate[len(rate) // 2]:.0f} streams/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
