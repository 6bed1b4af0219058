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

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from ._config import GatewayConfig
from ._gateway import Gateway, open_gateway
from ._http1 import Connector
from ._mock import MockUpstream

logger = logging.getLogger("trio_gateway.server")


def split_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:8080"`` → (host, port)."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def listening_socket(config: GatewayConfig) -> socket.socket:
    """A bound, listening TCP socket with the options hypercorn cannot set."""
    host, port = split_bind(config.server.bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        user_timeout_ms = int(config.server.tcp_user_timeout * 1000)
        if user_timeout_ms > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
        sock.bind((host, port))
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
    hconfig.graceful_timeout = config.server.graceful_timeout + config.streaming.settle_timeout
    hconfig.h11_max_incomplete_size = config.server.max_header_bytes
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("hypercorn.error")
    return hconfig


async def wait_for_signal(gateway: Gateway) -> None:
    """Return on the first SIGTERM/SIGINT, after turning readiness off."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logger.info("signal %s: shutting down", signal.Signals(signum).name)
            gateway.shutting_down = True
            return


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
    trigger = shutdown_trigger or wait_for_signal
    async with trio.open_nursery() as server_nursery:
        if config.mock_upstream is not None:
            host, port = split_bind(config.mock_upstream.bind)
            mock = MockUpstream(interval=config.mock_upstream.interval)
            await server_nursery.start(_serve_mock, mock, host, port)
        async with open_gateway(config, connector=connector) as gateway:
            await serve_gateway(gateway, shutdown_trigger=trigger, task_status=task_status)
        server_nursery.cancel_scope.cancel()


async def serve_gateway(
    gateway: Gateway,
    *,
    shutdown_trigger: Callable[[Gateway], Awaitable[None]] = wait_for_signal,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an existing gateway on hypercorn's trio worker, on ``server.bind``."""
    sock = listening_socket(gateway.config)
    fd = sock.detach()

    async def shutdown() -> None:
        await shutdown_trigger(gateway)
        gateway.shutting_down = True

    await hypercorn_serve(
        gateway,  # type: ignore[arg-type]  # an ASGI 3 app; hypercorn's union is narrower than the protocol
        hypercorn_config(gateway.config, fd=fd),
        shutdown_trigger=shutdown,
        task_status=task_status,
    )


async def _serve_mock(
    mock: MockUpstream, host: str, port: int, *, task_status: trio.TaskStatus[int]
) -> None:
    await mock.serve(host=host, port=port, task_status=task_status)
