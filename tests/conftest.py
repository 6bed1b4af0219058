"""Shared fixtures and the ``--run-slow`` switch (trio's own pytest plugin does the same)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

import pytest
import trio
import trio.testing

from tests.support import ADMIN_TOKEN, UPSTREAM_KEY, gateway_config
from trio_gateway._gateway import Gateway, open_gateway
from trio_gateway._logging import JsonFormatter, TextFormatter
from trio_gateway._mock import CANARY_KEY
from trio_gateway._server import serve_gateway
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow; run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """pytest-trio's autojump clock, with a threshold of 0.5 ms instead of 0.

    With a threshold of 0 trio's run loop never blocks: while a task waits on a real thread
    (the ledger's SQLite writer) it polls epoll with a zero timeout in a loop, starving that
    thread of the GIL (100-400 ms per ledger start here, measured). With 0.5 ms the loop blocks
    that long before jumping; virtual time still jumps exactly to the next deadline, and does
    not move with real time (rate 0), so exact virtual-time assertions hold.
    """
    return trio.testing.MockClock(autojump_threshold=0.0005)


# --- gateway fixtures --------------------------------------------------------------------


GatewayFactory = Callable[..., Awaitable[tuple[Gateway, AsgiClient]]]


@pytest.fixture
def mock() -> MockUpstream:
    """The mock upstream; it insists on the gateway's configured upstream key."""
    return MockUpstream(require_key=UPSTREAM_KEY)


@pytest.fixture
async def make_gateway(mock: MockUpstream) -> AsyncIterator[GatewayFactory]:
    """Builds in-memory gateways (upstream = the mock over memory streams): for
    ``autojump_clock`` tests of timing and cancellation."""
    async with AsyncExitStack() as stack:
        connector = await stack.enter_async_context(open_memory_connector(mock))

        async def make(**streaming: object) -> tuple[Gateway, AsgiClient]:
            config = gateway_config(streaming=streaming)
            gateway = await stack.enter_async_context(open_gateway(config, connector=connector))
            made.append(gateway)
            return gateway, AsgiClient(gateway)

        made: list[Gateway] = []
        yield make
        for gateway in made:
            assert_no_secret_in_records(gateway)


@dataclass
class Live:
    """A gateway on a real hypercorn socket in front of the mock on a real socket."""

    url: str
    gateway: Gateway
    mock: MockUpstream
    mock_port: int


async def _never(gateway: Gateway) -> None:
    await trio.sleep_forever()


async def start_live(nursery: trio.Nursery, **streaming: object) -> Live:
    mock = MockUpstream(require_key=UPSTREAM_KEY)
    port = await nursery.start(partial(mock.serve, host="127.0.0.1", port=0))
    gateway = Gateway(gateway_config(port=port, streaming=streaming))
    urls = await nursery.start(partial(serve_gateway, gateway, shutdown_trigger=_never))
    return Live(url=urls[0], gateway=gateway, mock=mock, mock_port=port)


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async with trio.open_nursery() as nursery:
        started = await start_live(nursery)
        yield started
        nursery.cancel_scope.cancel()
    await started.gateway.aclose()
    assert_no_secret_in_records(started.gateway)


# --- RELIABILITY B10: no secret in any log line or ledger record, across the whole suite ---


_SECRETS = (UPSTREAM_KEY, CANARY_KEY, ADMIN_TOKEN)


class _CaptureGatewayLogs(logging.Handler):
    """Collects every record of the gateway's own loggers (the mock is not the gateway)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("trio_gateway._mock"):
            return
        if record.name.startswith(("trio_gateway", "hypercorn")):
            # Both shipped formats, as they would be written (structured fields included).
            self.lines.append(JsonFormatter().format(record))
            self.lines.append(TextFormatter().format(record))


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    """Fail any test after which a gateway log line contains a secret (RELIABILITY B10)."""
    handler = _CaptureGatewayLogs()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    leaked = [line for line in handler.lines if any(s in line for s in _SECRETS)]
    assert not leaked, f"secret in gateway logs: {leaked[:3]}"


def assert_no_secret_in_records(gateway: Gateway) -> None:
    """No ledger record field contains a secret (RELIABILITY B10)."""
    for record in gateway.ledger.records:
        text = json.dumps(record.as_json())
        assert not any(s in text for s in _SECRETS), text
