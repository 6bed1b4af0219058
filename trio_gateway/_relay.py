"""The per-request streaming relay: upstream → SSE decoder → tap → client.

Theory of operation (DESIGN §4). One nursery per request runs four tasks:

- **disconnect watcher**: awaits ``receive()`` until ``http.disconnect`` and then cancels the
  client scope. hypercorn's ``send()`` never reports a disconnect (STACK-FACTS §2), so this
  task is the only way to learn of one.
- **upstream reader** [client scope]: opens the upstream (failing over while nothing is
  committed), reads it, feeds the SSE decoder and the usage tap, and hands complete frames
  to the writer without ever waiting on it (an unbounded channel plus a byte budget: a client
  that stops reading is dropped, never allowed to stall the upstream side).
- **client writer** [client scope]: holds the response uncommitted for up to
  ``commit_delay``, writes frames (merging whatever is queued into one ``send``), sends a
  keepalive ping after ``keepalive_interval`` of silence, and ends the body with the
  terminal event or an in-band error event.
- **drain-for-billing** [not in the client scope]: receives the reader's attempt when the
  reader ends for any reason; if the client left mid-stream and the policy is ``drain``, it
  keeps reading the upstream to its terminal event (bounded by ``drain_timeout``,
  ``data_interval_timeout`` and ``max_concurrent_drains``); then it settles.

Invariants:
- Every upstream attempt is settled exactly once, in a shielded and bounded scope, by the
  code that ends it: failed pre-commit attempts by the failover loop, the final attempt by
  the drain-for-billing task. Settlement never waits on the client writer.
- The reader is only ever cancelled while awaiting ``UpstreamResponse.receive_some()``,
  which is cancel-safe, so the drain task continues exactly where the reader stopped.
- The writer only ever writes complete SSE blocks, so every ping lands on an event boundary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from ._asgi import Receive
from ._attempts import Attempt, Attempts, Exchange
from ._budgets import Budgets
from ._config import StreamingConfig
from ._errors import (
    GatewayError,
    ShuttingDown,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from ._http1 import UpstreamResponse
from ._ledger import Ledger
from ._metrics import Metrics
from ._protocol._error_bodies import ping_frame
from ._protocol._tap import usage_from_body
from ._translate._stream import Translator

logger = logging.getLogger("trio_gateway.relay")

#: After the terminal event, how long the reader keeps reading the (normally already
#: buffered) end of the HTTP body so the connection can be reused.
_TAIL_GRACE: Final = 1.0
#: Task names, the ones trio would derive, but one shared string each: trio formats a new
#: name per spawned task otherwise (~90 B per task for the whole stream).
_WATCHER: Final = "trio_gateway._relay.Relay._watch_disconnect"
_DRAIN: Final = "trio_gateway._relay.Relay._drain_for_billing"
_READER: Final = "trio_gateway._relay.Relay._read_upstream"
_WRITER: Final = "trio_gateway._relay.Relay._write_client"
#: Seconds between usage checkpoints of a long stream's in-flight ledger row (RELIABILITY I3:
#: a crash loses at most one interval of output usage).
_CHECKPOINT_INTERVAL: Final = 5.0


class _Opened:
    """Writer message: the upstream answered 200; commit now."""


class _End:
    """Writer message: the stream is complete; end the body."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """Writer message: end the response with this error; ``frame`` is its in-band form,
    consistent with what the stream already carried (used once the response is committed)."""

    error: GatewayError
    frame: bytes | None = None


_OPENED: Final = _Opened()
_END: Final = _End()
WriterMessage = bytes | _Opened | _End | _Failure


class Relay:
    """Runs requests: the streaming task shape and the non-streaming path."""

    def __init__(
        self, *, streaming: StreamingConfig, ledger: Ledger, budgets: Budgets, metrics: Metrics
    ) -> None:
        self._streaming = streaming
        self._metrics = metrics
        self._attempts = Attempts(
            streaming=streaming, ledger=ledger, budgets=budgets, metrics=metrics
        )
        self.drains_in_flight = 0
        self.streams_in_flight = 0

    # ------------------------------------------------------------------ streaming

    async def serve_stream(self, ex: Exchange, receive: Receive) -> None:
        """Serve a streaming request with the four-task shape described above."""
        to_writer, from_reader = trio.open_memory_channel[WriterMessage](math.inf)
        # The reader's hand-over to the drain task: the attempt is ``ex.current`` once this is
        # set. An Event, not a one-slot channel: it is held for the whole stream, and a memory
        # channel costs ~1.8 KB against ~0.3 KB (bench idle run, RSS per open stream).
        reader_done = trio.Event()
        self.streams_in_flight += 1
        self._metrics.set_streams_in_flight(self.streams_in_flight)
        try:
            async with trio.open_nursery() as request_nursery:
                request_nursery.start_soon(self._watch_disconnect, receive, ex, name=_WATCHER)
                billing_done = trio.Event()
                request_nursery.start_soon(
                    self._drain_for_billing, ex, reader_done, billing_done, name=_DRAIN
                )
                async with trio.open_nursery() as client_nursery:
                    # The client scope is this nursery's own: a scope around the nursery
                    # would be one more entered CancelScope (~0.7 KB) per open stream. Only
                    # the watcher and the reader cancel it, and neither has run yet.
                    ex.client_scope = client_nursery.cancel_scope
                    client_nursery.start_soon(
                        self._read_upstream, ex, to_writer, reader_done, name=_READER
                    )
                    client_nursery.start_soon(self._write_client, ex, from_reader, name=_WRITER)
                await billing_done.wait()
                # Only the disconnect watcher is left: stop it (its own scope would cost an
                # entered CancelScope per open stream for nothing).
                request_nursery.cancel_scope.cancel()
        finally:
            self.streams_in_flight -= 1
            self._metrics.set_streams_in_flight(self.streams_in_flight)

    async def _watch_disconnect(self, receive: Receive, ex: Exchange) -> None:
        """Runs until ``http.disconnect``, or until the request nursery is cancelled once
        everything else is done."""
        while (await receive()).get("type") != "http.disconnect":
            pass
        self._client_gone(ex, "disconnect")

    @staticmethod
    def _client_gone(ex: Exchange, phase: str) -> None:
        if ex.client_gone is None:
            ex.client_gone = phase
            ex.client_scope.cancel()

    async def _read_upstream(
        self,
        ex: Exchange,
        to_writer: trio.MemorySendChannel[WriterMessage],
        reader_done: trio.Event,
    ) -> None:
        try:
            with ex.cuttable() as cut_scope:
                attempt = await self._attempts.open(ex)
                to_writer.send_nowait(_OPENED)
                await self._pump(ex, attempt, to_writer)
            if cut_scope.cancelled_caught and ex.cut_error is not None:
                raise ex.cut_error
        except GatewayError as error:
            attempt_now = ex.current
            frame = None
            if attempt_now is not None:
                attempt_now.error = error
                attempt_now.ended = True
                frame = attempt_now.tap.error_frame(error, request_id=ex.request_id)
            to_writer.send_nowait(_Failure(error, frame))
        finally:
            reader_done.set()  # hands ex.current over to the drain task

    async def _pump(
        self, ex: Exchange, attempt: Attempt, to_writer: trio.MemorySendChannel[WriterMessage]
    ) -> None:
        """Forward the upstream stream until its terminal event (or EOF / an error)."""
        response = attempt.response
        assert response is not None
        decoder, tap = attempt.decoder, attempt.tap
        interval = self._streaming.data_interval_timeout
        budget = self._streaming.client_buffer_bytes
        secrets = attempt.upstream.secrets
        with trio.CancelScope(deadline=trio.current_time() + interval) as data_interval_deadline:
            while not tap.finished:
                chunk = await self._receive_or_checkpoint(attempt)
                if chunk is None:
                    continue
                now = trio.current_time()
                data_interval_deadline.deadline = now + interval
                if chunk:
                    raw, events = decoder.feed(chunk)
                    if not raw:
                        continue
                    had_error = tap.error is not None
                    out = tap.forward(raw, events)
                else:  # EOF: a translated Chat stream may end cleanly without [DONE]
                    had_error = tap.error is not None
                    out = tap.end_of_stream()
                if tap.error is not None and not had_error:
                    out = _scrub(out, secrets)
                if out:
                    if ex.first_content_at is None:
                        ex.first_content_at = now
                    if ex.writing and ex.queued_bytes > budget:
                        # More than the budget waits behind a write that has not returned:
                        # the client stopped reading (RELIABILITY C4). Drop it and keep the
                        # upstream for billing; this cancels our own scope too. Only bytes
                        # queued behind a write in progress count (not the frame just
                        # received, nor frames the writer was not yet scheduled to take),
                        # so one event larger than the budget never drops a client that
                        # reads (PEER-BUGS 11).
                        self._client_gone(ex, "stalled")
                    ex.queued_bytes += len(out)
                    to_writer.send_nowait(out)
                if not chunk:
                    break
        if data_interval_deadline.cancelled_caught:
            raise UpstreamTimeout(
                f"upstream sent nothing for {interval:g} s", phase="data_interval"
            )
        attempt.ended = True
        if tap.finished:
            attempt.completed_clean = ex.client_gone is None
        elif tap.error is None:
            raise UpstreamProtocolError("upstream ended the stream before its terminal event")
        to_writer.send_nowait(_END)
        await _read_tail(response)

    async def _receive_or_checkpoint(self, attempt: Attempt) -> bytes | None:
        """The next upstream bytes, or None after checkpointing the usage seen so far.

        While usage changed since the last checkpoint, the read is bounded so that the
        checkpoint happens within ``_CHECKPOINT_INTERVAL`` even if the upstream then goes
        silent (RELIABILITY I3: a crash loses at most one interval). Cancel-safe:
        ``receive_some`` consumes nothing when cancelled.
        """
        response = attempt.response
        assert response is not None
        if attempt.usage == attempt.record.usage:  # the row already has this usage
            return await response.receive_some()
        with trio.move_on_at(attempt.checkpointed_at + _CHECKPOINT_INTERVAL) as checkpoint_due:
            return await response.receive_some()
        if checkpoint_due.cancelled_caught:
            self._attempts.checkpoint(attempt, trio.current_time())
        return None

    async def _write_client(
        self, ex: Exchange, from_reader: trio.MemoryReceiveChannel[WriterMessage]
    ) -> None:
        reply = ex.reply
        ping = ping_frame(reply.protocol)
        keepalive = self._streaming.keepalive_interval or math.inf
        message: WriterMessage | None = None
        with trio.move_on_at(ex.started + self._streaming.commit_delay):
            message = await from_reader.receive()
        if message is None:
            # commit_delay passed with no upstream answer: commit so pings can flow and a
            # load balancer's idle timer never sees a silent connection (PEER-BUGS 15–16).
            await reply.start_stream()
            if self._streaming.keepalive_interval > 0:
                await reply.write(ping)
                ex.pings += 1
                self._metrics.ping_sent()
        last_write = trio.current_time()
        while True:
            if message is None:
                with trio.move_on_at(last_write + keepalive):
                    message = await from_reader.receive()
                if message is None:
                    await reply.write(ping)
                    ex.pings += 1
                    self._metrics.ping_sent()
                    last_write = trio.current_time()
                    continue
            if isinstance(message, bytes):
                message = await self._write_batch(ex, message, from_reader)
                last_write = trio.current_time()
                continue
            if isinstance(message, _Opened):
                if not reply.committed:
                    await reply.start_stream()
                    last_write = trio.current_time()
                message = None
                continue
            if isinstance(message, _End):
                if not reply.committed:
                    await reply.start_stream()
                await reply.finish()
                return
            await reply.fail(message.error, frame=message.frame)
            return

    @staticmethod
    async def _write_batch(
        ex: Exchange, first: bytes, from_reader: trio.MemoryReceiveChannel[WriterMessage]
    ) -> WriterMessage | None:
        """Write ``first`` plus every frame already queued behind it in one ``send``
        (hypercorn-trio costs ~87 µs per send, STACK-FACTS §3); returns the first
        non-bytes message met, if any."""
        reply = ex.reply
        if not reply.committed:
            await reply.start_stream()
        parts = [first]
        pending: WriterMessage | None = None
        while True:
            try:
                nxt = from_reader.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(nxt, bytes):
                parts.append(nxt)
            else:
                pending = nxt
                break
        data = first if len(parts) == 1 else b"".join(parts)
        ex.queued_bytes -= len(data)
        ex.writing = True
        await reply.write(data)
        ex.writing = False
        return pending

    async def _drain_for_billing(
        self,
        ex: Exchange,
        reader_done: trio.Event,
        billing_done: trio.Event,
    ) -> None:
        try:
            try:
                await reader_done.wait()
            except trio.Cancelled:
                # The server cancelled the request (hypercorn after its graceful timeout).
                # The attempt the reader hands over in its `finally` must still be received
                # and settled: wait for it shielded (bounded: the reader, cancelled too,
                # always sets the event), settle, and let the cancellation go on. Shielded
                # only here rather than for the whole wait: a scope entered for the whole
                # stream costs ~0.7 KB per open stream.
                with trio.CancelScope(shield=True):
                    await reader_done.wait()
                if ex.current is not None:
                    await self._attempts.settle(ex, ex.current)
                raise
            attempt = ex.current
            if attempt is None:
                return
            try:
                if self._should_drain(ex, attempt):
                    self.drains_in_flight += 1
                    self._metrics.set_drains_in_flight(self.drains_in_flight)
                    try:
                        await self._drain(ex, attempt)
                    finally:
                        self.drains_in_flight -= 1
                        self._metrics.set_drains_in_flight(self.drains_in_flight)
            finally:
                await self._attempts.settle(ex, attempt)
        finally:
            billing_done.set()

    def _should_drain(self, ex: Exchange, attempt: Attempt) -> bool:
        """Drain only for a client that left mid-stream under the ``drain`` policy, after
        content reached it (a disconnect before the first content byte cancels), and only
        while under ``max_concurrent_drains``."""
        return (
            ex.client_gone is not None
            and not attempt.ended
            and attempt.response is not None
            and attempt.error is None
            and ex.first_content_at is not None
            and self._streaming.on_client_disconnect == "drain"
            and self.drains_in_flight < self._streaming.max_concurrent_drains
        )

    async def _drain(self, ex: Exchange, attempt: Attempt) -> None:
        """Read the upstream to its terminal event for billing; forward nothing."""
        try:
            with (
                trio.move_on_after(self._streaming.drain_timeout) as drain_deadline,
                ex.cuttable() as cut_scope,
            ):
                await self._consume(attempt)
            if cut_scope.cancelled_caught:
                attempt.error = ex.cut_error
                return
        except UpstreamTimeout:
            logger.info("drain of %s stopped by a deadline", attempt.record.request_id)
            return
        except UpstreamError as error:
            attempt.error = error
            return
        tap = attempt.tap
        attempt.ended = tap.finished or tap.error is not None
        if drain_deadline.cancelled_caught:
            logger.info("drain of %s stopped by a deadline", attempt.record.request_id)

    async def _consume(self, attempt: Attempt) -> None:
        """Feed the upstream stream to the attempt's tap until its terminal event or EOF,
        discarding the output (drain-for-billing, and translated non-streaming requests,
        whose tap assembles the answer on the side).

        Raises:
            UpstreamTimeout: the upstream was silent for ``data_interval_timeout``.
            UpstreamError: the connection broke.
        """
        response = attempt.response
        assert response is not None
        decoder, tap = attempt.decoder, attempt.tap
        interval = self._streaming.data_interval_timeout
        with trio.CancelScope(deadline=trio.current_time() + interval) as data_interval_deadline:
            while not tap.finished:
                chunk = await self._receive_or_checkpoint(attempt)
                if chunk is None:
                    continue
                data_interval_deadline.deadline = trio.current_time() + interval
                if not chunk:
                    tap.end_of_stream()
                    break
                raw, events = decoder.feed(chunk)
                for event in events:
                    tap.inspect(event, raw[event.start : event.end])
        if data_interval_deadline.cancelled_caught:
            raise UpstreamTimeout(
                f"upstream sent nothing for {interval:g} s", phase="data_interval"
            )
        if tap.finished:
            await _read_tail(response)

    # ------------------------------------------------------------------ non-streaming

    async def serve_unary(self, ex: Exchange, receive: Receive) -> None:
        """Serve a non-streaming request: one response, no pings (JSON has no keepalive).

        A disconnect cancels the upstream at once: no content byte has reached the client
        (DESIGN §4).
        """
        async with trio.open_nursery() as request_nursery:
            request_nursery.start_soon(self._watch_disconnect, receive, ex, name=_WATCHER)
            try:
                with ex.client_scope:
                    await self._unary_body(ex)
            finally:
                if ex.current is not None:
                    await self._attempts.settle(ex, ex.current)
                request_nursery.cancel_scope.cancel()  # stops the disconnect watcher

    async def _unary_body(self, ex: Exchange) -> None:
        reply = ex.reply
        answer: tuple[int, bytes] | None = None
        try:
            with ex.cuttable():
                answer = await self._unary_exchange(ex)
            if answer is None:  # only a cut cancels that scope
                raise ex.cut_error or ShuttingDown("the gateway is shutting down")
        except GatewayError as error:
            if ex.current is not None:
                ex.current.error = error
            await reply.fail(error)
            return
        ex.first_content_at = trio.current_time()
        await reply.respond(*answer)

    async def _unary_exchange(self, ex: Exchange) -> tuple[int, bytes]:
        """Open the upstream and read its whole answer: the status and body to respond
        with (``_unary_body`` reports what goes wrong)."""
        attempt = await self._attempts.open(ex)
        response = attempt.response
        assert response is not None
        tap = attempt.tap
        if isinstance(tap, Translator):
            # Translated routes always stream upstream; the tap assembles the answer.
            await self._consume(attempt)
            attempt.ended = True
            failure = tap.failure()
            if failure is not None:
                raise failure
            if not tap.finished:
                raise UpstreamProtocolError("upstream ended the stream before its terminal event")
            body = tap.final_body()
            status = 200
        else:
            with trio.move_on_after(self._streaming.data_interval_timeout) as body_deadline:
                body = await response.read_all(max_bytes=self._streaming.max_event_bytes)
            if body_deadline.cancelled_caught:
                raise UpstreamTimeout(
                    "upstream response body did not complete in time", phase="data_interval"
                )
            attempt.body_usage = usage_from_body(attempt.upstream.protocol, body)
            attempt.ended = True
            status = response.status
        attempt.completed_clean = True
        return status, body


async def _read_tail(response: UpstreamResponse) -> None:
    """Read the rest of the HTTP body after the terminal event (normally just the chunked
    terminator) so the connection can be reused; bounded, and harmless to skip."""
    with trio.move_on_after(_TAIL_GRACE):
        try:
            while not response.is_finished and await response.receive_some():
                pass
        except UpstreamError:
            return


def _scrub(data: bytes, secrets: Sequence[str]) -> bytes:
    """Remove the upstream's own key from an in-band error frame passed through verbatim."""
    for secret in secrets:
        data = data.replace(secret.encode(), b"[redacted]")
    return data


__all__ = ["Relay"]
