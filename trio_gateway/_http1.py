"""A small, cancel-safe HTTP/1.1 client for upstream calls, on trio.

Theory of operation: a :class:`ConnectionPool` owns the keep-alive connections to ONE origin.
:meth:`ConnectionPool.send` lends a connection to one request (popped LIFO from a deque of idle
connections, or freshly connected), writes the request in a single ``send_all`` and waits for
the response head. The :class:`UpstreamResponse` it returns owns the connection until
:meth:`UpstreamResponse.aclose` gives it back (body fully read, keep-alive on both sides) or
closes it hard.

Why not httpx (STACK-FACTS.md §1, §4): httpcore walks every connection on each request start
and finish (O(N²) under load) and closes the connection whenever a read is cancelled. Here
request start and finish are O(1), and a cancelled body read loses nothing.

Invariants:
    * ``ConnectionPool._active`` counts requests between the start of :meth:`send` and the
      response's :meth:`~UpstreamResponse.aclose`; it is decremented exactly once on every path
      (success, error, cancellation at any await), before any await (RELIABILITY.md K2).
    * A connection is either idle in the pool, lent to exactly one request, or closed.
    * The idle deque is ordered by ``idle_since``: the right end is the newest (reused first),
      the left end the oldest (evicted and expired first).
    * ``UpstreamResponse.receive_some`` awaits only inside ``Stream.receive_some``, whose
      cancellation consumes nothing, and never while holding body bytes it has not returned.
    * The heads are written and parsed by :mod:`~trio_gateway._http1_head` and the body is
      de-framed by :class:`~trio_gateway._http1_body.BodyReader`, starting from the bytes
      read past the head; both accept exactly what h11 0.16 accepts, at a fraction of its
      cost (h11's events were the largest share of the upstream client's CPU). A connection
      is reused only if neither head turned keep-alive off and the body ended by its
      framing with nothing after it.
    * Error messages never contain the host, an address, a port or a foreign exception's text;
      those go to the DEBUG log only.

Not supported, by design: redirects (a 3xx is returned as is), decompression, proxies, HTTP/2,
``Expect: 100-continue``, protocol upgrades.

Size: about 720 lines, over the 600-line budget; half of it is docstrings, and the pool, the
connection and the response share private state and invariants that a split would spread
over several modules.
"""

from __future__ import annotations

import logging
import select
import ssl
import sys
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Final, Literal, Self, TypeAlias
from urllib.parse import urlsplit

import certifi
import trio

from trio_gateway._errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from trio_gateway._http1_body import BodyReader, FramingError, body_framing
from trio_gateway._http1_head import HeadError, ResponseHead, encode_request, read_head

__all__ = [
    "ConnectionPool",
    "Connector",
    "Origin",
    "PoolStatistics",
    "UpstreamResponse",
    "connect_tcp",
    "create_ssl_context",
]

logger = logging.getLogger(__name__)

Connector: TypeAlias = Callable[[str, int, bool], Awaitable[trio.abc.Stream]]
"""``(host, port, tls) -> connected stream``; the TLS handshake, if any, is done."""

_RECEIVE_SIZE: Final = 65536
_MAX_HEAD_SIZE: Final = 65536
_RESERVED_HEADERS: Final = frozenset({b"host", b"content-length", b"transfer-encoding"})
# RFC 9110 §8.6: no Content-Length on a body-less request whose method expects no content.
_METHODS_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def create_ssl_context() -> ssl.SSLContext:
    """A client TLS context: certifi's CA bundle, hostname checks, ALPN ``http/1.1``.

    Building one costs about 25 ms (loading the CA bundle), so create it once per pool or
    process, never per connection.
    """
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


async def connect_tcp(
    host: str, port: int, tls: bool, *, ssl_context: ssl.SSLContext | None = None
) -> trio.abc.Stream:
    """Open a TCP connection (``TCP_NODELAY`` is set by trio), and for ``tls`` shake hands.

    Args:
        host: the DNS name or IP literal (no brackets); also the TLS server name.
        port: the TCP port.
        tls: wrap the connection in a :class:`trio.SSLStream` (``https_compatible=True``).
        ssl_context: the context to use; by default a new :func:`create_ssl_context`.

    Returns:
        The connected stream.

    Raises:
        OSError: the connection failed.
        trio.BrokenResourceError: the TLS handshake failed (the cause says why).

    **Cancellation:** safe at any point; nothing stays open.

    **Resource handling:** on any failure after the TCP connect the socket is closed hard.
    """
    tcp_stream = await trio.open_tcp_stream(host, port)
    if not tls:
        return tcp_stream
    tls_stream = trio.SSLStream(
        tcp_stream,
        ssl_context if ssl_context is not None else create_ssl_context(),
        server_hostname=host,
        https_compatible=True,
    )
    try:
        await tls_stream.do_handshake()
    except BaseException:
        await _close_hard(tcp_stream)
        raise
    return tls_stream


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a pool connects to: scheme, host (lowercase, IPv6 without brackets) and port."""

    scheme: Literal["http", "https"]
    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> tuple[Origin, str]:
        """Split a base URL into its origin and its path prefix.

        Args:
            url: e.g. ``https://api.example.com/v1/`` or ``http://[::1]:8080``.

        Returns:
            ``(origin, prefix)``; the prefix has no trailing slash (``"/v1"`` or ``""``).

        Raises:
            ValueError: not an absolute http(s) URL with a host, or it carries credentials,
                a query or a fragment. The message never repeats the URL (it may hold secrets).
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "http":
            checked_scheme: Literal["http", "https"] = "http"
        elif scheme == "https":
            checked_scheme = "https"
        else:
            raise ValueError("upstream URL must start with http:// or https://")
        if parts.username is not None or parts.password is not None:
            raise ValueError("upstream URL must not contain credentials")
        if parts.query or parts.fragment:
            raise ValueError("upstream URL must not contain a query or a fragment")
        host = parts.hostname
        if not host:
            raise ValueError("upstream URL has no host")
        if not host.isascii():
            host = _idna(host)
        try:
            port = parts.port
        except ValueError:
            raise ValueError("upstream URL has an invalid port") from None
        if port is None:
            port = 443 if checked_scheme == "https" else 80
        return cls(checked_scheme, host, port), parts.path.rstrip("/")

    @property
    def authority(self) -> str:
        """The ``Host`` header value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("upstream URL has an invalid host name") from None


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a pool's connection counts.

    Attributes:
        active: requests in flight: connecting, sending, or holding an unclosed response.
        idle: keep-alive connections waiting in the pool.
    """

    active: int
    idle: int


class _Connection:
    """One socket; owned by the pool or by one request."""

    __slots__ = ("idle_since", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.idle_since = 0.0

    async def request(self, request: bytes) -> tuple[ResponseHead, bytes, bool]:
        """Send one request (head and body) in a single write and read up to the final
        response head, skipping informational (1xx) ones.

        Returns:
            ``(head, the bytes read past it, whether the connection has ended)``.

        Raises:
            _StaleConnectionError: the write failed, or the connection ended, before any
                response byte arrived.
            UpstreamUnavailable: the connection broke in the middle of the head.
            UpstreamProtocolError: the head is malformed.
        """
        try:
            await self.stream.send_all(request)
        except _STREAM_ERRORS as exc:
            raise _StaleConnectionError from exc
        buffer = bytearray()
        eof = received_any = False
        while True:
            try:
                head = read_head(buffer, eof=eof, max_incomplete=_MAX_HEAD_SIZE)
            except HeadError as exc:
                raise UpstreamProtocolError("malformed response head from upstream") from exc
            if head is None:
                try:
                    data = await self.stream.receive_some(_RECEIVE_SIZE)
                except _STREAM_ERRORS as exc:
                    if not received_any:
                        raise _StaleConnectionError from exc
                    raise _lost("while reading the response head", exc) from exc
                if not data and not received_any:
                    raise _StaleConnectionError
                received_any = True
                eof = not data
                buffer += data
            elif head.status >= 200:
                return head, bytes(buffer), eof

    def is_readable(self) -> bool:
        """Non-blocking: has an idle connection received data, EOF or an error?

        An idle HTTP/1.1 connection must be silent, so readable means the server closed it
        (or sent garbage): either way it must not be reused. Streams without a socket (test
        doubles) report ``False`` and rely on the retry in :meth:`ConnectionPool.send`.
        """
        stream = self.stream
        while isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        if not isinstance(stream, trio.SocketStream):
            return False
        fd = stream.socket.fileno()
        if fd < 0:
            return True
        if sys.platform == "win32":
            return bool(select.select([fd], [], [], 0)[0])
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))


class _StaleConnectionError(Exception):
    """Internal: the connection failed before any response byte; ``__cause__`` says how."""


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to ONE origin.

    LIFO reuse (the most recently used connection is the warmest and least likely to have been
    closed by the server), O(1) per request start and finish: no scan over all connections.
    There is no limit on concurrent connections; bound concurrency in the caller.

    Args:
        origin: where to connect.
        connector: how to connect. :func:`connect_tcp` itself (the default) is given one TLS
            context that this pool creates once, for an https origin.
        connect_timeout: seconds allowed for the connector (TCP connect plus TLS handshake).
        max_idle: keep at most this many idle connections (the oldest are closed first).
            Size it for about twice the concurrency: a connection is released only after its
            attempt is settled, while the client may already have sent its next request, so
            around each request two connections per client are briefly in use. With 64 the
            bench's 64 and 128 concurrent streams closed and reopened connections all the
            time: 1024 cut CPU per 20-token stream at c=64 by about 15 % (bench/README.md).
            Idle connections are cheap (a socket) and expire anyway.
        idle_expiry: an idle connection older than this many seconds is closed, not reused.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        connector: Connector = connect_tcp,
        connect_timeout: float = 10.0,
        max_idle: int = 1024,
        idle_expiry: float = 30.0,
    ) -> None:
        if connector is connect_tcp:  # share one TLS context: building one costs ~25 ms
            context = create_ssl_context() if origin.scheme == "https" else None
            connector = partial(connect_tcp, ssl_context=context)
        self._origin = origin
        self._connector = connector
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        self._host_header = origin.authority.encode("ascii")
        self._idle: deque[_Connection] = deque()
        self._active = 0

    def statistics(self) -> PoolStatistics:
        """Counts of active and idle connections (see :class:`PoolStatistics`)."""
        return PoolStatistics(active=self._active, idle=len(self._idle))

    async def send(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamResponse:
        """Send one request and wait for the response head.

        A reused keep-alive connection that fails before any response byte arrived is retried
        once on a fresh connection, whatever the method: that is the idle-close race (the
        server timed the connection out as the request arrived, RELIABILITY.md U6), in which
        the request was not processed. A fresh connection is never retried.

        Args:
            method: e.g. ``"POST"``.
            target: the path and query, e.g. ``"/v1/messages"``.
            headers: request headers; ``Host``, ``Content-Length`` and ``Transfer-Encoding``
                are added here and must not be passed.
            body: the whole request body (``Content-Length`` framing).

        Returns:
            The response, with its body still to read. The caller MUST
            :meth:`~UpstreamResponse.aclose` it (``async with`` works), else the pool's active
            count never drops and the socket stays open until garbage collection.

        Raises:
            ValueError: a reserved or invalid header (a bug in the caller).
            UpstreamTimeout: ``phase="connect"``, the connector took over ``connect_timeout``.
            UpstreamUnavailable: connecting failed, or the connection broke before a response.
            UpstreamProtocolError: the response head is malformed.

        **Cancellation:** if cancelled before the head arrives, the connection in use is
        closed (never returned to the pool), the active count is restored, and
        :class:`trio.Cancelled` propagates.

        **Resource handling:** on every failure the connection is closed hard; on success
        it belongs to the returned response.
        """
        request, keep_alive = self._build_request(method, target, headers, body)
        exchange = partial(self._exchange, request=request, method=method, keep_alive=keep_alive)
        self._active += 1
        try:
            conn = await self._checkout_idle()
            if conn is not None:
                try:
                    return await exchange(conn)
                except _StaleConnectionError as stale:
                    logger.debug(
                        "reused connection failed before the response; retrying once",
                        exc_info=stale.__cause__,
                    )
            conn = await self._connect()
            try:
                return await exchange(conn)
            except _StaleConnectionError as stale:
                cause = stale.__cause__
                if cause is None:
                    message = "upstream closed the connection before sending a response"
                    raise UpstreamUnavailable(message) from None
                raise _lost("before a response", cause) from cause
        except BaseException:
            self._active -= 1
            raise

    async def aclose(self) -> None:
        """Close the idle connections. Lent ones close when their responses do.

        The pool stays usable: later sends open new connections.

        **Cancellation:** shielded and bounded (forceful closes only); never blocks.
        """
        idle, self._idle = self._idle, deque()
        for conn in idle:
            await _close_hard(conn.stream)

    def _build_request(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[bytes, bool]:
        """The request's bytes and whether it leaves keep-alive on (``encode_request``)."""
        for name, _ in headers:
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError("Host, Content-Length and Transfer-Encoding are set by the pool")
        framing = [(b"host", self._host_header)]
        if body or method in _METHODS_WITH_BODY:
            framing.append((b"content-length", b"%d" % len(body)))
        try:
            return encode_request(method, target, [*framing, *headers], body)
        except ValueError as exc:
            raise ValueError("invalid request method, target or header") from exc

    async def _checkout_idle(self) -> _Connection | None:
        idle = self._idle
        stale: list[_Connection] = []
        found = None
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since >= self._idle_expiry:
                # Everything below is older still: expire the lot.
                stale.append(conn)
                stale.extend(idle)
                idle.clear()
            elif conn.is_readable():
                stale.append(conn)
            else:
                found = conn
                break
        for conn in stale:
            await _close_hard(conn.stream)
        return found

    async def _connect(self) -> _Connection:
        origin = self._origin
        try:
            with trio.fail_after(self._connect_timeout):
                stream = await self._connector(origin.host, origin.port, origin.scheme == "https")
        except trio.TooSlowError:
            logger.debug("connect to %s:%d timed out", origin.host, origin.port)
            raise UpstreamTimeout("connecting to upstream timed out", phase="connect") from None
        except _STREAM_ERRORS as exc:
            logger.debug("connect to %s:%d failed", origin.host, origin.port, exc_info=True)
            message = f"connection to upstream failed ({_root_cause_name(exc)})"
            raise UpstreamUnavailable(message) from exc
        return _Connection(stream)

    async def _exchange(
        self, conn: _Connection, *, request: bytes, method: str, keep_alive: bool
    ) -> UpstreamResponse:
        try:
            head, unread, eof = await conn.request(request)
        except BaseException:
            await _close_hard(conn.stream)
            raise
        return UpstreamResponse(
            self, conn, head, unread, eof=eof, method=method, keep_alive=keep_alive
        )

    def _release_nowait(self, conn: _Connection) -> bool:
        """Put the reusable ``conn`` back among the idle ones if that closes none (no idle
        connection to evict); False, with nothing done, if it would."""
        now = trio.current_time()
        if self._must_evict(now, adding=1):
            return False
        self._active -= 1
        conn.idle_since = now
        self._idle.append(conn)
        return True

    def _must_evict(self, now: float, *, adding: int = 0) -> bool:
        """Whether the oldest idle connection goes once ``adding`` more are idle: over
        the idle limit, or idle for the expiry."""
        idle = self._idle
        return len(idle) + adding > self._max_idle or bool(
            idle and now - idle[0].idle_since >= self._idle_expiry
        )

    async def _release(self, conn: _Connection, *, reusable: bool) -> None:
        self._active -= 1
        if not reusable:
            await _close_hard(conn.stream)
            return
        now = trio.current_time()
        conn.idle_since = now
        idle = self._idle
        idle.append(conn)
        evicted: list[_Connection] = []
        while idle and self._must_evict(now):
            evicted.append(idle.popleft())
        for old in evicted:
            await _close_hard(old.stream)


class UpstreamResponse:
    """A response whose head has arrived; the body is read with :meth:`receive_some`.

    Attributes:
        status: the status code (a 3xx is never followed).
        headers: ``(name, value)`` pairs in wire order; names lowercased.

    Only one task may read at a time; reads from different tasks one after another are fine.
    Always :meth:`aclose` it, in a ``finally`` or with ``async with``.
    """

    __slots__ = (
        "_body",
        "_closed",
        "_conn",
        "_eof",
        "_failure",
        "_finished",
        "_keep_alive",
        "_pool",
        "_unread",
        "headers",
        "status",
    )

    def __init__(
        self,
        pool: ConnectionPool,
        conn: _Connection,
        head: ResponseHead,
        unread: bytes,
        *,
        eof: bool,
        method: str,
        keep_alive: bool,
    ) -> None:
        self.status: int = head.status
        self.headers: list[tuple[bytes, bytes]] = head.headers
        self._pool = pool
        self._conn = conn
        self._finished = False
        self._closed = False
        self._failure: UpstreamError | None = None
        # Off if the request or this head turned it off (``Connection: close``, HTTP/1.0).
        self._keep_alive = keep_alive and head.keep_alive
        # The body bytes read along with the head; fed on the first receive_some, so a
        # framing error there is raised by a read, as any other.
        self._eof = eof
        self._unread: bytes | None = unread
        framing, length = body_framing(method, head.status, head.headers)
        self._body = (
            None
            if framing == "unsupported"
            else BodyReader(framing, length, max_incomplete=_MAX_HEAD_SIZE)
        )

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), latin-1 decoded, or ``None``."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None

    @property
    def is_finished(self) -> bool:
        """Whether the whole body has been received."""
        return self._finished

    async def receive_some(self) -> bytes:
        """The next body bytes (de-chunked), or ``b""`` once the body is complete.

        Each call does at most one socket read (up to 64 KiB) and returns all the body bytes
        it yielded at once (or bytes already buffered, without reading).

        Raises:
            UpstreamUnavailable: the connection broke mid-body (raised again on later calls).
            UpstreamProtocolError: malformed framing, or the body ended early.
            trio.ClosedResourceError: the response was closed.
            trio.BusyResourceError: another task is reading at the same time.

        **Cancellation:** cancel-safe. The only await is the socket read, whose cancellation
        consumes nothing, and no decoded bytes are held across it: after a cancellation the
        next call (from any task) continues exactly where this one stopped.
        """
        if self._closed:
            raise trio.ClosedResourceError("the upstream response is closed")
        if self._failure is not None:
            raise type(self._failure)(self._failure.message)
        if self._finished:
            return b""
        body = self._body
        if body is None:  # a protocol switch (a 2xx to CONNECT)
            raise self._fail(UpstreamProtocolError("unexpected event in upstream response"))
        try:
            data = b""
            if self._unread is not None:
                data = body.feed(self._unread)
                self._unread = None
                if self._eof and not body.done:
                    body.feed_eof()
            while not data and not body.done:
                received = await self._read_socket()
                if received:
                    data = body.feed(received)
                else:
                    body.feed_eof()
        except FramingError as exc:
            if self._eof:
                message = "upstream closed the connection before the response body was complete"
            else:
                message = "malformed response body from upstream"
            raise self._fail(UpstreamProtocolError(message)) from exc
        self._finished = body.done
        return data

    async def read_all(self, *, max_bytes: int) -> bytes:
        """The whole (remaining) body; memory stays under ``max_bytes`` plus one 64 KiB read.

        Raises:
            UpstreamProtocolError: the body is longer than ``max_bytes``; plus everything
                :meth:`receive_some` raises.

        **Cancellation:** not cancel-safe: bytes read so far are lost. Close the response.
        """
        parts: list[bytes] = []
        total = 0
        while chunk := await self.receive_some():
            total += len(chunk)
            if total > max_bytes:
                raise UpstreamProtocolError(f"upstream response body exceeds {max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def aclose(self) -> None:
        """Release the connection: back to the pool if reusable, else closed hard.

        Reusable means the body was fully read, keep-alive is on (no ``Connection: close``
        on either side, no HTTP/1.0) and nothing arrived after the response.
        Idempotent.

        **Cancellation:** never blocks and never raises :class:`trio.Cancelled`: the only
        await is a shielded forceful close (no TLS ``close_notify`` wait), so it is safe in a
        shielded, bounded cleanup scope and in ``finally`` blocks.

        **Resource handling:** the pool's active count drops by one on the first call.
        """
        if self._closed:
            return
        self._closed = True
        await self._pool._release(self._conn, reusable=self._reusable())

    def release_nowait(self) -> bool:
        """Release the connection if that needs no I/O: it goes back to the pool and no idle
        connection is evicted. Returns whether it did (:meth:`aclose` then does nothing);
        if not, nothing was done and the caller awaits :meth:`aclose`. Saves the caller the
        shielded, bounded scope that :meth:`aclose` needs, in the common case. Idempotent."""
        if self._closed:
            return True
        if not (self._reusable() and self._pool._release_nowait(self._conn)):
            return False
        self._closed = True
        return True

    def _reusable(self) -> bool:
        body = self._body
        return (
            self._finished
            and self._keep_alive
            and not self._eof
            and body is not None
            and body.reusable
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not self._closed:
            warnings.warn(
                "UpstreamResponse was never closed; its pool slot leaked",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    async def _read_socket(self) -> bytes:
        try:
            stream = self._conn.stream
            if type(stream) is trio.SocketStream:
                # The socket's own recv: same bytes, errors and BusyResourceError, without the
                # stream wrapper's frames, which an idle stream keeps suspended (~0.8 KB).
                data: bytes | bytearray = await stream.socket.recv(_RECEIVE_SIZE)
            else:
                data = await stream.receive_some(_RECEIVE_SIZE)
        except _STREAM_ERRORS as exc:
            if self._closed:
                raise trio.ClosedResourceError("the upstream response is closed") from exc
            raise self._fail(_lost("while reading the response body", exc)) from exc
        self._eof = not data
        # An SSL stream may hand out a bytearray; callers get bytes (and slices stay bytes).
        return data if type(data) is bytes else bytes(data)

    def _fail(self, error: UpstreamError) -> UpstreamError:
        self._failure = error
        return error


def _lost(where: str, exc: BaseException) -> UpstreamUnavailable:
    logger.debug("upstream connection lost %s", where, exc_info=exc)
    return UpstreamUnavailable(f"connection to upstream lost {where} ({_root_cause_name(exc)})")


def _root_cause_name(exc: BaseException) -> str:
    """The class name of the innermost explicit cause (first leaf of an exception group).

    trio raises ``OSError("all attempts to connect to HOST:PORT failed")`` from a group of
    the real errors; the name of the first one (``ConnectionRefusedError``) is what helps.
    """
    current = exc
    for _ in range(16):
        cause = current.__cause__
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        if cause is None:
            break
        current = cause
    return type(current).__name__


async def _close_hard(stream: trio.abc.Stream) -> None:
    """Close ``stream`` at once, even inside a cancelled scope.

    Shielded and bounded: :func:`trio.aclose_forcefully` runs ``aclose`` in an already
    cancelled scope, so it cannot block; the shield only stops an outer cancellation from
    interrupting it before the socket is closed.
    """
    with trio.CancelScope(shield=True):
        try:
            await trio.aclose_forcefully(stream)
        except (*_STREAM_ERRORS, trio.BusyResourceError):
            logger.debug("error while closing an upstream connection", exc_info=True)
