"""ASGI types, the bounded body reader, and :class:`Reply`, which knows whether the
response is committed.

"Committed" (DESIGN §8) means any byte, headers or a ping, has gone to the client. Before
that an error is a real HTTP status; after it, only an in-band SSE error event is possible.
Errors are rendered by ``_protocol._error_bodies`` and nowhere else; this module only
chooses between the two forms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Final

from ._errors import GatewayError, PayloadTooLarge
from ._protocol._error_bodies import error_event, error_response
from ._protocol._names import Protocol

Scope = MutableMapping[str, object]
Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: Headers of every SSE response (protocols.md §4.6): no caching, no proxy buffering.
SSE_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def request_id_header(protocol: Protocol) -> bytes:
    """The header that carries the request id in each protocol (protocols.md §1.1, §2.1)."""
    return b"request-id" if protocol == "anthropic" else b"x-request-id"


class ClientLeftDuringUpload(Exception):
    """The client disconnected before its request body was complete."""


async def read_body(receive: Receive, *, limit: int) -> bytes:
    """Read the whole request body, refusing more than ``limit`` bytes.

    Raises:
        PayloadTooLarge: the body is larger than ``limit`` (nothing more is buffered).
    """
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "http.disconnect":
            # The caller left while uploading: nothing to answer, nothing was called.
            raise ClientLeftDuringUpload
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if isinstance(chunk, bytes) and chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


class Reply:
    """One HTTP response, tracking whether it is committed.

    hypercorn's ``send()`` silently drops data after the client left (STACK-FACTS §2), so
    this class never learns about disconnects; the disconnect watcher does.
    """

    __slots__ = ("_protocol", "_request_id", "_send", "committed", "extra_headers", "finished")

    def __init__(self, send: Send, *, protocol: Protocol, request_id: str) -> None:
        self._send = send
        self._protocol: Protocol = protocol
        self._request_id = request_id
        self.committed = False
        self.finished = False
        #: Headers for a successful response (set before commit; error responses omit them).
        self.extra_headers: Headers = []

    @property
    def protocol(self) -> Protocol:
        return self._protocol

    @property
    def request_id(self) -> str:
        return self._request_id

    def _base_headers(self) -> Headers:
        return [(request_id_header(self._protocol), self._request_id.encode())]

    async def start_stream(self) -> None:
        """Commit a 200 SSE response (headers only)."""
        headers = self._base_headers()
        headers.extend(SSE_HEADERS)
        headers.extend(self.extra_headers)
        self.committed = True
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(self, data: bytes) -> None:
        """Send body bytes of a committed response."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        """End the response body (closes the stream for the client)."""
        if self.finished:
            return
        self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def respond(
        self,
        status: int,
        body: bytes,
        *,
        headers: Headers | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        """Send a complete non-streaming response."""
        all_headers = self._base_headers()
        all_headers.append((b"content-type", content_type))
        if 200 <= status < 300:
            all_headers.extend(self.extra_headers)
        if headers:
            all_headers.extend(headers)
        all_headers.append((b"content-length", str(len(body)).encode()))
        self.committed = True
        await self._send({"type": "http.response.start", "status": status, "headers": all_headers})
        self.finished = True
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def fail(self, error: GatewayError, *, frame: bytes | None = None) -> None:
        """Report ``error`` to the caller in its protocol's shape.

        Before commit: the real HTTP status and a JSON body. After commit: an in-band SSE
        error event (``frame``, rendered by the stream's tap so it fits what was already
        sent, or a default one), then the end of the body (never a clean terminal event,
        RELIABILITY #7).
        """
        if self.finished:
            return
        if not self.committed:
            status, headers, body = error_response(
                error, self._protocol, request_id=self._request_id
            )
            headers.append((b"content-length", str(len(body)).encode()))
            self.committed = True
            self.finished = True
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
            await self._send({"type": "http.response.body", "body": body, "more_body": False})
            return
        if frame is None:
            frame = error_event(error, self._protocol, request_id=self._request_id)
        await self.finish(frame)
