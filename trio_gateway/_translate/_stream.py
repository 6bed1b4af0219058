"""A translated stream, seen by the relay exactly like a pass-through tap.

Theory of operation: the relay feeds every upstream SSE event to its attempt's tap and
forwards what comes back. For a same-protocol route that is ``_protocol._tap.StreamTap``
(the upstream's own bytes); for a translated route it is :class:`Translator`:

    upstream SSE event → reader (upstream protocol) → neutral events → writer (client protocol)

It answers the same questions as the tap (usage so far, terminal event seen, in-band error)
so billing, checkpoints, drains and timeouts work identically on translated streams, and adds
what only a translation has: the client's frames, the assembled body for a non-streaming
caller (the upstream is always streamed), and error frames consistent with what the client
already received.

Invariants:

- The client receives only writer output: no upstream byte (comment, ping, ``id:``) leaks
  through untranslated.
- Upstream error text is sanitised (the upstream's key and host removed) before any writer
  sees it.
- A writer that detects a broken invariant (:class:`TranslationError`) never sends the broken
  frame: the stream ends with an in-band error instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Final

from trio_gateway._errors import GatewayError, UpstreamProtocolError, UpstreamStatusError
from trio_gateway._protocol._names import Protocol
from trio_gateway._protocol._sse import SSEEvent
from trio_gateway._protocol._tap import InBandError
from trio_gateway._protocol._upstream_errors import sanitize_text
from trio_gateway._protocol._usage import Usage, UsageSource
from trio_gateway._translate._events import Failure, Finish, NeutralEvent, TranslationError
from trio_gateway._translate._read import make_reader
from trio_gateway._translate._write import make_writer

__all__ = ["Translator"]

logger = logging.getLogger("trio_gateway.translate")

_BROKEN: Final = "the gateway could not translate the upstream stream"


class Translator:
    """Translate one upstream stream for a client of another protocol.

    Attributes:
        finished: the upstream's answer is over (its terminal event, or an in-band error).
        error: the upstream's in-band error, sanitised, if it sent one.
        events: upstream events inspected.
    """

    __slots__ = ("_failure", "_reader", "_secrets", "_writer", "error", "events", "finished")

    def __init__(
        self,
        upstream: Protocol,
        client: Protocol,
        *,
        request_id: str,
        model: str,
        created: int,
        include_usage: bool,
        stream: bool,
        secrets: Sequence[str],
    ) -> None:
        """Args:
        upstream: the upstream's protocol (what is read).
        client: the caller's protocol (what is written).
        request_id: the gateway's request id; client-visible ids derive from it.
        model: the model name the caller asked for (what it sees in responses).
        created: Unix seconds, for ``created`` / ``created_at`` fields.
        include_usage: Chat callers: whether they asked for the usage chunk.
        stream: whether the caller streams (else :meth:`final_body` is the answer).
        secrets: strings to remove from upstream error text (key, host).
        """
        self._reader = make_reader(upstream)
        self._writer = make_writer(
            client,
            request_id=request_id,
            model=model,
            created=created,
            include_usage=include_usage,
            stream=stream,
        )
        self._secrets = tuple(secrets)
        self._failure: Failure | None = None
        self.finished = False
        self.error: InBandError | None = None
        self.events = 0

    @property
    def usage(self) -> Usage:
        return self._reader.usage

    @property
    def usage_source(self) -> UsageSource:
        return self._reader.usage_source

    @property
    def malformed_events(self) -> int:
        return self._reader.malformed_events

    def inspect(self, event: SSEEvent, frame: bytes) -> bytes | None:
        """The client frames for one upstream event (``None``: nothing to send)."""
        del frame  # the upstream's bytes never reach a client of another protocol
        self.events += 1
        return self._emit(self._reader.feed(event)) or None

    def forward(self, raw: bytes, events: list[SSEEvent]) -> bytes:
        """The client bytes for one decoder output (only writer output, never ``raw``)."""
        del raw
        if not events:
            return b""
        self.events += len(events)
        feed = self._reader.feed
        return b"".join(self._emit(feed(event)) for event in events)

    def end_of_stream(self) -> bytes:
        """The upstream body ended: frames of a clean end where the protocol allows one."""
        if self.finished:
            return b""
        return self._emit(self._reader.end_of_stream())

    def error_frame(self, error: GatewayError, *, request_id: str) -> bytes:
        """In-band frames that end the client stream with ``error``, consistent with what
        the client already received (for Responses: the same id, the next sequence number)."""
        del request_id  # the writer derives every id from the one it was made with
        return self._writer.fail(error)

    def failure(self) -> GatewayError | None:
        """For a non-streaming caller: the upstream's in-band error as an HTTP error."""
        if self._failure is None:
            return None
        return UpstreamStatusError(self._failure.message, status=self._failure.status)

    def final_body(self) -> bytes:
        """A non-streaming caller's response body (after the terminal event)."""
        body = json.dumps(self._writer.final_body(), separators=(",", ":"), ensure_ascii=False)
        return body.encode("utf-8", "backslashreplace")

    def _emit(self, events: list[NeutralEvent]) -> bytes:
        if not events:
            return b""
        out: list[bytes] = []
        for event in events:
            if isinstance(event, Failure):
                event = self._sanitised(event)
                self._failure = event
                self.error = InBandError(event.error_type, event.message)
                self.finished = True
            elif isinstance(event, Finish):
                self.finished = True
            try:
                out.append(self._writer.feed(event))
            except TranslationError as exc:
                logger.error("translation invariant broken: %s", exc)
                self.error = InBandError("api_error", _BROKEN)
                self._failure = Failure("api_error", _BROKEN)
                self.finished = True
                out.append(self._writer.fail(UpstreamProtocolError(_BROKEN)))
                break
        return b"".join(out)

    def _sanitised(self, failure: Failure) -> Failure:
        message = sanitize_text(failure.message, secrets=self._secrets)
        error_type = failure.error_type
        if error_type is not None:
            error_type = sanitize_text(error_type, secrets=self._secrets)[:100]
        return Failure(error_type, message, failure.status)
