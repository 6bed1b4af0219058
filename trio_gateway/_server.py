"""hypercorn wiring: the listening socket, SSE-safe settings, signals, the built-in mock.

hypercorn's defaults are wrong for SSE (STACK-FACTS §2): a 3 s graceful timeout, a backlog
of 100, and no way for an app to break a ``send()`` to a client that stopped reading. So
``serve`` makes the listening socket itself, with ``TCP_USER_TIMEOUT`` (accepted sockets
inherit it, and the kernel then aborts a connection whose data stays unacknowledged, which
un-sticks hypercorn's shielded send) and a large backlog, and hands it to hypercorn as
``fd://N``.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CONTENT_TYPE_LATEST

from ._asgi import Receive, Scope, Send
from ._config import GatewayConfig
from ._gateway import Gateway, open_gateway
from ._http1 import Connector
from ._metrics import bearer_matches
from ._mock import MockUpstream

logger = logging.getLogger("trio_gateway.server")

#: Seconds hypercorn waits beyond the gateway's own graceful shutdown before cancelling.
_SHUTDOWN_MARGIN: Final = 5.0


def split_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` → (host, port)."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def listening_socket(
    config: GatewayConfig, *, reuse_port: bool = False, port: int | None = None
) -> socket.socket:
    """A bound, listening TCP socket with the options hypercorn cannot set.

    Args:
        config: ``server.bind``, ``server.tcp_user_timeout`` and ``server.backlog``.
        reuse_port: set ``SO_REUSEPORT``, so that several sockets (one per worker) share the
            port and the kernel spreads new connections evenly across them.
        port: bind this port instead of the one in ``server.bind`` (the port a first
            ``reuse_port`` socket got for ``:0``).
    """
    host, bind_port = split_bind(config.server.bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        user_timeout_ms = int(config.server.tcp_user_timeout * 1000)
        if user_timeout_ms > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
        sock.bind((host, bind_port if port is None else port))
        sock.listen(config.server.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def hypercorn_config(config: GatewayConfig, *, fd: int) -> HypercornConfig:
    """hypercorn settings for SSE: see docs/operations.md for the reasons."""
    hconfig = HypercornConfig()
    hconfig.bind = [f"fd://{fd}"]
    hconfig.backlog = config.server.backlog
    # In-flight streams get graceful_timeout; the gateway's own settle step comes after.
    # hypercorn cancels whatever is left after its graceful_timeout: give the gateway's own
    # drain (graceful_timeout, then in-band errors) and its settle step time to finish first.
    hconfig.graceful_timeout = (
        config.server.graceful_timeout + config.streaming.settle_timeout + _SHUTDOWN_MARGIN
    )
    hconfig.h11_max_incomplete_size = config.server.max_header_bytes
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    return hconfig


class ShutdownSignals:
    """SIGTERM / SIGINT: the first begins a graceful shutdown, the second hurries it.

    Attributes:
        first: set on the first signal.
        second: set on any later signal.
    """

    def __init__(self) -> None:
        self.first = trio.Event()
        self.second = trio.Event()

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive signals until cancelled (installed before ``task_status.started()``)."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.first.is_set():
                    logger.info("signal %s: graceful shutdown begins", name)
                    self.first.set()
                else:
                    logger.warning("signal %s again: ending in-flight requests now", name)
                    self.second.set()


async def serve(
    config: GatewayConfig,
    *,
    connector: Connector | None = None,
    shutdown_trigger: Callable[[Gateway], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway (and the built-in mock upstream, if configured) until shutdown.

    Args:
        config: the validated configuration.
        connector: how upstream connections are made (tests may pass an in-memory one).
        shutdown_trigger: returns to begin a graceful shutdown; default: SIGTERM/SIGINT.
        task_status: started with the bound URLs, like hypercorn's ``serve``.
    """
    async with trio.open_nursery() as server_nursery:
        if config.mock_upstream is not None:
            host, port = split_bind(config.mock_upstream.bind)
            mock = MockUpstream(interval=config.mock_upstream.interval)
            await server_nursery.start(serve_mock, mock, host, port)
        async with open_gateway(config, connector=connector) as gateway:
            await serve_gateway(gateway, shutdown_trigger=shutdown_trigger, task_status=task_status)
        server_nursery.cancel_scope.cancel()


async def serve_worker(config: GatewayConfig, *, fd: int) -> None:
    """One worker of ``trio-gateway serve`` with several workers: a gateway accepting on the
    supervisor's listening socket ``fd`` until SIGTERM (``_supervisor``)."""
    async with open_gateway(config) as gateway:
        await serve_gateway(gateway, fd=fd)


async def serve_gateway(
    gateway: Gateway,
    *,
    shutdown_trigger: Callable[[Gateway], Awaitable[None]] | None = None,
    hurry_trigger: Callable[[Gateway], Awaitable[None]] | None = None,
    fd: int | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an existing gateway on hypercorn's trio worker, on ``server.bind`` (or on the
    already listening socket ``fd``, a worker of ``trio-gateway serve``), until a graceful
    shutdown completes.

    Graceful shutdown (DESIGN §4, RELIABILITY S1/S2): when ``shutdown_trigger`` returns (by
    default the first SIGTERM/SIGINT) readiness turns 503 and new API requests are refused at
    once, hypercorn stops accepting connections, and in-flight requests get up to
    ``server.graceful_timeout`` to finish; when it passes, or ``hurry_trigger`` returns (by
    default a second signal), those still running end with an in-band error event and are
    settled. hypercorn's own deadline is set past that, so it never cuts a stream first.
    """
    async with trio.open_nursery() as nursery:
        if shutdown_trigger is None:
            signals = ShutdownSignals()
            await nursery.start(signals.watch)

            async def first(_: Gateway) -> None:
                await signals.first.wait()

            async def second(_: Gateway) -> None:
                await signals.second.wait()

            shutdown_trigger, hurry_trigger = first, hurry_trigger or second
        stop_accepting = trio.Event()
        nursery.start_soon(
            _drain_on_shutdown, gateway, shutdown_trigger, hurry_trigger, stop_accepting
        )
        config = gateway.config
        if fd is None:  # not a worker of the supervisor, which serves metrics.bind itself
            fd = listening_socket(config).detach()
            if config.metrics.bind is not None:
                await nursery.start(
                    partial(
                        serve_metrics_listener,
                        config.metrics.bind,
                        gateway.metrics.render,
                        token=config.metrics.token,
                    )
                )
        await hypercorn_serve(
            gateway,  # type: ignore[arg-type]  # an ASGI 3 app; hypercorn's union is narrower than the protocol
            hypercorn_config(gateway.config, fd=fd),
            shutdown_trigger=stop_accepting.wait,
            task_status=task_status,
        )
        nursery.cancel_scope.cancel()


async def serve_metrics_listener(
    bind: str,
    render: Callable[[], bytes],
    *,
    token: str | None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A separate listener (``metrics.bind``) serving only ``GET /metrics``: the scrape
    endpoint for a loopback sidecar when no token is configured (docs/operations.md)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "lifespan":
            while True:
                kind = (await receive()).get("type")
                if kind == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif kind == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope.get("type") != "http":
            return
        headers = {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", [])}  # type: ignore[attr-defined]
        status, body, content_type = 404, b"not found\n", b"text/plain"
        if scope.get("path") == "/metrics" and scope.get("method") == "GET":
            if token is not None and not bearer_matches(headers.get(b"authorization"), token):
                status, body = 401, b"unauthorized\n"
            else:
                status, body = 200, await trio.to_thread.run_sync(render)
                content_type = CONTENT_TYPE_LATEST.encode()
        response_headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    hconfig = HypercornConfig()
    hconfig.bind = [bind]
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    await hypercorn_serve(app, hconfig, task_status=task_status)  # type: ignore[arg-type]


async def _drain_on_shutdown(
    gateway: Gateway,
    shutdown_trigger: Callable[[Gateway], Awaitable[None]],
    hurry_trigger: Callable[[Gateway], Awaitable[None]] | None,
    stop_accepting: trio.Event,
) -> None:
    await shutdown_trigger(gateway)
    gateway.begin_shutdown()
    server = gateway.config.server
    with trio.move_on_after(server.graceful_timeout) as grace_scope:
        async with trio.open_nursery() as waiters:

            async def drain() -> None:
                # RELIABILITY S1: keep accepting (readiness 503, new requests 503) for
                # accept_grace, so a load balancer sees the instance leave before any
                # connection is refused; then wait for the in-flight requests.
                await trio.sleep(server.accept_grace)
                stop_accepting.set()
                await gateway.wait_idle()
                waiters.cancel_scope.cancel()

            waiters.start_soon(drain)
            if hurry_trigger is not None:

                async def hurry() -> None:
                    await hurry_trigger(gateway)
                    waiters.cancel_scope.cancel()

                waiters.start_soon(hurry)
    stop_accepting.set()
    cut = gateway.cut_in_flight()
    if cut:
        reason = "graceful_timeout passed" if grace_scope.cancelled_caught else "second signal"
        logger.warning("shutdown: %d in-flight requests ended (%s)", cut, reason)


async def serve_mock(
    mock: MockUpstream, host: str, port: int, *, task_status: trio.TaskStatus[int]
) -> None:
    await mock.serve(host=host, port=port, task_status=task_status)
