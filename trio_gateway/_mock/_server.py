"""The mock upstream's trio shell: an HTTP/1.1 server on h11 that plays response scripts.

Theory of operation: :meth:`MockUpstream.handle_connection` runs one keep-alive loop per
connection. For each request it reads the head and the whole body, asks the sans-IO core
(:func:`~trio_gateway._mock._routes.route`) for a :class:`~trio_gateway._mock._script.Script`,
appends a :class:`MockRequest` to the log and plays the script: one socket write per step,
``trio.sleep`` for every delay (so an ``autojump_clock`` makes stalls instant in memory).

While a response is being played a watcher task reads from the peer; end-of-file means the
client went away, which is recorded as ``"client_closed"`` and cancels the response at once,
even in the middle of a long stall. A failure on one connection is logged at debug level and
closes that connection only; it never reaches the server's nursery.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

import h11
import trio
import trio.testing

from trio_gateway._mock._routes import dialect_for, route
from trio_gateway._mock._script import Ending, Script, error_script, json_script

__all__ = ["Connector", "MockRequest", "MockUpstream", "open_memory_connector"]

logger = logging.getLogger(__name__)

Connector = Callable[[str, int, bool], Awaitable[trio.abc.Stream]]

MAX_BODY: Final = 64 * 1024 * 1024
_RECEIVE_SIZE: Final = 65536
_CONTROL_PREFIX: Final = "/_mock/"
_RESET_LINGER: Final = struct.pack("ii", 1, 0)


@dataclass(slots=True)
class MockRequest:
    """One request the mock received, updated while its response is played.

    Attributes:
        method: the request method.
        path: the request target as received (query string included).
        headers: the request headers, names lower-cased, in order.
        body: the parsed JSON body, or ``None``.
        scenario: the scenario spec used (``""`` where none applies).
        events_sent: SSE events written so far.
        outcome: ``"in_progress"``, ``"stalled"`` (waiting in a scripted stall),
            ``"completed"``, ``"error_event"`` (stream ended with an in-band error),
            ``"error_status"`` (scripted status, canary or redirect), ``"rejected"`` (the
            mock's own 4xx: unknown path/scenario, bad JSON, wrong key, too large),
            ``"cut"``, ``"reset"`` or ``"client_closed"`` (the peer went away first).
    """

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: object
    scenario: str
    events_sent: int = 0
    outcome: str = "in_progress"

    def to_json(self) -> dict[str, object]:
        """The record as a JSON-ready dict (for ``GET /_mock/requests``)."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": [list(pair) for pair in self.headers],
            "body": self.body,
            "scenario": self.scenario,
            "events_sent": self.events_sent,
            "outcome": self.outcome,
        }


class MockUpstream:
    """A scripted LLM upstream speaking Anthropic Messages, Chat Completions and Responses.

    Args:
        interval: default seconds between stream events (a scenario's ``interval`` wins).
        require_key: if set, model and ``/v1/models`` requests must carry it as
            ``x-api-key`` or ``Authorization: Bearer``, else they get a 401.

    Attributes:
        requests: the request log, in arrival order; ``POST /_mock/reset`` clears it.
    """

    def __init__(self, *, interval: float = 0.0, require_key: str | None = None) -> None:
        self.interval = interval
        self.require_key = require_key
        self.requests: list[MockRequest] = []
        self._count = 0

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on TCP and serve connections until cancelled.

        Args:
            host: the address to bind.
            port: the port to bind; 0 picks a free one.
            task_status: receives the bound port once the socket listens.

        Cancellation:
            Cancelling stops accepting and closes every open connection.
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound: int = listeners[0].socket.getsockname()[1]
        task_status.started(bound)
        await trio.serve_listeners(self.handle_connection, listeners)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """Serve HTTP/1.1 requests on one connection until either side closes it.

        Args:
            stream: the connection; it is closed on return.

        Resource handling:
            Errors are logged at debug level and end only this connection.
        """
        try:
            await _Connection(self, stream).run()
        except Exception:
            logger.debug("mock upstream: connection failed", exc_info=True)
        finally:
            await trio.aclose_forcefully(stream)

    def _next_number(self) -> int:
        # A fresh serial number per request: ids are deterministic for a fresh mock.
        self._count += 1
        return self._count


class _Connection:
    def __init__(self, mock: MockUpstream, stream: trio.abc.Stream) -> None:
        self._mock = mock
        self._stream = stream
        self._h11 = h11.Connection(h11.SERVER)
        self._peer_gone = False

    async def run(self) -> None:
        while True:
            try:
                request = await self._next_event()
            except h11.RemoteProtocolError as error:
                await self._reject_malformed(error)
                return
            if not isinstance(request, h11.Request):
                return  # ConnectionClosed: the client is done with this connection
            if not await self._serve_one(request):
                return
            if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                return
            self._h11.start_next_cycle()

    async def _serve_one(self, request: h11.Request) -> bool:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        declared = dict(headers).get("content-length", "0")
        too_large = declared.isdigit() and int(declared) > MAX_BODY
        raw_body = None if too_large else await self._read_body()
        number = self._mock._next_number()
        if raw_body is None:
            record = MockRequest(method, target, headers, None, "")
            self._mock.requests.append(record)
            message = f"Request body exceeds the mock's {MAX_BODY} byte limit."
            dialect = dialect_for(target, headers)
            await self._play(error_script(dialect, 413, message, number=number), record)
            return False
        if target.startswith(_CONTROL_PREFIX):
            return await self._play(self._control(method, target), _unlogged(method, target))
        routed = route(
            method,
            target,
            headers,
            raw_body,
            number=number,
            default_interval=self._mock.interval,
            require_key=self._mock.require_key,
        )
        record = MockRequest(method, target, headers, routed.body, routed.scenario)
        self._mock.requests.append(record)
        return await self._play(routed.script, record)

    def _control(self, method: str, target: str) -> Script:
        path = target.partition("?")[0]
        if (method, path) == ("GET", "/_mock/requests"):
            return json_script(200, [record.to_json() for record in self._mock.requests])
        if (method, path) == ("POST", "/_mock/reset"):
            self._mock.requests.clear()
            return json_script(200, {"ok": True})
        return error_script("openai-chat", 404, f"Invalid URL ({method} {path})", number=0)

    async def _next_event(self) -> object:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self._h11.receive_data(bytes(data))

    async def _read_body(self) -> bytes | None:
        if self._h11.they_are_waiting_for_100_continue:
            continue_ = h11.InformationalResponse(status_code=100, headers=[])
            await self._stream.send_all(self._h11.send(continue_) or b"")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise h11.RemoteProtocolError("connection closed inside the request body")

    async def _reject_malformed(self, error: h11.RemoteProtocolError) -> None:
        if self._h11.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
            return
        status = error.error_status_hint
        script = error_script("openai-chat", status, f"Malformed HTTP request: {error}", number=0)
        await self._play(script, _unlogged("?", "?"))

    async def _play(self, script: Script, record: MockRequest) -> bool:
        """Play ``script``; returns whether the connection can serve another request."""
        ending: Ending | None = None
        async with trio.open_nursery() as response_nursery:
            response_nursery.start_soon(self._watch_peer, record, response_nursery.cancel_scope)
            ending = await self._send_script(script, record)
            response_nursery.cancel_scope.cancel(reason="response played")
        if self._peer_gone or ending is None:
            if record.outcome in {"in_progress", "stalled"}:
                record.outcome = "client_closed"
            return False
        if ending == "reset" and isinstance(self._stream, trio.SocketStream):
            # SO_LINGER (on, 0 s): close() sends RST instead of FIN.
            self._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_LINGER)
        return ending == "complete"

    async def _send_script(self, script: Script, record: MockRequest) -> Ending | None:
        """Write the script out; returns its ending, or ``None`` if the peer went away."""
        try:
            await _wait(script.head_delay, record, stall=True)
            reason = _reason(script.status)
            await self._send(
                h11.Response(status_code=script.status, headers=list(script.headers), reason=reason)
            )
            for write in script.writes:
                await _wait(write.delay, record, stall=write.stall)
                if write.data:
                    await self._send(h11.Data(data=write.data))
                    if script.is_stream:
                        record.events_sent += 1
            if script.ending == "complete":
                await self._send(h11.EndOfMessage())
                record.outcome = script.outcome
            else:
                record.outcome = script.ending
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            record.outcome = "client_closed"
            return None
        return script.ending

    async def _send(self, event: h11.Response | h11.Data | h11.EndOfMessage) -> None:
        data = self._h11.send(event)
        if data:
            await self._stream.send_all(data)

    async def _watch_peer(self, record: MockRequest, response_scope: trio.CancelScope) -> None:
        # Pipelining is not needed, so anything the client sends now is buffered in h11
        # for the next cycle; end-of-file means it went away.
        while True:
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                # The outcome is set by _play once the response task has stopped, so an
                # event whose bytes were already written is counted in events_sent first.
                self._peer_gone = True
                response_scope.cancel(reason="client went away")
                return
            self._h11.receive_data(bytes(data))


async def _wait(seconds: float, record: MockRequest, *, stall: bool) -> None:
    if seconds <= 0:
        return
    if stall:
        record.outcome = "stalled"
    await trio.sleep(seconds)
    if stall:
        record.outcome = "in_progress"


def _unlogged(method: str, target: str) -> MockRequest:
    return MockRequest(method, target, [], None, "")


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Overloaded" if status == 529 else b""


@asynccontextmanager
async def open_memory_connector(mock: MockUpstream) -> AsyncGenerator[Connector]:
    """Connect to ``mock`` in memory: a connector for the gateway's tests.

    Each call of the connector ``(host, port, tls) -> stream`` makes a
    ``trio.testing.memory_stream_pair()``, serves one end with
    :meth:`MockUpstream.handle_connection` and returns the other. Host, port and TLS are
    ignored. Timing is ``trio.sleep``, so under ``autojump_clock`` stalls take no real time.

    Args:
        mock: the upstream to serve.

    Yields:
        The connector.

    Resource handling:
        Leaving the block cancels and closes every connection made through it.
    """
    async with trio.open_nursery() as connection_nursery:

        async def connect(host: str, port: int, tls: bool) -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            connection_nursery.start_soon(mock.handle_connection, server)
            return client

        try:
            yield connect
        finally:
            connection_nursery.cancel_scope.cancel(reason="memory connector closed")
