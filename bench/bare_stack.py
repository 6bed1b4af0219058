"""The bare-stack reference: hypercorn's trio worker streaming the mock's bytes, no upstream.

Theory of operation: a trivial ASGI app on ``hypercorn.trio.serve`` (one process, the same
server and settings class the gateway runs on) answers the mock upstream's API paths with
exactly the bytes the mock would send. The mock's own sans-IO router
(``trio_gateway._mock._routes.route``) renders the response script once per distinct
(method, path, model, stream) and it is cached, so per request the app only reads the body,
looks the script up and sends it: one ``send()`` per SSE event, like the mock, sleeping each
event's scripted delay (``interval`` in the model spec). What it costs is what the stack itself
costs, the ceiling any gateway on hypercorn-trio can reach on this machine.

The ``/merged`` path prefix (``/merged/v1/messages`` ...) selects the variant that merges
every run of back-to-back events (no delay between them) into one ``send()``, as the gateway's
client writer does with frames already queued.

A watcher task per response stops it when the client disconnects (hypercorn's ``send()``
succeeds silently after a disconnect), as the gateway and any real app must.

Invariants:
    * the bytes are the mock's for the same request, except the per-request ids, which are
      those of the mock's first request (the script is rendered once);
    * one ``send()`` per event in the plain variant; one per run of zero-delay events merged.

    python bench/bare_stack.py --port 18082
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from trio_gateway._asgi import Receive, Scope, Send
from trio_gateway._mock._routes import route
from trio_gateway._mock._script import Script

__all__ = ["BareStack", "main"]

MERGED_PREFIX: Final = "/merged"
_MAX_CACHED: Final = 256


class BareStack:
    """The ASGI app (see the module docs).

    Args:
        interval: default seconds between events, as the mock's ``--interval`` (0 here).
    """

    def __init__(self, *, interval: float = 0.0) -> None:
        self.interval = interval
        self._cache: dict[tuple[str, str, str, bool], tuple[Script, list[tuple[float, bytes]]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # disconnected before the body was complete
            body = message.get("body", b"")
            assert isinstance(body, bytes)
            raw += body
            if not message.get("more_body", False):
                break
        method, path = str(scope["method"]), str(scope["path"])
        merged = path.startswith(MERGED_PREFIX + "/")
        if merged:
            path = path[len(MERGED_PREFIX) :]
        headers = _headers(scope)
        script, writes = self._script(method, path, headers, bytes(raw), merged=merged)
        await send(
            {
                "type": "http.response.start",
                "status": script.status,
                "headers": [(n.encode(), v.encode()) for n, v in script.headers],
            }
        )
        async with trio.open_nursery() as nursery:
            # hypercorn's send() succeeds silently after a disconnect (STACK-FACTS §2), so a
            # watcher stops the response when the client leaves, as any real app must.
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope)
            for delay, data in writes:
                if delay > 0:
                    await trio.sleep(delay)
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()

    def _script(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        raw: bytes,
        *,
        merged: bool,
    ) -> tuple[Script, list[tuple[float, bytes]]]:
        try:
            parsed: object = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        model = str(parsed.get("model", "")) if isinstance(parsed, dict) else ""
        stream = isinstance(parsed, dict) and parsed.get("stream") is True
        key = (method, path, model, stream)
        cached = self._cache.get(key)
        if cached is None:
            routed = route(
                method,
                path,
                headers,
                raw,
                number=1,
                default_interval=self.interval,
                require_key=None,
            )
            script = routed.script
            cached = (script, [(w.delay, w.data) for w in script.writes if w.data])
            if len(self._cache) < _MAX_CACHED:
                self._cache[key] = cached
        script, writes = cached
        return script, (_merge(writes) if merged else writes)


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _merge(writes: Sequence[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    for delay, data in writes:
        if out and delay <= 0:
            out[-1] = (out[-1][0], out[-1][1] + data)
        else:
            out.append((delay, data))
    return out


def _headers(scope: Scope) -> list[tuple[str, str]]:
    raw = scope.get("headers", [])
    assert isinstance(raw, list)
    return [(bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1")) for n, v in raw]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/bare_stack.py --port N``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18082)
    parser.add_argument("--interval", type=float, default=0.0, help="default event gap (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = HypercornConfig()
    config.bind = [f"{args.host}:{args.port}"]
    config.backlog = 2048
    config.accesslog = None
    config.graceful_timeout = 1.0
    app = BareStack(interval=args.interval)

    async def serve() -> None:
        await hypercorn_serve(app, config)  # type: ignore[arg-type]  # hypercorn's ASGI types

    try:
        trio.run(serve)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
