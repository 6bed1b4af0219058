"""A finished request's objects are freed by reference counting, not left to the cyclic
garbage collector.

Each request used to leave its whole object graph (exchange, reply, attempt, tap, upstream
response, hypercorn's stream) in a reference cycle. The collector then had far more to walk:
at 128 paced streams a full collection came every few seconds and stopped the event loop for
57–79 ms, the paced run's TTFT p99 (bench/README.md, "Optimisation"). A failed attempt
still leaves one (its error's traceback holds the frames that hold the attempt): the rare
path, left alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.conftest import GatewayFactory
from tests.test_gateway_admission import PATHS, auth
from trio_gateway._protocol._names import Protocol

#: Objects of these modules are the test's own harness (the in-memory mock and client).
_HARNESS = ("trio_gateway._mock", "trio_gateway.testing")


def _ours(garbage: list[object]) -> Iterator[str]:
    """The gateway's objects in ``garbage``, and bound methods of them, by type name."""
    for obj in garbage:
        owner = getattr(obj, "__self__", obj)  # a bound method: what it is bound to
        module = type(owner).__module__
        if module.startswith("trio_gateway") and not module.startswith(_HARNESS):
            yield type(owner).__qualname__


def _body(protocol: Protocol, model: str) -> dict[str, object]:
    if protocol == "openai-responses":
        return {"model": model, "input": "Hi", "stream": True}
    messages = [{"role": "user", "content": "Hi"}]
    return {"model": model, "max_tokens": 16, "messages": messages, "stream": True}


@pytest.mark.parametrize(
    ("protocol", "model"),
    [
        ("anthropic", "mock-text"),
        ("openai-chat", "mock-text"),
        ("openai-responses", "mock-text"),
        ("anthropic", "to-chat/mock-text"),  # translated
        ("openai-responses", "to-anthropic/mock-text"),
    ],
)
async def test_a_finished_requests_objects_are_freed_without_the_cyclic_collector(
    make_gateway: GatewayFactory, protocol: Protocol, model: str
) -> None:
    gateway, client = await make_gateway()
    for _ in range(2):  # warm: first-use caches are not per-request garbage
        await client.request("POST", PATHS[protocol], json=_body(protocol, model), headers=auth())
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            response = await client.request(
                "POST", PATHS[protocol], json=_body(protocol, model), headers=auth()
            )
            assert response.status == 200
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = sorted(set(_ours(gc.garbage)))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(gateway.ledger.records) == 5
    assert found == []
