"""Test configuration and helpers shared by the gateway tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

import trio

from trio_gateway._config import GatewayConfig, hash_key, parse_config
from trio_gateway._protocol._names import Protocol
from trio_gateway.testing import AsgiResponse

#: The upstream key the gateway holds; it must never reach a caller, a log or a record.
UPSTREAM_KEY: Final = "sk-upstream-CANARY-7d41f0c2b9"
#: The admin bearer token of the test config.
ADMIN_TOKEN: Final = "admin-CANARY-5c2e9a"
#: The caller's key.
CLIENT_KEY: Final = "sk-test-alice-key"
PRICE: Final = {
    "input": 3.0,
    "output": 15.0,
    "cache_read": 0.30,
    "cache_write_5m": 3.75,
    "cache_write_1h": 6.0,
}


def gateway_config(
    *,
    port: int = 9,
    streaming: Mapping[str, object] | None = None,
    models: list[dict[str, object]] | None = None,
    ledger_path: str = ":memory:",
    key: Mapping[str, object] | None = None,
    metrics_token: str | None = None,
) -> GatewayConfig:
    """A config with one upstream per protocol on the mock at 127.0.0.1:``port``; ``GET
    /metrics`` is served only with a ``metrics_token``."""
    base = f"http://127.0.0.1:{port}"
    upstream = [
        {"name": "anthropic", "protocol": "anthropic", "base_url": base},
        {"name": "chat", "protocol": "openai-chat", "base_url": base + "/v1"},
        {"name": "responses", "protocol": "openai-responses", "base_url": base + "/v1"},
        {"name": "anthropic-b", "protocol": "anthropic", "base_url": base},
        {"name": "chat-b", "protocol": "openai-chat", "base_url": base + "/v1"},
    ]
    for entry in upstream:
        entry["api_key_env"] = "UPSTREAM_KEY"
    data: dict[str, object] = {
        "server": {"bind": "127.0.0.1:0", "graceful_timeout": 5.0},
        "ledger": {"path": ledger_path},
        "admin": {"token_env": "ADMIN_TOKEN"},
        "streaming": dict(streaming or {}),
        "keys": [{"name": "alice", "sha256": hash_key(CLIENT_KEY), **(key or {})}],
        "upstreams": upstream,
        "models": (models or [])
        + [
            {
                "name": "failover-*",
                "upstreams": ["anthropic", "anthropic-b", "chat", "chat-b"],
                "upstream_model": {
                    "anthropic": "mock-status:code=503",
                    "chat": "mock-status:code=503",
                    "anthropic-b": "mock-text",
                    "chat-b": "mock-text",
                },
                "routing": "same-protocol-only",
                "price": PRICE,
            },
            # Pinned routes: `to-chat/mock-tools` reaches the chat upstream as `mock-tools`,
            # whatever the caller's protocol (translated unless it is Chat).
            *(
                {
                    "name": f"to-{upstream}/*",
                    "upstreams": [upstream],
                    "upstream_model": {upstream: "*"},
                    "price": PRICE,
                }
                for upstream in ("anthropic", "chat", "responses")
            ),
            {
                "name": "mock-*",
                "upstreams": ["anthropic", "chat", "responses"],
                "routing": "same-protocol-only",
                "price": PRICE,
            },
            {
                "name": "demo",
                "upstreams": ["anthropic", "chat", "responses"],
                "routing": "same-protocol-first",
                "price": PRICE,
            },
        ],
    }
    environ = {"UPSTREAM_KEY": UPSTREAM_KEY, "ADMIN_TOKEN": ADMIN_TOKEN}
    if metrics_token is not None:
        data["metrics"] = {"token_env": "METRICS_TOKEN"}
        environ["METRICS_TOKEN"] = metrics_token
    return parse_config(data, environ=environ)


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an LF/CRLF SSE body, comments dropped (test-side parser)."""
    out: list[tuple[str | None, str]] = []
    text = body.decode().replace("\r\n", "\n")
    for block in text.split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            out.append((name, "\n".join(data)))
    return out


def json_events(body: bytes) -> list[dict[str, object]]:
    """The JSON data objects of an SSE body ([DONE] skipped)."""
    result = []
    for _, data in sse_events(body):
        if data != "[DONE]":
            loaded = json.loads(data)
            assert isinstance(loaded, dict)
            result.append(loaded)
    return result


def content_deltas(protocol: Protocol, chunk: bytes) -> int:
    """How many text deltas a body chunk carries (each write holds whole SSE events)."""
    count = 0
    for name, data in sse_events(chunk):
        if data == "[DONE]":
            continue
        obj = json.loads(data)
        match protocol:
            case "anthropic":
                count += name == "content_block_delta"
            case "openai-chat":
                choices = obj.get("choices") or [{}]
                count += bool(choices[0].get("delta", {}).get("content"))
            case "openai-responses":
                count += name == "response.output_text.delta"
    return count


async def read_until_deltas(resp: AsgiResponse, protocol: Protocol, wanted: int) -> int:
    """Read chunks until at least ``wanted`` text deltas have arrived; returns how many did."""
    seen = 0
    while seen < wanted:
        chunk = await resp.next_chunk()
        assert chunk is not None, "the stream ended early"
        seen += content_deltas(protocol, chunk)
    return seen


async def wait_until(condition: Callable[[], bool], *, seconds: float = 10.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``seconds``."""
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.01)
