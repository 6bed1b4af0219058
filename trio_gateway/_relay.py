"""The per-request streaming relay: upstream → SSE decoder → tap → client.

Theory of operation (DESIGN §4). One nursery per request runs the disconnect watcher and
the client scope's reader and writer, plus a drain-for-billing task when one is due:

- **disconnect watcher**: awaits ``receive()`` until ``http.disconnect`` and then cancels the
  client scope. hypercorn's ``send()`` never reports a disconnect (STACK-FACTS §2), so this
  task is the only way to learn of one.
- **upstream reader** [client scope]: opens the upstream (failing over while nothing is
  committed), reads it, feeds the SSE decoder and the usage tap, and hands complete frames
  to the writer without ever waiting on it (an unbounded queue plus a byte budget: a client
  that stops reading is dropped, never allowed to stall the upstream side). While it streams,
  one re-armed cancel scope is its timers and its graceful-shutdown cut at once.
- **client writer** [client scope]: holds the response uncommitted for up to
  ``commit_delay``, writes frames (merging whatever is queued into one ``send``), sends a
  keepalive ping after ``keepalive_interval`` of silence, and ends the body with the
  terminal event or an in-band error event.
- **drain-for-billing** [not in the client scope]: when the reader ends for any reason it
  settles its attempt at once, unless the client left mid-stream and the policy is
  ``drain``: then it starts this task in the request nursery, which keeps reading the
  upstream to its terminal event (bounded by ``drain_timeout``, ``data_interval_timeout``
  and ``max_concurrent_drains``) and then settles. It does not wait for the writer, which
  may be stuck in a send to a client that stopped reading. (It used to be started with
  every request and wait on a hand-off channel; starting it only when a drain is due
  saves a task, a channel and an event per request, see ``bench/README.md``.)

Invariants:
- Every upstream attempt is settled exactly once, in a shielded and bounded scope, by the
  code that ends it: failed pre-commit attempts by the failover loop, the final attempt by
  the reader or, after a drain, the drain-for-billing task. Settlement never waits on the
  client writer.
- The reader is only ever cancelled while awaiting ``UpstreamResponse.receive_some()``,
  which is cancel-safe, so drain-for-billing continues exactly where the reader stopped.
- The writer only ever writes complete SSE blocks, so every ping lands on an event boundary.
  A batch larger than ``_SLICE_BYTES`` goes out in several sends, one after another from
  the same task, so no ping can come between them either.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import outcome
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
#: The most one ``send`` carries. hypercorn's h11 path copies what one send carries
#: (chunk size line + data + CRLF joined), so a 64 MiB event in one send would be held twice;
#: in slices, only one slice is.
_SLICE_BYTES: Final = 1 << 20


class _Opened:
    """Writer message: the upstream answered 200; commit now."""


class _End:
    """Writer message: the stream is complete; end the body."""


class _Ping:
    """Writer message: the reader's keepalive timer passed; ping unless a write since."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """Writer message: end the response with this error; ``frame`` is its in-band form,
    consistent with what the stream already carried (used once the response is committed)."""

    error: GatewayError
    frame: bytes | None = None


class _Mailbox:
    """The reader's queue to the writer: unbounded (the reader never waits; the byte budget
    bounds it) with one receiving task. A memory channel pair did the same for ~2.4 KB per
    open stream and more work per message; this is a list, a read index and the waiting task.

    A list rather than a deque: an empty deque keeps a 64-slot block (760 B, its block
    allocated outside pymalloc) for the whole stream, an empty list is 56 B. The list is
    emptied (its storage freed) whenever the writer has taken everything, so taking from the
    front costs O(1) without ``pop(0)``.

    Cancellation: :meth:`get` is cancel-safe (a cancelled wait takes nothing; once
    :meth:`put` has handed a message to the waiting task, trio no longer cancels that wait).
    """

    __slots__ = ("_head", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[WriterMessage | None] = []
        #: Index of the next message in ``_items``; the ones before it are taken (None).
        self._head = 0
        self._waiter: trio.lowlevel.Task | None = None

    def put(self, message: WriterMessage) -> None:
        """Hand ``message`` to the writer if it waits, else queue it. Never blocks."""
        waiter = self._waiter
        if waiter is None:
            self._items.append(message)
        else:  # it waits only on an empty queue, so nothing comes before this message
            self._waiter = None
            trio.lowlevel.reschedule(waiter, outcome.Value(message))

    def get_nowait(self) -> WriterMessage | None:
        """The next message, or None if none is queued."""
        items = self._items
        head = self._head
        if head == len(items):
            return None
        message = items[head]
        head += 1
        if head == len(items):
            items.clear()
            self._head = 0
        else:
            items[head - 1] = None  # taken: the list no longer holds it
            self._head = head
        return message

    def get(self) -> Awaitable[WriterMessage]:
        """The next message, waiting for one (a checkpoint either way): ``await box.get()``.

        Not a coroutine function: an idle writer waits in trio's own
        ``wait_task_rescheduled``, and :meth:`put` hands it the message, so no frame of
        ours stays suspended for the whole stream (~0.2 KB). Call it only to await it at
        once (it registers the waiting task when called).
        """
        if self._head < len(self._items):
            return self._get_queued()
        self._waiter = trio.lowlevel.current_task()
        # Returned, not awaited: the caller awaits it at once (see above).
        return trio.lowlevel.wait_task_rescheduled(self._abort)  # ruff: ignore[trio-sync-call]

    async def _get_queued(self) -> WriterMessage:
        await trio.lowlevel.checkpoint()  # a cancellation here takes nothing
        message = self.get_nowait()
        assert message is not None  # one receiving task: what was queued is still there
        return message

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED


_OPENED: Final = _Opened()
_END: Final = _End()
_PING: Final = _Ping()
WriterMessage = bytes | _Opened | _End | _Ping | _Failure


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
        """Serve a streaming request with the task shape described above."""
        to_writer = from_reader = _Mailbox()
        self.streams_in_flight += 1
        self._metrics.set_streams_in_flight(self.streams_in_flight)
        try:
            async with trio.open_nursery() as request_nursery:
                watcher_scope = trio.CancelScope()
                request_nursery.start_soon(
                    self._watch_disconnect, receive, ex, watcher_scope, name=_WATCHER
                )
                try:
                    async with trio.open_nursery() as client_nursery:
                        # The client scope is this nursery's own: a scope around the nursery
                        # would be one more entered CancelScope (~0.7 KB) per open stream.
                        # Only the watcher and the reader cancel it, and neither has run yet.
                        ex.client_scope = client_nursery.cancel_scope
                        client_nursery.start_soon(
                            self._read_upstream, ex, to_writer, request_nursery, name=_READER
                        )
                        client_nursery.start_soon(self._write_client, ex, from_reader, name=_WRITER)
                finally:
                    watcher_scope.cancel()  # a drain-for-billing task may still run
        finally:
            self.streams_in_flight -= 1
            self._metrics.set_streams_in_flight(self.streams_in_flight)

    async def _watch_disconnect(
        self, receive: Receive, ex: Exchange, watcher_scope: trio.CancelScope
    ) -> None:
        with watcher_scope:
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
        to_writer: _Mailbox,
        request_nursery: trio.Nursery,
    ) -> None:
        """Open the upstream, forward its stream to the writer until the terminal event (or
        EOF / an error), then settle or hand over to drain-for-billing.

        A graceful-shutdown cut (``Exchange.cut``) ends whichever step is running: the open,
        the stream (:meth:`_feed`'s timer scope is the cuttable one, so an open stream holds
        one entered scope, not two) or the tail read, and is reported to the writer like any
        other failure.
        """
        try:
            with ex.cuttable() as cut_scope:
                attempt = await self._attempts.open(ex)
                to_writer.put(_OPENED)
            if cut_scope.cancelled_caught and ex.cut_error is not None:
                raise ex.cut_error
            await self._feed(ex, attempt, to_writer, replacing=cut_scope)
            attempt.ended = True
            tap = attempt.tap
            if tap.finished:
                attempt.completed_clean = ex.client_gone is None
            elif tap.error is None:
                raise UpstreamProtocolError("upstream ended the stream before its terminal event")
            to_writer.put(_END)
            response = attempt.response
            assert response is not None
            if not response.is_finished:  # at c=64, 84 % had the terminator already
                with ex.cuttable() as cut_scope:
                    await _read_tail(response)
                if cut_scope.cancelled_caught and ex.cut_error is not None:
                    raise ex.cut_error
        except GatewayError as error:
            attempt_now = ex.current
            frame = None
            if attempt_now is not None:
                attempt_now.error = error
                attempt_now.ended = True
                frame = attempt_now.tap.error_frame(error, request_id=ex.request_id)
            to_writer.put(_Failure(error, frame))
        finally:
            # Settle now, or hand the attempt to a drain-for-billing task in the request
            # nursery: outside the client scope, and not waiting for the writer, which may
            # be stuck in a send to a client that stopped reading.
            attempt_now = ex.current
            if attempt_now is not None:
                if self._should_drain(ex, attempt_now):
                    # Counted now, not when the task starts, so the cap holds meanwhile.
                    self.drains_in_flight += 1
                    self._metrics.set_drains_in_flight(self.drains_in_flight)
                    request_nursery.start_soon(
                        self._drain_for_billing, ex, attempt_now, name=_DRAIN
                    )
                else:
                    await self._attempts.settle(ex, attempt_now)

    def _forward(
        self, ex: Exchange, attempt: Attempt, chunk: bytes, now: float, to_writer: _Mailbox
    ) -> bool:
        """Decode ``chunk`` (``b""``: EOF), run it through the tap and queue the output for
        the writer; True once the stream is over (terminal event or EOF)."""
        tap = attempt.tap
        if chunk:
            raw, events = attempt.decoder.feed(chunk)
            if not raw:
                return False
            had_error = tap.error is not None
            out = tap.forward(raw, events)
        else:  # EOF: a translated Chat stream may end cleanly without [DONE]
            had_error = tap.error is not None
            out = tap.end_of_stream()
        if tap.error is not None and not had_error:
            out = _scrub(out, attempt.upstream.secrets)
        if out:
            if ex.first_content_at is None:
                ex.first_content_at = now
            if ex.writing and ex.queued_bytes > self._streaming.client_buffer_bytes:
                # More than the budget waits behind a write that has not returned: the
                # client stopped reading (RELIABILITY C4). Drop it and keep the upstream
                # for billing; this cancels our own scope too. Only bytes queued behind
                # a write in progress count (not the frame just received, nor frames the
                # writer was not yet scheduled to take), so one event larger than the
                # budget never drops a client that reads (PEER-BUGS 11).
                self._client_gone(ex, "stalled")
            ex.queued_bytes += len(out)
            to_writer.put(out)
        return tap.finished or not chunk

    async def _feed(
        self,
        ex: Exchange,
        attempt: Attempt,
        to_writer: _Mailbox | None,
        *,
        replacing: trio.CancelScope | None = None,
    ) -> None:
        """Read the upstream body until the terminal event or EOF: forwarded to ``to_writer``
        (:meth:`_forward`), or, without one, only inspected by the tap (:func:`_inspect`).

        One cancel scope serves three timers: the data-interval timeout, the usage
        checkpoint (RELIABILITY I3: while usage changed since the row's last checkpoint, a
        crash loses at most ``_CHECKPOINT_INTERVAL`` of it, even if the upstream then goes
        silent) and, given ``to_writer``, the keepalive ping, which it asks the writer for
        (``_PING``) once the writer has been idle for ``keepalive_interval``. The scope is
        only re-armed when its deadline passes, so a chunk costs no scope and no deadline
        change (a scope per read was a measured share of the per-event CPU). Given
        ``to_writer`` (the stream reader), the scope is also the reader's cuttable scope
        (``Exchange.cuttable``), re-armed in place (the first one takes the place of
        ``replacing``, the reader's exited scope of the open): one entered scope per open
        stream instead of two (~0.7 KB). Cancel-safe: ``receive_some`` consumes nothing when
        cancelled.

        Raises:
            UpstreamTimeout: the upstream was silent for ``data_interval_timeout``.
            UpstreamError: the connection broke.
            GatewayError: given ``to_writer``, ``ex.cut_error`` after a cut.
        """
        response = attempt.response
        assert response is not None
        interval = self._streaming.data_interval_timeout
        keepalive = math.inf
        if to_writer is not None and self._streaming.keepalive_interval > 0:
            keepalive = self._streaming.keepalive_interval
        last_data = trio.current_time()
        ping_asked = -math.inf
        timers = replacing
        while True:
            dirty = attempt.usage != attempt.record.usage  # the row lacks usage seen since
            checkpoint_at = attempt.checkpointed_at + _CHECKPOINT_INTERVAL if dirty else math.inf
            ping_at = max(ex.last_write, ping_asked) + keepalive
            deadline = min(last_data + interval, checkpoint_at, ping_at)
            if to_writer is None:
                timers = trio.CancelScope(deadline=deadline)
            else:
                timers = ex.cuttable(deadline, replacing=timers)
            with timers:
                while True:
                    chunk = await response.receive_some()
                    last_data = trio.current_time()
                    if to_writer is None:
                        done = _inspect(attempt, chunk)
                    else:
                        done = self._forward(ex, attempt, chunk, last_data, to_writer)
                    # Not held while waiting for the next one: an idle stream would keep its
                    # last chunk (up to 64 KiB) for as long as the upstream is silent.
                    del chunk
                    if done:
                        return
                    if dirty:
                        if last_data >= checkpoint_at:
                            self._attempts.checkpoint(attempt, last_data)
                            dirty = False
                    elif attempt.usage != attempt.record.usage:
                        dirty = True
                        checkpoint_at = attempt.checkpointed_at + _CHECKPOINT_INTERVAL
                        timers.deadline = min(timers.deadline, checkpoint_at)
            if to_writer is not None and ex.cut_error is not None:
                raise ex.cut_error  # the scope was cut (before any deadline check, as ever)
            # A deadline passed (nothing else cancels this scope): see which.
            now = trio.current_time()
            if now >= last_data + interval:
                raise UpstreamTimeout(
                    f"upstream sent nothing for {interval:g} s", phase="data_interval"
                )
            if dirty and now >= checkpoint_at:
                self._attempts.checkpoint(attempt, now)
            if to_writer is not None and now >= max(ex.last_write, ping_asked) + keepalive:
                to_writer.put(_PING)
                ping_asked = now

    async def _write_client(self, ex: Exchange, from_reader: _Mailbox) -> None:
        reply = ex.reply
        ping = ping_frame(reply.protocol)
        keepalive = self._streaming.keepalive_interval or math.inf
        message: WriterMessage | None = None
        with trio.move_on_at(ex.started + self._streaming.commit_delay):
            message = await from_reader.get()
        if message is None:
            # commit_delay passed with no upstream answer: commit so pings can flow and a
            # load balancer's idle timer never sees a silent connection (PEER-BUGS 15–16).
            await reply.start_stream()
            if self._streaming.keepalive_interval > 0:
                await self._write_ping(ex, ping)
        ex.last_write = trio.current_time()
        opened = False  # from _OPENED on, the reader's timers ask for pings (_PING)
        while True:
            if message is None:
                if opened:
                    message = await from_reader.get()
                else:
                    with trio.move_on_at(ex.last_write + keepalive):
                        message = await from_reader.get()
                    if message is None:
                        message = _PING
            if isinstance(message, bytes):
                message = await self._write_batch(ex, message, from_reader)
                ex.last_write = trio.current_time()
                continue
            if isinstance(message, _Ping):
                message = None
                now = trio.current_time()
                if now - ex.last_write >= keepalive:  # nothing written since it was asked
                    await self._write_ping(ex, ping)
                    ex.last_write = trio.current_time()
                continue
            if isinstance(message, _Opened):
                opened = True
                if not reply.committed:
                    await reply.start_stream()
                    ex.last_write = trio.current_time()
                message = None
                continue
            if isinstance(message, _End):
                if not reply.committed:
                    await reply.start_stream()
                await reply.finish()
                return
            await reply.fail(message.error, frame=message.frame)
            return

    async def _write_ping(self, ex: Exchange, ping: bytes) -> None:
        # A write like any other: frames queued behind a ping stuck on a client that stopped
        # reading count toward the stalled-client budget (RELIABILITY C4).
        ex.writing = True
        await ex.reply.write(ping)
        ex.writing = False
        ex.pings += 1
        self._metrics.ping_sent()

    @staticmethod
    async def _write_batch(
        ex: Exchange, first: bytes, from_reader: _Mailbox
    ) -> WriterMessage | None:
        """Write ``first`` plus every frame already queued behind it in one ``send``
        (hypercorn-trio costs ~87 µs per send, STACK-FACTS §3), or, past ``_SLICE_BYTES``,
        in sends of at most that size; returns the first non-bytes message met, if any."""
        reply = ex.reply
        if not reply.committed:
            await reply.start_stream()
        parts = [first]
        size = len(first)
        pending: WriterMessage | None = None
        while True:
            nxt = from_reader.get_nowait()
            if nxt is None:
                break
            if isinstance(nxt, bytes):
                parts.append(nxt)
                size += len(nxt)
            else:
                pending = nxt
                break
        ex.queued_bytes -= size
        ex.writing = True
        if size <= _SLICE_BYTES:
            data = first if len(parts) == 1 else b"".join(parts)
            if isinstance(pending, _End):
                # The stream's last bytes end the body in the same ASGI message: one
                # hypercorn ``app_send`` and one writer round fewer per stream (the caller's
                # ``finish`` then does nothing).
                await reply.finish(data)
            else:
                await reply.write(data)
        else:
            for piece in _slices(parts, _SLICE_BYTES):
                await reply.write(piece)
        ex.writing = False
        return pending

    async def _drain_for_billing(self, ex: Exchange, attempt: Attempt) -> None:
        """Read the upstream on to its terminal event for billing (the client left
        mid-stream under the ``drain`` policy), then settle the attempt. The reader counted
        it in ``drains_in_flight``."""
        try:
            await self._drain(ex, attempt)
        finally:
            self.drains_in_flight -= 1
            self._metrics.set_drains_in_flight(self.drains_in_flight)
            await self._attempts.settle(ex, attempt)

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
                await self._consume(ex, attempt)
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

    async def _consume(self, ex: Exchange, attempt: Attempt) -> None:
        """Feed the upstream stream to the attempt's tap until its terminal event or EOF,
        discarding the output (drain-for-billing, and translated non-streaming requests,
        whose tap assembles the answer on the side).

        Raises:
            UpstreamTimeout: the upstream was silent for ``data_interval_timeout``.
            UpstreamError: the connection broke.
        """
        response = attempt.response
        assert response is not None
        await self._feed(ex, attempt, None)
        if attempt.tap.finished:
            await _read_tail(response)

    # ------------------------------------------------------------------ non-streaming

    async def serve_unary(self, ex: Exchange, receive: Receive) -> None:
        """Serve a non-streaming request: one response, no pings (JSON has no keepalive).

        A disconnect cancels the upstream at once: no content byte has reached the client
        (DESIGN §4).
        """
        async with trio.open_nursery() as request_nursery:
            watcher_scope = trio.CancelScope()
            request_nursery.start_soon(
                self._watch_disconnect, receive, ex, watcher_scope, name=_WATCHER
            )
            try:
                with ex.client_scope:
                    await self._unary_body(ex)
            finally:
                if ex.current is not None:
                    await self._attempts.settle(ex, ex.current)
                watcher_scope.cancel()

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
            await self._consume(ex, attempt)
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


def _inspect(attempt: Attempt, chunk: bytes) -> bool:
    """Feed ``chunk`` (``b""``: EOF) to the attempt's tap, discarding the output; True once
    the stream is over."""
    tap = attempt.tap
    if not chunk:
        tap.end_of_stream()
        return True
    raw, events = attempt.decoder.feed(chunk)
    tap.forward(raw, events)  # output discarded; forward never copies a large frame
    return tap.finished


async def _read_tail(response: UpstreamResponse) -> None:
    """Read the rest of the HTTP body after the terminal event (normally just the chunked
    terminator) so the connection can be reused; bounded, and harmless to skip."""
    with trio.move_on_after(_TAIL_GRACE):
        try:
            while not response.is_finished and await response.receive_some():
                pass
        except UpstreamError:
            return


def _slices(parts: Sequence[bytes], size: int) -> Iterator[bytes]:
    """The bytes of ``parts``, in order, cut into pieces of ``size`` (the last one shorter),
    each copied once from views: never a join of them all, which would copy a large frame."""
    pieces: list[memoryview] = []
    filled = 0
    for part in parts:
        with memoryview(part) as view:
            offset = 0
            while offset < len(view):
                piece = view[offset : offset + size - filled]
                pieces.append(piece)
                filled += len(piece)
                offset += len(piece)
                if filled == size:
                    yield b"".join(pieces)
                    pieces.clear()
                    filled = 0
    if pieces:
        yield b"".join(pieces)


def _scrub(data: bytes, secrets: Sequence[str]) -> bytes:
    """Remove the upstream's own key from an in-band error frame passed through verbatim."""
    for secret in secrets:
        data = data.replace(secret.encode(), b"[redacted]")
    return data


__all__ = ["Relay"]
