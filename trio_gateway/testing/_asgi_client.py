"""An in-memory ASGI driver for streaming tests.

``httpx.ASGITransport`` buffers whole responses (STACK-FACTS §0), so it cannot test
streaming, flushing or disconnects. :class:`AsgiClient` runs the app as a task and hands
the test every ``send()`` as it happens; the test can inject ``http.disconnect`` at any
moment, or stop reading so that ``send()`` blocks the way a stalled client's does.
"""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager

import trio

Message = MutableMapping[str, object]
App = Callable[
    [
        MutableMapping[str, object],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


class AsgiResponse:
    """The response side of one in-memory request."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.complete = False
        self._send, self._receive = trio.open_memory_channel[Message](math.inf)
        self._disconnected = trio.Event()
        self._reading = trio.Event()
        self._reading.set()
        self._started = trio.Event()

    # -- the app's side

    async def _app_send(self, message: Message) -> None:
        await self._reading.wait()
        await self._send.send(message)

    async def _next_message(self) -> Message | None:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return None

    # -- the test's side

    async def _wait_start(self) -> None:
        message = await self._next_message()
        if message is None:
            raise RuntimeError("the app returned without starting a response")
        assert message["type"] == "http.response.start", message
        status = message["status"]
        assert isinstance(status, int)
        self.status = status
        raw = message.get("headers", [])
        assert isinstance(raw, list)
        self.headers = {bytes(k).decode().lower(): bytes(v).decode() for k, v in raw}

    async def next_chunk(self) -> bytes | None:
        """The next body chunk (maybe b""), or None when the body is complete."""
        if self.complete:
            return None
        message = await self._next_message()
        if message is None:
            self.complete = True
            return None
        chunk = message.get("body", b"")
        assert isinstance(chunk, bytes)
        self.body += chunk
        if not message.get("more_body", False):
            self.complete = True
        return chunk

    async def read(self) -> bytes:
        """Read to the end of the body and return all of it."""
        while await self.next_chunk() is not None:
            pass
        return self.body

    def json(self) -> object:
        return jsonlib.loads(self.body)

    async def disconnect(self) -> None:
        """Make the app's next ``receive()`` return ``http.disconnect``."""
        self._disconnected.set()
        self._reading.set()
        await trio.lowlevel.checkpoint()

    def stop_reading(self) -> None:
        """From now on the app's ``send()`` blocks, like a client that stopped reading."""
        self._reading = trio.Event()

    def resume_reading(self) -> None:
        """Undo :meth:`stop_reading`: the blocked ``send()`` and every later one go through."""
        self._reading.set()


class AsgiClient:
    """Drives an ASGI app in memory. See the module docstring."""

    def __init__(self, app: App) -> None:
        self._app = app

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> AsyncGenerator[AsgiResponse, None]:
        """Start a request; yields once the response has started.

        On exit the client disconnects (if the body is not complete) and waits for the app.
        """
        body = jsonlib.dumps(json).encode() if json is not None else content
        path_only, _, query = path.partition("?")
        all_headers = {"content-type": "application/json", **(headers or {})}
        scope: MutableMapping[str, object] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path_only,
            "raw_path": path_only.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
        }
        response = AsgiResponse()
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await response._disconnected.wait()
            return {"type": "http.disconnect"}

        async def run_app() -> None:
            try:
                await self._app(scope, receive, response._app_send)
            finally:
                response._send.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_app)
            await response._wait_start()
            try:
                yield response
            finally:
                if not response.complete:
                    await response.disconnect()
                    while await response.next_chunk() is not None:
                        pass

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> AsgiResponse:
        """Send a request and read the whole response."""
        async with self.stream(method, path, json=json, content=content, headers=headers) as resp:
            await resp.read()
        return resp
