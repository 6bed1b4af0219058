"""Shared fixtures and the ``--run-slow`` switch (trio's own pytest plugin does the same)."""

from __future__ import annotations

import pytest


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


# --- gateway fixtures --------------------------------------------------------------------

from collections.abc import AsyncIterator, Awaitable, Callable  # ruff: ignore[module-import-not-at-top-of-file]
from contextlib import AsyncExitStack  # ruff: ignore[module-import-not-at-top-of-file]
from dataclasses import dataclass  # ruff: ignore[module-import-not-at-top-of-file]
from functools import partial  # ruff: ignore[module-import-not-at-top-of-file]

import trio  # ruff: ignore[module-import-not-at-top-of-file]

from tests.support import UPSTREAM_KEY, gateway_config  # ruff: ignore[module-import-not-at-top-of-file]
from trio_gateway._gateway import Gateway, open_gateway  # ruff: ignore[module-import-not-at-top-of-file]
from trio_gateway._server import serve_gateway  # ruff: ignore[module-import-not-at-top-of-file]
from trio_gateway.testing import AsgiClient, MockUpstream, open_memory_connector  # ruff: ignore[module-import-not-at-top-of-file]

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
            return gateway, AsgiClient(gateway)

        yield make


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
