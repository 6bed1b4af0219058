"""hypercorn wiring in ``_server``: the listening socket the gateway makes itself, and the
hypercorn settings it derives from the config (docs/architecture.md, STACK-FACTS §2).

The socket tests bind real sockets on 127.0.0.1 (or ::1), port 0, so they are ``@slow``; they
never accept or connect, and every socket is closed by the test that made it.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support import gateway_config
from trio_gateway._config import GatewayConfig, ServerConfig
from trio_gateway._server import hypercorn_config, listening_socket, split_bind

needs_tcp_user_timeout = pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux-only"
)


def config_with(
    *,
    bind: str = "127.0.0.1:0",
    tcp_user_timeout: float = 30.0,
    backlog: int = 2048,
    graceful_timeout: float = 60.0,
    max_header_bytes: int = 65536,
    settle_timeout: float = 5.0,
) -> GatewayConfig:
    """The test config with these ``[server]`` settings (defaults: ``ServerConfig``'s)."""
    server = ServerConfig(
        bind=bind,
        tcp_user_timeout=tcp_user_timeout,
        backlog=backlog,
        graceful_timeout=graceful_timeout,
        max_header_bytes=max_header_bytes,
    )
    return replace(gateway_config(streaming={"settle_timeout": settle_timeout}), server=server)


@contextmanager
def opened(config: GatewayConfig) -> Generator[socket.socket, None, None]:
    sock = listening_socket(config)
    try:
        yield sock
    finally:
        sock.close()


# --- listening_socket --------------------------------------------------------------------


@pytest.mark.slow
@needs_tcp_user_timeout
@pytest.mark.parametrize(("seconds", "millis"), [(30.0, 30_000), (12.5, 12_500), (0.25, 250)])
def test_tcp_user_timeout_is_set_in_milliseconds(seconds: float, millis: int) -> None:
    with opened(config_with(tcp_user_timeout=seconds)) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == millis


@pytest.mark.slow
@needs_tcp_user_timeout
def test_tcp_user_timeout_zero_leaves_the_option_unset() -> None:
    with opened(config_with(tcp_user_timeout=0)) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


@pytest.mark.slow
def test_socket_reuses_the_address_and_listens_on_the_bound_port() -> None:
    with opened(config_with(backlog=321)) as sock:
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port != 0


@pytest.mark.slow
def test_ipv6_bind_makes_an_ipv6_socket() -> None:
    try:
        sock = listening_socket(config_with(bind="[::1]:0"))
    except OSError as exc:  # a host without IPv6 on loopback
        pytest.skip(f"cannot bind ::1: {exc}")
    with sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[0] == "::1"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_bind_failure_raises_and_leaks_no_socket() -> None:
    with opened(config_with()) as taken:
        port = taken.getsockname()[1]
        open_fds = len(list(Path("/proc/self/fd").iterdir()))
        # SO_REUSEADDR does not allow a second listener on a listening port (Linux).
        with pytest.raises(OSError, match="in use"):
            listening_socket(config_with(bind=f"127.0.0.1:{port}")).close()
        assert len(list(Path("/proc/self/fd").iterdir())) == open_fds


# --- hypercorn_config --------------------------------------------------------------------


def test_hypercorn_gets_the_fd_and_the_sse_safe_settings() -> None:
    config = config_with(
        settle_timeout=2.5, graceful_timeout=40.0, backlog=321, max_header_bytes=12_345
    )
    hconfig = hypercorn_config(config, fd=17)
    assert hconfig.bind == ["fd://17"]
    # In-flight streams get graceful_timeout, then the gateway's settle step; hypercorn's
    # own deadline comes 5 s after both, so it never cuts a stream first.
    assert hconfig.graceful_timeout == pytest.approx(47.5)
    assert hconfig.graceful_timeout == pytest.approx(
        config.server.graceful_timeout + config.streaming.settle_timeout + 5.0
    )
    assert hconfig.backlog == 321 == config.server.backlog
    assert hconfig.h11_max_incomplete_size == 12_345


def test_hypercorn_config_defaults_follow_the_gateway_defaults() -> None:
    config = config_with()
    hconfig = hypercorn_config(config, fd=3)
    assert hconfig.bind == ["fd://3"]
    assert hconfig.graceful_timeout == pytest.approx(70.0)
    assert hconfig.backlog == 2048
    assert hconfig.h11_max_incomplete_size == 65536


# --- split_bind --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:9", ("::1", 9)),
        ("[::]:0", ("::", 0)),
        ("localhost:443", ("localhost", 443)),
    ],
)
def test_split_bind(bind: str, expected: tuple[str, int]) -> None:
    assert split_bind(bind) == expected
