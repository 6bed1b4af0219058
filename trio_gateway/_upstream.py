"""One configured upstream: its connection pool, its concurrency limit, and the exact
headers the gateway sends it.

Callers never choose the upstream host, key or headers (RELIABILITY B3, C10): the URL
comes from the config only, the caller's own credentials are never forwarded, and only an
allow-list of protocol headers (``anthropic-version``, ``anthropic-beta``) is copied from
the caller. Everything hop-by-hop is dropped by construction, because nothing but the
allow-list is copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from ._config import UpstreamConfig
from ._http1 import ConnectionPool, Connector, Origin, UpstreamResponse, connect_tcp
from ._protocol._names import Protocol
from ._version import __version__

#: Path appended to ``base_url`` per protocol (DESIGN §3: the official SDKs' convention).
_PATHS: Final[Mapping[Protocol, str]] = {
    "anthropic": "/v1/messages",
    "openai-chat": "/chat/completions",
    "openai-responses": "/responses",
}

#: Caller headers copied upstream, per protocol. Nothing else is ever copied.
_FORWARDED: Final[Mapping[Protocol, tuple[bytes, ...]]] = {
    "anthropic": (b"anthropic-version", b"anthropic-beta"),
    "openai-chat": (),
    "openai-responses": (),
}

#: The API requires a version header; the SDKs always send one (protocols.md §1.1).
_DEFAULT_ANTHROPIC_VERSION: Final = b"2023-06-01"
_USER_AGENT: Final = f"trio-gateway/{__version__}".encode()


class Upstream:
    """A configured upstream and its pool of keep-alive connections."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        connector: Connector | None = None,
        connect_timeout: float,
    ) -> None:
        self.config = config
        origin, self._prefix = Origin.from_url(config.base_url)
        self.pool = ConnectionPool(
            origin,
            connector=connector or connect_tcp,
            connect_timeout=connect_timeout,
        )
        self.in_flight = 0
        secrets = [origin.host]
        if config.api_key:
            secrets.insert(0, config.api_key)
        self._secrets: tuple[str, ...] = tuple(secrets)
        self._static = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in config.headers.items()
        ]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def protocol(self) -> Protocol:
        return self.config.protocol

    @property
    def secrets(self) -> Sequence[str]:
        """Values that must never reach a caller: the upstream key, and its host (callers
        never learn where the gateway sends their traffic, RELIABILITY finding 6)."""
        return self._secrets

    def has_capacity(self) -> bool:
        """Whether another request may start now (``max_concurrency``)."""
        limit = self.config.max_concurrency
        return limit is None or self.in_flight < limit

    def target(self, query: bytes, *, path: str | None = None) -> str:
        """The request target for this upstream's protocol (or ``path``, e.g.
        ``/v1/messages/count_tokens``, under the ``base_url`` prefix); the query string is
        kept (``/v1/messages?beta=true``, protocols.md §1.1)."""
        path = self._prefix + (path or _PATHS[self.config.protocol])
        if query:
            return path + "?" + query.decode("latin-1")
        return path

    def headers(self, caller: Mapping[bytes, bytes], *, stream: bool) -> list[tuple[bytes, bytes]]:
        """The complete header list for one upstream request (without Host/Content-Length).

        Args:
            caller: the caller's request headers, lowercased names.
            stream: whether an SSE response is expected.
        """
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"accept", b"text/event-stream" if stream else b"application/json"),
            # Byte-faithful pass-through needs the body as sent (protocols.md §4.6).
            (b"accept-encoding", b"identity"),
            (b"user-agent", _USER_AGENT),
        ]
        protocol = self.config.protocol
        for name in _FORWARDED[protocol]:
            value = caller.get(name)
            if value is not None:
                headers.append((name, value))
        if protocol == "anthropic" and b"anthropic-version" not in caller:
            headers.append((b"anthropic-version", _DEFAULT_ANTHROPIC_VERSION))
        key = self.config.api_key
        if key:
            if protocol == "anthropic":
                headers.append((b"x-api-key", key.encode("latin-1")))
            else:
                headers.append((b"authorization", b"Bearer " + key.encode("latin-1")))
        if self._static:
            static_names = {name for name, _ in self._static}
            headers = [h for h in headers if h[0] not in static_names]
            headers.extend(self._static)
        return headers

    async def send(
        self,
        *,
        query: bytes,
        caller: Mapping[bytes, bytes],
        body: bytes,
        stream: bool,
        attempt_id: str,
        path: str | None = None,
    ) -> UpstreamResponse:
        """Send one request and wait for the response head.

        ``attempt_id`` (``<request id>/<attempt>``) goes upstream as ``x-trio-gateway-attempt``,
        so an upstream's logs can be joined with the ledger row by row.

        Cancellation: the connection is closed if cancelled before the head arrives.
        """
        headers = self.headers(caller, stream=stream)
        headers.append((b"x-trio-gateway-attempt", attempt_id.encode("ascii")))
        return await self.pool.send("POST", self.target(query, path=path), headers, body)

    async def aclose(self) -> None:
        """Close idle pooled connections."""
        await self.pool.aclose()
